"""Each photo's pooled feature from the pretrained backbone (its clean view), from the frozen strategy's cache.

An audit after a frozen run or another audit with the same settings reads the features straight from the folder
they used (`train.feature_store.remembered_store`; after a frozen run whose reduced precision failed its gate, the
fp32 features it trained on): no model is built and PyTorch is not loaded. Otherwise the backbone is built and
every photo not in the cache goes through it.
"""

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..config import RunSettings
from ..data.photo_cache import PhotoCache
from ..data.sources import DatasetIndex, Sample
from ..train.feature_store import remember_store, remembered_store


@dataclass(frozen=True)
class PhotoFeatures:
    """The photos of a data set (training photos first, then validation), their split, label, content hash and
    L2-normalised pooled feature (N, D)."""

    samples: list[Sample]
    splits: list[str]
    digests: list[str]
    features: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples])

    @property
    def paths(self) -> list[str]:
        return [str(s.path) for s in self.samples]


def photo_features(settings: RunSettings, index: DatasetIndex) -> PhotoFeatures:
    """Clean-view features of every photo of `index`, read from (or added to) the feature cache a frozen run with the
    same settings uses, in its inference precision (fp32 where that cannot run)."""
    samples = list(index.train) + list(index.val)
    photos = PhotoCache.in_cache(settings.data_dir)
    digests = photos.hashes([s.path for s in samples])
    pooled = remembered_features(settings, digests)
    if pooled is None:
        pooled = extracted_features(settings, samples, photos, digests, index.train)
    features = pooled.astype(np.float32)
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return PhotoFeatures(
        samples=samples, splits=["train"] * len(index.train) + ["val"] * len(index.val), digests=digests, features=features,
    )


def remembered_features(settings: RunSettings, digests: list[str]) -> np.ndarray | None:
    """(N, D) clean-view features from the folder these settings used before, when it holds every photo; else None."""
    store = remembered_store(settings)
    if store is None:
        return None
    views = [store.load(digest, 1) for digest in digests]
    if any(view is None for view in views):
        return None
    return np.stack([view[0] for view in views])


def extracted_features(
    settings: RunSettings, samples: list[Sample], photos: PhotoCache, digests: list[str], training: Sequence[Sample],
    precision: str | None = None,
) -> np.ndarray:
    """(N, D) clean-view features through the backbone (those already cached read from the cache), in the run's
    inference precision or fp32 where that cannot run; int8 quantized on the `training` photos, as a frozen run's
    features in the same folder are. The folder is remembered for the next audit."""
    from ..data.decoded import DecodedStore
    from ..files import runtimes_dir
    from ..models.classifier import build_classifier, data_config
    from ..models.runtime import feature_runtime
    from ..train.distributed import threads_per_process, training_device
    from ..train.features import extract_features
    from ..train.fit import PrecisionUnavailable, calibration_photos, checked_precision, feature_store, run_precision

    precision = precision or run_precision(settings)
    model, _ = build_classifier(settings.backbone, 2, pretrained=True, weights_file=settings.weights)  # its backbone only
    config = data_config(model.backbone, settings.image_size)
    store = feature_store(settings, model, config, precision)
    runtime = functools.cache(lambda: checked_precision(feature_runtime(
        model.backbone, config.image_size, runtimes_dir(settings.data_dir), settings.runtime, threads_per_process(settings.devices),
        training_device(settings.accelerator), precision, calibration_photos(training, config, settings.seed),
    ), precision))
    try:
        pooled = extract_features(samples, store, runtime, config, None, 1, 0, photos, DecodedStore.for_config(config, settings.data_dir), digests)
    except PrecisionUnavailable:
        if precision == "fp32":
            raise
        return extracted_features(settings, samples, photos, digests, training, "fp32")
    remember_store(settings, store)
    return pooled[:, 0, :]
