"""The learning-rate range test: its suggestion rule, against a grid of rates on real photos, and --lr find."""

import numpy as np
import pytest

import transferlab as tl
from transferlab.train.lr_find import suggest


def test_the_suggestion_is_the_middle_of_the_longest_descent():
    lrs = list(np.geomspace(1e-6, 1.0, 61))  # 10 points a decade
    flat, falling, rising = [2.3] * 20, list(np.linspace(2.3, 0.5, 31)[1:]), [0.5 + 4 * i for i in range(1, 12)]
    losses = flat + falling + rising  # falls from 1e-4 (index 20) to 1e-1 (index 50)
    assert suggest(lrs, losses) == pytest.approx(lrs[34])  # 2.5e-3: halfway down from the last flat point, in log rate
    noisy = [loss + (0.02 if i % 2 else 0.0) for i, loss in enumerate(losses)]
    assert 1e-3 <= suggest(lrs, noisy) <= 1e-2
    assert suggest(lrs, [float("nan")] * 61) == lrs[0]
    bumpy = [10 - i + (3 if i % 4 == 1 else 0) for i in range(16)] + [20 + i for i in range(45)]  # falls over 0-15, bumps inside
    assert lrs.index(suggest(lrs, bumpy)) in (7, 8)  # the middle of the whole descent, not of its last run


@pytest.mark.slow
def test_the_suggestion_for_the_frozen_head_is_near_the_best_of_a_grid(woof_mini, tmp_path):
    """On woof-mini's cached features: the grid's best rate (lowest validation loss after 5 epochs) and the range
    test's suggestion are within a factor of 3."""
    experiment = tl.Experiment(woof_mini, out=tmp_path / "run", image_size=128)
    finding = experiment.lr_find("frozen")
    assert len(finding.lrs) == len(finding.losses) >= 50 and finding.figure().axes
    grid = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    val_loss = {lr: experiment.fit("frozen", epochs=5, lr=lr).metrics["val_loss"] for lr in grid}
    best = min(val_loss, key=val_loss.get)
    assert best / 3 <= finding.suggestion <= best * 3, (finding.suggestion, val_loss)


@pytest.mark.slow
def test_train_with_lr_find_uses_the_suggestion(three_classes, tmp_path):
    from typer.testing import CliRunner

    from transferlab.cli import app
    from transferlab.rundir import RunDir

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(three_classes), "--out", str(out), "--epochs", "1", "--lr", "find",
                                      "--image-size", "48", "--batch-size", "4", "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    assert run.plot_file("lr_find_frozen").is_file()
    assert run.read_history("frozen")[0]["lr"] != pytest.approx(1e-2)  # not the recipe's rate
    assert CliRunner().invoke(app, ["train", str(three_classes), "--lr", "fast"]).exit_code == 2


@pytest.mark.slow
def test_tlab_lr_find_keeps_its_plot_and_rate_in_the_run(three_classes, tmp_path):
    from typer.testing import CliRunner

    from transferlab.cli import app
    from transferlab.rundir import RunDir

    out = tmp_path / "lr"
    result = CliRunner().invoke(app, ["lr-find", str(three_classes), "--out", str(out), "--steps", "20", "--image-size", "48", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    suggestion = run.read_recipe()["frozen"]["range_test"]["suggestion"]
    assert run.plot_file("lr_find_frozen").is_file() and f"suggested learning rate {suggestion:.2g}" in result.output
