"""Confidence you can read as a frequency: temperature scaling (Guo et al., 2017) and the expected calibration error.

One scalar T per model divides its logits before the softmax; it is fitted on the validation photos by minimising
the negative log-likelihood, so the top-1 answer never changes, only how sure it sounds. On a hundred photos the
NLL-optimal T can still raise the ECE (15 equal-width bins of top-1 confidence): T is then moved back toward 1, on
the path along which the NLL only improves, to the first value whose ECE is no higher than the raw one's. The ECE is
reported before and after; since T is fitted on the same photos, the "after" figure is also given cross-fitted (T
fitted on one half, measured on the other, both ways), which is what a new photo sees.
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

BINS = 15
LOG_T_BOUNDS = (-4.0, 4.0)
"""T between 1/55 and 55: wider than any trained classifier needs."""


def softmax_with_temperature(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    log_p = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the NLL of `labels` under softmax(logits / T) (a 1-D convex problem in 1/T)."""
    if len(labels) == 0:
        return 1.0
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))), bounds=LOG_T_BOUNDS, method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> dict[str, list[float]]:
    """Per equal-width confidence bin: mean confidence, accuracy and photo count (empty bins have count 0)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    sums = np.bincount(which, weights=confidence, minlength=bins)
    hits = np.bincount(which, weights=correct.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(counts > 0, sums / counts, 0.0)
        accuracy = np.where(counts > 0, hits / counts, 0.0)
    return {"confidence": mean_confidence.tolist(), "accuracy": accuracy.tolist(), "count": counts.astype(int).tolist()}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Σ over bins of (photos in bin / photos) · |accuracy − mean confidence| of the top-1 answers."""
    if len(confidence) == 0:
        return 0.0
    table = reliability(confidence, correct, bins)
    counts = np.array(table["count"], dtype=float)
    gaps = np.abs(np.array(table["accuracy"]) - np.array(table["confidence"]))
    return float((counts * gaps).sum() / counts.sum())


def top1_confidence(logits: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 probability, top-1 class) of each photo."""
    probabilities = softmax_with_temperature(logits, temperature)
    return probabilities.max(axis=1), probabilities.argmax(axis=1)


SHRINK_STEPS = 40
"""Temperatures tried between the NLL-optimal one and 1 when the former raises the ECE."""


def fit_calibrated_temperature(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(T, NLL-optimal T): the NLL-optimal T, or, when it raises the ECE on these photos, the one nearest to it on
    the geometric path to 1 that does not (1 itself always qualifies)."""
    optimal = fit_temperature(logits, labels)

    def ece(t: float) -> float:
        confidence, predicted = top1_confidence(logits, t)
        return expected_calibration_error(confidence, predicted == labels)

    raw = ece(1.0)
    for t in np.geomspace(optimal, 1.0, SHRINK_STEPS):
        if ece(float(t)) <= raw:
            return float(t), optimal
    return 1.0, optimal


@dataclass(frozen=True)
class Calibration:
    """A model's temperature and what it did on the photos it was fitted on (`temperature_nll`: the unconstrained
    NLL-optimal value)."""

    temperature: float
    temperature_nll: float
    photos: int
    ece_before: float
    ece_after: float
    ece_after_cross_fitted: float
    nll_before: float
    nll_after: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(logits: np.ndarray, labels: np.ndarray, seed: int = 0) -> Calibration:
    """Fit T on all photos (`fit_calibrated_temperature`); the ECE before, after, and after with T cross-fitted on two
    random halves."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    temperature, temperature_nll = fit_calibrated_temperature(logits, labels)

    def ece(rows: np.ndarray, t: float) -> tuple[float, int]:
        confidence, predicted = top1_confidence(logits[rows], t)
        return expected_calibration_error(confidence, predicted == labels[rows]), len(rows)

    everything = np.arange(len(labels))
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    if min(len(h) for h in halves) >= 2:
        crossed = [ece(test, fit_calibrated_temperature(logits[fit], labels[fit])[0]) for fit, test in (halves, halves[::-1])]
        cross_fitted = sum(e * n for e, n in crossed) / sum(n for _, n in crossed)
    else:
        cross_fitted = ece(everything, temperature)[0]
    return Calibration(
        temperature=temperature,
        temperature_nll=temperature_nll,
        photos=len(labels),
        ece_before=ece(everything, 1.0)[0],
        ece_after=ece(everything, temperature)[0],
        ece_after_cross_fitted=float(cross_fitted),
        nll_before=negative_log_likelihood(logits, labels),
        nll_after=negative_log_likelihood(logits, labels, temperature),
    )
