"""Datasets and the Lightning DataModule: decode, augment (train only), resize and normalise."""

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import lightning as L
from lightning.pytorch.accelerators import CUDAAccelerator
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from ..augment.pipeline import Pipeline, seeded_generator
from ..models.classifier import DataConfig
from .decode import load_uint8
from .decoded import DecodedStore
from .frozen_outputs import FrozenOutputs, FrozenPart
from .photo_cache import PhotoCache
from .threads import map_in_threads, prefetched
from .sources import DatasetIndex, Sample


def balanced_weights(labels: Sequence[int], classes: int) -> tuple[list[float], list[float]]:
    """(per class, per sample) weights inverse to each class's photos: the class weights average 1 over the photos,
    and the sample weights draw every class equally often."""
    counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=classes).double()
    per_class = torch.where(counts > 0, len(labels) / (classes * counts.clamp(min=1)), torch.zeros_like(counts))
    per_sample = (1.0 / counts.clamp(min=1))[torch.as_tensor(list(labels), dtype=torch.long)]
    return per_class.tolist(), per_sample.tolist()


def resize_and_crop(config: DataConfig) -> v2.Transform:
    """Decoded photo (uint8 tensor or PIL image) -> uint8 tensor: resize the short side to size / crop_pct, centre crop to size (timm's eval)."""
    resize_to = int(config.image_size / config.crop_pct)
    return v2.Compose(
        [
            v2.Resize(resize_to, interpolation=v2.InterpolationMode(config.interpolation), antialias=True),
            v2.CenterCrop(config.image_size),
            v2.PILToTensor(),
        ]
    )


def square_view(image_size: int) -> v2.Transform:
    """For figures: resize the short side to `image_size` and centre-crop a square (no normalisation)."""
    return resize_and_crop(DataConfig(image_size, "bicubic", 1.0, (0.5,) * 3, (0.5,) * 3))


