"""tlab data audit on copies of woof-mini and clothing-mini with planted problems, and on the sets as they are."""

import csv
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import transferlab as tl
from planted import plant
from transferlab.audits import labels as label_module
from transferlab.audits.labels import fit_logistic_head, kept_out_of_fold_probabilities, stratified_folds
from transferlab.audits.outliers import outlier_scores
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
    assert page.count("data:image/jpeg;base64,") >= 20
    text = re.sub(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+", "", page)  # base64 may spell "http" by chance
    assert "http" not in text.replace("http-equiv", "")  # self-contained: nothing fetched
    assert runner.invoke(app, ["data", "audit", str(tmp_path / "nowhere")]).exit_code == 2


def blobs(photos: int = 240, classes: int = 4, dims: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised features in overlapping clusters, like pooled features of photos of a few classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(classes, size=photos)
    features = rng.normal(size=(classes, dims))[labels] + rng.normal(scale=1.5, size=(photos, dims))
    return (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32), labels


def test_logistic_head_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    features, labels = blobs()
    weight, bias, mean = fit_logistic_head(features, labels, 4)
    logits = (features - mean.numpy()) @ weight.numpy() + bias.numpy()
    ours = np.exp(logits - logits.max(axis=1, keepdims=True))
    ours /= ours.sum(axis=1, keepdims=True)
    reference = LogisticRegression(C=label_module.INVERSE_REGULARISATION, tol=1e-10, max_iter=10_000).fit(features.astype(np.float64), labels)
    assert np.abs(ours - reference.predict_proba(features)).max() < 2e-3


def test_folds_are_stratified_balanced_and_seeded():
    labels = np.repeat(np.arange(3), [10, 7, 5])
    folds = stratified_folds(labels, 5, seed=1)
    assert all(np.bincount(folds[labels == label], minlength=5).max() - np.bincount(folds[labels == label], minlength=5).min() <= 1 for label in range(3))
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
    assert (stratified_folds(labels, 5, seed=1) == folds).all() and (stratified_folds(labels, 5, seed=2) != folds).any()


def test_out_of_fold_probabilities_are_kept_and_refitted_when_the_labels_change(tmp_path, monkeypatch):
    features, labels = blobs()
    first = kept_out_of_fold_probabilities(features, labels, 5, 0, tmp_path)
    assert first.shape == (240, 5) and np.allclose(first.sum(axis=1), 1) and (first[:, 4] == 0).all()

    def refit(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setattr(label_module, "out_of_fold_probabilities", refit)
    assert (kept_out_of_fold_probabilities(features, labels, 5, 0, tmp_path) == first).all()
    with pytest.raises(AssertionError, match="fitted again"):
        kept_out_of_fold_probabilities(features, np.roll(labels, 1), 5, 0, tmp_path)


def test_outlier_scores_match_cleanlab():
    import contextlib
    import io

    from cleanlab.outlier import OutOfDistribution

    features, _ = blobs(photos=300)
    with contextlib.redirect_stdout(io.StringIO()):
        reference = OutOfDistribution(params={"k": 10}).fit_score(features=features)
    assert np.abs(outlier_scores(features) - reference).max() < 1e-5


def test_outlier_scores_are_the_same_in_blocks_and_with_duplicates(monkeypatch):
    from transferlab.audits import outliers as outlier_module

    features, _ = blobs(photos=101)
    features[7] = features[8] = features[50]
    whole = outlier_scores(features)
    monkeypatch.setattr(outlier_module, "BLOCK_FLOATS", 3 * 101)
    np.testing.assert_allclose(outlier_scores(features), whole, rtol=1e-12)


HEAVY = ("torch", "torchvision", "timm", "lightning", "sklearn", "cleanlab")


def test_an_audit_run_again_loads_no_model(planted_sets):
    """The second audit of unchanged photos reads the features and probabilities it used: no PyTorch, same findings."""
    root = planted_sets["clothing-mini"].root
    first = tl.audit(root)
    code = (
        "import sys, transferlab as tl\n"
        f"findings = tl.audit({str(root)!r})\n"
        "print(findings[['path', 'issue', 'suggested']].to_json())\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    table, loaded = done.stdout.strip().splitlines()[-2:]
    assert loaded == "[]"
    assert table == first[["path", "issue", "suggested"]].to_json()
