import csv
import json

import pytest

from transferlab.files import write_atomic
from transferlab.report.plots import history_figure, save_figure
from transferlab.rundir import HISTORY_COLUMNS, RunDir, RunDirError


def _row(epoch: int, strategy: str = "frozen", loss: float = 1.0) -> dict:
    return {"epoch": epoch, "strategy": strategy, "train_loss": loss, "train_acc": 0.5, "val_loss": loss,
            "val_acc": 0.6, "lr": 0.01, "seconds": 1.5}


def test_history_appends_and_replaces_a_repeated_epoch(tmp_path):
    run = RunDir(tmp_path)
    run.append_history(_row(1))
    run.append_history(_row(2))
    run.append_history(_row(2, loss=0.25))
    run.append_history(_row(1, strategy="finetune"))
    with open(run.history_file, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == HISTORY_COLUMNS
    assert [(r["strategy"], r["epoch"]) for r in rows] == [("frozen", "1"), ("frozen", "2"), ("finetune", "1")]
    assert run.read_history("frozen")[1]["train_loss"] == 0.25


def test_metrics_are_kept_per_strategy(tmp_path):
    run = RunDir(tmp_path)
    run.update_metrics("frozen", {"val_acc": 0.9})
    run.update_metrics("finetune", {"val_acc": 0.95})
    assert run.read_metrics() == {"frozen": {"val_acc": 0.9}, "finetune": {"val_acc": 0.95}}


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_history_plot_has_two_labelled_panels(tmp_path):
    figure = history_figure([_row(1, loss=1.0), _row(2, loss=0.5)], "frozen")
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["model accuracy", "model loss"]
    assert all(ax.get_xlabel() == "epoch" for ax in figure.axes)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["train", "validation"]
    save_figure(figure, tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("calibration, fragment", [
    ({"frozen": {"temperature": "hot"}}, "frozen's temperature must be a positive number, not 'hot'"),
    ({"frozen": {"temperature": -2.0}}, "not -2.0"),
    ({"frozen": {"temperature": 0}}, "not 0"),
    (["x"], "expected a calibration per strategy"),
    ({"frozen": 3}, "expected a calibration per strategy"),
])
def test_a_damaged_temperature_is_refused_naming_the_file(tmp_path, calibration, fragment):
    """A negative temperature would turn answers around, zero would divide by it: neither may be used."""
    run = RunDir(tmp_path)
    run.calibration_file.write_text(json.dumps(calibration))
    with pytest.raises(RunDirError, match="calibration.json: damaged") as error:
        run.temperature("frozen")
    assert fragment in str(error.value)


def test_a_temperature_is_read_and_defaults_to_one(tmp_path):
    run = RunDir(tmp_path)
    assert run.temperature("frozen") == 1.0
    run.calibration_file.write_text(json.dumps({"frozen": {"temperature": 1.5}, "scratch": {}}))
    assert run.temperature("frozen") == 1.5 and run.temperature("scratch") == 1.0 and run.temperature("finetune") == 1.0


def test_a_damaged_calibration_is_repaired_by_the_evaluation_its_message_asks_for(tmp_path, caplog):
    from transferlab.evaluate.evaluation import record_calibration

    run = RunDir(tmp_path)
    run.calibration_file.write_text(json.dumps({"frozen": 3, "scratch": {"temperature": 2.0}, "gradual": {"temperature": -1}}))
    with caplog.at_level("WARNING", logger="transferlab.rundir"):
        run.forget_stage("finetune")  # --overwrite of another stage does not stop on it, and drops the damage
        assert json.loads(run.calibration_file.read_text()) == {"scratch": {"temperature": 2.0}}
        assert "damaged entries dropped (frozen, gradual)" in caplog.text
        record_calibration(run, {"frozen": {"calibration": {"temperature": 1.25, "fitted_here": True}}})
    assert run.temperature("frozen") == 1.25 and run.temperature("scratch") == 2.0  # the other strategy's kept
    run.calibration_file.write_text("{not json")
    record_calibration(run, {"frozen": {"calibration": {"temperature": 1.5}}})
    assert run.temperature("frozen") == 1.5