def normalize(config: DataConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 tensor (3, H, W) or batch (N, 3, H, W) -> a new contiguous float32 tensor normalised with the backbone's
    mean and std: (x / 255 - mean) / std, computed as x * scale + shift in one conversion and two in-place passes.
    Four times faster than v2.ToDtype + v2.Normalize on the channels-last views that resizing and cropping leave
    (0.11 against 0.44 ms a 224-px photo, one thread)."""
    scale = torch.tensor([1 / (255 * s) for s in config.std], dtype=torch.float32).view(3, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(config.mean, config.std)], dtype=torch.float32).view(3, 1, 1)

    def normalized(image: torch.Tensor) -> torch.Tensor:
        if image.dtype != torch.uint8:
            raise TypeError(f"normalize takes uint8 photos (0-255), not {image.dtype}")
        return image.to(torch.float32, memory_format=torch.contiguous_format).mul_(scale).add_(shift)

    return normalized


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffles with a generator seeded by (seed, epoch) and yields `(index, epoch)`, so that each
    sample's augmentation seed is known in whichever worker decodes it. Lightning calls `set_epoch`.

    With `weights` (one per sample), a training epoch draws `length` samples with replacement in proportion to them
    (a balanced sampler), from the same seeded generator.

    In a distributed run, process `rank` of `world_size` takes every `world_size`-th sample of the same order.
    Training shards are padded from the order's start to one length (the processes step together);
    validation shards are not, so every validation photo is counted exactly once.
    """

    def __init__(
        self, length: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
        weights: Sequence[float] | None = None,
    ):
        if length < world_size:
            raise ValueError(f"{length} samples cannot be shared among {world_size} processes")
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.shuffle:
            return -(-self.length // self.world_size)
        return len(range(self.rank, self.length, self.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = list(range(self.length))
        if self.shuffle and self.weights is not None:
            order = torch.multinomial(self.weights, self.length, replacement=True, generator=seeded_generator(self.seed, self.epoch)).tolist()
        elif self.shuffle:
            order = torch.randperm(self.length, generator=seeded_generator(self.seed, self.epoch)).tolist()
            order += order[: len(self) * self.world_size - self.length]
        return iter([(index, self.epoch) for index in order[self.rank :: self.world_size]])


@dataclass(frozen=True)
class Placement:
    """Where a loader's batches go: this process's shard of each epoch, and whether to pin them for a GPU."""

    rank: int = 0
    world_size: int = 1
    pin_memory: bool = False

    @classmethod
    def of(cls, trainer: "L.Trainer | None") -> "Placement":
        """The placement of a DataModule's loaders under `trainer` (one process on the CPU without one)."""
        if trainer is None:
            return cls()
        return cls(trainer.global_rank, trainer.world_size, isinstance(trainer.accelerator, CUDAAccelerator))


class PrefetchingLoader(DataLoader):
    """A DataLoader that, without worker processes, loads the next batch in a background thread while the caller
    computes on this one (`threads.prefetched`); with workers, they prefetch already. For photos, whose decoding and
    augmentation sat between two finetune steps (bench/RESULTS.md: woof-bench's finetune epochs on 2 cores, a few
    per cent)."""

    def __iter__(self) -> Iterator:
        batches = super().__iter__()
        return prefetched(batches) if self.num_workers == 0 else batches


def epoch_loader(
    dataset: Dataset, batch_size: int, seed: int, shuffle: bool, workers: int = 0, placement: Placement = Placement(),
    weights: Sequence[float] | None = None, prefetch: bool = False,
) -> DataLoader:
    """Batches in `EpochSampler` order (drawn by `weights` when given), loaded one batch ahead with `prefetch`
    (`PrefetchingLoader`). A lone last training sample is dropped: the head's BatchNorm cannot train on a batch of one."""
    sampler = EpochSampler(len(dataset), seed, shuffle, placement.rank, placement.world_size, weights if shuffle else None)
    return (PrefetchingLoader if prefetch else DataLoader)(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=shuffle and len(sampler) % batch_size == 1,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=placement.pin_memory,
        generator=torch.Generator().manual_seed(seed),  # workers' base seeds; the global RNG (dropout) stays untouched
    )


class PhotoDataset(Dataset):
    """Labelled photos as normalised tensors; `augment` (on uint8 tensors) runs between crop and normalise.

    Indexed by `index` or `(index, epoch)`: the augmentation of a sample is seeded by (seed, epoch, index).
    With `decoded`, each photo is decoded once and its pixels read back from that store afterwards (by content
    hash: `digests` when the caller has them, else from `photos`).
    """

    def __init__(
        self, samples: Sequence[Sample], config: DataConfig, augment: Pipeline | None = None, seed: int = 0,
        decoded: DecodedStore | None = None, photos: PhotoCache | None = None, digests: Sequence[str] | None = None,
    ):
        self.samples = list(samples)
        self.config = config
        self.augment = augment
        self.seed = seed
        self.decoded = decoded
        if digests is None and decoded is not None:
            digests = (photos or PhotoCache()).hashes([s.path for s in self.samples])
        self.digests = list(digests or [])
        self._to_tensor = resize_and_crop(config)
        self._normalize = normalize(config)
        self._min_size = int(config.image_size / config.crop_pct)

    def __len__(self) -> int:
        return len(self.samples)

    def load_uint8(self, index: int) -> torch.Tensor:
        """The photo decoded, resized and centre-cropped, as a uint8 tensor (C, H, W)."""
        if self.decoded is None:
            return self._to_tensor(load_uint8(self.samples[index].path, min_size=self._min_size))
        digest = self.digests[index]
        image = self.decoded.load(digest)
        if image is None:
            image = self._to_tensor(load_uint8(self.samples[index].path, min_size=self._min_size))
            self.decoded.save(digest, image)
        return image

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        image = self.load_uint8(index)
        if self.augment is not None:
            image = self.augment(image, seeded_generator(self.seed, epoch, index))
        return self._normalize(image), self.samples[index].label

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[tuple[torch.Tensor, int]]:
        """A batch for a DataLoader, its photos loaded by the process's loading threads."""
        return map_in_threads(self.__getitem__, keys)


class PhotoDataModule(L.LightningDataModule):
    """Train (shuffled, augmented) and validation loaders over a `DatasetIndex`."""

    def __init__(
        self,
        index: DatasetIndex,
        config: DataConfig,
        augment: Pipeline | None,
        batch_size: int = 64,
        workers: int = 0,
        seed: int = 0,
        decoded: DecodedStore | None = None,
        photos: PhotoCache | None = None,
        sample_weights: Sequence[float] | None = None,
    ):
        super().__init__()
        self.index = index
        self.sample_weights = sample_weights
        self.config = config
        self.batch_size = batch_size
        self.workers = workers
        self.seed = seed
        self.train_set = PhotoDataset(index.train, config, augment, seed, decoded, photos)
        self.val_set = PhotoDataset(index.val, config, decoded=decoded, photos=photos)
        self.frozen_part: FrozenPart | None = None
        """Set for a fit whose model's frozen layers run in a fast runtime: the loaders give their outputs."""

    def _loader(self, photos: PhotoDataset, split: str, shuffle: bool, weights: Sequence[float] | None = None) -> DataLoader:
        dataset, workers = (photos, self.workers) if self.frozen_part is None else (
            FrozenOutputs(photos, self.frozen_part, split), 0  # the runtime and the outputs kept live in this process
        )
        return epoch_loader(dataset, self.batch_size, self.seed, shuffle, workers, Placement.of(self.trainer), weights, prefetch=True)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, "train", True, self.sample_weights)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, "val", False)

    def release_frozen_part(self) -> None:
        """The fit is over: the outputs it kept are freed (its loaders may outlive it in the trainer)."""
        if self.frozen_part is not None:
            self.frozen_part.release()
            self.frozen_part = None

    def teardown(self, stage: str) -> None:
        self.release_frozen_part()

    def on_exception(self, exception: BaseException) -> None:
        self.release_frozen_part()
