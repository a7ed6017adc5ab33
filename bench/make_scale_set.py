"""A Stanford-Dogs-size photo set for timing and legibility: 120 classes, 12,000 training and 8,580 validation photos.

    .venv/bin/python bench/make_scale_set.py --out /tmp/scale-set [--sources ../shared/data]

Every photo is a distinct file: a shared photo (woof-bench, woof-mini, clothing-mini) cropped (80-100 % of its
area, at a seeded place), scaled, and re-encoded at a seeded JPEG quality, so no two share a content hash. Photo i
goes to class i mod 120; classes are named like Stanford Dogs' folders (WordNet id and breed name, from timm's
ImageNet labels). Accuracy on it means nothing; time and legibility at this size are the point.
"""

import argparse
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

TRAIN_PER_CLASS = 100
VAL_PHOTOS = 8_580
CLASSES = 120
DOG_IDS = ("n02115641", "n02115913", "n02116738")


def class_folders() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    ids = [i for i in info.label_names() if "n02085620" <= i <= "n02113978" or i in DOG_IDS][:CLASSES]
    return [f"{i}-{info.label_name_to_description(i).split(',')[0].replace(' ', '_')}" for i in ids]


def make(job: tuple[int, str, str]) -> None:
    index, source, target = job
    rng = random.Random(index)
    with Image.open(source) as image:
        image = image.convert("RGB")
        width, height = image.size
        share = rng.uniform(0.8, 1.0) ** 0.5
        w, h = max(32, int(width * share)), max(32, int(height * share))
        left, top = rng.randint(0, width - w), rng.randint(0, height - h)
        crop = image.crop((left, top, left + w, top + h))
        scale = rng.uniform(0.8, 1.0)
        crop = crop.resize((max(32, int(w * scale)), max(32, int(h * scale))), Image.Resampling.BILINEAR)
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        crop.save(target, format="JPEG", quality=rng.randint(70, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sources", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    sources = sorted(p for name in ("woof-bench", "woof-mini", "clothing-mini") for p in (args.sources / name).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    folders = class_folders()
    total = TRAIN_PER_CLASS * CLASSES + VAL_PHOTOS
    jobs = []
    for i in range(total):
        label = i % CLASSES
        split = "train" if i < TRAIN_PER_CLASS * CLASSES else "val"
        jobs.append((i, str(sources[i % len(sources)]), str(args.out / split / folders[label] / f"{i:05d}.jpg")))
    with ProcessPoolExecutor() as pool:
        list(pool.map(make, jobs, chunksize=64))
    print(f"{total} photos ({TRAIN_PER_CLASS * CLASSES} train, {VAL_PHOTOS} val) in {CLASSES} classes under {args.out}")


if __name__ == "__main__":
    main()
