"""Split an EfficientNet-style backbone where its frozen part ends, so that part can run in a fast runtime.

With BatchNorm frozen and only the last layers trainable (finetune), everything before the first module
holding a trainable parameter is a fixed function: it needs no gradients, and its output can come from
OpenVINO or ONNX Runtime while PyTorch trains the rest.
"""

from dataclasses import dataclass

from torch import nn

STEM = ("conv_stem", "bn1")
HEAD = ("conv_head", "bn2")


def backbone_sequence(backbone: nn.Module) -> list[nn.Module] | None:
    """`forward_features` as a flat list of modules (stem, each block, head conv), or None when the
    backbone is not shaped like timm's EfficientNet/MobileNet family."""
    if not all(hasattr(backbone, name) for name in (*STEM, "blocks", *HEAD)):
        return None
    blocks = [block for stage in backbone.blocks for block in stage]
    return [getattr(backbone, name) for name in STEM] + blocks + [getattr(backbone, name) for name in HEAD]


def _trains(module: nn.Module) -> bool:
    return any(parameter.requires_grad for parameter in module.parameters())


@dataclass
class BackboneSplit:
    """`trunk` (frozen) then `tail` (holds every trainable parameter): `tail(trunk(x)) == forward_features(x)`."""

    trunk: nn.Sequential
    tail: nn.Sequential
    cut: int

    @property
    def trunk_layers(self) -> int:
        return len(self.trunk)


def split_at_first_trainable(backbone: nn.Module) -> BackboneSplit | None:
    """The split before the first module with a trainable parameter; None when nothing (or everything) is frozen."""
    sequence = backbone_sequence(backbone)
    if sequence is None:
        return None
    cut = next((i for i, module in enumerate(sequence) if _trains(module)), None)
    if not cut:
        return None
    return BackboneSplit(nn.Sequential(*sequence[:cut]), nn.Sequential(*sequence[cut:]), cut)
