"""Build a timm model and load pretrained weights from a file, a bundled package or the hub."""

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from .backbones import BackboneSpec

log = logging.getLogger(__name__)


class WeightsError(ValueError):
    """Pretrained weights that cannot be found or do not fit the architecture."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from, for the run directory."""

    source: str
    path: str | None = None
    sha256: str | None = None


RANDOM_INIT = WeightsInfo(source="random")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.pth`/`.pt`/`.bin` or `.safetensors` file; a Lightning or wrapped checkpoint is unwrapped."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many unrelated types for a bad file
        raise WeightsError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return state


def match_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str, optional_prefix: str
) -> dict[str, torch.Tensor]:
    """Map `source` onto `target`'s keys, by name when the names agree, else one-to-one in order.

    Every target key must get a tensor of its shape, except keys under `optional_prefix` (the
    ImageNet classifier, which we replace anyway). Anything partial raises, naming the first mismatches.
    """
    required = [k for k in target if not k.startswith(optional_prefix)]
    if set(required) <= set(source):
        mapped = {k: source[k] for k in target if k in source}
        how = "by name"
    elif len(source) in (len(target), len(required)):
        mapped = dict(zip(target if len(source) == len(target) else required, source.values()))
        how = "in order"
    else:
        missing = [k for k in required if k not in source][:3]
        raise WeightsError(
            f"{origin}: weights do not fit: {len(source)} tensors for {len(target)} parameters/buffers; "
            f"missing e.g. {', '.join(missing)}"
        )
    bad = [
        f"{key} {tuple(value.shape)} vs {tuple(target[key].shape)}"
        for key, value in mapped.items()
        if value.shape != target[key].shape
    ]
    if bad:
        raise WeightsError(f"{origin}: {len(bad)} tensor shape(s) do not fit ({how}), e.g. {'; '.join(bad[:3])}")
    log.info("%s: %d of %d tensors matched %s", origin, len(mapped), len(target), how)
    return mapped


def _load_file_into(model: nn.Module, path: Path, spec: BackboneSpec) -> None:
    classifier = model.pretrained_cfg.get("classifier") or "classifier"
    mapped = match_state_dict(read_state_dict(path), model.state_dict(), f"{path} ({spec.name})", classifier)
    result = model.load_state_dict(mapped, strict=False)
    unexpected_missing = [k for k in result.missing_keys if not k.startswith(classifier)]
    if unexpected_missing or result.unexpected_keys:
        raise WeightsError(f"{path}: weights load was partial: missing {unexpected_missing[:3]}")


def create_timm_model(
    spec: BackboneSpec, pretrained: bool, weights_file: str | Path | None = None
) -> tuple[nn.Module, WeightsInfo]:
    """The timm model of `spec` with its ImageNet classifier, with pretrained weights when asked.

    Sources are tried in the spec's order; a source that is not available is skipped, and when none
    gives weights the error says how to get them. Never falls back to a random init silently.
    """
    if weights_file is not None and not pretrained:
        raise WeightsError("--weights was given for a strategy that trains from random init (scratch)")
    model = timm.create_model(spec.timm_name, pretrained=False)
    if not pretrained:
        return model, RANDOM_INIT

    tried = []
    for source in spec.weight_sources:
        if source == "file" and weights_file is not None:
            path = Path(weights_file).expanduser()
            _load_file_into(model, path, spec)
            return model, WeightsInfo("file", str(path), file_sha256(path))
        if source == "bundled" and spec.bundled_path is not None:
            try:
                path = spec.bundled_path()
            except ImportError as error:
                tried.append(f"bundled ({error})")
                continue
            _load_file_into(model, path, spec)
            return model, WeightsInfo("bundled", str(path), file_sha256(path))
        if source == "hub":
            try:
                hub_model = timm.create_model(spec.timm_name, pretrained=True)
            except Exception as error:  # network, hub and cache failures all mean "not available here"
                tried.append(f"hub ({type(error).__name__})")
                continue
            return hub_model, WeightsInfo("hub", spec.timm_name)
    detail = f" (tried: {'; '.join(tried)})" if tried else ""
    raise WeightsError(
        f"no pretrained weights for backbone {spec.name!r}{detail}. Pass --weights FILE with a state dict "
        f"for timm's {spec.timm_name!r} (e.g. saved from timm.create_model({spec.timm_name!r}, "
        f"pretrained=True) on a machine with network), use the default backbone efficientnet_lite0 whose "
        f"weights are bundled, or train with --strategy scratch."
    )
