"""Each photo's pooled feature from the pretrained backbone (its clean view), from the frozen strategy's cache."""

import functools
from dataclasses import dataclass

import numpy as np

from ..config import RunSettings
from ..data.decoded import DecodedStore
from ..data.photo_cache import PhotoCache
from ..data.sources import DatasetIndex, Sample
from ..files import runtimes_dir
from ..models.classifier import build_classifier, data_config
from ..models.runtime import feature_runtime
from ..train.distributed import threads_per_process, training_device
from ..train.features import extract_features
from ..train.fit import PrecisionUnavailable, checked_precision, feature_store, run_precision


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


def photo_features(settings: RunSettings, index: DatasetIndex, precision: str | None = None) -> PhotoFeatures:
    """Clean-view features of every photo of `index`, read from (or added to) the feature cache a frozen run with the
    same settings uses, in its inference precision (fp32 where that cannot run)."""
    precision = precision or run_precision(settings)
    model, _ = build_classifier(settings.backbone, len(index.classes), pretrained=True, weights_file=settings.weights)
    config = data_config(model.backbone, settings.image_size)
    store = feature_store(settings, model, config, precision)
    runtime = functools.cache(lambda: checked_precision(feature_runtime(
        model.backbone, config.image_size, runtimes_dir(settings.data_dir), settings.runtime, threads_per_process(settings.devices),
        training_device(settings.accelerator), precision,
    ), precision))
    samples = list(index.train) + list(index.val)
    photos = PhotoCache.in_cache(settings.data_dir)
    try:
        pooled = extract_features(samples, store, runtime, config, None, 1, 0, photos, DecodedStore.for_config(config, settings.data_dir))
    except PrecisionUnavailable:
        if precision == "fp32":
            raise
        return photo_features(settings, index, "fp32")
    features = pooled[:, 0, :].astype(np.float32)
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return PhotoFeatures(
        samples=samples, splits=["train"] * len(index.train) + ["val"] * len(index.val),
        digests=photos.hashes([s.path for s in samples]), features=features,
    )
