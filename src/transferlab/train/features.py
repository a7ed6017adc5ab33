"""The frozen fast path: pooled backbone features of every photo and view, computed once and cached on disk.

A frozen backbone's output for a given photo and view never changes, so the head can train on tensors.
Validation photos get their clean view; training photos the clean view plus K augmented views, each
view's augmentation seeded by the photo's content hash and the view index. Features live in
`<cache>/features/<backbone>-<weights>-<size>-<preprocessing+augmentation>/<hash[:2]>/<hash>.npy` (`feature_store`), one
(views, D) float32 array per photo, so a second run, another head or more epochs need no backbone pass.
Each epoch, the head sees one view per photo, drawn with the (seed, epoch, photo) generator.
"""

import logging
import time
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..augment.pipeline import Pipeline, seeded_generator
from ..data.datasets import Placement, PhotoDataset, epoch_loader, normalize
from ..data.decoded import DecodedStore
from ..data.photo_cache import PhotoCache
from ..data.sources import Sample
from ..data.threads import map_in_threads, prefetched
from ..files import exclusive_lock
from ..models.classifier import DataConfig
from ..models.runtime import FeatureRuntime
from .feature_store import FeatureStore

log = logging.getLogger(__name__)

RUNTIME_BATCH = 32


def view_seed(digest: str) -> int:
    return int(digest[:15], 16)


class ViewDataset(Dataset):
    """Each photo decoded once, as `views` normalised tensors: the clean view, then augmented ones."""

    def __init__(
        self, samples: Sequence[Sample], digests: Sequence[str], config: DataConfig, augment: Pipeline | None, views: int,
        decoded: DecodedStore | None = None,
    ):
        self.photos = PhotoDataset(samples, config, decoded=decoded, digests=digests)
        self.normalize = normalize(config)
        self.digests = list(digests)
        self.augment = augment
        self.views = views

    def __len__(self) -> int:
        return len(self.digests)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.photos.load_uint8(index)
        views = [image]
        for view in range(1, self.views):
            views.append(self.augment(image, seeded_generator(view_seed(self.digests[index]), view)))
        return torch.stack([self.normalize(v) for v in views])

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        """A batch for a DataLoader, its photos loaded by the process's loading threads."""
        return map_in_threads(self.__getitem__, indices)


def extract_features(
    samples: Sequence[Sample],
    store: FeatureStore,
    runtime: Callable[[], FeatureRuntime],
    config: DataConfig,
    augment: Pipeline | None,
    views: int,
    workers: int = 0,
    photos: PhotoCache | None = None,
    decoded: DecodedStore | None = None,
    digests: Sequence[str] | None = None,
) -> np.ndarray:
    """(N, views, D) features of `samples`, computing and storing those not in `store` yet (`digests`: the photos'
    content hashes, when the caller has them).

    `runtime` is called (to build the backbone runtime) only when some photo's features are missing. Processes
    sharing the store (a distributed run, two runs at once) compute them one at a time: the others wait, then read.
    """
    digests = list(digests) if digests is not None else (photos or PhotoCache()).hashes([s.path for s in samples])
    cached = [store.load(d, views) for d in digests]
    if any(array is None for array in cached):
        with exclusive_lock(store.root / ".lock", f"{store.root}: another process is computing features; waiting"):
            _compute_missing(samples, digests, cached, store, runtime, config, augment, views, workers, decoded)
    return np.stack(cached)


def _compute_missing(
    samples: Sequence[Sample],
    digests: list[str],
    cached: list[np.ndarray | None],
    store: FeatureStore,
    runtime: Callable[[], FeatureRuntime],
    config: DataConfig,
    augment: Pipeline | None,
    views: int,
    workers: int,
    decoded: DecodedStore | None = None,
) -> None:
    """Fill the holes of `cached` from the store (another process may have just written them), else compute them."""
    for i, array in enumerate(cached):
        if array is None:
            cached[i] = store.load(digests[i], views)
    missing = [i for i, array in enumerate(cached) if array is None]
    if missing:
        backbone = runtime()
        started = time.perf_counter()
        dataset = ViewDataset([samples[i] for i in missing], [digests[i] for i in missing], config, augment, views, decoded)
        photos_per_batch = max(1, RUNTIME_BATCH // views)
        loader = DataLoader(dataset, batch_size=photos_per_batch, num_workers=workers, persistent_workers=False)
        position = 0
        for batch in prefetched(loader) if workers == 0 else loader:  # the next batch loads while the backbone runs
            flat = batch.reshape(-1, *batch.shape[2:]).numpy()
            features = backbone.run(np.ascontiguousarray(flat)).reshape(batch.shape[0], views, -1)
            for row in features:
                index = missing[position]
                store.save(digests[index], row)
                cached[index] = row
                position += 1
        seconds = time.perf_counter() - started
        log.info(
            "features: %d photos x %d views by %s in %.1f s (%.0f img/s)",
            len(missing), views, backbone.name, seconds, len(missing) * views / seconds,
        )


class FeatureDataset(Dataset):
    """Cached features as (feature, label); training draws one view per photo and epoch."""

    def __init__(self, features: np.ndarray, labels: Sequence[int], seed: int, draw_views: bool):
        self.features = torch.from_numpy(features)
        self.labels = list(labels)
        self.seed = seed
        self.draw_views = draw_views and features.shape[1] > 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        view = 0
        if self.draw_views:
            generator = seeded_generator(self.seed, epoch, index, 1)
            view = int(torch.randint(self.features.shape[1], (1,), generator=generator))
        return self.features[index, view], self.labels[index]


class FeatureDataModule(L.LightningDataModule):
    """Train and validation loaders over cached features, batched and ordered as `PhotoDataModule`."""

    def __init__(
        self, train: FeatureDataset, val: FeatureDataset, config: DataConfig, batch_size: int, seed: int,
        sample_weights: Sequence[float] | None = None,
    ):
        super().__init__()
        self.train_set, self.val_set = train, val
        self.sample_weights = sample_weights
        self.config = config
        self.extraction_seconds = 0.0  # reading or computing the cached features; set by whoever built them
        self.precision = "fp32"  # the inference precision they were computed in
        self.precision_refused: str | None = None  # why not in the one the run asked for
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        return epoch_loader(self.train_set, self.batch_size, self.seed, shuffle=True, placement=Placement.of(self.trainer), weights=self.sample_weights)

    def val_dataloader(self) -> DataLoader:
        return epoch_loader(self.val_set, self.batch_size, self.seed, shuffle=False, placement=Placement.of(self.trainer))
