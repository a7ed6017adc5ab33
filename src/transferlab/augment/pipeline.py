"""Augmentation pipelines: presets (`presets`), config overrides, per-sample seeds and provenance.

A pipeline applies its ops in order; for each op it rolls the op's probability and draws its params
from one `torch.Generator`, and records `{"op", "params"}` for every op it applied (skipped ops are
absent). The generator of a training sample is seeded from (run seed, epoch, sample index), so
the same seed gives the same images in any process and any DataLoader worker.
"""

import inspect
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml

from ..files import yaml_error_reason
from .ops import OPS, RandomOp, Rotation, Translation, affine_with_fill
from .presets import PRESETS, OpConfig

Record = list[dict[str, Any]]


class AugmentConfigError(ValueError):
    """An augmentation preset, file or override that cannot be used; the message names it."""


def build_op(config: OpConfig) -> RandomOp:
    """One op from `{"op": name, setting: value, ...}`."""
    settings = dict(config)
    name = settings.pop("op", None)
    if name not in OPS:
        raise AugmentConfigError(f"unknown augmentation op {name!r}; known: {', '.join(OPS)}")
    settings = {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}
    known = list(inspect.signature(OPS[name]).parameters)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise AugmentConfigError(f"{name}: unknown setting(s) {', '.join(unknown)}; settings: {', '.join(known)}")
    try:
        return OPS[name](**settings)
    except (TypeError, ValueError) as error:  # a value of the wrong kind: "abc" for a factor
        given = ", ".join(f"{key}={value!r}" for key, value in settings.items())
        raise AugmentConfigError(f"{name}: {given}: a value of the wrong kind ({error})") from None


def parse_override(text: str) -> tuple[str, str, Any]:
    """`op.param=value` -> (op, param, value); the value is read as YAML (numbers, [lists], words)."""
    key, sep, raw = text.partition("=")
    op, dot, param = key.strip().partition(".")
    if not (sep and dot and op and param):
        raise AugmentConfigError(f"--augment-set {text!r}: expected op.param=value, e.g. rotation.factor=0.2")
    try:
        return op, param.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise AugmentConfigError(f"--augment-set {text!r}: {raw.strip()!r} is not a value (a number, a word or a [list])") from None


def _ops_in_file(path: Path) -> list[OpConfig]:
    """The op configs of an augmentation YAML file; an `AugmentConfigError` naming it (and the line) when it is not one,
    or when one of its ops cannot be built."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise AugmentConfigError(f"{path}: not valid YAML ({yaml_error_reason(error)})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AugmentConfigError(f"{path}: cannot read it ({error})") from None
    configs = loaded.get("augment") if isinstance(loaded, dict) else loaded
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise AugmentConfigError(f"{path}: expected a list of ops like `- op: rotation` (or under `augment:`)")
    for config in configs:
        try:
            build_op(config)
        except AugmentConfigError as error:
            raise AugmentConfigError(f"{path}: {error}") from None
    return configs


def resolve_ops(augment: str | Sequence[OpConfig], overrides: Sequence[str] = ()) -> list[OpConfig]:
    """Op configs of a preset name, a YAML file (a list, or a mapping with an `augment` list) or a list,
    with `op.param=value` overrides applied (an op not in the list is appended)."""
    if isinstance(augment, str):
        if augment in PRESETS:
            configs = PRESETS[augment]
        elif Path(augment).is_file():
            configs = _ops_in_file(Path(augment))
        elif augment.lower().endswith((".yaml", ".yml")):
            raise AugmentConfigError(f"{augment}: no such file")
        else:
            raise AugmentConfigError(f"unknown augmentation preset {augment!r}; presets: {', '.join(PRESETS)}, or a YAML file")
    else:
        configs = augment
    configs = [dict(c) for c in configs]
    for text in overrides:
        op, param, value = parse_override(text)
        if op not in OPS:
            raise AugmentConfigError(f"--augment-set {text!r}: unknown op {op!r}; known: {', '.join(OPS)}")
        target = next((c for c in configs if c.get("op") == op), None)
        if target is None:
            target = {"op": op}
            configs.append(target)
        target[param] = value
    return configs


class Pipeline:
    """Ops in order, each rolled with its probability; params drawn from one generator, applied ops recorded."""

    def __init__(self, ops: Sequence[RandomOp]):
        self.ops = list(ops)

    @classmethod
    def from_config(cls, augment: str | Sequence[OpConfig], overrides: Sequence[str] = ()) -> "Pipeline":
        return cls([build_op(config) for config in resolve_ops(augment, overrides)])

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(repr(op) for op in self.ops)})"

    def __len__(self) -> int:
        return len(self.ops)

    def run(self, image: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, Record]:
        """Augment one uint8 image (C, H, W); return it with the record of the ops applied. Every op keeps the
        image's size, and params depend on the size alone, so all are drawn first, then applied (`apply_steps`)."""
        record: Record = []
        steps: list[tuple[RandomOp, dict[str, Any]]] = []
        for op in self.ops:
            roll = torch.rand((), generator=generator).item()
            params = op.sample(image, generator)
            if roll < op.p and op.changes(params):
                steps.append((op, params))
                record.append({"op": op.name, "params": params})
        return apply_steps(image, steps), record

    def run_batch(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[Record]]:
        """Augment a batch (B, C, H, W) with independent params per image."""
        results = [self.run(image, generator) for image in images]
        return torch.stack([image for image, _ in results]), [record for _, record in results]

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if image.ndim == 4:
            return self.run_batch(image, generator)[0]
        return self.run(image, generator)[0]

    def replay(self, image: torch.Tensor, record: Record) -> torch.Tensor:
        """Apply recorded params again; gives the same image as the run that recorded them."""
        ops = {op.name: op for op in self.ops}
        return apply_steps(image, [(ops[entry["op"]], entry["params"]) for entry in record])

    def caption(self, record: Record) -> str:
        ops = {op.name: op for op in self.ops}
        return ", ".join(ops[entry["op"]].caption(entry["params"]) for entry in record) or "no op applied"


def apply_steps(image: torch.Tensor, steps: Sequence[tuple[RandomOp, dict[str, Any]]]) -> torch.Tensor:
    """Apply (op, params) in order; a rotation directly followed by a translation with the same fill is one affine
    warp: the same geometry with one interpolation instead of two."""
    index = 0
    while index < len(steps):
        op, params = steps[index]
        following = steps[index + 1] if index + 1 < len(steps) else None
        if isinstance(op, Rotation) and following and isinstance(following[0], Translation) and following[0].fill_mode == op.fill_mode:
            shift = following[1]
            image = affine_with_fill(image, params["angle"], shift["dx"], shift["dy"], op.fill_mode)
            index += 2
        else:
            image = op.apply(image, params)
            index += 1
    return image


def seeded_generator(*keys: int) -> torch.Generator:
    """A generator seeded from non-negative keys, e.g. (run seed, epoch, sample index): the same in every
    process and worker; different key tuples give independent streams."""
    state = np.random.SeedSequence(list(keys)).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def build_augment(augment: str | Sequence[OpConfig], overrides: Sequence[str] = ()) -> Pipeline | None:
    """The pipeline of a preset, file or list with overrides; None when it has no ops."""
    pipeline = Pipeline.from_config(augment, overrides)
    return pipeline if len(pipeline) else None
