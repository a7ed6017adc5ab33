"""`scratch`: every weight trains from random initialisation (the notebook's first experiment)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...models.freezing import FreezeSummary, summarize, unfreeze
from .registry import Defaults, Strategy, Unfreeze, register

if TYPE_CHECKING:
    from ...models.classifier import Classifier


def train_everything(model: Classifier, settings: Unfreeze) -> FreezeSummary:
    unfreeze(model)
    return summarize(model)


SCRATCH = register(
    Strategy(
        name="scratch",
        summary="random initialisation, everything trains",
        pretrained=False,
        trains="all",
        batchnorm="train",
        cost=2,
        recipes={"seed": Defaults(epochs=40, lr=1e-3), "quick": Defaults(epochs=3, lr=1e-3), "auto": Defaults(epochs=3, lr=1e-3)},
        apply=train_everything,
    )
)
