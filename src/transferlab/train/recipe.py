"""`--recipe auto` for the frozen head: its learning rate, weight decay, dropout, label smoothing and epochs chosen
by cross-validation on the cached features of the *training* photos, so the validation photos stay unseen and the
accuracy reported on them honest.

A small grid in two rounds, not Optuna: the head is one linear layer on cached features, so a trial costs well under
a second and both rounds fit the time budget; every trial runs on any machine (a time-boxed TPE search would try
more on a faster CPU and so choose differently), the report can show every one, and no dependency is added. Round 1
crosses learning rates with epochs (what matters most); round 2 crosses the regularisers (weight decay, dropout,
label smoothing) at round 1's choice — a coordinate search, 4x cheaper than the full cross, whose cost is mostly
dropout's random numbers. Each trial trains with the schedule the final stage uses (warmup + cosine over its
epochs, unless --schedule says otherwise), so epochs are a dimension of the grid rather than read off an
early-stopping curve whose rate had not yet decayed.
"""

import copy
import itertools
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..data.folds import stratified_folds
from ..models.classifier import ClassifierHead
from .strategies.registry import SCHEDULES, Stage, adam

log = logging.getLogger(__name__)

RATES = (1e-3, 3e-3, 1e-2, 3e-2)
EPOCHS = (5, 10, 20)
REGULARISERS: dict[str, tuple[float, ...]] = {"weight_decay": (0.0, 0.05), "dropout": (0.2, 0.5), "label_smoothing": (0.0, 0.1)}
FOLDS = 3
BUDGET_SECONDS = 60.0
PATIENCE = 2
"""Strategies that fine-tune the backbone on photos stop after this many epochs without a lower validation loss."""
PHOTO_RAMP_STEPS, PHOTO_RAMP_MAX_LR = 40, 0.1
"""The range test of a strategy that trains on photos: 40 batches from 1e-6 to 0.1 (a factor 1.5 a step; 100 steps
of the gradual strategy on 300 clothing photos took 78 s, and fine-tuning rates above 0.1 only diverge)."""
FITTED = ("lr", "epochs", "schedule", "weight_decay", "label_smoothing", "dropout", "patience")
"""The fields of a `Stage` that `--recipe auto` chooses, as recipe.json records them."""


def fitted_fields(stage: Stage) -> dict[str, Any]:
    return {name: getattr(stage, name) for name in FITTED}


@dataclass(frozen=True)
class HeadTrial:
    """One point of the grid and how it did on the held-out folds (every training photo held out once)."""

    lr: float
    weight_decay: float
    dropout: float
    label_smoothing: float
    epochs: int
    accuracy: float
    loss: float
    """Mean cross-entropy (unsmoothed) on the held-out photos."""


@dataclass
class HeadSearch:
    """What the search tried, what it chose and at what cost."""

    trials: list[HeadTrial]
    chosen: HeadTrial
    folds: int
    photos: int
    seconds: float
    complete: bool
    """Every trial of the grid ran (False: the time budget stopped it; the best of those that ran is chosen)."""
    schedule: str = "cosine"
    grid: dict[str, Any] = field(default_factory=lambda: {"lr": RATES, "epochs": EPOCHS, **REGULARISERS})

    def stage(self, base: Stage, epochs: int | None = None) -> Stage:
        """`base` (the frozen strategy's stage, with the schedule searched with) trained as chosen; `epochs` overrides."""
        c = self.chosen
        return replace(base, lr=c.lr, epochs=epochs or c.epochs, weight_decay=c.weight_decay, label_smoothing=c.label_smoothing, dropout=c.dropout)

    def as_dict(self) -> dict[str, Any]:
        return {
            "chosen": asdict(self.chosen), "schedule": self.schedule, "folds": self.folds, "photos": self.photos, "seconds": round(self.seconds, 2),
            "complete": self.complete, "grid": {k: list(v) for k, v in self.grid.items()}, "trials": [asdict(t) for t in self.trials],
            "rule": RULE,
        }


RULE = ("round 1: learning rate x epochs; round 2: weight decay x dropout x label smoothing at round 1's choice; "
        "each round keeps the highest held-out accuracy over the folds, ties to the lower held-out loss")


