"""Fitting the recipe to the data: learning-rate schedules, the frozen head's search on the training photos
(`--recipe auto`), the range test's rate for fine-tuning, and `compare --lr find`."""

import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import transferlab as tl
from transferlab.cli import app
from transferlab.config import CompareConfig
from transferlab.models.classifier import ClassifierHead
from transferlab.rundir import RunDir
from transferlab.train.recipe import EPOCHS, RATES, REGULARISERS, search_head, stratified_folds
from transferlab.train.strategies import plan
from transferlab.train.strategies.registry import SCHEDULES


def test_the_seed_recipe_keeps_the_notebooks_constant_rate_and_the_others_warm_up_and_decay():
    assert plan("frozen", "seed").schedule == "constant" and plan("finetune", "seed").schedule == "constant"
    assert plan("frozen", "quick").schedule == "cosine" and plan("scratch", "auto").schedule == "cosine"
    assert plan("gradual", "seed").schedule == "cosine"  # its own, in every recipe
    assert plan("frozen", "seed", schedule="onecycle").schedule == "onecycle"
    with pytest.raises(ValueError, match="schedule"):
        plan("frozen", "seed", schedule="linear")
    assert CompareConfig(data="d", out="o", recipe="auto").strategies == ["frozen", "gradual"]
    assert CompareConfig(data="d", out="o").strategies == ["scratch", "frozen", "finetune"]


def _rates(schedule: str, steps: int = 100, lr: float = 0.1) -> list[float]:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = SCHEDULES[schedule](optimizer, steps)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return rates


def test_each_schedule_has_its_shape():
    assert _rates("constant") == [0.1] * 100
    cosine = _rates("cosine")
    assert cosine[0] < 0.02 and max(cosine) == pytest.approx(0.1) and int(np.argmax(cosine)) <= 10  # warmup: 10 %
    assert all(a >= b for a, b in zip(cosine[10:], cosine[11:])) and cosine[-1] < 1e-3
    cycle = _rates("onecycle")
    assert cycle[0] == pytest.approx(0.1 / 25) and 25 <= int(np.argmax(cycle)) <= 35 and cycle[-1] < 1e-4


