"""The classifier: a timm backbone without its classifier, then the notebook's head."""

from dataclasses import dataclass

import torch
from torch import nn

from .backbones import BackboneSpec, resolve_backbone
from .weights import WeightsInfo, create_timm_model


class ClassifierHead(nn.Sequential):
    """Global average pool -> BatchNorm -> Dropout -> Linear, as the notebook's Keras head."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.2):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.BatchNorm1d(in_features),
            nn.Dropout(dropout),
            nn.Linear(in_features, num_classes),
        )

    @property
    def dropout(self) -> nn.Dropout:
        return self[3]

    def forward_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """The head from BatchNorm on, for features already pooled to (N, D) (the frozen fast path)."""
        for layer in list(self)[2:]:
            pooled = layer(pooled)
        return pooled


class Classifier(nn.Module):
    """`backbone.forward_features` (a timm model whose own classifier is removed) followed by `head`."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.2):
        super().__init__()
        backbone.reset_classifier(0)
        self.backbone = backbone
        self.head = ClassifierHead(backbone.num_features, num_classes, dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(images))


@dataclass(frozen=True)
class DataConfig:
    """Preprocessing the backbone expects, read from timm's `pretrained_cfg`."""

    image_size: int
    interpolation: str
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def data_config(backbone: nn.Module, image_size: int | None = None) -> DataConfig:
    cfg = backbone.pretrained_cfg
    return DataConfig(
        image_size=image_size or int(cfg["input_size"][-1]),
        interpolation=cfg.get("interpolation", "bilinear"),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
    )


def build_classifier(
    backbone: str | BackboneSpec,
    num_classes: int,
    pretrained: bool,
    weights_file: str | None = None,
    dropout: float = 0.2,
) -> tuple[Classifier, WeightsInfo]:
    """A `Classifier` for `num_classes`, its backbone pretrained (or randomly initialised for scratch)."""
    spec = resolve_backbone(backbone) if isinstance(backbone, str) else backbone
    timm_model, weights = create_timm_model(spec, pretrained=pretrained, weights_file=weights_file)
    return Classifier(timm_model, num_classes, dropout), weights
