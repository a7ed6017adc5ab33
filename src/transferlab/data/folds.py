"""Cross-validation folds that keep every class's share: the head search (`train.recipe`) and the label audit
(`audits.labels`) deal photos into folds the same way."""

import numpy as np


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each photo's fold: every class dealt round the folds in a seeded random order, each class starting where the
    previous one stopped, so folds differ in size by at most one photo."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    start = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold[members] = (start + np.arange(len(members))) % folds
        start += len(members)
    return fold
