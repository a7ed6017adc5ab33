"""Test-time augmentation: answers averaged over each photo and the flips the run trained with."""

import shutil

import numpy as np
import pytest
import torch

import transferlab
from transferlab.evaluate.evaluation import evaluate_run
from transferlab.evaluate.tta import run_views
from transferlab.inference import run_explainer
from transferlab.report.html import build_report
from transferlab.rundir import RunDir

pytestmark = pytest.mark.slow


def test_the_runs_flips_are_the_views():
    assert run_views([{"op": "flip", "mode": "both"}]) == ("horizontal", "vertical")
    assert run_views([{"op": "flip", "mode": "vertical"}]) == ("vertical",)
    assert run_views([{"op": "rotation", "factor": 0.1}]) == ("horizontal",)


def test_a_tta_predictor_averages_the_logits_of_the_flips(woof_frozen_run, woof_mini):
    plain, tta = transferlab.load(woof_frozen_run.path), transferlab.load(woof_frozen_run.path, tta=True)
    assert tta.tta == ("horizontal", "vertical")  # the run trained with seed-keras: flips in both directions
    photos = sorted((woof_mini / "val").rglob("*.JPEG"))[:6]
    batch = torch.stack([plain.preprocess(p) for p in photos])
    views = [batch, batch.flip(-1), batch.flip(-2)]
    expected = np.mean([plain.logits(view) for view in views], axis=0)
    assert np.allclose(tta.model_logits(batch), expected, atol=1e-4)
    answers = tta.predict(photos, top_k=3)
    assert all(abs(sum(p.probability for p in a.predictions) - 1) < 0.5 for a in answers)


def test_tta_evaluation_reports_its_gain_and_cost(woof_frozen_run, tmp_path):
    run = shutil.copytree(woof_frozen_run.path, tmp_path / "run")  # the shared run keeps its plain evaluation
    results, _ = evaluate_run(run, tta=True)
    record = results["frozen"]["tta"]
    assert record["views"] == ["original", "horizontal", "vertical"]
    assert record["seconds_per_photo"] > 2 * record["seconds_per_photo_without"]
    assert results["frozen"]["accuracy"] == pytest.approx(record["accuracy"])
    assert abs(record["accuracy"] - record["accuracy_without"]) < 0.15
    html, _ = build_report(run, run_explainer(RunDir(run)))
    assert "Test-time augmentation (original + horizontal + vertical" in html.read_text()
