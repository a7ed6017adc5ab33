"""Temperature scaling, the calibration error, and answering "not sure"."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import transferlab
from transferlab.cli import app
from transferlab.config import TrainConfig
from transferlab.evaluate.calibration import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    reliability,
    softmax_with_temperature,
)
from transferlab.evaluate.evaluation import evaluate_run
from transferlab.evaluate.metrics import read_predictions
from transferlab.experiment import train

runner = CliRunner()


def overconfident(n: int = 600, classes: int = 10, scale: float = 4.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a model right about 70% of the time that speaks as if it were always right."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += 1.5
    return logits * scale, labels


def test_temperature_undoes_a_known_overconfidence():
    logits, labels = overconfident(n=4000, scale=1.0)
    assert fit_temperature(logits * 3.0, labels) == pytest.approx(3.0 * fit_temperature(logits, labels), rel=0.02)


def test_calibration_lowers_the_error_and_keeps_every_answer():
    logits, labels = overconfident()
    result = calibrate(logits, labels)
    assert result.temperature > 1.5
    assert result.ece_after < result.ece_before and result.nll_after < result.nll_before
    assert result.ece_after_cross_fitted < result.ece_before
    scaled = softmax_with_temperature(logits, result.temperature)
    assert np.allclose(scaled.sum(axis=1), 1.0)
    assert np.array_equal(scaled.argmax(axis=1), logits.argmax(axis=1))


@pytest.mark.parametrize("seed", range(12))
def test_on_small_sets_the_temperature_never_raises_the_calibration_error(seed):
    """On 100 photos the NLL-optimal temperature can raise the ECE; the one kept never does."""
    rng = np.random.default_rng(seed)
    logits, labels = overconfident(n=100, scale=float(rng.uniform(0.5, 4.0)), seed=seed)
    result = calibrate(logits, labels, seed=seed)
    assert result.ece_after <= result.ece_before + 1e-12
    low, high = sorted((1.0, result.temperature_nll))
    assert low - 1e-9 <= result.temperature <= high + 1e-9
    assert result.nll_after <= result.nll_before + 1e-9  # on the way from 1 to the optimum the likelihood only improves


def test_ece_of_a_perfectly_calibrated_table_is_zero():
    confidence = np.array([0.8] * 10 + [0.6] * 5)
    correct = np.array([1] * 8 + [0] * 2 + [1] * 3 + [0] * 2, dtype=bool)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)
    table = reliability(confidence, correct)
    assert sum(table["count"]) == 15 and len(table["count"]) == 15


def check_run_calibration(run) -> None:
    """calibration.json and predictions.csv of an evaluated run: ECE after <= before, answers and accuracy unchanged."""
    calibration = json.loads(run.calibration_file.read_text())["frozen"]
    assert calibration["ece_after"] <= calibration["ece_before"], calibration
    assert calibration["temperature"] > 0 and calibration["photos"] == 100
    predictions = read_predictions(run.predictions_file)["frozen"]
    assert np.allclose(predictions.probability, predictions.raw, atol=1e-6) == (calibration["temperature"] == 1.0)
    evaluation = json.loads(run.evaluation_file.read_text())["frozen"]
    assert evaluation["calibration"]["temperature"] == pytest.approx(calibration["temperature"])
    clf = transferlab.load(run.path)
    assert clf.temperature == pytest.approx(calibration["temperature"])
    answers = clf.predict(list(predictions.paths[:20]), top_k=10)
    for answer, expected, raw in zip(answers, predictions.probability[:20], predictions.raw[:20]):
        assert sum(p.probability for p in answer.predictions) == pytest.approx(1.0, abs=1e-4)
        assert answer.predictions[0].probability == pytest.approx(expected, abs=1e-4)
        assert answer.predictions[0].raw_probability == pytest.approx(raw, abs=1e-4)


@pytest.mark.slow
def test_woof_mini_run_is_calibrated_on_its_validation_photos(woof_frozen_run):
    check_run_calibration(woof_frozen_run)


@pytest.mark.slow
def test_clothing_mini_run_is_calibrated_on_its_validation_photos(clothing_mini, tmp_path):
    run = train(TrainConfig(data=str(clothing_mini), out=str(tmp_path / "run"), strategy="frozen", epochs=2, image_size=96))
    evaluate_run(run.path)
    check_run_calibration(run)


@pytest.mark.slow
def test_min_confidence_turns_unsure_answers_into_not_sure(woof_frozen_run, woof_mini):
    folder = woof_mini / "val"
    strict = runner.invoke(app, ["predict", str(woof_frozen_run.path), str(folder), "--format", "json", "--min-confidence", "0.999"])
    assert strict.exit_code == 0, strict.output
    answers = json.loads(strict.output)
    unsure = [a for a in answers if a["label"] is None]
    assert unsure and all("not sure" in a["not_sure"] for a in unsure)
    assert all(a["predictions"] for a in unsure)
    relaxed = json.loads(runner.invoke(app, ["predict", str(woof_frozen_run.path), str(folder), "--format", "json"]).output)
    assert all(a["label"] == a["predictions"][0]["label"] and "not_sure" not in a for a in relaxed)
    table = runner.invoke(app, ["predict", str(woof_frozen_run.path), str(folder), "--min-confidence", "0.999"]).output
    assert "NOT SURE" in table
