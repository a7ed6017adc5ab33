"""Off-topic photos: far from every other photo of the data set in feature space.

cleanlab's `OutOfDistribution` scores each photo by its mean distance to its k nearest neighbours (cosine, in
[0, 1]: lower is further out); a photo is flagged when its score lies far below the data's own: more than
`SPREAD` median absolute deviations under the median score.
"""

import contextlib
import io
from dataclasses import dataclass

import numpy as np

NEIGHBOURS = 10
SPREAD = 3.5


@dataclass(frozen=True)
class Outlier:
    index: int
    score: float
    """cleanlab's out-of-distribution score (0: far from everything, 1: among many close neighbours)."""


def outlier_scores(features: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    from cleanlab.outlier import OutOfDistribution

    k = max(1, min(neighbours, len(features) - 1))
    with contextlib.redirect_stdout(io.StringIO()):  # cleanlab prints what it fits
        return OutOfDistribution(params={"k": k}).fit_score(features=features)


def outliers(features: np.ndarray, neighbours: int = NEIGHBOURS, spread: float = SPREAD) -> list[Outlier]:
    """Photos whose score is an outlier among the data's own, furthest out first."""
    if len(features) < 3:
        return []
    scores = outlier_scores(features, neighbours)
    median = float(np.median(scores))
    deviation = float(np.median(np.abs(scores - median))) or 1e-12
    flagged = np.flatnonzero(scores < median - spread * deviation)
    return [Outlier(int(i), float(scores[i])) for i in flagged[np.argsort(scores[flagged])]]
