"""tlab data audit on copies of woof-mini and clothing-mini with planted problems, and on the sets as they are."""

import csv

import pytest
from typer.testing import CliRunner

import transferlab as tl
from planted import plant
from transferlab.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def copies_found(findings, planted) -> int:
    """Planted copies reported as copies of their own original."""
    rows = findings[findings["issue"].isin(["leak", "duplicate", "near-duplicate"])]
    kept_by_copy = dict(zip(rows["path"], rows["suggested"]))
    return sum(kept_by_copy.get(str(copy)) == str(original) for copy, original in planted.copies.items())


@pytest.fixture(scope="module")
def planted_sets(woof_mini, clothing_mini, tmp_path_factory) -> dict:
    """woof-mini with clothing photos as strangers, clothing-mini with dog photos (read only: tests share them)."""
    root = tmp_path_factory.mktemp("planted")
    return {
        "woof-mini": plant(woof_mini, clothing_mini, root / "woof-mini"),
        "clothing-mini": plant(clothing_mini, woof_mini, root / "clothing-mini"),
    }


@pytest.mark.parametrize("name", ["woof-mini", "clothing-mini"])
def test_planted_problems_are_found(name, planted_sets):
    planted = planted_sets[name]
    findings = tl.audit(planted.root)
    labels = findings[findings["issue"] == "label"]["path"].tolist()
    assert len({str(p) for p in planted.moved} & set(labels[:20])) >= 7, labels[:20]
    assert copies_found(findings, planted) == 10
    leaks = findings[findings["issue"] == "leak"]["path"].tolist()
    assert sorted(leaks) == sorted(str(copy) for copy in list(planted.copies)[:5])
    off_topic = findings[findings["issue"] == "off-topic"]["path"].tolist()
    assert {str(p) for p in planted.off_topic} <= set(off_topic[:10]), off_topic
    assert findings.attrs["summary"][0].startswith(f"{13 + 400} photos")


@pytest.mark.parametrize("name", ["woof-mini", "clothing-mini"])
def test_untouched_sets_have_few_duplicate_findings(name, woof_mini, clothing_mini):
    findings = tl.audit({"woof-mini": woof_mini, "clothing-mini": clothing_mini}[name])
    assert len(findings[findings["issue"].isin(["leak", "duplicate", "near-duplicate"])]) <= 3


def test_tlab_data_audit_writes_the_page_and_the_table(planted_sets, tmp_path):
    planted = planted_sets["woof-mini"]
    out = tmp_path / "audit"
    result = runner.invoke(app, ["data", "audit", str(planted.root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "leak: 5 photos" in result.output and "off-topic" in result.output
    with open(out / "audit.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and list(rows[0]) == ["path", "issue", "score", "suggested"]
    assert {row["issue"] for row in rows} >= {"leak", "near-duplicate", "label", "off-topic"}
    page = (out / "audit.html").read_text()
    assert page.count("data:image/jpeg;base64,") >= 20 and "http" not in page.replace("http-equiv", "")
    assert runner.invoke(app, ["data", "audit", str(tmp_path / "nowhere")]).exit_code == 2
