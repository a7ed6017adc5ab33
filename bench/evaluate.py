"""Evaluating three models (scratch, frozen, finetune shapes of Lite0) on woof-bench's validation photos.

    .venv/bin/python bench/evaluate.py [--data ../shared/data/woof-bench] [--photos 800]

Rows: the evaluation before this bench (each model decodes the photos again and runs in eager PyTorch with
autograd on), `evaluate_models`' PyTorch path (inference mode, channels_last, photos decoded once for all
models) and its fast path (each model exported and run in OpenVINO / ONNX Runtime, export time included).
Prints a table and writes bench/evaluate.json.
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "woof-bench"
STRATEGIES = ("scratch", "frozen", "finetune")


def eager_per_model(models, samples, config, batch_size: int) -> None:
    """The previous evaluation loop: one pass over the photos per model, autograd recording."""
    from torch.utils.data import DataLoader

    from transferlab.data.datasets import PhotoDataset

    for model in models.values():
        model.eval()
        for images, _ in DataLoader(PhotoDataset(samples, config), batch_size=batch_size):
            torch.softmax(model(images), dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--photos", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from transferlab.data.resolve import open_data
    from transferlab.evaluate.evaluation import evaluate_models
    from transferlab.models.classifier import build_classifier, data_config
    from transferlab.rundir import RunDir

    index = open_data(str(args.data))
    samples = index.val[: args.photos]
    torch.manual_seed(0)
    models = {name: build_classifier("efficientnet_lite0", len(index.classes), name != "scratch")[0] for name in STRATEGIES}
    config = data_config(models["frozen"].backbone, None)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        eager_per_model(models, samples, config, args.batch_size)
        rows.append(("eager, one pass per model (before)", time.perf_counter() - started))
        for label, runtime in (("PyTorch inference mode, photos decoded once", "torch"), ("fast runtime (auto), export included", "auto")):
            started = time.perf_counter()
            evaluate_models(
                RunDir(Path(scratch) / runtime), models, samples, index.readable_names, None, args.batch_size,
                runtime=runtime, export_dir=Path(scratch) / "runtimes",
            )
            rows.append((label, time.perf_counter() - started))
    images = len(samples) * len(models)
    baseline = rows[0][1]
    print(f"{len(samples)} photos x {len(models)} models, {torch.get_num_threads()} threads")
    print(f"{'evaluation':48} {'seconds':>8} {'img/s':>7} {'speed-up':>8}")
    for label, seconds in rows:
        print(f"{label:48} {seconds:8.1f} {images / seconds:7.1f} {baseline / seconds:7.2f}x")
    result = {
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
        "photos": len(samples),
        "models": len(models),
        "rows": [{"evaluation": label, "seconds": round(seconds, 2), "img_per_s": round(images / seconds, 1)} for label, seconds in rows],
    }
    (REPO / "bench" / "evaluate.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
