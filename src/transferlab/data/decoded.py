"""Photos decoded once: resized and centre-cropped uint8 pixels kept on disk by content hash and preprocessing, so
epochs after the first, other strategies, the accuracy gate and evaluation read 150 KB of pixels (at 224 px)
instead of decoding a JPEG again.

`<cache>/decoded/<size>-<interpolation>-<crop>/<hash[:2]>/<hash>.npy`, one (3, S, S) uint8 array per photo. A photo
whose bytes change has another hash (`PhotoCache` hashes by path, size and modification time), so it is decoded
again; a damaged entry is decoded again too.
"""

from pathlib import Path

import numpy as np
import torch

from ..files import cache_dir, write_npy_atomic
from ..models.classifier import DataConfig

DECODER_VERSION = 1
"""Bumped when decoding or resizing changes what a photo's pixels are."""


class DecodedStore:
    """(3, S, S) uint8 photos by content hash; see the module's docstring."""

    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def for_config(cls, config: DataConfig, data_dir: str | Path | None = None) -> "DecodedStore":
        """The store of one preprocessing (size, interpolation, crop) in a cache folder (`--data-dir`)."""
        name = f"v{DECODER_VERSION}-{config.image_size}-{config.interpolation}-{config.crop_pct:g}"
        return cls(cache_dir(data_dir) / "decoded" / name)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.npy"

    def load(self, digest: str) -> torch.Tensor | None:
        try:
            array = np.load(self._path(digest))
        except (OSError, ValueError):
            return None
        if array.dtype != np.uint8 or array.ndim != 3:
            return None
        return torch.from_numpy(array)

    def save(self, digest: str, image: torch.Tensor) -> None:
        try:
            write_npy_atomic(self._path(digest), image.numpy())
        except OSError:  # a full or read-only cache only costs decoding again
            pass
