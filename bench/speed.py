"""Speed of the frozen and finetune strategies on woof-bench, in fp32 and in the `auto` precisions, side by side
with the notebook's Keras pipeline, on whichever CPU this machine has (named in the table and the JSON).

    .venv/bin/python bench/speed.py [--data ../shared/data/woof-bench] [--keras-python /tmp/kerasenv/bin/python]
        [--precisions fp32 auto] [--twenty-layers]

Each stage runs in its own process (its peak RSS is its own) one after the other, on this machine's
threads. Stages: backbone runtimes (img/s and agreement with PyTorch fp32, OpenVINO in fp32/bf16/int8),
augmentation, photos -> features; then per precision (fp32: `--inference-precision fp32 --precision 32`;
auto: the defaults, reduced where the CPU has it and the accuracy gate passes): frozen 10 epochs (photos ->
trained head, cold caches) and two finetune epochs of the notebook's trainable set (cold decoded-photo cache: the
first epoch decodes every photo; each timed over its training batches, validation excluded, as Keras's); and the Keras reference (../shared/bench/keras_reference.py in its own venv):
frozen for --keras-epochs epochs, extrapolated to 10, and finetune for one epoch (or --keras-steps batches).
Prints a table and writes bench/speed.json.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu, describe, scratch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "woof-bench"
KERAS_REFERENCE = REPO.parent / "shared" / "bench" / "keras_reference.py"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_runtimes(args) -> dict:
    import torch

    from transferlab.data.datasets import PhotoDataset
    from transferlab.data.sources import folder_source
    from transferlab.models.classifier import build_classifier, data_config
    from transferlab.models.runtime import export_onnx, min_cosine, onnxruntime_runtime, openvino_runtime, relative_error, torch_runtime

    threads = args.threads
    torch.set_num_threads(threads)
    model, _ = build_classifier("efficientnet_lite0", 10, True)
    backbone = model.backbone.eval()
    index = folder_source(args.data)
    photos = PhotoDataset(index.val[::25][:32] + index.train[::10][:192], data_config(backbone))
    batches = [torch.stack([photos[i][0] for i in range(start, start + 32)]).numpy() for start in range(0, len(photos), 32)]
    images, calibration = batches[0], batches[1:]  # real photos: validation ones timed, training ones calibrate int8

    def eager(batch):
        with torch.inference_mode():
            return backbone.forward_features(torch.from_numpy(batch)).mean((2, 3)).numpy()

    onnx_path = export_onnx(backbone, 224, Path(scratch()) / "lite0.onnx")
    runners = {"torch eager": eager, "torch channels_last": torch_runtime(backbone).run}
    compiled = torch.compile(backbone.forward_features)
    runners["torch.compile"] = lambda batch: compiled(torch.from_numpy(batch)).mean((2, 3)).detach().numpy()
    runners["onnxruntime"] = onnxruntime_runtime(onnx_path, threads).run
    try:
        for precision in ("fp32", "bf16", "int8"):
            runners[f"openvino {precision}"] = openvino_runtime(onnx_path, threads, precision, lambda: calibration).run
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
            "min_cosine": min_cosine(output, reference),
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
    from transferlab.train.feature_store import FeatureStore
    from transferlab.train.features import extract_features

    index = folder_source(args.data)
    model, _ = build_classifier("efficientnet_lite0", 10, True)
    config = data_config(model.backbone)
    results = {}
    for workers in (0, 1, 2):
        runtime = feature_runtime(model.backbone, 224, Path(scratch()))
        store = FeatureStore(Path(scratch()))
        started = time.perf_counter()
        extract_features(index.val, store, lambda: runtime, config, None, 1, workers)
        results[f"workers={workers}"] = len(index.val) / (time.perf_counter() - started)
    return {"photos_to_features_images_per_s": results, "runtime": runtime.name}


class EpochTimer:
    """Lightning callback: wall time of the training part of each epoch, from its start to the end of its last
    training batch. Validation is left out, as the Keras reference's `train_images_per_s` leaves it out (its clock
    stops at the last training batch's end); Lightning calls `on_train_epoch_end` only after validating."""

    def __init__(self):
        import lightning as L

        class Timer(L.Callback):
            def __init__(self):
                self.train_seconds = []

            def on_train_epoch_start(self, trainer, module):
                self.started = self.last_batch_end = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                self.last_batch_end = time.perf_counter()

            def on_train_epoch_end(self, trainer, module):
                self.train_seconds.append(self.last_batch_end - self.started)

        self.callback = Timer()


