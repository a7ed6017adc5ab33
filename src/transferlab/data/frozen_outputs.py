"""Photos through the frozen part of the model, as data: a batch is loaded, augmented and run through the frozen
layers (OpenVINO / ONNX Runtime) in the loading process, and what the training step receives is their output.

Each output is kept in memory (up to a byte budget) under its photo and view, so a photo's view is run through the
frozen layers once per fit: validation photos (one clean view) from the second epoch on, and training photos when
epochs cycle through `views` augmented views (epoch e shows view e mod `views`, the augmentation epoch e mod `views`
would draw), from epoch `views` + 1 on. Those batches load no photo and run no frozen layer: only the layers that
train compute.
"""

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from .datasets import PhotoDataset

OUTPUTS_BYTES = 3 << 29
"""At most this much memory (1.5 GiB) keeps frozen outputs in a fit: at the notebook's cut for EfficientNet at 224 px
(192 x 7 x 7 float32, 37.6 kB a view), Stanford Dogs' 12,000 training photos x 2 views and 8,580 validation photos
take 1.2 GB; what does not fit is computed again each epoch."""


class FrozenRuntime(Protocol):
    """What runs the frozen layers: normalised photos (N, 3, H, W) -> their output, as numpy."""

    name: str

    def run(self, images: np.ndarray) -> np.ndarray: ...


class OutputCache:
    """Frozen outputs by (split, photo index, view), up to `budget` bytes in all."""

    def __init__(self, budget: int | None = None):
        self.budget = OUTPUTS_BYTES if budget is None else budget
        self.bytes = 0
        self._outputs: dict[tuple[str, int, int], torch.Tensor] = {}

    def get_all(self, keys: Sequence[tuple[str, int, int]]) -> list[torch.Tensor] | None:
        """The outputs of every key, or None when one is missing."""
        found = [self._outputs.get(key) for key in keys]
        return None if any(output is None for output in found) else found  # type: ignore[return-value]

    def keep(self, keys: Sequence[tuple[str, int, int]], outputs: torch.Tensor) -> None:
        """Keep each key's output (a row of `outputs`) while the budget allows."""
        for key, output in zip(keys, outputs):
            if key not in self._outputs and self.bytes + output.nbytes <= self.budget:
                self._outputs[key] = output
                self.bytes += output.nbytes

    def __len__(self) -> int:
        return len(self._outputs)


@dataclass
class FrozenPart:
    """The frozen layers of one fit, shared by its loaders: their runtime (one request at a time), the outputs kept,
    and how many augmented views training epochs cycle through (0: a fresh view every epoch, none kept)."""

    runtime: FrozenRuntime
    views: int = 0
    cache: OutputCache = field(default_factory=OutputCache)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, images: torch.Tensor) -> torch.Tensor:
        with self._lock:
            return torch.from_numpy(self.runtime.run(images.numpy()))


class FrozenOutputs(Dataset):
    """`photos` (indexed by `index` or `(index, epoch)`) as the outputs of `part`'s frozen layers.
    Without augmentation a photo has one view, kept."""

    def __init__(self, photos: "PhotoDataset", part: FrozenPart, split: str):
        self.photos = photos
        self.part = part
        self.split = split
        self.views = part.views if photos.augment is not None else 1

    def __len__(self) -> int:
        return len(self.photos)

    def view(self, key: int | tuple[int, int]) -> tuple[int, int]:
        """(photo index, the epoch whose augmentation it shows)."""
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        return index, epoch % self.views if self.views else epoch

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[tuple[torch.Tensor, int]]:
        views = [self.view(key) for key in keys]
        labels = [self.photos.samples[index].label for index, _ in views]
        cache_keys = [(self.split, index, view) for index, view in views]
        outputs = self.part.cache.get_all(cache_keys) if self.views else None
        if outputs is None:
            computed = self.part.run(torch.stack([image for image, _ in self.photos.__getitems__(views)]))
            if self.views:
                self.part.cache.keep(cache_keys, computed)
            outputs = list(computed)
        return list(zip(outputs, labels))
