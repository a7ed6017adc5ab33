"""Data sources: where the photos are, their labels and the train/val split."""

import csv
import difflib
import logging
import os
import random
from operator import attrgetter
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from .formats import is_image_file, is_unsupported_image_file
from .names import readable_name, wordnet_id

log = logging.getLogger(__name__)


class DataSourceError(ValueError):
    """A data source that cannot be used; the message names the path and what is wrong."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(frozen=True)
class Skipped:
    """A file left out of the data, and why (written to the run directory's skipped.csv)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class DatasetIndex:
    """Classes (sorted folder names) and the labelled photos of each split; `skipped` lists files left out."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    skipped: tuple[Skipped, ...] = field(default=())
    has_split: bool = True
    """False when the source had no split of its own and `val` was drawn by `stratified_split`."""

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


def _unsupported_in(folder: Path) -> list[Skipped]:
    return [
        Skipped(path, f"unsupported format ({path.suffix.lower()}); convert it to JPEG or PNG")
        for path in sorted(folder.rglob("*"))
        if is_unsupported_image_file(path)
    ]


def _scan_split(split_dir: Path, classes: list[str]) -> tuple[list[Sample], list[Skipped]]:
    samples, skipped = [], []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if class_dir.is_dir():
            samples.extend(Sample(path, label) for path in _images_in(class_dir))
            skipped.extend(_unsupported_in(class_dir))
    return samples, skipped


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

    has_split = (root / "train").is_dir() and (root / "val").is_dir()
    if has_split:
        classes = [p.name for p in _class_folders(root / "train")]
        if not classes:
            raise DataSourceError(f"{root / 'train'}: no class sub-folders")
        extra = sorted({p.name for p in _class_folders(root / "val")} - set(classes))
        if extra:
            raise DataSourceError(f"{root / 'val'}: class folder(s) not in train: {', '.join(extra)}")
        train, skipped = _scan_split(root / "train", classes)
        val, skipped_val = _scan_split(root / "val", classes)
        skipped += skipped_val
        _require_every_class(train, classes, root / "train")
        if not val:
            raise DataSourceError(f"{root / 'val'}: no images")
    else:
        classes = [p.name for p in _class_folders(root)]
        if not classes:
            raise DataSourceError(
                f"{root}: no class sub-folders; expected {root}/<class>/<photo> or {root}/train/<class>/<photo>"
            )
        samples, skipped = _scan_split(root, classes)
        _require_every_class(samples, classes, root)
        train, val = stratified_split(samples, val_fraction, seed)

    if len(classes) < 2:
        raise DataSourceError(f"{root}: a classifier needs at least 2 classes, found {len(classes)}")
    return DatasetIndex(
        root=root, classes=tuple(classes), train=tuple(train), val=tuple(val), skipped=tuple(skipped), has_split=has_split
    )


CSV_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "val"}


def csv_source(manifest: str | Path, val_fraction: float = 0.2, seed: int = 0) -> DatasetIndex:
    """Index a CSV manifest `path,label[,split]` (header optional); paths are relative to the CSV's folder.

    Without a split column the photos are split per class by `val_fraction`. Missing files are skipped.
    """
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise DataSourceError(f"{manifest}: no such CSV file")
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1) if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as error:
        line = manifest.read_bytes()[: error.start].count(b"\n") + 1
        raise DataSourceError(f"{manifest}, line {line}: not UTF-8 text (byte {error.object[error.start]:#04x}); save the CSV as UTF-8") from None
    if rows and [cell.strip().lower() for cell in rows[0][1][:2]] == ["path", "label"]:
        has_split = len(rows[0][1]) > 2
        rows = rows[1:]
    else:
        has_split = bool(rows) and len(rows[0][1]) > 2
    if not rows:
        raise DataSourceError(f"{manifest}: no rows; expected lines of path,label[,split]")

    entries, skipped = [], []
    first_row: dict[Path, tuple[int, str, str | None]] = {}
    repeats: list[tuple[int, int]] = []
    for number, row in rows:
        if len(row) < 2 or len(row) > 3 or (len(row) == 3) != has_split:
            raise DataSourceError(f"{manifest}, line {number}: expected path,label{',split' if has_split else ''}, got {row}")
        path = Path(row[0].strip())
        path = path if path.is_absolute() else manifest.parent / path
        label = row[1].strip()
        split = CSV_SPLITS.get(row[2].strip().lower()) if has_split else None
        if has_split and split is None:
            raise DataSourceError(f"{manifest}, line {number}: split {row[2]!r} is not one of train, val, test")
        if not label:
            raise DataSourceError(f"{manifest}, line {number}: empty label")
        key = Path(os.path.normpath(path.absolute()))
        if key in first_row:
            first, first_label, first_split = first_row[key]
            if (first_label, first_split) != (label, split):
                raise DataSourceError(
                    f"{manifest}, line {number}: {row[0].strip()} is listed again (first at line {first}) with "
                    f"{'another label' if first_label != label else 'another split'} "
                    f"({first_label}{'/' + str(first_split) if has_split else ''} vs {label}{'/' + str(split) if has_split else ''}); "
                    "keep one row per photo"
                )
            repeats.append((number, first))
            continue
        first_row[key] = (number, label, split)
        if not path.is_file():
            skipped.append(Skipped(path, f"listed in {manifest.name} line {number} but not found"))
            continue
        entries.append((path, label, split))
    if repeats:
        log.warning(
            "%s: %d row(s) repeat a photo listed earlier (line %d repeats line %d%s); each photo is used once",
            manifest, len(repeats), *repeats[0], ", ..." if len(repeats) > 1 else "",
        )

    classes = sorted({label for _, label, _ in entries} | {row[1].strip() for _, row in rows})
    label_of = {name: i for i, name in enumerate(classes)}
    if has_split:
        train = [Sample(path, label_of[label]) for path, label, split in entries if split == "train"]
        val = [Sample(path, label_of[label]) for path, label, split in entries if split == "val"]
        if not val:
            raise DataSourceError(f"{manifest}: no rows with split val (or test)")
    else:
        samples = [Sample(path, label_of[label]) for path, label, _ in entries]
        _require_every_class(samples, classes, manifest)
        train, val = stratified_split(samples, val_fraction, seed)
    _require_every_class(train, classes, manifest)
    if len(classes) < 2:
        raise DataSourceError(f"{manifest}: a classifier needs at least 2 classes, found {len(classes)}")
    by_path = attrgetter("path")
    return DatasetIndex(
        manifest, tuple(classes), tuple(sorted(train, key=by_path)), tuple(sorted(val, key=by_path)), tuple(skipped), has_split
    )


def _breed_keys(folder: str) -> set[str]:
    """Ways a user may name a class: folder name, readable name, WordNet id; case, '_' and ' ' ignored."""
    keys = {folder, readable_name(folder)}
    if wordnet_id(folder):
        keys.add(wordnet_id(folder))
    return {key.lower().replace("_", " ").replace("-", " ") for key in keys}


def select_classes(index: DatasetIndex, breeds: str | int | None) -> DatasetIndex:
    """The first N classes (`breeds` = N), or the named ones ("beagle,Samoyed"), relabelled 0..K-1."""
    if breeds is None or breeds == "":
        return index
    if isinstance(breeds, int) or str(breeds).strip().isdigit():
        count = int(breeds)
        if not 2 <= count <= len(index.classes):
            raise DataSourceError(f"--breeds {count}: choose between 2 and {len(index.classes)} (the classes of {index.root})")
        chosen = list(index.classes[:count])
    else:
        chosen = []
        for wanted in (part.strip() for part in str(breeds).split(",") if part.strip()):
            key = wanted.lower().replace("_", " ").replace("-", " ")
            matches = [folder for folder in index.classes if key in _breed_keys(folder)]
            if not matches:
                close = difflib.get_close_matches(wanted, index.readable_names, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else f"; `tlab data check {index.root}` lists them"
                raise DataSourceError(f"--breeds: no class {wanted!r} in {index.root}{hint}")
            chosen.extend(m for m in matches if m not in chosen)
        if len(chosen) < 2:
            raise DataSourceError(f"--breeds: a classifier needs at least 2 classes, got {', '.join(chosen)}")
        chosen.sort(key=index.classes.index)
    new_label = {index.classes.index(folder): i for i, folder in enumerate(chosen)}

    def keep(samples: tuple[Sample, ...]) -> tuple[Sample, ...]:
        return tuple(Sample(s.path, new_label[s.label]) for s in samples if s.label in new_label)

    return replace(index, classes=tuple(chosen), train=keep(index.train), val=keep(index.val))
