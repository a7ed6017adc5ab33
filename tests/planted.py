"""A copy of a photo set with known problems planted in it, for the audit's tests and benchmark."""

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps


@dataclass
class Planted:
    root: Path
    moved: list[Path] = field(default_factory=list)
    """Photos moved into another class's folder (their label is now wrong)."""
    copies: dict[Path, Path] = field(default_factory=dict)
    """copy -> original: 5 exact copies placed in the other split, then 5 near copies."""
    off_topic: list[Path] = field(default_factory=list)


NEAR_COPIES = (
    ("jpeg quality 40", lambda image: image),
    ("resized to 0.8", lambda image: image.resize((int(image.width * 0.8), int(image.height * 0.8)), Image.BICUBIC)),
    ("5% crop", lambda image: image.crop((int(image.width * 0.05), int(image.height * 0.05), image.width, image.height))),
    ("brightness +10%", lambda image: ImageEnhance.Brightness(image).enhance(1.1)),
    ("mirrored", ImageOps.mirror),
)


def plant(source: Path, strangers: Path, root: Path, seed: int = 0) -> Planted:
    """Copy `source` (train/ and val/ class folders) to `root`, then: move 8 training photos to another class, copy 5
    training photos into val/ byte for byte, add 5 near copies (one per kind in NEAR_COPIES) beside their
    originals, and drop 3 photos of `strangers` into classes of `source`."""
    shutil.copytree(source, root)
    rng = random.Random(seed)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    photos = sorted((root / "train").glob("*/*"))
    chosen = rng.sample(photos, 8 + 5 + 5)
    planted = Planted(root)
    for photo in chosen[:8]:
        target = root / "train" / rng.choice([c for c in classes if c != photo.parent.name]) / photo.name
        photo.rename(target)
        planted.moved.append(target)
    for photo in chosen[8:13]:
        copy = root / "val" / photo.parent.name / f"copy-{photo.name}"
        shutil.copyfile(photo, copy)
        planted.copies[copy] = photo
    for photo, (name, change) in zip(chosen[13:], NEAR_COPIES):
        copy = photo.with_name(f"near-{name.replace(' ', '-').replace('%', 'pc')}-{photo.stem}.jpg")
        with Image.open(photo) as image:
            change(image.convert("RGB")).save(copy, quality=40 if "jpeg" in name else 90)
        planted.copies[copy] = photo
    for i, photo in enumerate(rng.sample(sorted(strangers.glob("train/*/*")), 3)):
        target = root / "train" / classes[i] / f"stranger-{photo.name}"
        shutil.copyfile(photo, target)
        planted.off_topic.append(target)
    return planted
