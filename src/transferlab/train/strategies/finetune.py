"""`finetune`: continues from the frozen model; the head and the backbone's last layers train at a low rate.

By default the notebook's trainable set: its "last 20 layers" in Keras are block7a and top_conv, timm's last block
group (`Unfreeze.blocks` = 1); `Unfreeze.layers` counts weight layers instead. BatchNorm stays frozen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...models.freezing import FreezeSummary, summarize, unfreeze_last_blocks, unfreeze_last_weight_layers
from .frozen import train_head
from .registry import Defaults, Strategy, Unfreeze, register

if TYPE_CHECKING:
    from ...models.classifier import Classifier


def train_head_and_last(model: Classifier, settings: Unfreeze) -> FreezeSummary:
    train_head(model, settings)
    if settings.layers is not None:
        unfrozen = unfreeze_last_weight_layers(model.backbone, settings.layers)
    else:
        unfrozen = unfreeze_last_blocks(model.backbone, 1 if settings.blocks is None else settings.blocks)
    return summarize(model, unfrozen)


FINETUNE = register(
    Strategy(
        name="finetune",
        summary="continues from frozen; the backbone's last block and head conv also train, at a low rate",
        pretrained=True,
        trains="head+last",
        batchnorm="frozen",
        cost=1,
        recipes={"seed": Defaults(epochs=4, lr=1e-5), "quick": Defaults(epochs=2, lr=1e-5), "auto": Defaults(epochs=6, lr=1e-4)},
        apply=train_head_and_last,
        starts_from="frozen",
    )
)
