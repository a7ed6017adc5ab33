"""Likely label errors from out-of-fold probabilities, ranked by confident learning's label-quality score.

A logistic-regression head is trained by stratified k-fold cross-validation on the pooled features (seconds on a
CPU), so every photo's class probabilities come from a model that never saw it. The candidates are the photos that
head files under another class than their folder's, ranked by cleanlab's label-quality score (self-confidence:
the probability of the label given; Northcutt et al., 2021). cleanlab's `find_label_issues` prunes further by the
estimated noise rate per class; on planted errors (8 photos moved to another class of woof-mini or clothing-mini,
three seeds each) its flags held 0-8 of the 8, while the ranking of the disagreeing photos held 7-8 of 8 in its
first 20, so the ranking is what this uses.
"""

from dataclasses import dataclass

import numpy as np

FOLDS = 5


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, classes: int, seed: int = 0, folds: int = FOLDS) -> np.ndarray:
    """(N, classes) probabilities of each photo from a head trained on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels, minlength=classes)
    folds = int(max(2, min(folds, counts[counts > 0].min())))
    probabilities = np.zeros((len(labels), classes))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit, held_out in splitter.split(features, labels):
        head = LogisticRegression(C=10.0, max_iter=3000)
        head.fit(features[fit], labels[fit])
        probabilities[np.ix_(held_out, head.classes_)] = head.predict_proba(features[held_out])
    return probabilities


@dataclass(frozen=True)
class LabelIssue:
    index: int
    self_confidence: float
    """The out-of-fold probability of the label given: low means the photo looks like another class."""
    suggested: int
    evidence: tuple[int, ...]
    """The photos of the suggested class most like this one."""


def label_issues(features: np.ndarray, labels: np.ndarray, classes: int, seed: int = 0, evidence: int = 3) -> list[LabelIssue]:
    """Photos the out-of-fold head files under another class, least likely label first."""
    from cleanlab.rank import get_label_quality_scores

    if len(np.unique(labels)) < 2:
        return []
    probabilities = out_of_fold_probabilities(features, labels, classes, seed)
    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    disagreeing = np.flatnonzero(probabilities.argmax(axis=1) != labels)
    issues = []
    for index in disagreeing[np.argsort(quality[disagreeing], kind="stable")]:
        suggested = int(probabilities[index].argmax())
        same_class = np.flatnonzero(labels == suggested)
        nearest = same_class[np.argsort(-(features[same_class] @ features[index]))[:evidence]]
        issues.append(LabelIssue(int(index), float(quality[index]), suggested, tuple(int(i) for i in nearest)))
    return issues
