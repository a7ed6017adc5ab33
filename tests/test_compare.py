"""`tlab compare` on real photos with a tiny schedule, then evaluate, report, and the report in headless Chromium."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from transferlab.cli import app
from transferlab.config import CompareConfig
from transferlab.experiment import compare
from transferlab.models.precision import cpu_model
from transferlab.rundir import RunDir

pytestmark = pytest.mark.slow
runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def compare_run(woof_mini, tmp_path_factory) -> RunDir:
    out = tmp_path_factory.mktemp("compare") / "run"
    config = CompareConfig(
        data=str(woof_mini), out=str(out), epochs={"scratch": 1, "frozen": 3, "finetune": 1},
        image_size=96, batch_size=32,
    )
    return compare(config)


def test_every_strategy_has_rows_plots_metrics(compare_run):
    history = compare_run.read_history()
    assert [(r["strategy"], r["epoch"]) for r in history] == [
        ("scratch", 1), ("frozen", 1), ("frozen", 2), ("frozen", 3), ("finetune", 1)
    ]
    metrics = compare_run.read_metrics()
    for strategy in ("scratch", "frozen", "finetune"):
        assert {"accuracy", "top5_accuracy", "macro_f1", "best_val_acc", "seconds"} <= set(metrics[strategy])
        for plot in ("history", "confusion", "mistakes", "calibration"):
            assert compare_run.plot_file(f"{plot}_{strategy}").is_file()
    for plot in ("compare", "samples", "class_counts", "augment"):
        assert compare_run.plot_file(plot).is_file()
    assert metrics["frozen"]["accuracy"] > 0.5, "a pretrained backbone must beat chance (10%) by far"
    assert metrics["finetune"]["accuracy"] > 0.5


def test_predictions_csv_and_diagnosis(compare_run):
    with open(compare_run.predictions_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["strategy"] for row in rows} == {"scratch", "frozen", "finetune"}
    assert len(rows) == 3 * 100
    assert all(len(row["top5"].split()) == 5 and 0 <= float(row["probability"]) <= 1 for row in rows)
    findings = json.loads(compare_run.diagnosis_file.read_text())
    topics = {(f["strategy"], f["topic"]) for f in findings}
    assert ("frozen", "learning") in topics and ("frozen", "fit") in topics
    assert ("finetune", "finetune") in topics and (None, "choice") in topics
    assert all(any(ch.isdigit() for ch in f["text"]) for f in findings), "every finding cites numbers"


def test_evaluate_json_matches_predictions_csv(compare_run):
    result = runner.invoke(app, ["evaluate", str(compare_run.path), "--json", "--strategy", "frozen"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    for key in ("accuracy", "top5_accuracy", "macro_f1", "per_class_accuracy", "confusion_matrix", "most_confused", "n_images"):
        assert key in payload
    with open(compare_run.predictions_file, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["strategy"] == "frozen"]
    assert payload["accuracy"] == pytest.approx(sum(row["label"] == row["predicted"] for row in rows) / len(rows))
    assert sum(map(sum, payload["confusion_matrix"])) == payload["n_images"] == 100
    assert len(payload["per_class_accuracy"]) == 10


def test_evaluate_on_another_set_without_a_split(compare_run, woof_mini, tmp_path):
    other = tmp_path / "other"
    for folder in sorted((woof_mini / "val").iterdir())[:2]:
        shutil.copytree(folder, other / folder.name)
    result = runner.invoke(app, ["evaluate", str(compare_run.path), "--data", str(other), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_images"] == 20
    assert (compare_run.path / "evaluations" / "other" / "predictions.csv").is_file()


def test_report_rebuilds_from_the_run_directory_alone(compare_run, tmp_path):
    copy = tmp_path / "copied_run"
    shutil.copytree(compare_run.path, copy)
    for path in (copy / "report.html", copy / "report.md", copy / "plots" / "compare.png", copy / "plots" / "history_frozen.png"):
        path.unlink()
    result = runner.invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    html = (copy / "report.html").read_text()
    markdown = (copy / "report.md").read_text()
    assert (copy / "plots" / "compare.png").is_file() and (copy / "plots" / "history_frozen.png").is_file()
    assert "http://" not in html.split("</style>", 1)[1] and 'src="plots/' not in html
    for text in ("Diagnosis", "scratch", "frozen", "finetune", "McNemar", f"trained on {cpu_model()}"):
        assert text in html and text in markdown
    assert html.count("<img ") >= 13


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
def test_report_renders_in_headless_chromium(compare_run, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: errors.append(f"network request: {request.url}") if not request.url.startswith(("file:", "data:")) else None)
        page.goto(compare_run.report_file.resolve().as_uri(), wait_until="load")
        images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert len(images) >= 13
    assert [alt for alt, complete, width in images if not complete or width == 0] == []
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_compare_audits_the_data_and_reports_calibration(compare_run):
    """The audit comes from the frozen strategy's cached features; the report links it and says how sure the models are."""
    audit = json.loads(compare_run.audit_file.read_text())
    assert audit["photos"] == 400 and audit["summary"][0].startswith("400 photos, 10 classes")
    assert (compare_run.path / "audit.html").is_file() and (compare_run.path / "audit.csv").is_file()
    report = compare_run.report_file.read_text()
    assert "Data audit" in report and 'href="audit.html"' in report
    calibration = json.loads(compare_run.calibration_file.read_text())
    assert set(calibration) == {"scratch", "frozen", "finetune"}
    assert all(entry["ece_after"] <= entry["ece_before"] for entry in calibration.values())
    assert "expected calibration error" in report and "not sure" in report
