"""The notebook surface: `Experiment`, the strategy registry (with `gradual` added through it alone), one rule for
the best strategy everywhere, and no global state changed by importing transferlab."""

import json
import logging
import subprocess
import sys

import lightning as L
import numpy as np
import pytest
from fastapi.testclient import TestClient

import transferlab as tl
from transferlab.evaluate.metrics import Predictions, write_predictions
from transferlab.train.strategies import UnknownStrategyError, get_strategy, strategy_names


def test_importing_transferlab_changes_no_global_state():
    """Libraries we use set warning filters of their own on import: they are imported first, then transferlab."""
    code = """
import matplotlib, warnings
import torch, torchvision, lightning, timm, scipy.stats, onnx, onnxruntime, fastapi, uvicorn, pandas, typer
from PIL import Image
backend, filters, pixels = matplotlib.get_backend(), list(warnings.filters), Image.MAX_IMAGE_PIXELS
import transferlab, transferlab.experiment, transferlab.cli, transferlab.serve, transferlab.inference
assert matplotlib.get_backend() == backend, (backend, matplotlib.get_backend())
assert list(warnings.filters) == filters, set(warnings.filters) ^ set(filters)
assert Image.MAX_IMAGE_PIXELS == pixels, "Pillow's decompression-bomb limit changed"
import types
for name in transferlab.__all__[1:]:  # every name the package offers stays what it names once the library is loaded
    assert callable(getattr(transferlab, name)) and not isinstance(getattr(transferlab, name), types.ModuleType), name
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_an_unknown_strategy_lists_the_registered_ones(three_classes, tmp_path):
    experiment = tl.Experiment(three_classes, out=tmp_path / "run", image_size=48)
    with pytest.raises(UnknownStrategyError, match="unknown strategy 'bogus'; registered: scratch, frozen, finetune, gradual"):
        experiment.fit("bogus")
    assert not (tmp_path / "run").exists()
    assert strategy_names()[:3] == ["scratch", "frozen", "finetune"]


def test_round_trip_in_python_and_a_refit_replaces_its_rows(three_classes, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", True)  # the CLI, run in-process earlier, stops it
    experiment = tl.Experiment(three_classes, out=tmp_path / "run", image_size=48, batch_size=4, augment="none", runtime="torch")
    assert len(experiment.show_batch(4).axes) == 4
    experiment.fit("frozen", epochs=2)
    experiment.fit("finetune", epochs=1)
    history = experiment.history
    assert list(history["strategy"]) == ["frozen", "frozen", "finetune"]
    assert {"epoch", "train_loss", "val_acc", "lr", "seconds"} <= set(history.columns)
    assert len(experiment.plot().axes) == 2 and len(experiment.plot("frozen").axes) == 2

    experiment.fit("frozen", epochs=3)
    assert "frozen: training it again" in caplog.text
    assert "weights_only" not in caplog.text  # Lightning's note on every checkpoint, in a notebook's output
    rows = experiment.history
    assert list(rows[rows.strategy == "frozen"]["epoch"]) == [1, 2, 3]

    metrics = experiment.evaluate()
    assert set(metrics) == {"frozen", "finetune"} and all(0 <= m["accuracy"] <= 1 for m in metrics.values())
    assert any(finding.topic == "choice" for finding in experiment.diagnose())
    html, _ = experiment.report()
    assert html.is_file()
    photo = next(three_classes.rglob("*.png"))
    answer = experiment.predict([photo], top_k=2)[0]
    assert len(answer.predictions) == 2 and answer.predictions[0].label in ("a", "b", "c")
    assert experiment.export(tmp_path / "model.onnx").is_file()

    reopened = tl.Experiment.open(tmp_path / "run")
    assert reopened.model("frozen") is not None and reopened.strategies == ["frozen", "finetune"]


class RecordGroups(L.Callback):
    """The optimiser's groups (name, lr, parameter count) and which stages train at each epoch's start."""

    def __init__(self):
        self.groups, self.training = [], []

    def on_train_start(self, trainer, pl_module):
        self.groups = [(g["name"], g["initial_lr"], len(g["params"])) for g in trainer.optimizers[0].param_groups]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            groups = trainer.optimizers[0].param_groups[1:]
            self.training.append([all(p.requires_grad for p in g["params"]) for g in groups])


@pytest.mark.slow
def test_gradual_unfreezes_stage_by_stage_with_lower_rates_and_learns(woof_mini, tmp_path):
    record = RecordGroups()
    experiment = tl.Experiment(woof_mini, out=tmp_path / "run", image_size=128, batch_size=32)
    experiment.fit("frozen", epochs=2)
    result = experiment.fit("gradual", epochs=3, lr=1e-3, callbacks=[record])
    names = [name for name, _, _ in record.groups]
    assert names == ["head", "stage -1", "stage -2", "stage -3"]
    lrs = [lr for _, lr, _ in record.groups]
    assert lrs == pytest.approx([1e-3, 3e-4, 9e-5, 2.7e-5])
    assert record.training == [[True, False, False], [True, True, False], [True, True, True]]
    assert result.metrics["best_val_acc"] > 0.6, result.metrics  # 10 breeds: chance is 0.1
    history = experiment.history
    gradual_lrs = list(history[history.strategy == "gradual"]["lr"])
    assert gradual_lrs[-1] < gradual_lrs[0]  # warmup then cosine decay
    assert tl.Experiment.open(tmp_path / "run").strategies == ["frozen", "gradual"]


def _run_with_predictions(three_classes, tmp_path, correct: dict[str, np.ndarray]):
    """A trained run (tiny models) whose predictions.csv says how accurate each strategy is on 200 photos."""
    experiment = tl.Experiment(three_classes, out=tmp_path / "run", image_size=48, batch_size=4, augment="none", runtime="torch")
    for name in correct:
        experiment.fit(name, epochs=1)
    names = experiment.classes
    labels = np.arange(200) % 3
    predictions = []
    for strategy, right in correct.items():
        predicted = np.where(right, labels, (labels + 1) % 3)
        top5 = np.stack([predicted, (predicted + 1) % 3, (predicted + 2) % 3], axis=1)
        predictions.append(Predictions(strategy, tuple(f"photo{i}.png" for i in range(200)), labels, predicted, np.full(200, 0.9), top5))
    write_predictions(experiment.run.predictions_file, predictions, names)
    metrics = experiment.run.read_metrics()
    for p in predictions:
        experiment.run.update_metrics(p.strategy, {**metrics[p.strategy], "accuracy": float(p.correct.mean())})
    return experiment


@pytest.mark.parametrize(
    "shares, advised",
    [
        ({"scratch": 0.50, "frozen": 0.70, "finetune": 0.95}, "finetune"),  # finetune significantly better
        ({"frozen": 0.80, "finetune": 0.82}, "frozen"),  # not significantly better: the cheaper one
    ],
)
def test_predict_serve_export_and_the_report_name_the_same_strategy(three_classes, tmp_path, shares, advised):
    rng = np.random.default_rng(0)
    order = rng.permutation(200)
    correct = {}
    for name, share in shares.items():
        right = np.zeros(200, bool)
        right[order[: round(200 * share)]] = True  # nested: a better strategy gets the same photos right and more
        correct[name] = right
    experiment = _run_with_predictions(three_classes, tmp_path, correct)
    run = experiment.run

    experiment.report()
    choice = [f for f in json.loads(run.diagnosis_file.read_text()) if f["topic"] == "choice"][0]
    assert choice["verdict"] == f"use-{advised}"
    assert tl.load(run.path).strategy == advised
    from transferlab.serve import create_app

    assert TestClient(create_app(run.path)).get("/health").json()["strategy"] == advised
    from typer.testing import CliRunner

    from transferlab.cli import app

    exported = CliRunner().invoke(app, ["export", str(run.path)])
    assert exported.exit_code == 0 and f"model_{advised}.onnx" in exported.output, exported.output


def test_every_registered_strategy_says_what_it_needs():
    for name in strategy_names():
        strategy = get_strategy(name)
        assert strategy.summary and strategy.recipes["seed"].epochs >= 1 and strategy.recipes["quick"].epochs >= 1
        assert strategy.starts_from is None or strategy.starts_from in strategy_names()


def test_the_frozen_model_is_evaluated_on_its_cached_features_with_the_same_answers(three_classes, tmp_path, monkeypatch):
    """The head on the cached validation features gives what the whole model gives on the decoded photos."""
    from transferlab.evaluate import evaluation
    from transferlab.evaluate.metrics import read_predictions

    experiment = tl.Experiment(three_classes, out=tmp_path / "run", image_size=48, batch_size=4, augment="none", runtime="torch")
    experiment.fit("frozen", epochs=2)
    decoded, photos = [], evaluation.PhotoDataset
    monkeypatch.setattr(evaluation, "PhotoDataset", lambda *args, **kwargs: decoded.append(args) or photos(*args, **kwargs))
    fast = experiment.evaluate()
    assert decoded == [], "no photo is decoded for a frozen model evaluated on its cached features"
    fast_predictions = read_predictions(experiment.run.predictions_file)["frozen"]
    monkeypatch.undo()
    slow, _ = evaluation.evaluate_run(experiment.run.path, runtime="torch")
    slow_predictions = read_predictions(experiment.run.predictions_file)["frozen"]
    assert fast["frozen"]["accuracy"] == slow["frozen"]["accuracy"]
    assert (fast_predictions.predicted == slow_predictions.predicted).all()
    np.testing.assert_allclose(fast_predictions.probability, slow_predictions.probability, rtol=1e-4, atol=1e-5)


def test_lightnings_info_lines_are_held_back_unless_ours_are_shown(three_classes, tmp_path, caplog, monkeypatch):
    """In a notebook every fit printed "GPU available: False", "TPU available", a tip for Lightning's cloud logger and
    why the fit stopped; they show where transferlab's own INFO messages do (`tlab -v`)."""
    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", True)  # to caplog
    caplog.set_level(logging.INFO)
    ours = logging.getLogger("transferlab")
    experiment = tl.Experiment(three_classes, out=tmp_path / "run", image_size=48, batch_size=4, augment="none", runtime="torch")
    ours.setLevel(logging.WARNING)
    try:
        experiment.fit("frozen", epochs=1)
    finally:
        ours.setLevel(logging.NOTSET)
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("lightning")]
    assert logging.getLogger("lightning.pytorch").level == logging.INFO  # as Lightning set it: given back
    experiment.fit("frozen", epochs=1)
    assert any("GPU available" in r.getMessage() for r in caplog.records if r.name.startswith("lightning"))


def test_lightnings_levels_are_given_back_after_an_error_and_a_users_own_is_kept():
    from transferlab.train.quiet import quiet_lightning

    lightning, fabric = logging.getLogger("lightning.pytorch"), logging.getLogger("lightning.fabric")
    ours, before = logging.getLogger("transferlab"), (lightning.level, fabric.level)
    ours.setLevel(logging.WARNING)
    fabric.setLevel(logging.DEBUG)  # a user who asked for Lightning's debug lines keeps them
    try:
        with pytest.raises(KeyboardInterrupt), quiet_lightning():
            assert lightning.level == logging.WARNING and fabric.level == logging.DEBUG
            raise KeyboardInterrupt
        assert lightning.level == before[0] and fabric.level == logging.DEBUG
    finally:
        ours.setLevel(logging.NOTSET)
        fabric.setLevel(before[1])
