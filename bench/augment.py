"""Augmentation speed: images/s of each preset on 224-px photos on one core, against Lite0's forward pass.

Goal (issue #3): augmentation at least 5x faster than the backbone's forward pass on the same core,
so it is never the bottleneck. Prints a table and writes JSON.

    .venv/bin/python bench/augment.py [--data ../shared/data/woof-bench] [--images 200] [--out bench/augment.json]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from transferlab.augment.pipeline import build_augment, seeded_generator
from transferlab.data.datasets import PhotoDataset
from transferlab.data.sources import folder_source
from transferlab.models.classifier import build_classifier, data_config


def images_per_second(function, items: list, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for i, item in enumerate(items):
            function(item, i)
    return repeat * len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/woof-bench")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--out", default="bench/augment.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model, _ = build_classifier("efficientnet_lite0", 10, pretrained=True)
    model.eval()
    index = folder_source(args.data)
    dataset = PhotoDataset(index.train[: args.images], data_config(model.backbone))
    photos = [dataset.load_uint8(i) for i in range(len(dataset))]

    results = {}
    for preset in ("seed-keras", "seed-all"):
        pipeline = build_augment(preset)
        results[preset] = images_per_second(lambda image, i: pipeline(image, seeded_generator(0, 0, i)), photos)
    batch = torch.stack(photos[:32]).float() / 127.5 - 1
    with torch.no_grad():
        model(batch[:4])
        start = time.perf_counter()
        model(batch)
        results["lite0 forward (batch 32)"] = len(batch) / (time.perf_counter() - start)

    forward = results["lite0 forward (batch 32)"]
    print(f"{'pipeline (1 thread, 224 px)':<28} {'img/s':>8} {'x forward':>10}")
    for name, rate in results.items():
        print(f"{name:<28} {rate:8.1f} {rate / forward:10.1f}")
    Path(args.out).write_text(json.dumps(
        {"images": len(photos), "threads": 1, "platform": platform.platform(), "images_per_s": results,
         "ratio_to_forward": {k: v / forward for k, v in results.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