PRECISION_SETTINGS = {"fp32": {"inference_precision": "fp32", "precision": "32"}, "auto": {}}
"""What each measured precision passes to TrainConfig: fp32 everywhere, or the defaults (auto)."""


def stage_frozen(args) -> dict:
    from transferlab.config import TrainConfig
    from transferlab.experiment import train

    os.environ["TLAB_DATA_DIR"] = scratch()  # cold feature and decoded-photo caches: photos -> trained head
    out = Path(args.work) / f"frozen-{args.precision}"
    started = time.perf_counter()
    run = train(TrainConfig(
        data=str(args.data), out=str(out), strategy="frozen", epochs=10, augment="seed-keras", views=args.views,
        **PRECISION_SETTINGS[args.precision],
    ))
    wall = time.perf_counter() - started
    history = run.read_history("frozen")
    metrics = run.read_metrics()["frozen"]
    return {
        "inference_precision": metrics["inference_precision"],
        "frozen_10_epochs_wall_s": wall,
        "frozen_epoch_s_after_cache": float(np.median([row["seconds"] for row in history[1:]])),
        "frozen_val_acc_final": history[-1]["val_acc"],
        "frozen_val_acc_best": max(row["val_acc"] for row in history),
        "views": args.views,
    }


FINETUNE_EPOCHS = 4
"""The seed recipe's (the notebook's) finetune epochs."""


def stage_finetune(args, **unfreeze) -> dict:
    """The seed recipe's finetune epochs from the frozen run (the first decodes every photo, the second reads the
    decoded-photo cache, those after the `--trunk-views`-th reuse the trunk's outputs); `unfreeze` as TrainConfig takes
    it (default: 20 weight layers)."""
    unfreeze = unfreeze or {"unfreeze_layers": 20}
    from transferlab.config import TrainConfig
    from transferlab.data.sources import folder_source
    from transferlab.experiment import train

    os.environ["TLAB_DATA_DIR"] = scratch()  # a cold decoded-photo cache: the epoch decodes every photo
    timer = EpochTimer().callback
    out = Path(args.work) / ("finetune" + "".join(f"_{k}{v}" for k, v in unfreeze.items()) + f"-{args.precision}")
    run = train(
        TrainConfig(
            data=str(args.data), out=str(out), strategy="finetune", epochs=FINETUNE_EPOCHS, init=str(Path(args.work) / f"frozen-{args.precision}"),
            **unfreeze, **PRECISION_SETTINGS[args.precision],
        ),
        callbacks=[timer],
    )
    n_train = len(folder_source(args.data).train)
    history = run.read_history("finetune")
    metrics = run.read_metrics()["finetune"]
    seconds = timer.train_seconds[-FINETUNE_EPOCHS:]  # the last fit's (a failed gate trains again)
    return {
        "training_precision": metrics["training_precision"],
        "inference_precision": metrics["inference_precision"],
        "trunk_views": run.read_config()["config"]["trunk_views"],
        "finetune_train_images_per_s": n_train / seconds[0],
        "finetune_train_images_per_s_epoch2": n_train / seconds[1],
        "finetune_train_images_per_s_by_epoch": [n_train / s for s in seconds],
        "finetune_train_images_per_s_mean": n_train * len(seconds) / sum(seconds),
        "finetune_epoch_wall_s": history[0]["seconds"],
        "finetune_val_acc": history[-1]["val_acc"],
    }


def stage_finetune_last_block(args) -> dict:
    """The default, the notebook's trainable set: its last 20 Keras layers are block7a and top_conv, timm's last block group."""
    return stage_finetune(args, unfreeze_blocks=1)


KERAS_STRATEGIES = {
    "frozen": lambda args: ["--strategy", "frozen", "--epochs", str(args.keras_epochs)],
    "finetune": lambda args: ["--strategy", "finetune", "--epochs", "1", *(["--limit-steps", str(args.keras_steps)] if args.keras_steps else [])],
}


