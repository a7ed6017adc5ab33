"""Diagnosis on synthetic histories and predictions whose right reading is known."""

import numpy as np
import pytest

from transferlab.evaluate.diagnose import diagnose, finetune_finding
from transferlab.evaluate.metrics import Predictions
from transferlab.evaluate.significance import compare_paired, mcnemar_p


def history(train_loss, val_loss, train_acc, val_acc, seconds=10.0):
    return [
        {"epoch": i + 1, "train_loss": tl, "val_loss": vl, "train_acc": ta, "val_acc": va, "seconds": seconds}
        for i, (tl, vl, ta, va) in enumerate(zip(train_loss, val_loss, train_acc, val_acc))
    ]


def verdicts(rows, **kwargs):
    return {f.verdict for f in diagnose({"frozen": rows}, **kwargs)}


OVERFITTING = history(
    train_loss=[1.8, 1.2, 0.8, 0.5, 0.3, 0.2, 0.12, 0.08, 0.05, 0.03],
    val_loss=[1.7, 1.2, 0.95, 0.9, 0.95, 1.05, 1.15, 1.3, 1.4, 1.5],
    train_acc=[0.40, 0.60, 0.75, 0.85, 0.91, 0.95, 0.97, 0.98, 0.99, 1.00],
    val_acc=[0.42, 0.58, 0.68, 0.70, 0.70, 0.69, 0.69, 0.68, 0.68, 0.67],
)
UNDERFITTING = history(
    train_loss=[2.2, 2.1, 2.05, 2.04, 2.03, 2.03, 2.02, 2.03, 2.02, 2.02],
    val_loss=[2.2, 2.12, 2.08, 2.06, 2.05, 2.05, 2.04, 2.05, 2.04, 2.04],
    train_acc=[0.15, 0.2, 0.22, 0.23, 0.24, 0.24, 0.25, 0.24, 0.25, 0.25],
    val_acc=[0.16, 0.19, 0.21, 0.22, 0.23, 0.23, 0.24, 0.23, 0.24, 0.24],
)
STILL_IMPROVING = history(
    train_loss=[2.0, 1.7, 1.45, 1.25, 1.08, 0.94, 0.82, 0.72, 0.63, 0.55],
    val_loss=[1.9, 1.6, 1.38, 1.2, 1.05, 0.93, 0.83, 0.75, 0.68, 0.62],
    train_acc=[0.3, 0.42, 0.52, 0.6, 0.66, 0.71, 0.75, 0.78, 0.81, 0.83],
    val_acc=[0.34, 0.45, 0.55, 0.63, 0.69, 0.73, 0.77, 0.8, 0.82, 0.84],
)
FLAT = history(
    train_loss=[2.302, 2.301, 2.303, 2.302, 2.301, 2.302],
    val_loss=[2.303, 2.302, 2.303, 2.303, 2.302, 2.303],
    train_acc=[0.1, 0.1, 0.09, 0.11, 0.1, 0.1],
    val_acc=[0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
)
VAL_ABOVE_TRAIN = history(
    train_loss=[0.9, 0.7, 0.62, 0.6, 0.59, 0.585],
    val_loss=[0.5, 0.4, 0.37, 0.36, 0.355, 0.35],
    train_acc=[0.72, 0.78, 0.80, 0.81, 0.81, 0.815],
    val_acc=[0.86, 0.89, 0.9, 0.9, 0.91, 0.91],
)


def test_overfitting_is_found_with_its_epoch():
    findings = diagnose({"scratch": OVERFITTING})
    overfit = [f for f in findings if f.verdict == "overfitting"]
    assert len(overfit) == 1 and "from epoch 4" in overfit[0].text and "0.900" in overfit[0].text
    assert "underfitting" not in {f.verdict for f in findings}


def test_underfitting_is_found_and_not_overfitting():
    found = verdicts(UNDERFITTING)
    assert "underfitting" in found and "plateau" in found
    assert not found & {"overfitting", "still-learning", "val-above-train"}


FIT_CASES = {
    # scratch on clothing-mini, 3 epochs (a real history): validation at chance (10 classes) while its loss rises from
    # the uniform guess's 2.30 is no reason to keep epoch 1's weights
    "at chance": (([2.584, 2.396, 2.262], [2.320, 2.419, 2.518], [0.10, 0.147, 0.18], [0.10, 0.10, 0.10]),
                  {"underfitting"}, {"overfitting"}),
    "far below training": (([1.5, 1.2, 1.0, 0.9], [1.6, 1.5, 1.6, 1.8], [0.45, 0.55, 0.62, 0.66], [0.40, 0.42, 0.41, 0.40]),
                           {"overfitting"}, {"underfitting"}),
    "low, a little above training": (([2.0, 1.8, 1.6], [1.9, 1.7, 1.5], [0.30, 0.40, 0.50], [0.33, 0.43, 0.53]),
                                     {"underfitting"}, {"val-above-train"}),
    "low, well above training": (([1.8, 1.6, 1.5, 1.4], [1.5, 1.4, 1.5, 1.6], [0.40, 0.45, 0.50, 0.52], [0.50, 0.55, 0.58, 0.59]),
                                 {"val-above-train"}, {"overfitting", "underfitting"}),
    # frozen on clothing-mini (a real history): the first epoch's low training accuracy lifts the average lead, but at
    # the end training (88.7 %) is above validation (84 %)
    "above on average, not at the end": (([1.803, 0.626, 0.324], [0.856, 0.599, 0.545], [0.40, 0.797, 0.887], [0.80, 0.82, 0.84]),
                                         {"generalises"}, {"val-above-train"}),
}


@pytest.mark.parametrize("case", FIT_CASES)
def test_fit_findings_never_contradict_each_other(case):
    curves, expected, excluded = FIT_CASES[case]
    found = verdicts(history(*curves))
    assert expected <= found and not found & excluded, found


def test_still_improving():
    found = verdicts(STILL_IMPROVING)
    assert "still-learning" in found
    assert not found & {"overfitting", "plateau", "flat"}


def test_flat_is_not_learning():
    found = verdicts(FLAT)
    assert "flat" in found and "still-learning" not in found and "overfitting" not in found


def test_validation_above_training_is_explained_not_called_underfitting():
    findings = diagnose({"frozen": VAL_ABOVE_TRAIN})
    texts = {f.verdict: f.text for f in findings}
    assert "val-above-train" in texts and "underfitting" not in texts
    assert "dropout" in texts["val-above-train"] and "augmented" in texts["val-above-train"]
    assert "not underfitting" in texts["val-above-train"]


def test_noisy_validation_cites_the_standard_error():
    rows = history([1.0] * 6, [1.0] * 6, [0.8] * 6, [0.7, 0.8, 0.65, 0.82, 0.7, 0.78])
    noise = [f for f in diagnose({"frozen": rows}, n_val=100) if f.topic == "noise"][0]
    assert noise.verdict == "noisy-validation" and "100 validation photos" in noise.text
    steady = [f for f in diagnose({"frozen": STILL_IMPROVING}) if f.topic == "noise"][0]
    assert steady.verdict == "steady-validation"


def test_too_short_a_run_says_so():
    assert "too-short" in verdicts(STILL_IMPROVING[:2])


def test_four_epochs_judge_no_validation_noise_but_give_its_standard_error():
    noise = [f for f in diagnose({"frozen": STILL_IMPROVING[:4]}, n_val=100) if f.topic == "noise"][0]
    assert noise.verdict == "too-short" and "4 epochs are too few" in noise.text and "one standard error is" in noise.text
    assert [f.verdict for f in diagnose({"frozen": STILL_IMPROVING[:5]}) if f.topic == "noise"] == ["steady-validation"]


def _predictions(strategy, correct):
    labels = np.zeros(len(correct), dtype=int)
    predicted = np.where(correct, 0, 1)
    top5 = np.stack([predicted, 1 - predicted, *[np.full(len(correct), k) for k in (2, 3, 4)]], axis=1)
    return Predictions(strategy, tuple(f"p{i}" for i in range(len(correct))), labels, predicted, np.full(len(correct), 0.9), top5)


def test_mcnemar_exact_values():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 5) == pytest.approx(1.0)
    assert mcnemar_p(0, 10) == pytest.approx(2 * 0.5**10)


