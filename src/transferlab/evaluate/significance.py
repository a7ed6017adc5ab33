"""Is one model better than another on the same photos? Paired bootstrap and McNemar's test."""

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class PairedComparison:
    """Accuracy of A and B on the same photos, the difference B - A with a bootstrap CI, and McNemar's test."""

    accuracy_a: float
    accuracy_b: float
    difference: float
    ci_low: float
    ci_high: float
    only_a_right: int
    only_b_right: int
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def bootstrap_difference(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of accuracy(B) - accuracy(A), resampling photos (pairs kept together)."""
    rng = np.random.default_rng(seed)
    n = len(correct_a)
    picks = rng.integers(0, n, size=(resamples, n))
    differences = correct_b[picks].mean(axis=1) - correct_a[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return float(low), float(high)


def mcnemar_p(only_a_right: int, only_b_right: int) -> float:
    """Exact two-sided McNemar test: of the photos where A and B disagree on correctness, is the split 50/50?"""
    discordant = only_a_right + only_b_right
    if discordant == 0:
        return 1.0
    return float(binomtest(only_b_right, discordant, 0.5).pvalue)


def compare_paired(correct_a: np.ndarray, correct_b: np.ndarray, seed: int = 0) -> PairedComparison:
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or correct_a.size == 0:
        raise ValueError("paired comparison needs the same, non-empty set of photos for both models")
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    low, high = bootstrap_difference(correct_a.astype(float), correct_b.astype(float), seed=seed)
    return PairedComparison(
        accuracy_a=float(correct_a.mean()),
        accuracy_b=float(correct_b.mean()),
        difference=float(correct_b.mean() - correct_a.mean()),
        ci_low=low,
        ci_high=high,
        only_a_right=only_a,
        only_b_right=only_b,
        p_value=mcnemar_p(only_a, only_b),
    )