def train_head(
    head: ClassifierHead, features: torch.Tensor, labels: torch.Tensor, lr: float, weight_decay: float, dropout: float,
    label_smoothing: float, epochs: int, batch_size: int, seed: int, schedule: str = "cosine",
) -> ClassifierHead:
    """A copy of `head` trained on pooled `features` (N, views, D) as the frozen stage trains it: one view per photo
    and epoch, shuffled batches, Adam(W), the `schedule` (`SCHEDULES`) per step."""
    head = copy.deepcopy(head).train()
    head.dropout.p = dropout
    torch.manual_seed(seed)  # dropout's masks: a trial's result does not depend on the trials before it
    generator = torch.Generator().manual_seed(seed)
    optimizer = adam(list(head.parameters()), lr, weight_decay)
    steps_per_epoch = -(-len(labels) // batch_size)
    scheduler = SCHEDULES[schedule](optimizer, steps_per_epoch * epochs)
    rows = torch.arange(len(labels))
    for _ in range(epochs):
        views = torch.randint(features.shape[1], (len(labels),), generator=generator)
        order = torch.randperm(len(labels), generator=generator)
        drawn = features[rows, views]
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            if len(batch) < 2:  # BatchNorm needs two photos
                continue
            loss = F.cross_entropy(head.forward_pooled(drawn[batch]), labels[batch], label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    return head.eval()


def search_head(
    head: ClassifierHead, features: np.ndarray, labels: list[int], seed: int, batch_size: int,
    folds: int = FOLDS, budget_seconds: float = BUDGET_SECONDS, schedule: str = "cosine",
) -> HeadSearch:
    """The two rounds (module docstring), each trial trained with `schedule` on `folds` - 1 folds of the training
    photos' cached features (`features`: N x views x D, view 0 clean) and scored on the clean view of the fold left
    out. Trials past `budget_seconds` are not run (the best of those that ran is chosen)."""
    started = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(features)).float()
    y = torch.as_tensor(labels)
    fold_of = stratified_folds(np.asarray(labels), folds, seed)
    trials: dict[tuple, HeadTrial] = {}
    skipped = False

    def trial(lr: float, epochs: int, weight_decay: float = 0.0, dropout: float = head.dropout.p, label_smoothing: float = 0.0) -> None:
        settings = {"lr": lr, "epochs": epochs, "weight_decay": weight_decay, "dropout": dropout, "label_smoothing": label_smoothing}
        key = tuple(settings.values())
        if key in trials:
            return
        if trials and time.perf_counter() - started > budget_seconds:
            nonlocal skipped
            skipped = True
            return
        right, loss = 0.0, 0.0
        for fold in range(folds):
            train, held = torch.from_numpy(fold_of != fold), torch.from_numpy(fold_of == fold)
            trained = train_head(head, x[train], y[train], batch_size=batch_size, seed=seed + fold, schedule=schedule, **settings)
            with torch.inference_mode():
                logits = trained.forward_pooled(x[held, 0])
            right += float((logits.argmax(1) == y[held]).sum())
            loss += float(F.cross_entropy(logits, y[held], reduction="sum"))
        trials[key] = HeadTrial(**settings, accuracy=right / len(y), loss=loss / len(y))

    def best() -> HeadTrial:
        return max(trials.values(), key=lambda t: (t.accuracy, -t.loss))

    with torch.random.fork_rng(devices=[]):
        for lr, epochs in itertools.product(RATES, EPOCHS):
            trial(lr, epochs)
        first = best()
        for values in itertools.product(*REGULARISERS.values()):
            trial(first.lr, first.epochs, **dict(zip(REGULARISERS, values)))
    chosen = best()
    seconds = time.perf_counter() - started
    log.info("recipe auto: %d head trials in %.1f s; chose lr %g, weight decay %g, dropout %g, label smoothing %g, "
             "%d epochs (held-out accuracy %.3f)", len(trials), seconds, chosen.lr, chosen.weight_decay, chosen.dropout,
             chosen.label_smoothing, chosen.epochs, chosen.accuracy)
    return HeadSearch(list(trials.values()), chosen, folds, len(y), seconds, not skipped, schedule)
