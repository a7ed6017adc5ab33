"""Photos through the frozen part of the model, as data: a batch is loaded, augmented and run through the frozen
layers (OpenVINO / ONNX Runtime) in the loading process, and what the training step receives is their output.

Each output a later epoch of the fit will show again is kept (up to a byte budget; in a temporary file where the fit
gives a folder, so that the page cache holds it rather than the process) under its photo and view, so a photo's view
runs through the frozen layers once per fit: validation photos (one clean view) from the second epoch on, and
training photos when epochs cycle through `views` augmented views (epoch e shows the augmentation epoch e mod `views`
would draw), from epoch `views` + 1 on. Only the photos of a batch that are not kept are loaded
and run; a batch whose photos are all kept costs only the layers that train.
"""

import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from ..files import short_reason

if TYPE_CHECKING:
    from .datasets import PhotoDataset

log = logging.getLogger(__name__)

OUTPUTS_BYTES = 3 << 29
"""At most this much (1.5 GiB) keeps frozen outputs in a fit: at the notebook's cut for EfficientNet at 224 px
(192 x 7 x 7 float32, 37.6 kB a view; half in bf16), Stanford Dogs' 12,000 training photos x 2 views and 8,580
validation photos take 1.2 GB (0.6 in bf16); what does not fit is computed again each epoch. Shared by the training
processes of a machine."""


class FrozenRuntime(Protocol):
    """What runs the frozen layers: normalised photos (N, 3, H, W) -> their output, as numpy."""

    name: str

    def run(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class _OnDisk:
    """Where one kept output lies in the cache's file."""

    offset: int
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class OutputCache:
    """Frozen outputs by (split, photo index, view), up to `budget` bytes in all (default: `OUTPUTS_BYTES` shared by
    `processes`); in `dtype` when given (bfloat16 where the layers that train run under bf16 autocast, whose
    convolutions round their input to it anyway: half the bytes), handed back as float32.

    With a `folder`, outputs are kept in an unnamed temporary file there (gone when the cache is cleared or the process
    ends) and read back with `pread`: the kernel's page cache holds them, which it can give up under memory pressure,
    instead of the process; at Stanford Dogs' size that is 0.6 GB less resident memory. Without one, or once the file
    cannot be written (a full disk), they are kept in memory as copies of their own."""

    def __init__(self, budget: int | None = None, processes: int = 1, dtype: torch.dtype | None = None, folder: Path | None = None) -> None:
        self.budget = OUTPUTS_BYTES // processes if budget is None else budget
        self.dtype = dtype
        self.folder = folder
        self.bytes = 0
        self._outputs: dict[tuple[str, int, int], torch.Tensor | _OnDisk] = {}
        self._file: IO[bytes] | None = None
        self._end = 0
        self._said_full = False

    def get(self, key: tuple[str, int, int]) -> torch.Tensor | None:
        output = self._outputs.get(key)
        if isinstance(output, _OnDisk):
            output = self._read(output)
        return output.float() if output is not None and output.dtype != torch.float32 else output

    def keep(self, key: tuple[str, int, int], output: torch.Tensor) -> torch.Tensor:
        """Keep `output` under `key` (within the budget); returns it as `get` will hand it back."""
        if key in self._outputs:
            return self.get(key)  # type: ignore[return-value]
        kept = output.to(self.dtype) if self.dtype not in (None, output.dtype) else output.clone()
        if self.bytes + kept.nbytes > self.budget:
            if not self._said_full:
                log.info("frozen outputs: %.2f GiB kept, the budget; the photos beyond it run through the frozen layers "
                         "every epoch", self.bytes / 2**30)
                self._said_full = True
            return output
        self._outputs[key] = self._write(kept) if self.folder is not None else kept
        self.bytes += kept.nbytes
        return kept.float()

    def _write(self, kept: torch.Tensor) -> torch.Tensor | _OnDisk:
        """`kept` appended to the file, or itself (kept in memory) where the file cannot take it."""
        data = kept.contiguous().reshape(-1).view(torch.uint8).numpy()
        try:
            if self._file is None:
                self.folder.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
                self._file = tempfile.TemporaryFile(dir=self.folder, prefix="frozen-outputs-")
            written = 0
            while written < data.nbytes:
                written += os.pwrite(self._file.fileno(), data[written:], self._end + written)
        except OSError as error:
            log.warning("frozen outputs: cannot keep them in %s (%s); kept in memory instead", self.folder, short_reason(error))
            self.folder = None
            return kept
        stored = _OnDisk(self._end, tuple(kept.shape), kept.dtype)
        self._end += data.nbytes
        return stored

    def _read(self, stored: _OnDisk) -> torch.Tensor:
        buffer = bytearray(stored.nbytes)
        read = 0
        while read < stored.nbytes:
            read += os.preadv(self._file.fileno(), [memoryview(buffer)[read:]], stored.offset + read)  # type: ignore[union-attr]
        return torch.frombuffer(buffer, dtype=stored.dtype).reshape(stored.shape)

    def clear(self) -> None:
        self._outputs.clear()
        self.bytes = 0
        if self._file is not None:
            self._file.close()
            self._file, self._end = None, 0

    def __len__(self) -> int:
        return len(self._outputs)


@dataclass(eq=False)
class FrozenPart:
    """The frozen layers of one fit, shared by its loaders: their runtime (one request at a time), how many augmented
    views training epochs cycle through (0: a fresh view every epoch), the fit's epochs (None: unknown; outputs are
    kept only for a later epoch that shows them again) and the outputs kept."""

    runtime: FrozenRuntime
    views: int = 0
    epochs: int | None = None
    cache: OutputCache = field(default_factory=OutputCache)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def outputs(self, keys: Sequence[tuple[str, int, int]], images: Callable[[list[int]], torch.Tensor], keep: bool) -> list[torch.Tensor]:
        """The output of each key: kept ones as they are, the others from `images(positions)` (the missing keys' photos,
        loaded) run through the frozen layers, and kept with `keep`."""
        with self._lock:
            found = [self.cache.get(key) for key in keys]
            missing = [position for position, output in enumerate(found) if output is None]
            if missing:
                computed = torch.from_numpy(self.runtime.run(images(missing).numpy()))
                for position, output in zip(missing, computed):
                    found[position] = self.cache.keep(keys[position], output) if keep else output  # as later epochs see it
            return found  # type: ignore[return-value]

    def release(self) -> None:
        """Free the kept outputs (the fit is over)."""
        with self._lock:
            self.cache.clear()


class FrozenOutputs(Dataset):
    """`photos` (indexed by `index` or `(index, epoch)`) as the outputs of `part`'s frozen layers. Without
    augmentation a photo has one view."""

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
        epoch = max((key[1] for key in keys if isinstance(key, tuple)), default=0)  # a batch is of one epoch
        views = [self.view(key) for key in keys]

        def images(positions: list[int]) -> torch.Tensor:
            return torch.stack([image for image, _ in self.photos.__getitems__([views[p] for p in positions])])

        shown_again = self.views and (self.part.epochs is None or epoch + self.views < self.part.epochs)
        outputs = self.part.outputs([(self.split, index, view) for index, view in views], images, keep=bool(shown_again))
        return [(output, self.photos.samples[index].label) for output, (index, _) in zip(outputs, views)]
