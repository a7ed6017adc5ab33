"""Read the curves as a teacher would: findings in plain language, each citing the numbers behind it.

Per strategy, from history.csv: is it still learning, does it generalise (over/underfitting, validation
above training and why), is validation noisy. Across strategies, from the paired predictions: did
fine-tuning help, and which strategy to use.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .metrics import Predictions
from .significance import compare_paired

TREND_WINDOW = 5
"""Epochs at the end of a run over which the trend of training loss is measured."""
MIN_RELATIVE_CHANGE = 0.02
"""A change of the loss under 2 % of its level counts as no change, whatever the noise."""
UNDERFIT_ACCURACY = 0.7
"""Training accuracy under this after training, with validation close to it, is underfitting."""
UNDERFIT_GAP_POINTS = 0.1
"""Validation at most this far below training accuracy (10 points), or above it, with training accuracy low: the
model fits not even its training photos, and a rising validation loss is not called overfitting."""
VAL_LEAD_POINTS = 0.05
"""Underfitting is reported while validation is under this far above training (5 points); further above is the
"validation above training" finding."""
NOISY_SPREAD = 0.03
"""Scatter of validation accuracy around its trend above 3 points is called noisy."""
MIN_NOISE_EPOCHS = 5
"""Epochs needed to judge that scatter: 3 second differences (3 epochs give one, a scatter estimated from a single
number: "steady" there was a coin toss)."""
GAP_POINTS = 0.05
"""Training accuracy above validation by more than this is reported as a gap."""
NOTEBOOK_COSTS = {"frozen": 0, "finetune": 1, "scratch": 2}
"""Relative cost per epoch of the notebook's strategies; the registry (`train.strategies`) has every strategy's."""


@dataclass(frozen=True)
class Finding:
    """One conclusion: `topic` (learning, fit, validation, noise, finetune, choice), a short `verdict`, and `text`."""

    strategy: str | None
    topic: str
    verdict: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _trend(values: Sequence[float]) -> tuple[float, float]:
    """(change over the window from a least-squares line, standard deviation of the points around it)."""
    y = np.asarray(values, dtype=float)
    x = np.arange(len(y), dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (slope * x + intercept)
    noise = float(np.sqrt((residuals**2).sum() / max(len(y) - 2, 1)))
    return float(slope * (len(y) - 1)), noise


def learning_finding(strategy: str, rows: Sequence[Mapping[str, float]]) -> Finding:
    """Still learning, plateaued, flat from the start, or diverging: the trend of training loss at the end."""
    losses = [row["train_loss"] for row in rows]
    n = len(losses)
    if n < 3:
        return Finding(
            strategy, "learning", "too-short",
            f"{n} epoch(s) is too short to tell a trend: training loss {losses[0]:.3f} → {losses[-1]:.3f}; "
            "run at least 3 epochs to judge whether it still learns.",
        )
    window = losses[-min(TREND_WINDOW, n):]
    change, noise = _trend(window)
    level = float(np.mean(window))
    threshold = max(2 * noise, MIN_RELATIVE_CHANGE * level)
    total = losses[-1] - losses[0]
    if abs(total) < MIN_RELATIVE_CHANGE * losses[0] and abs(change) < threshold:
        return Finding(
            strategy, "learning", "flat",
            f"Not learning: training loss went from {losses[0]:.3f} to {losses[-1]:.3f} over {n} epochs "
            f"(a change of {abs(total) / losses[0]:.1%}). Check the learning rate and that some layers train.",
        )
    if change < -threshold:
        return Finding(
            strategy, "learning", "still-learning",
            f"Still learning: training loss fell by {-change:.3f} over the last {len(window)} epochs "
            f"({window[0]:.3f} → {window[-1]:.3f}), more than twice its epoch-to-epoch noise ({noise:.3f}); "
            "more epochs should help.",
        )
    if change > threshold:
        return Finding(
            strategy, "learning", "diverging",
            f"Training loss rose by {change:.3f} over the last {len(window)} epochs ({window[0]:.3f} → {window[-1]:.3f}): "
            "the learning rate is probably too high.",
        )
    return Finding(
        strategy, "learning", "plateau",
        f"Converged: training loss changed by {change:+.3f} over the last {len(window)} epochs, within its noise "
        f"({noise:.3f}); more epochs at this learning rate will add little.",
    )


def fit_findings(strategy: str, rows: Sequence[Mapping[str, float]]) -> list[Finding]:
    """Overfitting from epoch k, underfitting, validation above training (and why), or a good fit."""
    n = len(rows)
    train_acc, val_acc = rows[-1]["train_acc"], rows[-1]["val_acc"]
    gap = train_acc - val_acc
    findings = []
    val_losses = [row["val_loss"] for row in rows]
    best = int(np.argmin(val_losses))
    fits_poorly = train_acc < UNDERFIT_ACCURACY and gap <= UNDERFIT_GAP_POINTS
    underfitting = fits_poorly and gap > -VAL_LEAD_POINTS
    if n >= 3 and best < n - 1 and not fits_poorly:  # a model that fits not even its training photos is not overfitting them
        rise = val_losses[-1] - val_losses[best]
        _, noise = _trend(val_losses[best:]) if n - best >= 3 else (0.0, 0.0)
        train_fell = rows[-1]["train_loss"] < rows[best]["train_loss"]
        if train_fell and rise > max(2 * noise, MIN_RELATIVE_CHANGE * val_losses[best]):
            findings.append(Finding(
                strategy, "fit", "overfitting",
                f"Overfitting from epoch {rows[best]['epoch']}: validation loss was lowest there ({val_losses[best]:.3f}) "
                f"and rose to {val_losses[-1]:.3f} by epoch {rows[-1]['epoch']}, while training loss kept falling "
                f"({rows[best]['train_loss']:.3f} → {rows[-1]['train_loss']:.3f}). At the end training accuracy is "
                f"{_pct(train_acc)} and validation {_pct(val_acc)} (gap {100 * gap:.1f} points). Keep the weights from "
                f"around epoch {rows[best]['epoch']} (--early-stop does that); more augmentation or dropout also helps.",
            ))
    if underfitting:
        findings.append(Finding(
            strategy, "fit", "underfitting",
            f"Underfitting: training accuracy is only {_pct(train_acc)} after {n} epochs, and validation "
            f"({_pct(val_acc)}) is close to it: the model does not fit even its training photos. Train longer, "
            "raise the learning rate, or let more layers train (a pretrained backbone helps most).",
        ))
    tail = rows[-min(TREND_WINDOW, n):]
    val_lead = float(np.mean([row["val_acc"] - row["train_acc"] for row in tail]))
    if val_lead > 0.02 and val_acc > train_acc and not underfitting:  # above on average, and still above at the end
        findings.append(Finding(
            strategy, "fit", "val-above-train",
            f"Validation accuracy is above training accuracy (by {100 * val_lead:.1f} points on average over the last "
            f"{len(tail)} epochs; {_pct(val_acc)} vs {_pct(train_acc)} at the end). That is not underfitting: training "
            "accuracy is measured on augmented photos with dropout active, averaged over an epoch while the weights "
            "still change; validation uses clean photos, no dropout and BatchNorm in inference mode. The model "
            "generalises.",
        ))
    if not findings:
        lowest = (
            "validation loss is at its lowest in the last epoch"
            if best == n - 1
            else f"validation loss, lowest at epoch {rows[best]['epoch']} of {n}, has not risen beyond its noise"
        )
        if gap > GAP_POINTS:
            findings.append(Finding(
                strategy, "fit", "gap",
                f"A gap: training accuracy {_pct(train_acc)}, validation {_pct(val_acc)} ({100 * gap:.1f} points). The model "
                f"fits its training photos better than new ones, but {lowest}, so it is not (yet) overfitting.",
            ))
        else:
            findings.append(Finding(
                strategy, "fit", "generalises",
                f"Generalises: training accuracy {_pct(train_acc)}, validation {_pct(val_acc)} (gap {100 * gap:.1f} points); "
                f"{lowest}.",
            ))
    return findings


def noise_finding(strategy: str, rows: Sequence[Mapping[str, float]], n_val: int | None) -> Finding | None:
    """How much validation accuracy scatters around its trend, against the binomial error of the validation set.

    The scatter is the RMS of second differences over sqrt(6): for independent noise of deviation s it is s,
    and a smooth learning curve (rising, then levelling off) hardly adds to it.
    """
    if len(rows) < 3:
        return None
    val_acc = np.array([row["val_acc"] for row in rows])
    spread = float(np.sqrt(np.mean(np.diff(val_acc, n=2) ** 2) / 6))
    p = float(val_acc[-1])
    standard_error = math.sqrt(p * (1 - p) / n_val) if n_val else None
    se_text = f"; with {n_val} validation photos one standard error is {100 * standard_error:.1f} points" if standard_error else ""
    if len(rows) < MIN_NOISE_EPOCHS:
        return Finding(
            strategy, "noise", "too-short",
            f"{len(rows)} epochs are too few to tell validation's scatter from its trend (at least {MIN_NOISE_EPOCHS} needed){se_text}"
            + (f": a change of under {200 * standard_error:.1f} points from one epoch to the next may be chance." if standard_error else "."),
        )
    if spread > NOISY_SPREAD:
        return Finding(
            strategy, "noise", "noisy-validation",
            f"Noisy validation: accuracy scatters by ±{100 * spread:.1f} points around its trend from epoch to epoch{se_text}. Read the "
            "trend over several epochs, not one epoch's value; a larger validation set or a lower learning rate steadies it.",
        )
    return Finding(
        strategy, "noise", "steady-validation",
        f"Validation is steady: accuracy scatters by ±{100 * spread:.1f} points around its trend{se_text}.",
    )


def finetune_finding(base: Predictions, tuned: Predictions, seed: int = 0) -> Finding:
    """A model vs the one it continued from (finetune or gradual vs frozen) on the same photos: the difference,
    its bootstrap CI and McNemar's p."""
    if base.paths != tuned.paths:
        raise ValueError(f"{base.strategy} and {tuned.strategy} predictions are on different photos")
    result = compare_paired(base.correct, tuned.correct, seed)
    what = "Fine-tuning" if tuned.strategy == "finetune" else f"{tuned.strategy.capitalize()} (from {base.strategy})"
    numbers = (
        f"validation accuracy {_pct(result.accuracy_a)} → {_pct(result.accuracy_b)} "
        f"({100 * result.difference:+.1f} points, 95% bootstrap CI {100 * result.ci_low:+.1f} to {100 * result.ci_high:+.1f}); "
        f"of the photos where they differ, {tuned.strategy} fixed {result.only_b_right} and broke {result.only_a_right} "
        f"(McNemar p = {result.p_value:.3g})"
    )
    if result.significant and result.difference > 0:
        return Finding(tuned.strategy, "finetune", "helped", f"{what} helped: {numbers}.")
    if result.significant and result.difference < 0:
        return Finding(tuned.strategy, "finetune", "hurt", f"{what} hurt: {numbers}. Try a lower learning rate or fewer unfrozen layers.")
    return Finding(
        tuned.strategy, "finetune", "no-difference",
        f"{what} made no significant difference: {numbers}. On this many photos a difference this size can be chance.",
    )


