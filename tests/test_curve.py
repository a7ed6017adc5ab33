"""tlab curve: accuracy against photos per class on woof-mini, its band and its verdict."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from transferlab.cli import app
from transferlab.evaluate.curve import Curve, subset

runner = CliRunner()


def test_subsets_are_nested_per_seed_and_take_every_class():
    labels = np.repeat(np.arange(3), 10)
    small, large = subset(labels, 2, seed=1), subset(labels, 5, seed=1)
    assert set(small) <= set(large) and np.bincount(labels[large]).tolist() == [5, 5, 5]
    assert not np.array_equal(subset(labels, 5, seed=2), large)


def test_more_seeds_narrow_the_band_and_the_verdict_reads_the_end():
    rng = np.random.default_rng(0)
    rising = Curve([1, 2, 4], [list(0.5 + 0.1 * i + rng.normal(0, 0.02, 8)) for i in range(3)])
    assert "still help" in rising.verdict()
    flat = Curve([1, 2, 4], [list(0.8 + rng.normal(0, 0.02, 8)) for _ in range(3)])
    assert "flattened" in flat.verdict()
    few = Curve([1], [list(0.8 + rng.normal(0, 0.05, 3))])
    many = Curve([1], [list(0.8 + rng.normal(0, 0.05, 30))])
    width = lambda curve: curve.band[0][1] - curve.band[0][0]  # noqa: E731
    assert width(many) < width(few)


@pytest.mark.slow
def test_accuracy_rises_with_photos_per_class_on_woof_mini(woof_mini, tmp_path):
    out = tmp_path / "curve"
    result = runner.invoke(app, ["curve", str(woof_mini), "--out", str(out), "--points", "1,5", "--seeds", "2",
                                 "--epochs", "8", "--image-size", "128", "--finetune", "5"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "curve.json").read_text())
    assert record["photos"] == [1, 5, 30] and len(record["accuracy"][0]) == 2
    mean = record["mean"]
    assert mean[0] < mean[1] <= mean[2] + 0.05 and mean[2] > 0.6  # rises, within noise at the end
    assert (out / "plots" / "curve.png").stat().st_size > 10_000 and record["verdict"] in result.output
    assert list(record["finetune"]) == ["5"] and 0.3 < record["finetune"]["5"] <= 1  # 10 breeds: chance is 0.1
    assert "| finetune |" in result.output
    assert runner.invoke(app, ["curve", str(woof_mini), "--finetune", "0"]).exit_code == 2


def test_a_points_band_stays_within_what_an_accuracy_can_be():
    """Three seeds' t-band around 0.9 reached 105 % in `tlab curve`'s table."""
    curve = Curve(photos=[1, 2], accuracy=[[0.05, 0.6, 0.1], [1.0, 0.8, 0.95]])
    assert all(0.0 <= low <= high <= 1.0 for low, high in curve.band)
