"""Augmentation speed: images/s of each preset on 224-px photos on one core, against Lite0's forward pass.

Goal (issue #3): augmentation at least 5x faster than the backbone's forward pass on the same core,
so it is never the bottleneck. With `--keras-python` (a venv with tensorflow-cpu 2.21 and keras
3.15, as ../shared/bench/keras_reference.py says), the same photos also go through the notebook's
Keras layers in the same run (bench/keras_augment.py). Prints a table and writes JSON.

    .venv/bin/python bench/augment.py [--data ../shared/data/woof-bench] [--images 256]
        [--keras-python /tmp/kerasenv/bin/python] [--out bench/augment.json]
"""

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
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


def keras_images_per_second(python: str, photos: list[torch.Tensor]) -> float:
    """Run bench/keras_augment.py on the same photos (NHWC uint8) in the Keras venv, one thread."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photos.npy"
        np.save(path, torch.stack(photos).permute(0, 2, 3, 1).numpy())
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        script = Path(__file__).with_name("keras_augment.py")
        output = subprocess.run([python, str(script), str(path)], capture_output=True, text=True, env=env, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/woof-bench")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--keras-python", help="python of a venv with tensorflow-cpu and keras")
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

    if args.keras_python:
        results["keras seed-keras (batch 64)"] = keras_images_per_second(args.keras_python, photos)

    forward = results["lite0 forward (batch 32)"]
    print(f"{'pipeline (1 thread, 224 px)':<30} {'img/s':>8} {'x forward':>10}")
    for name, rate in results.items():
        print(f"{name:<30} {rate:8.1f} {rate / forward:10.1f}")
    if args.keras_python:
        print(f"seed-keras vs the notebook's Keras layers: {results['seed-keras'] / results['keras seed-keras (batch 64)']:.1f}x")
    Path(args.out).write_text(json.dumps(
        {"images": len(photos), "threads": 1, "platform": platform.platform(), "images_per_s": results,
         "ratio_to_forward": {k: v / forward for k, v in results.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