def test_finetune_helped_only_when_significant():
    rng = np.random.default_rng(0)
    frozen = rng.random(400) < 0.7
    better = frozen | (rng.random(400) < 0.5)
    helped = finetune_finding(_predictions("frozen", frozen), _predictions("finetune", better))
    assert helped.verdict == "helped" and "McNemar p" in helped.text and "CI" in helped.text
    same = frozen.copy()
    same[:4] = ~same[:4]
    assert finetune_finding(_predictions("frozen", frozen), _predictions("finetune", same)).verdict == "no-difference"
    result = compare_paired(frozen, better)
    assert result.ci_low <= result.difference <= result.ci_high and result.ci_low > 0


def test_choice_prefers_the_cheaper_strategy_unless_significantly_worse():
    rng = np.random.default_rng(1)
    frozen = rng.random(300) < 0.85
    finetune = frozen.copy()
    finetune[np.flatnonzero(~frozen)[:3]] = True
    scratch = rng.random(300) < 0.3
    predictions = {
        "scratch": _predictions("scratch", scratch),
        "frozen": _predictions("frozen", frozen),
        "finetune": _predictions("finetune", finetune),
    }
    histories = {name: STILL_IMPROVING for name in predictions}
    choice = [f for f in diagnose(histories, predictions) if f.topic == "choice"][0]
    assert choice.verdict == "use-frozen" and "not significantly better" in choice.text
    predictions["frozen"] = _predictions("frozen", scratch)
    assert [f for f in diagnose(histories, predictions) if f.topic == "choice"][0].verdict == "use-finetune"