@pytest.mark.slow
def test_schedule_flag_decays_the_rate_over_the_run(three_classes, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(three_classes), "--out", str(out), "--epochs", "3", "--schedule", "cosine",
                                      "--image-size", "48", "--batch-size", "4", "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    rates = [row["lr"] for row in RunDir(out).read_history("frozen")]
    assert rates[0] > rates[1] > rates[2] and rates[2] < 0.05 * 1e-2  # the seed recipe's 1e-2, decayed to ~0 at the end
    assert RunDir(out).read_metrics()["frozen"]["schedule"] == "cosine"
    assert CliRunner().invoke(app, ["train", str(three_classes), "--schedule", "linear"]).exit_code == 2
    quick = tmp_path / "quick"
    result = CliRunner().invoke(app, ["train", str(three_classes), "--out", str(quick), "--recipe", "quick", "--epochs", "1",
                                      "--image-size", "48", "--batch-size", "4", "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert RunDir(quick).read_metrics()["frozen"]["schedule"] == "cosine"  # the quick recipe's; seed's is constant

    from transferlab.config import TrainConfig
    from transferlab.data.resolve import load_index
    from transferlab.train.fit import prepare_run

    config = RunDir(out).read_config()  # a run from before --schedule, --recipe and --trunk-views existed resumes: their defaults
    del config["config"]["schedule"], config["config"]["recipe"], config["config"]["trunk_views"]
    RunDir(out).write_config(config)
    settings = TrainConfig(**{**config["config"], "schedule": "auto", "recipe": "seed", "trunk_views": 0})
    prepare_run(settings, load_index(settings.data_spec))
    with pytest.raises(Exception, match="other settings \\(trunk_views\\)"):  # it drew fresh views every epoch
        prepare_run(settings.model_copy(update={"trunk_views": 2}), load_index(settings.data_spec))
    with pytest.raises(Exception, match="other settings \\(schedule\\)"):
        changed = settings.model_copy(update={"schedule": "onecycle"})
        prepare_run(changed, load_index(changed.data_spec))
    config["config"]["recipe"] = "quick"  # before --schedule, quick ran at a constant rate: only that resumes it
    RunDir(out).write_config(config)
    with pytest.raises(Exception, match="other settings \\(schedule\\)"):
        prepare_run(settings.model_copy(update={"recipe": "quick"}), load_index(settings.data_spec))
    prepare_run(settings.model_copy(update={"recipe": "quick", "schedule": "constant"}), load_index(settings.data_spec))


def test_folds_hold_out_every_photo_once_and_keep_the_classes_balanced():
    labels = np.repeat(np.arange(4), [9, 9, 6, 3])
    folds = stratified_folds(labels, 3, seed=1)
    assert sorted(np.bincount(folds)) == [9, 9, 9]
    for label in range(4):
        counts = np.bincount(folds[labels == label], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(folds, stratified_folds(labels, 3, seed=1))


def _separable(photos_per_class: int = 20, classes: int = 3, views: int = 2, dim: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, dim)) * 3
    labels = np.repeat(np.arange(classes), photos_per_class)
    features = centres[labels][:, None, :] + rng.normal(0, 1, (len(labels), views, dim))
    return features.astype(np.float32), labels.tolist()


def test_the_head_search_tries_both_rounds_and_repeats_itself():
    features, labels = _separable()
    head = ClassifierHead(32, 3)
    search = search_head(head, features, labels, seed=3, batch_size=64)
    assert search.complete and len(search.trials) == len(RATES) * len(EPOCHS) + 2 ** len(REGULARISERS) - 1
    assert search.photos == 60 and search.chosen.accuracy >= 0.9
    assert search.chosen == max(search.trials, key=lambda t: (t.accuracy, -t.loss))
    again = search_head(head, features, labels, seed=3, batch_size=64)
    assert again.chosen == search.chosen and [t.accuracy for t in again.trials] == [t.accuracy for t in search.trials]
    assert head.dropout.p == 0.2  # the caller's head is left as it was
    stopped = search_head(head, features, labels, seed=3, batch_size=64, budget_seconds=0)
    assert not stopped.complete and len(stopped.trials) == 1
    other = search_head(ClassifierHead(32, 3, dropout=0.3), features, labels, seed=3, batch_size=64)  # --dropout 0.3
    assert other.complete and len(other.trials) == len(RATES) * len(EPOCHS) + 2 ** len(REGULARISERS)


@pytest.mark.slow
def test_recipe_auto_fits_the_frozen_head_on_training_photos_only(clothing_mini, tmp_path):
    """Out of ImageNet's domain: the search sees the training photos alone, the stage trains as chosen, and the
    report says what was tried."""
    experiment = tl.Experiment(clothing_mini, out=tmp_path / "run", recipe="auto", image_size=96)
    result = experiment.fit("frozen")
    record = experiment.run.read_recipe()["frozen"]
    chosen, stage = record["search"]["chosen"], record["stage"]
    assert record["search"]["photos"] == len(experiment.index.train) and len(record["search"]["trials"]) >= 12
    assert (stage["lr"], stage["epochs"], stage["schedule"]) == (chosen["lr"], chosen["epochs"], "cosine")
    assert result.metrics["epochs"] == chosen["epochs"] and result.metrics["schedule"] == "cosine"
    assert result.metrics["best_val_acc"] > 0.5  # 10 classes: chance is 0.1
    curve = experiment.curve(points=[2], seeds=2, epochs=3)  # into the run: the report shows it too
    html = experiment.report()[0].read_text()
    assert "Recipe fitted to the data" in html and f"learning rate {chosen['lr']:g}" in html
    assert "How many photos do you need?" in html and curve.verdict() in html
    assert any(f.topic == "data" and f.verdict == curve.outlook() for f in experiment.diagnose())  # the diagnosis answers it too


@pytest.mark.slow
def test_recipe_auto_fine_tunes_at_the_range_tests_rate_with_early_stopping(three_classes, tmp_path):
    from transferlab.models.checkpoints import read_checkpoint

    experiment = tl.Experiment(three_classes, out=tmp_path / "run", recipe="auto", image_size=48, batch_size=8, runtime="torch")
    frozen = {"lr": 0.01, "epochs": 2, "schedule": "cosine", "weight_decay": 0.0, "label_smoothing": 0.0, "dropout": 0.2, "patience": None}
    experiment.run.write_json(experiment.run.recipe_file, {"frozen": {"stage": frozen}})  # as a resumed run finds it: not searched again
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        experiment.fit("gradual")
    assert not [w for w in shown if "eval mode" in str(w.message)], "frozen BatchNorm in eval is on purpose: no Lightning warning"
    assert experiment.results["frozen"].metrics["epochs"] == 2
    recipe = experiment.run.read_recipe()
    assert set(recipe) == {"frozen", "gradual"}
    stage = recipe["gradual"]["stage"]
    assert stage["patience"] == 2 and stage["schedule"] == "cosine"
    assert stage["lr"] == recipe["gradual"]["range_test"]["suggestion"]
    assert read_checkpoint(experiment.run.best_checkpoint("gradual"))["hyper_parameters"]["lr"] == stage["lr"]
    assert experiment.run.plot_file("lr_find_gradual").is_file()
    assert tl.Experiment.open(experiment.run.path).recipe == "auto"


@pytest.mark.slow
def test_compare_lr_find_trains_at_the_suggestion_and_reports_the_ramp(three_classes, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["compare", str(three_classes), "--out", str(out), "--strategies", "frozen", "--lr", "find",
                                      "--epochs", "1", "--image-size", "48", "--batch-size", "4", "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    from transferlab.models.checkpoints import read_checkpoint

    run = RunDir(out)
    assert run.plot_file("lr_find_frozen").is_file()
    suggestion = run.read_recipe()["frozen"]["range_test"]["suggestion"]
    assert read_checkpoint(run.best_checkpoint("frozen"))["hyper_parameters"]["lr"] == suggestion
    html = run.report_file.read_text()
    assert "learning-rate range test" in html and f"learning rate {suggestion:.2g} from the range test" in html
    bad = CliRunner().invoke(app, ["compare", str(three_classes), "--out", str(tmp_path / "x"), "--lr", "frozen=fast"])
    assert bad.exit_code == 2 and "or find" in bad.output


def test_strategies_say_what_the_auto_recipe_does_for_each():
    result = CliRunner().invoke(app, ["strategies"])
    assert result.exit_code == 0, result.output
    lines = {line.split(":")[0]: line for line in result.output.splitlines() if ":" in line}
    assert "auto: rate, epochs and regularisation searched on the training photos" in lines["frozen"]
    assert "auto: the range test's rate" in lines["gradual"] and lines["gradual"].count("continues from frozen") == 1
    assert "auto 3 epochs" in lines["scratch"]