def choose(
    accuracy: Mapping[str, float], costs: Mapping[str, int], predictions: Mapping[str, Predictions] | None = None, seed: int = 0
) -> tuple[str, str]:
    """The strategy to use, and why: the most accurate (the cheaper on a tie), unless a cheaper one is not
    significantly worse on the same photos (paired `predictions`; without them, accuracy alone decides).

    The one rule for "the best strategy": the report's advice, and the model predict, serve and export use."""
    cost = {name: costs.get(name, max(costs.values(), default=0) + 1) for name in accuracy}
    best = max(accuracy, key=lambda name: (accuracy[name], -cost[name]))
    if not predictions or any(name not in predictions for name in accuracy):
        return best, "it has the highest validation accuracy"
    for cheaper in sorted(accuracy, key=lambda name: cost[name]):
        if cost[cheaper] >= cost[best]:
            break
        result = compare_paired(predictions[cheaper].correct, predictions[best].correct, seed)
        if not result.significant:
            reason = (
                f"it is cheaper and {best} is not significantly better "
                f"({100 * result.difference:+.1f} points, McNemar p = {result.p_value:.3g})"
            )
            return cheaper, reason
    return best, "it has the highest validation accuracy"


def choice_finding(
    predictions: Mapping[str, Predictions], seconds_per_epoch: Mapping[str, float], seed: int = 0,
    costs: Mapping[str, int] = NOTEBOOK_COSTS,
) -> Finding:
    """`choose` as a finding, with every strategy's accuracy and time per epoch."""
    accuracy = {name: float(p.correct.mean()) for name, p in predictions.items()}
    choice, reason = choose(accuracy, costs, predictions, seed)
    table = ", ".join(
        f"{name} {_pct(accuracy[name])}" + (f" ({seconds_per_epoch[name]:.0f} s/epoch)" if name in seconds_per_epoch else "")
        for name in sorted(accuracy, key=lambda name: -accuracy[name])
    )
    return Finding(None, "choice", f"use-{choice}", f"Use {choice}: {reason}. Validation accuracy: {table}.")


