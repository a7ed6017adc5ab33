"""Off-topic photos: far from every other photo of the data set in feature space.

Each photo's score is cleanlab's out-of-distribution score for features (`OutOfDistribution`), computed here: the
mean cosine distance d to its k nearest other photos, as exp(-d / median d) (0: far from everything, 1: among many
close neighbours). A photo is flagged when its score lies far below the data's own: more than `SPREAD` median
absolute deviations under the median score. On L2-normalised features the neighbours are one matrix product away
(0.1 s for 2,800 photos), where importing cleanlab and scikit-learn took 2.5 s; tests check the scores against
cleanlab's.
"""

from dataclasses import dataclass

import numpy as np

NEIGHBOURS = 10
SPREAD = 3.25
"""On fp32 features (an AVX2-only CPU; a GPU), 3.5 left one of three dog photos planted in clothing-mini unflagged
(score 0.159, cut 0.157; the set's own photos score 0.209 and up); 3.25 cuts at 0.173, between them, and flags one
more photo of each dog set as it is (woof-mini 3, woof-bench 3 of 2,800; clothing-mini still none). 3.0 flags 11 of
woof-bench."""
BLOCK_FLOATS = 2**24
"""Similarities computed at once (128 MiB of float64; three such blocks live at a time)."""


@dataclass(frozen=True)
class Outlier:
    index: int
    score: float
    """The out-of-distribution score (0: far from everything, 1: among many close neighbours)."""


def mean_neighbour_distance(features: np.ndarray, neighbours: int) -> np.ndarray:
    """Each row's mean cosine distance to its `neighbours` nearest other rows (the rows L2-normalised)."""
    distances = np.empty(len(features))
    block = max(1, BLOCK_FLOATS // len(features))
    for start in range(0, len(features), block):
        similarity = features[start : start + block] @ features.T
        rows = np.arange(len(similarity))
        similarity[rows, start + rows] = -np.inf
        nearest = -np.partition(-similarity, neighbours - 1, axis=1)[:, :neighbours]
        distances[start : start + len(similarity)] = np.clip(1.0 - nearest, 0.0, 2.0).mean(axis=1)
    return distances


def outlier_scores(features: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """Each photo's score from its L2-normalised pooled feature (as `PhotoFeatures` holds them)."""
    k = max(1, min(neighbours, len(features) - 1))
    distances = mean_neighbour_distance(np.asarray(features, dtype=np.float64), k)
    return np.exp(-distances / max(float(np.median(distances)), 100 * np.finfo(np.float64).eps))


def outliers(features: np.ndarray, neighbours: int = NEIGHBOURS, spread: float = SPREAD) -> list[Outlier]:
    """Photos whose score is an outlier among the data's own, furthest out first."""
    if len(features) < 3:
        return []
    scores = outlier_scores(features, neighbours)
    median = float(np.median(scores))
    deviation = float(np.median(np.abs(scores - median))) or 1e-12
    flagged = np.flatnonzero(scores < median - spread * deviation)
    return [Outlier(int(i), float(scores[i])) for i in flagged[np.argsort(scores[flagged])]]
