"""`gradual`: continues from the frozen model and unfreezes the backbone's stages one per epoch from the top,
deeper stages at lower learning rates, with a warmup then cosine decay (the idea of fastai's `fine_tune` and of
discriminative learning rates). BatchNorm stays frozen.

Epoch 1 trains the head and the top stage (for EfficientNet: the last block group and the head convolution),
epoch 2 adds the stage below, and so on up to `Unfreeze.blocks` stages (default 3). The optimiser holds every
group from the start — a stage not yet unfrozen gets no gradient — so a resumed run rebuilds the same groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...models.freezing import FreezeSummary, batchnorm_parameter_names, block_groups, summarize, unfreeze_last_blocks
from .frozen import train_head
from .registry import Defaults, Strategy, Unfreeze, register

if TYPE_CHECKING:
    import lightning as L

    from ...models.classifier import Classifier

DEFAULT_STAGES = 3
DECAY = 0.3
"""Each stage down trains at this fraction of the rate of the one above it (the head at the base rate)."""


def trainable_stages(model: Classifier) -> list[list[str]]:
    """Names of the trainable backbone parameters, per stage, the top stage first (empty stages left out)."""
    trainable = {name for name, p in model.backbone.named_parameters() if p.requires_grad}
    norms = batchnorm_parameter_names(model.backbone)
    stages = [[name for name in group if name in trainable and name not in norms] for group in block_groups(model.backbone, coarse=True)]
    return [stage for stage in reversed(stages) if stage]


def train_head_and_top_stages(model: Classifier, settings: Unfreeze) -> FreezeSummary:
    train_head(model, settings)
    unfrozen = unfreeze_last_blocks(model.backbone, DEFAULT_STAGES if settings.blocks is None else settings.blocks, coarse=True)
    return summarize(model, unfrozen)


def stage_groups(model: Classifier, lr: float) -> list[dict]:
    """The head at `lr`, then each trainable stage from the top at `lr * DECAY ** depth`."""
    parameters = dict(model.backbone.named_parameters())
    groups = [{"params": [p for p in model.head.parameters() if p.requires_grad], "lr": lr, "name": "head"}]
    for depth, stage in enumerate(trainable_stages(model), start=1):
        groups.append({"params": [parameters[name] for name in stage], "lr": lr * DECAY**depth, "name": f"stage -{depth}"})
    return groups


def stage_by_stage(model: Classifier, settings: Unfreeze) -> list[L.Callback]:
    from .callbacks import UnfreezeStageByStage

    parameters = dict(model.backbone.named_parameters())
    return [UnfreezeStageByStage([[parameters[name] for name in stage] for stage in trainable_stages(model)])]


GRADUAL = register(
    Strategy(
        name="gradual",
        summary="continues from frozen; unfreezes one backbone stage per epoch from the top, lower rates deeper, warmup + cosine",
        pretrained=True,
        trains="head+last",
        batchnorm="frozen",
        cost=1,
        recipes={"seed": Defaults(epochs=4, lr=1e-3), "quick": Defaults(epochs=2, lr=1e-3), "auto": Defaults(epochs=6, lr=1e-3)},
        apply=train_head_and_top_stages,
        starts_from="frozen",
        param_groups=stage_groups,
        schedule="cosine",
        callbacks=stage_by_stage,
        unfreezes_during_training=True,
        notes=(f"the head at the base learning rate, each backbone stage below it at {DECAY}x the one above",),
    )
)
