"""Augmentation presets applied to training images (uint8 RGB tensors, CHW)."""

from typing import Callable

import torch
from torchvision.transforms import v2

Augment = Callable[[torch.Tensor], torch.Tensor]

KERAS_ROTATION_TURN = 0.15


def seed_keras() -> v2.Transform:
    """The notebook's four random layers: rotation ±0.15 turn, translation ±10 %, flips, contrast ±10 %.

    Keras fills with reflection; torchvision's affine fills with black. The full catalogue with
    reflect fill and provenance replaces this minimal preset.
    """
    return v2.Compose(
        [
            v2.RandomAffine(
                degrees=KERAS_ROTATION_TURN * 360,
                translate=(0.1, 0.1),
                interpolation=v2.InterpolationMode.BILINEAR,
            ),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.ColorJitter(contrast=0.1),
        ]
    )


PRESETS: dict[str, Callable[[], v2.Transform | None]] = {
    "none": lambda: None,
    "seed-keras": seed_keras,
}


def build_augment(preset: str) -> v2.Transform | None:
    """The augmentation of a preset name, or None for `none`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; known: {', '.join(PRESETS)}")
    return PRESETS[preset]()