def diagnose(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    predictions: Mapping[str, Predictions] | None = None,
    n_val: int | None = None,
    seed: int = 0,
    costs: Mapping[str, int] = NOTEBOOK_COSTS,
    continues: Mapping[str, str] = {"finetune": "frozen"},
    train_counts: Mapping[str, int] | None = None,
) -> list[Finding]:
    """Every finding for a run: per strategy in the order given, then each continuing strategy against the one it
    continued (`continues`: name → base), then the choice (`costs`: relative cost per epoch). With `train_counts`
    (class name → training photos, in class order), minority classes whose recall suffers are named."""
    findings: list[Finding] = []
    for strategy, rows in histories.items():
        if not rows:
            continue
        findings.append(learning_finding(strategy, rows))
        findings.extend(fit_findings(strategy, rows))
        noise = noise_finding(strategy, rows, n_val)
        if noise:
            findings.append(noise)
    predictions = predictions or {}
    if train_counts:
        for strategy, answers in predictions.items():
            finding = imbalance_finding(strategy, answers, train_counts)
            if finding:
                findings.append(finding)
    for tuned, base in continues.items():
        if tuned in predictions and base in predictions:
            findings.append(finetune_finding(predictions[base], predictions[tuned], seed))
    if len(predictions) >= 2:
        seconds = {
            name: float(np.mean([row["seconds"] for row in rows])) for name, rows in histories.items() if rows
        }
        findings.append(choice_finding(predictions, seconds, seed, costs))
    return findings


