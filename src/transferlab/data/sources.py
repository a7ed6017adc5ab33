"""Data sources: where the photos are, their labels and the train/val split."""

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .decode import is_image_file
from .names import readable_name


class DataSourceError(ValueError):
    """A data source that cannot be used; the message names the path and what is wrong."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(frozen=True)
class DatasetIndex:
    """Classes (sorted folder names) and the labelled photos of each split."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]

    @property
    def readable_names(self) -> tuple[str, ...]:
        return tuple(readable_name(name) for name in self.classes)

    def counts(self, split: str) -> dict[str, int]:
        """Number of photos per class folder in `split` ('train' or 'val')."""
        counts = dict.fromkeys(self.classes, 0)
        for sample in getattr(self, split):
            counts[self.classes[sample.label]] += 1
        return counts


def _class_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if is_image_file(p) and not p.name.startswith("."))


def _scan_split(split_dir: Path, classes: list[str]) -> list[Sample]:
    samples = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if class_dir.is_dir():
            samples.extend(Sample(path, label) for path in _images_in(class_dir))
    return samples


def _require_every_class(samples: list[Sample], classes: list[str], where: Path) -> None:
    present = {sample.label for sample in samples}
    empty = [classes[label] for label in range(len(classes)) if label not in present]
    if empty:
        raise DataSourceError(f"{where}: class folder(s) with no images: {', '.join(empty)}")


def stratified_split(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split each class by `val_fraction` with a seeded shuffle; every class keeps at least one training photo."""
    if not 0.0 < val_fraction < 1.0:
        raise DataSourceError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    by_label: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_label[sample.label].append(sample)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda s: s.path)
        rng.shuffle(group)
        n_val = min(round(len(group) * val_fraction), len(group) - 1)
        val.extend(group[:n_val])
        train.extend(group[n_val:])
    return sorted(train, key=lambda s: s.path), sorted(val, key=lambda s: s.path)


def folder_source(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> DatasetIndex:
    """Index `root/train/<class>/*` + `root/val/<class>/*`, or `root/<class>/*` split by `val_fraction`."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataSourceError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataSourceError(f"{root}: not a folder (expected a folder of class sub-folders)")

    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = [p.name for p in _class_folders(root / "train")]
        if not classes:
            raise DataSourceError(f"{root / 'train'}: no class sub-folders")
        extra = sorted({p.name for p in _class_folders(root / "val")} - set(classes))
        if extra:
            raise DataSourceError(f"{root / 'val'}: class folder(s) not in train: {', '.join(extra)}")
        train = _scan_split(root / "train", classes)
        val = _scan_split(root / "val", classes)
        _require_every_class(train, classes, root / "train")
        if not val:
            raise DataSourceError(f"{root / 'val'}: no images")
    else:
        classes = [p.name for p in _class_folders(root)]
        if not classes:
            raise DataSourceError(
                f"{root}: no class sub-folders; expected {root}/<class>/<photo> or {root}/train/<class>/<photo>"
            )
        samples = _scan_split(root, classes)
        _require_every_class(samples, classes, root)
        train, val = stratified_split(samples, val_fraction, seed)

    if len(classes) < 2:
        raise DataSourceError(f"{root}: a classifier needs at least 2 classes, found {len(classes)}")
    return DatasetIndex(root=root, classes=tuple(classes), train=tuple(train), val=tuple(val))
