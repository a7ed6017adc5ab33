"""Speed of the frozen and finetune strategies on woof-bench, side by side with the notebook's Keras pipeline.

    .venv/bin/python bench/speed.py [--data ../shared/data/woof-bench] [--keras-python /tmp/kerasenv/bin/python]

Each stage runs in its own process (its peak RSS is its own) one after the other, on this machine's
threads. Stages: backbone runtimes (img/s and error against PyTorch), augmentation, photos -> features,
frozen 10 epochs (photos -> trained head, cold feature cache), finetune 1 epoch, and the Keras reference
(../shared/bench/keras_reference.py in its own venv): frozen for --keras-epochs epochs, extrapolated to 10,
and finetune for one epoch (or --keras-steps batches). Prints a table and writes bench/speed.json.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "woof-bench"
KERAS_REFERENCE = REPO.parent / "shared" / "bench" / "keras_reference.py"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_runtimes(args) -> dict:
    import torch

    from transferlab.models.classifier import build_classifier
    from transferlab.models.runtime import export_onnx, onnxruntime_runtime, openvino_runtime, relative_error, torch_runtime

    threads = args.threads
    torch.set_num_threads(threads)
    model, _ = build_classifier("efficientnet_lite0", 10, True)
    backbone = model.backbone.eval()
    images = np.random.default_rng(0).standard_normal((32, 3, 224, 224)).astype(np.float32)

    def eager(batch):
        with torch.inference_mode():
            return backbone.forward_features(torch.from_numpy(batch)).mean((2, 3)).numpy()

    onnx_path = export_onnx(backbone, 224, Path(tempfile.mkdtemp()) / "lite0.onnx")
    runners = {"torch eager": eager, "torch channels_last": torch_runtime(backbone).run}
    compiled = torch.compile(backbone.forward_features)
    runners["torch.compile"] = lambda batch: compiled(torch.from_numpy(batch)).mean((2, 3)).detach().numpy()
    runners["onnxruntime"] = onnxruntime_runtime(onnx_path, threads).run
    try:
        runners["openvino (LATENCY)"] = openvino_runtime(onnx_path, threads).run
    except ImportError:
        pass
    reference = eager(images)
    results = {}
    for name, run in runners.items():
        started = time.perf_counter()
        output = run(images)  # warm-up (compiles for torch.compile)
        warmup = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(args.reps):
            run(images)
        seconds = time.perf_counter() - started
        results[name] = {
            "images_per_s": args.reps * len(images) / seconds,
            "relative_error": relative_error(output, reference),
            "warmup_s": warmup,
        }
    return {"runtimes": results}


def stage_augment(args) -> dict:
    import torch

    from transferlab.augment.pipeline import build_augment, seeded_generator
    from transferlab.data.datasets import square_view
    from transferlab.data.decode import load_uint8
    from transferlab.data.sources import folder_source

    torch.set_num_threads(1)
    index = folder_source(args.data)
    images = [square_view(224)(load_uint8(s.path, 224)) for s in index.train[:256]]
    pipeline = build_augment("seed-keras")
    started = time.perf_counter()
    for i, image in enumerate(images):
        pipeline(image, seeded_generator(0, 0, i))
    return {"augment_seed_keras_images_per_s_one_thread": len(images) / (time.perf_counter() - started)}


def stage_features(args) -> dict:
    """Photos on disk -> pooled features (decode, resize, crop, normalise, forward), cold store."""
    from transferlab.data.sources import folder_source
    from transferlab.models.classifier import build_classifier, data_config
    from transferlab.models.runtime import feature_runtime
    from transferlab.train.features import FeatureStore, extract_features

    index = folder_source(args.data)
    model, _ = build_classifier("efficientnet_lite0", 10, True)
    config = data_config(model.backbone)
    results = {}
    for workers in (0, 1, 2):
        runtime = feature_runtime(model.backbone, 224, Path(tempfile.mkdtemp()))
        store = FeatureStore(Path(tempfile.mkdtemp()))
        started = time.perf_counter()
        extract_features(index.val, store, lambda: runtime, config, None, 1, workers)
        results[f"workers={workers}"] = len(index.val) / (time.perf_counter() - started)
    return {"photos_to_features_images_per_s": results, "runtime": runtime.name}


class EpochTimer:
    """Lightning callback: wall time of the training part of each epoch."""

    def __init__(self):
        import lightning as L

        class Timer(L.Callback):
            def __init__(self):
                self.train_seconds = []

            def on_train_epoch_start(self, trainer, module):
                self.started = time.perf_counter()

            def on_train_epoch_end(self, trainer, module):
                self.train_seconds.append(time.perf_counter() - self.started)

        self.callback = Timer()


def stage_frozen(args) -> dict:
    from transferlab.config import TrainConfig
    from transferlab.experiment import train

    os.environ["TLAB_DATA_DIR"] = tempfile.mkdtemp()  # a cold feature cache: photos -> trained head
    out = Path(args.work) / "frozen"
    started = time.perf_counter()
    run = train(TrainConfig(data=str(args.data), out=str(out), strategy="frozen", epochs=10, augment="seed-keras", views=args.views))
    wall = time.perf_counter() - started
    history = run.read_history("frozen")
    return {
        "frozen_10_epochs_wall_s": wall,
        "frozen_epoch_s_after_cache": float(np.median([row["seconds"] for row in history[1:]])),
        "frozen_val_acc_final": history[-1]["val_acc"],
        "frozen_val_acc_best": max(row["val_acc"] for row in history),
        "views": args.views,
    }


def stage_finetune(args, **unfreeze) -> dict:
    """One finetune epoch from the frozen run; `unfreeze` as TrainConfig takes it (default: 20 weight layers)."""
    unfreeze = unfreeze or {"unfreeze_layers": 20}
    from transferlab.config import TrainConfig
    from transferlab.data.sources import folder_source
    from transferlab.experiment import train

    timer = EpochTimer().callback
    out = Path(args.work) / ("finetune" + "".join(f"_{k}{v}" for k, v in unfreeze.items()))
    run = train(
        TrainConfig(data=str(args.data), out=str(out), strategy="finetune", epochs=1, init=str(Path(args.work) / "frozen"), **unfreeze),
        callbacks=[timer],
    )
    n_train = len(folder_source(args.data).train)
    history = run.read_history("finetune")
    return {
        "finetune_train_images_per_s": n_train / timer.train_seconds[0],
        "finetune_epoch_wall_s": history[0]["seconds"],
        "finetune_val_acc": history[0]["val_acc"],
    }


def stage_finetune_last_block(args) -> dict:
    """The default, the notebook's trainable set: its last 20 Keras layers are block7a and top_conv, timm's last block group."""
    return stage_finetune(args, unfreeze_blocks=1)


def keras(args) -> dict:
    results = {}
    for name, extra in (
        ("frozen", ["--strategy", "frozen", "--epochs", str(args.keras_epochs)]),
        ("finetune", ["--strategy", "finetune", "--epochs", "1", *(["--limit-steps", str(args.keras_steps)] if args.keras_steps else [])]),
    ):
        out = Path(args.work) / f"keras_{name}.json"
        command = [args.keras_python, str(KERAS_REFERENCE), "--data", str(args.data), "--out", str(out), "--verbose", "0", *extra]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report = json.loads(out.read_text())
        epochs = report["epochs"]
        results[name] = {
            "epoch_wall_s": [e["wall_s"] for e in epochs],
            "train_images_per_s": epochs[0]["train_images_per_s"],
            "train_images_per_s_excl_first_step": epochs[0]["train_images_per_s_excl_first_step"],
            "peak_rss_mib": report["peak_rss_mib"],
            "val_acc": report["history"]["val_accuracy"][-1],
        }
    frozen = results["frozen"]["epoch_wall_s"]
    steady = frozen[1:] or frozen
    results["frozen"]["ten_epochs_estimated_s"] = frozen[0] + 9 * float(np.mean(steady))
    return results


STAGES = {
    "runtimes": stage_runtimes,
    "augment": stage_augment,
    "features": stage_features,
    "frozen": stage_frozen,
    "finetune": stage_finetune,
    "finetune_last_block": stage_finetune_last_block,
}


def run_stage(name: str, args) -> dict:
    """One stage in a child process; returns its JSON with its peak RSS."""
    out = Path(args.work) / f"{name}.json"
    command = [sys.executable, __file__, "--stage", name, "--data", str(args.data), "--work", args.work, "--out", str(out),
               "--views", str(args.views), "--threads", str(args.threads), "--reps", str(args.reps)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["stage_wall_s"] = time.perf_counter() - started
    return result


def table(results: dict) -> str:
    lines = ["| measure | transferlab | Keras reference | ratio |", "| --- | ---: | ---: | ---: |"]
    frozen_ours = results["frozen"]["frozen_10_epochs_wall_s"]
    if "keras" in results:
        frozen_keras = results["keras"]["frozen"]["ten_epochs_estimated_s"]
        ft_ours = results["finetune"]["finetune_train_images_per_s"]
        ft_keras = results["keras"]["finetune"]["train_images_per_s_excl_first_step"]
        lines.append(f"| frozen, 10 epochs, photos -> trained head (s) | {frozen_ours:.0f} | {frozen_keras:.0f} (est.) | {frozen_keras / frozen_ours:.1f}x |")
        ft_block = results["finetune_last_block"]["finetune_train_images_per_s"]
        lines.append(f"| finetune, the notebook's trainable set (default: last block + head conv), train img/s | {ft_block:.1f} | {ft_keras:.1f} | {ft_block / ft_keras:.2f}x |")
        lines.append(f"| finetune, last 20 weight layers (--unfreeze-layers 20), train img/s | {ft_ours:.1f} | {ft_keras:.1f} | {ft_ours / ft_keras:.2f}x |")
        lines.append(
            f"| peak RSS, frozen / finetune (MiB) | {results['frozen']['peak_rss_mib']:.0f} / {results['finetune']['peak_rss_mib']:.0f} "
            f"| {results['keras']['frozen']['peak_rss_mib']:.0f} / {results['keras']['finetune']['peak_rss_mib']:.0f} | |"
        )
    else:
        lines.append(f"| frozen, 10 epochs, photos -> trained head (s) | {frozen_ours:.0f} | | |")
    lines.append(f"| frozen epoch once cached (s) | {results['frozen']['frozen_epoch_s_after_cache']:.2f} | | |")
    lines.append(f"| frozen validation accuracy, final / best | {results['frozen']['frozen_val_acc_final']:.3f} / {results['frozen']['frozen_val_acc_best']:.3f} | | |")
    for name, value in results["features"]["photos_to_features_images_per_s"].items():
        lines.append(f"| photos -> features img/s ({results['features']['runtime']}, {name}) | {value:.0f} | | |")
    for name, value in results["runtimes"]["runtimes"].items():
        lines.append(f"| backbone img/s, {name} (rel. error {value['relative_error']:.0e}) | {value['images_per_s']:.1f} | | |")
    lines.append(f"| augmentation seed-keras img/s (one thread) | {results['augment']['augment_seed_keras_images_per_s_one_thread']:.0f} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--keras-python", default="/tmp/kerasenv/bin/python", help="python of a venv with tensorflow-cpu and keras ('' skips)")
    parser.add_argument("--keras-epochs", type=int, default=2, help="Keras frozen epochs actually run (10 are extrapolated)")
    parser.add_argument("--keras-steps", type=int, default=0, help="cap the Keras finetune epoch at this many batches (0: the whole epoch)")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--work", default=None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "speed.json")
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work = args.work or tempfile.mkdtemp(prefix="tlab-speed-")
    if args.stage:
        result = STAGES[args.stage](args)
        result["peak_rss_mib"] = peak_rss_mib()
        args.out.write_text(json.dumps(result, indent=2))
        return

    import lightning
    import timm
    import torch

    results = {
        "machine": {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version()},
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "lightning": lightning.__version__},
        "data": str(args.data),
    }
    for name in ("runtimes", "augment", "features", "frozen", "finetune", "finetune_last_block"):
        print(f"stage {name}...", file=sys.stderr, flush=True)
        results[name] = run_stage(name, args)
    if args.keras_python and Path(args.keras_python).exists():
        print("stage keras...", file=sys.stderr, flush=True)
        results["keras"] = keras(args)
    results["table"] = table(results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])


if __name__ == "__main__":
    main()