IMBALANCE_RATIO = 3.0
"""Largest over smallest class (training photos) from which recall is checked for the small classes."""
RECALL_GAP = 0.15


def imbalance_finding(strategy: str, predictions: Predictions, train_counts: Mapping[str, int]) -> Finding | None:
    """The classes with at most half the median training photos whose recall is `RECALL_GAP` below the mean, when
    the data is imbalanced (`IMBALANCE_RATIO`)."""
    names, counts = list(train_counts), np.array(list(train_counts.values()), dtype=float)
    if counts.size < 2 or counts.min() <= 0 or counts.max() / counts.min() < IMBALANCE_RATIO:
        return None
    recall = {}
    for label, name in enumerate(names):
        mine = predictions.labels == label
        if mine.any():
            recall[name] = float((predictions.predicted[mine] == label).mean())
    if not recall:
        return None
    mean = float(np.mean(list(recall.values())))
    small = [
        name for name, count in zip(names, counts)
        if count <= np.median(counts) / 2 and name in recall and recall[name] < mean - RECALL_GAP
    ]
    if not small:
        return None
    worst = ", ".join(f"{name} {recall[name]:.0%} ({int(train_counts[name])} photos)" for name in small[:5])
    return Finding(
        strategy, "imbalance", "minority-recall",
        f"Small classes are missed: recall {worst}, against {mean:.0%} on average; the largest class has "
        f"{int(counts.max())} training photos ({counts.max() / counts.min():.0f}x the smallest). Try --balance weights or "
        "--balance sampler, or add photos of these classes.",
    )
