"""Build the clothing sample shipped in the package (src/transferlab/data/clothing_sample/) from clothing-mini.

    .venv/bin/python scripts/make_clothing_sample.py [--source ../shared/data/clothing-mini]

The first TRAIN and VAL photos (by file name) of each class, their long side scaled down to SIDE pixels, saved as
JPEG at QUALITY, with the source's CC0 licence and a note on where they come from. Deterministic: the same source
gives the same files.
"""

import argparse
import shutil
from pathlib import Path

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "src" / "transferlab" / "data" / "clothing_sample"
TRAIN, VAL, SIDE, QUALITY = 24, 8, 256, 64

SOURCE_NOTE = """# The clothing sample

{photos} photos of clothes in 10 classes ({train} training and {val} validation photos per class), from the
clothing dataset of Alexey Grigorev, https://github.com/alexeygrigorev/clothing-dataset-small, released under
CC0 1.0 (public domain; the LICENSE file beside this one). Their long side was scaled down to {side} pixels
(JPEG quality {quality}) by scripts/make_clothing_sample.py. `tlab compare sample` trains on them; `make demo`
does by default.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "clothing-mini")
    args = parser.parse_args()
    if TARGET.exists():
        shutil.rmtree(TARGET)
    count = 0
    for split, keep in (("train", TRAIN), ("val", VAL)):
        for class_dir in sorted((args.source / split).iterdir()):
            for photo in sorted(class_dir.iterdir())[:keep]:
                out = TARGET / split / class_dir.name / f"{photo.stem}.jpg"
                out.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(photo) as image:
                    image = ImageOps.exif_transpose(image).convert("RGB")
                    image.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
                    image.save(out, format="JPEG", quality=QUALITY, optimize=True)
                count += 1
    shutil.copy(args.source / "LICENSE", TARGET / "LICENSE")
    (TARGET / "SOURCE.md").write_text(SOURCE_NOTE.format(photos=count, train=TRAIN, val=VAL, side=SIDE, quality=QUALITY))
    files = [p.stat() for p in TARGET.rglob("*") if p.is_file()]
    size, on_disk = sum(f.st_size for f in files), sum(f.st_blocks * 512 for f in files)
    print(f"{count} photos, {size / 2**20:.2f} MiB ({on_disk / 2**20:.2f} MiB on disk) in {TARGET}")


if __name__ == "__main__":
    main()
