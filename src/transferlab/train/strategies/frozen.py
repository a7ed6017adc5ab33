"""`frozen`: the pretrained backbone is frozen (BatchNorm in inference mode, as Keras); a new head trains."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...models.freezing import FreezeSummary, freeze, summarize, unfreeze
from .registry import Defaults, Strategy, Unfreeze, register

if TYPE_CHECKING:
    from ...models.classifier import Classifier


def train_head(model: Classifier, settings: Unfreeze) -> FreezeSummary:
    freeze(model.backbone)
    unfreeze(model.head)
    return summarize(model)


FROZEN = register(
    Strategy(
        name="frozen",
        summary="pretrained backbone frozen, a new head trains",
        pretrained=True,
        trains="head",
        batchnorm="frozen",
        cost=0,
        recipes={"seed": Defaults(epochs=25, lr=1e-2), "quick": Defaults(epochs=3, lr=1e-2), "auto": Defaults(epochs=10, lr=3e-3)},
        apply=train_head,
        feature_cache=True,
    )
)
