"""Checks over a whole dataset: photos that do not decode, and identical files shared by train and val."""

import logging
from collections import defaultdict
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from .decode import check_image
from .photo_cache import PhotoCache
from .sources import DataSourceError, DatasetIndex, Sample, Skipped

log = logging.getLogger(__name__)


def find_unreadable(paths: list[Path], photos: PhotoCache | None = None) -> list[Skipped]:
    """Every path that does not decode completely, with the reason: remembered by content hash across runs
    (`photos`, default the default cache's), decoded in threads otherwise (Pillow decodes outside the GIL)."""
    reasons = (photos or PhotoCache()).verdicts(paths, check_image)
    return [Skipped(path, reason) for path, reason in zip(paths, reasons) if reason is not None]


SKIPPED_SHOWN = 5
"""Skipped files named one by one in the log; the rest are counted (a run's skipped.csv lists every one)."""


def warn_skipped(skipped: Sequence[Skipped], listed_in: str = "the run directory's skipped.csv") -> None:
    """A warning per skipped file for the first few, then one line counting the rest and saying where all are."""
    for item in skipped[:SKIPPED_SHOWN]:
        log.warning("skipped %s: %s", item.path, item.reason)
    if len(skipped) > SKIPPED_SHOWN:
        log.warning("skipped %d more file(s); %s lists every one", len(skipped) - SKIPPED_SHOWN, listed_in)


def readable(samples: Sequence[Sample], photos: PhotoCache | None = None) -> list[Sample]:
    """`samples` without those that do not decode, reported by `warn_skipped`."""
    unreadable = find_unreadable([sample.path for sample in samples], photos)
    warn_skipped(unreadable, listed_in="`tlab data check`, with the rest of its findings,")
    bad = {skipped.path for skipped in unreadable}
    return [sample for sample in samples if sample.path not in bad]


def drop_unreadable(index: DatasetIndex, photos: PhotoCache | None = None) -> DatasetIndex:
    """`index` without the photos that do not decode, logged (`warn_skipped`) and added to `skipped`.

    Raises `DataSourceError` when a class is left without training photos.
    """
    unreadable = find_unreadable([sample.path for sample in index.train + index.val], photos)
    warn_skipped(index.skipped + tuple(unreadable))
    bad = {skipped.path for skipped in unreadable}

    def keep(samples: tuple[Sample, ...]) -> tuple[Sample, ...]:
        return tuple(sample for sample in samples if sample.path not in bad)

    cleaned = replace(index, train=keep(index.train), val=keep(index.val), skipped=index.skipped + tuple(unreadable))
    empty = [name for name, count in cleaned.counts("train").items() if count == 0]
    if empty:
        raise DataSourceError(f"{index.root}: no readable training photo left in class(es) {', '.join(empty)}")
    if not cleaned.val:
        raise DataSourceError(f"{index.root}: no readable validation photo left")
    warn_thin_classes(cleaned)
    return cleaned


FEW_TRAINING_PHOTOS = 5
"""A class with fewer training photos than this is warned about: a model learns little from so few (`tlab curve`
measures how accuracy grows with photos per class)."""


def thinness(train: int, val: int) -> str | None:
    """What makes a class of `train` training and `val` validation photos too thin to learn or to measure; None
    when nothing does."""
    problems = [f"only {train} training photo(s)"] if train < FEW_TRAINING_PHOTOS else []
    if val == 0:
        problems.append("no validation photo, so its accuracy goes unmeasured")
    return " and ".join(problems) or None


def thin_classes(index: DatasetIndex, unreadable: AbstractSet[Path] = frozenset()) -> dict[str, str]:
    """Class folder -> what makes it too thin to learn or to judge (`thinness`), counting the photos not in
    `unreadable`, as training does."""
    readable = replace(index, train=tuple(s for s in index.train if s.path not in unreadable), val=tuple(s for s in index.val if s.path not in unreadable))
    train, val = readable.counts("train"), readable.counts("val")
    return {folder: why for folder in index.classes if (why := thinness(train[folder], val[folder]))}


def warn_thin_classes(index: DatasetIndex) -> None:
    """A warning per class with fewer than `FEW_TRAINING_PHOTOS` training photos or no validation photo."""
    for folder, why in thin_classes(index).items():
        log.warning("%s: class %s has %s; add photos to it or leave it out", index.root, folder, why)


@dataclass(frozen=True)
class Duplicate:
    """Byte-identical photos found in both the training and the validation split."""

    train: tuple[Path, ...]
    val: tuple[Path, ...]


def train_val_duplicates(index: DatasetIndex, photos: PhotoCache | None = None) -> list[Duplicate]:
    """Groups of identical files (content hash) present in both splits: a leak that inflates validation scores."""
    samples = [(sample.path, "train") for sample in index.train] + [(sample.path, "val") for sample in index.val]
    hashes = (photos or PhotoCache()).hashes([path for path, _ in samples])
    groups: dict[str, dict[str, list[Path]]] = defaultdict(lambda: {"train": [], "val": []})
    for (path, split), digest in zip(samples, hashes):
        groups[digest][split].append(path)
    return [
        Duplicate(tuple(group["train"]), tuple(group["val"]))
        for group in groups.values()
        if group["train"] and group["val"]
    ]