def keras_strategy(args, name: str) -> dict:
    """One strategy of the Keras reference in its own venv: epoch times, train img/s, peak RSS, final val accuracy."""
    out = Path(args.work) / f"keras_{name}.json"
    command = [args.keras_python, str(KERAS_REFERENCE), "--data", str(args.data), "--out", str(out), "--verbose", "0",
               *KERAS_STRATEGIES[name](args)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    epochs = report["epochs"]
    return {
        "epoch_wall_s": [e["wall_s"] for e in epochs],
        "train_images_per_s": epochs[0]["train_images_per_s"],
        "train_images_per_s_excl_first_step": epochs[0]["train_images_per_s_excl_first_step"],
        "peak_rss_mib": report["peak_rss_mib"],
        "val_acc": report["history"]["val_accuracy"][-1],
    }


def ten_epochs_estimated_s(epoch_wall_s: list[float]) -> float:
    """Keras's frozen 10 epochs from the few it ran: the first (tracing, cold caches) plus nine steady ones."""
    return epoch_wall_s[0] + 9 * float(np.mean(epoch_wall_s[1:] or epoch_wall_s))


def keras(args) -> dict:
    results = {name: keras_strategy(args, name) for name in KERAS_STRATEGIES}
    results["frozen"]["ten_epochs_estimated_s"] = ten_epochs_estimated_s(results["frozen"]["epoch_wall_s"])
    return results


STAGES = {
    "runtimes": stage_runtimes,
    "augment": stage_augment,
    "features": stage_features,
    "frozen": stage_frozen,
    "finetune": stage_finetune,
    "finetune_last_block": stage_finetune_last_block,
}


def run_stage(name: str, args, precision: str = "fp32") -> dict:
    """One stage in a child process; returns its JSON with its peak RSS."""
    out = Path(args.work) / f"{name}-{precision}.json"
    command = [sys.executable, __file__, "--stage", name, "--data", str(args.data), "--work", args.work, "--out", str(out),
               "--views", str(args.views), "--threads", str(args.threads), "--reps", str(args.reps), "--precision", precision]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["stage_wall_s"] = time.perf_counter() - started
    return result


def table(results: dict) -> str:
    """One row per measure, one column per precision, then Keras and the ratios to it."""
    precisions = [p for p in ("fp32", "auto") if p in results["by_precision"]]
    keras_run = results.get("keras")
    header = "| measure | " + " | ".join(f"transferlab {p}" for p in precisions) + " | Keras reference | " + " | ".join(f"ratio {p}" for p in precisions) + " |"
    lines = [header, "| --- |" + " ---: |" * (2 * len(precisions) + 1)]

    def row(label: str, ours: list[str], keras_value: str = "", ratios: list[str] | None = None) -> None:
        lines.append(f"| {label} | " + " | ".join(ours) + f" | {keras_value} | " + " | ".join(ratios or [""] * len(precisions)) + " |")

    by = results["by_precision"]
    frozen = [by[p]["frozen"]["frozen_10_epochs_wall_s"] for p in precisions]
    finetune = [by[p]["finetune_last_block"]["finetune_train_images_per_s"] for p in precisions]
    if keras_run:
        frozen_keras = keras_run["frozen"]["ten_epochs_estimated_s"]
        ft_keras = keras_run["finetune"]["train_images_per_s_excl_first_step"]
        row("frozen, 10 epochs, photos -> trained head (s)", [f"{v:.0f}" for v in frozen], f"{frozen_keras:.0f} (est.)",
            [f"**{frozen_keras / v:.1f}x**" for v in frozen])
        row("finetune epoch 1, the notebook's trainable set, cold caches, train img/s", [f"{v:.1f}" for v in finetune], f"{ft_keras:.1f}",
            [f"**{v / ft_keras:.2f}x**" for v in finetune])
    else:
        row("frozen, 10 epochs, photos -> trained head (s)", [f"{v:.0f}" for v in frozen])
        row("finetune epoch 1, the notebook's trainable set, cold caches, train img/s", [f"{v:.1f}" for v in finetune])
    row("finetune epoch 2 (photos decoded once, as after a frozen stage), train img/s", [f"{by[p]['finetune_last_block']['finetune_train_images_per_s_epoch2']:.1f}" for p in precisions],
        f"{keras_run['finetune']['train_images_per_s_excl_first_step']:.1f}" if keras_run else "",
        [f"{by[p]['finetune_last_block']['finetune_train_images_per_s_epoch2'] / keras_run['finetune']['train_images_per_s_excl_first_step']:.2f}x" for p in precisions] if keras_run else None)
    if all("finetune_train_images_per_s_mean" in by[p]["finetune_last_block"] for p in precisions):
        means = [by[p]["finetune_last_block"]["finetune_train_images_per_s_mean"] for p in precisions]
        views = by[precisions[0]]["finetune_last_block"]["trunk_views"]
        row(f"finetune, the seed recipe's {FINETUNE_EPOCHS} epochs (trunk outputs reused after epoch {views}), mean train img/s",
            [f"{v:.1f}" for v in means], f"{keras_run['finetune']['train_images_per_s_excl_first_step']:.1f}" if keras_run else "",
            [f"{v / keras_run['finetune']['train_images_per_s_excl_first_step']:.2f}x" for v in means] if keras_run else None)
    if all("finetune" in by[p] for p in precisions):
        row("finetune epoch, last 20 weight layers, train img/s", [f"{by[p]['finetune']['finetune_train_images_per_s']:.1f}" for p in precisions])
    row("frozen val acc, final / best", [f"{by[p]['frozen']['frozen_val_acc_final']:.3f} / {by[p]['frozen']['frozen_val_acc_best']:.3f}" for p in precisions])
    row(f"finetune val acc after {FINETUNE_EPOCHS} epochs", [f"{by[p]['finetune_last_block']['finetune_val_acc']:.3f}" for p in precisions])
    row("inference precision used (frozen / finetune)", [
        f"{by[p]['frozen']['inference_precision']['used']} / {by[p]['finetune_last_block']['inference_precision']['used']}" for p in precisions
    ])
    row("finetune training precision", [by[p]["finetune_last_block"]["training_precision"] for p in precisions])
    rss = [f"{by[p]['frozen']['peak_rss_mib']:.0f} / {by[p]['finetune_last_block']['peak_rss_mib']:.0f}" for p in precisions]
    keras_rss = f"{keras_run['frozen']['peak_rss_mib']:.0f} / {keras_run['finetune']['peak_rss_mib']:.0f}" if keras_run else ""
    row("peak RSS, frozen / finetune (MiB)", rss, keras_rss)
    row("frozen epoch once cached (s)", [f"{by[p]['frozen']['frozen_epoch_s_after_cache']:.2f}" for p in precisions])
    for name, value in results["features"]["photos_to_features_images_per_s"].items():
        lines.append(f"| photos -> features img/s ({results['features']['runtime']} fp32, {name}) | {value:.0f} | |")
    for name, value in results["runtimes"]["runtimes"].items():
        lines.append(f"| backbone img/s, {name} (rel. error {value['relative_error']:.0e}, cosine {value['min_cosine']:.4f}) | {value['images_per_s']:.1f} | |")
    lines.append(f"| augmentation seed-keras img/s (one thread) | {results['augment']['augment_seed_keras_images_per_s_one_thread']:.0f} | |")
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
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"], choices=["fp32", "auto"])
    parser.add_argument("--twenty-layers", action="store_true", help="also a finetune epoch with the last 20 weight layers unfrozen")
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work = args.work or scratch(prefix="tlab-speed-")
    if args.stage:
        result = STAGES[args.stage](args)
        result["peak_rss_mib"] = peak_rss_mib()
        args.out.write_text(json.dumps(result, indent=2))
        return

    import lightning
    import timm
    import torch

    import openvino

    machine = cpu()
    results = {
        "cpu": machine,
        "machine": {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version()},
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "lightning": lightning.__version__, "openvino": openvino.__version__},
        "data": str(args.data),
        "by_precision": {},
    }
    print(f"cpu: {describe(machine)}", file=sys.stderr, flush=True)
    for name in ("runtimes", "augment", "features"):
        print(f"stage {name}...", file=sys.stderr, flush=True)
        results[name] = run_stage(name, args)
    for precision in args.precisions:
        stages = ("frozen", "finetune_last_block", *(("finetune",) if args.twenty_layers else ()))
        for name in stages:
            print(f"stage {name} ({precision})...", file=sys.stderr, flush=True)
            results["by_precision"].setdefault(precision, {})[name] = run_stage(name, args, precision)
    if args.keras_python and Path(args.keras_python).exists():
        print("stage keras...", file=sys.stderr, flush=True)
        results["keras"] = keras(args)
    results["table"] = table(results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"cpu: {describe(machine)}")
    print(results["table"])


if __name__ == "__main__":
    main()
