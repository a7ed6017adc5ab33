"""Which parameters train: small helpers that freeze, unfreeze and keep frozen BatchNorm in eval mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def is_batchnorm(module: nn.Module) -> bool:
    from torch.nn.modules.batchnorm import _BatchNorm

    return isinstance(module, _BatchNorm)


def freeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def unfreeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(True)


def weight_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules owning parameters directly, except BatchNorm, in registration (= forward) order."""
    return [
        (name, child)
        for name, child in module.named_modules()
        if not is_batchnorm(child) and any(True for _ in child.parameters(recurse=False))
    ]


def unfreeze_last_weight_layers(module: nn.Module, count: int) -> list[str]:
    """Unfreeze the last `count` weight layers (convolutions, linear layers); BatchNorm stays frozen."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    chosen = weight_layers(module)[-count:] if count else []
    for _, layer in chosen:
        for parameter in layer.parameters(recurse=False):
            parameter.requires_grad_(True)
    return [name for name, _ in chosen]


def block_groups(backbone: nn.Module, coarse: bool = False) -> list[list[str]]:
    """Parameter names of the backbone's blocks (`coarse`: its stages), stem first, from timm's `group_matcher`."""
    if not hasattr(backbone, "group_matcher"):
        raise ValueError(f"{type(backbone).__name__} has no group_matcher; use --unfreeze-layers instead of blocks")
    import timm.models

    groups = timm.models.group_parameters(backbone, backbone.group_matcher(coarse=coarse))
    return [groups[key] for key in sorted(groups)]


def batchnorm_parameter_names(module: nn.Module) -> set[str]:
    """Names of BatchNorm weights and biases: they stay frozen when the layers around them unfreeze."""
    return {
        f"{module_name}.{param_name}" if module_name else param_name
        for module_name, child in module.named_modules()
        if is_batchnorm(child)
        for param_name, _ in child.named_parameters(recurse=False)
    }


def unfreeze_last_blocks(backbone: nn.Module, count: int, coarse: bool = False) -> list[str]:
    """Unfreeze whole blocks (`coarse`: stages), from the last one back (never the stem); BatchNorm stays frozen."""
    groups = block_groups(backbone, coarse)
    what = "stages" if coarse else "unfreeze_blocks"
    if not 0 <= count < len(groups):
        raise ValueError(f"{what} must be between 0 and {len(groups) - 1} for this backbone, got {count}")
    names = {name for group in (groups[-count:] if count else []) for name in group}
    frozen_norm_params = batchnorm_parameter_names(backbone)
    unfrozen = []
    for name, parameter in backbone.named_parameters():
        if name in names and name not in frozen_norm_params:
            parameter.requires_grad_(True)
            unfrozen.append(name)
    return unfrozen


def frozen_batchnorms(module: nn.Module) -> list[nn.Module]:
    """BatchNorm modules whose affine parameters are all frozen (or that have none)."""
    return [m for m in module.modules() if is_batchnorm(m) and not any(p.requires_grad for p in m.parameters())]


def set_frozen_batchnorms_eval(module: nn.Module) -> int:
    """Put every frozen BatchNorm in eval mode, so it normalises with (and keeps) its running statistics."""
    norms = frozen_batchnorms(module)
    for norm in norms:
        norm.eval()
    return len(norms)


@dataclass(frozen=True)
class FreezeSummary:
    """What a strategy left trainable, for logs and the run directory."""

    trainable_params: int
    total_params: int
    frozen_batchnorms: int
    unfrozen: tuple[str, ...] = ()


def summarize(module: nn.Module, unfrozen: list[str] | tuple[str, ...] = ()) -> FreezeSummary:
    return FreezeSummary(
        trainable_params=sum(p.numel() for p in module.parameters() if p.requires_grad),
        total_params=sum(p.numel() for p in module.parameters()),
        frozen_batchnorms=len(frozen_batchnorms(module)),
        unfrozen=tuple(unfrozen),
    )
