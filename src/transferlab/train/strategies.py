"""The notebook's three training strategies as data, and the function that applies one to a classifier."""

from dataclasses import dataclass, replace
from typing import Literal

from ..models.classifier import Classifier
from ..models.freezing import (
    FreezeSummary,
    freeze,
    summarize,
    unfreeze,
    unfreeze_last_blocks,
    unfreeze_last_weight_layers,
)

StrategyName = Literal["scratch", "frozen", "finetune"]
STRATEGIES: tuple[StrategyName, ...] = ("scratch", "frozen", "finetune")


@dataclass(frozen=True)
class Strategy:
    """What trains and how: `trains` is `all`, `head`, or `head+last` (the head plus the backbone's last layers)."""

    name: StrategyName
    pretrained: bool
    trains: Literal["all", "head", "head+last"]
    lr: float
    epochs: int
    batchnorm: Literal["train", "frozen"]


SEED_RECIPE: dict[str, Strategy] = {
    "scratch": Strategy("scratch", pretrained=False, trains="all", lr=1e-3, epochs=40, batchnorm="train"),
    "frozen": Strategy("frozen", pretrained=True, trains="head", lr=1e-2, epochs=25, batchnorm="frozen"),
    "finetune": Strategy("finetune", pretrained=True, trains="head+last", lr=1e-5, epochs=4, batchnorm="frozen"),
}

QUICK_EPOCHS = {"scratch": 3, "frozen": 3, "finetune": 2}
"""`--recipe quick`: the seed recipe's learning rates, a few epochs each, for a CPU."""

RECIPES: dict[str, dict[str, Strategy]] = {
    "seed": SEED_RECIPE,
    "quick": {name: replace(strategy, epochs=QUICK_EPOCHS[name]) for name, strategy in SEED_RECIPE.items()},
}


def apply_strategy(
    model: Classifier, strategy: Strategy, unfreeze_layers: int = 20, unfreeze_blocks: int | None = None
) -> FreezeSummary:
    """Set `requires_grad` and BatchNorm modes for `strategy`; the head always trains.

    For `head+last`, `unfreeze_blocks` (whole timm blocks) wins over `unfreeze_layers` (weight layers).
    Modes are left alone: with `batchnorm="frozen"` the training loop must put frozen BatchNorm in
    eval mode at each epoch start (`train.module.FrozenBatchNormEval` does, via
    `models.freezing.set_frozen_batchnorms_eval`).
    """
    if strategy.trains == "all":
        unfreeze(model)
        return summarize(model)
    freeze(model.backbone)
    unfreeze(model.head)
    unfrozen: list[str] = []
    if strategy.trains == "head+last":
        if unfreeze_blocks is not None:
            unfrozen = unfreeze_last_blocks(model.backbone, unfreeze_blocks)
        else:
            unfrozen = unfreeze_last_weight_layers(model.backbone, unfreeze_layers)
    return summarize(model, unfrozen)
