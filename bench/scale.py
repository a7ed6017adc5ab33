"""The seed's whole frozen experiment at Stanford Dogs' size on this machine, each stage timed: what
`tlab compare DATA --strategies frozen --recipe seed` does (25 frozen epochs), on the 120-class set of
bench/make_scale_set.py (12,000 training and 8,580 validation photos).

    .venv/bin/python bench/make_scale_set.py --out /tmp/scale-set
    .venv/bin/python bench/scale.py --data /tmp/scale-set [--epochs 25] [--finetune-epochs 4]

Stages: `tlab data check` twice (cold, then with the photo cache warm); then, in one process as `tlab compare`
runs them, indexing the data (its checks come from the photo cache), features (backbone on every photo and view),
training the head, evaluation of the validation photos, and the report. A fresh cache folder is used, so the
feature cache starts cold. With --finetune-epochs, then the finetune strategy from that frozen model (the seed
recipe's rate; its trunk's outputs kept in memory for the views later epochs show again): its epochs' seconds and
the process's peak RSS before and after it. Prints a table and writes bench/scale.json.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu, describe, scratch

REPO = Path(__file__).resolve().parents[1]


def timed_check(data: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "transferlab", "data", "check", str(data)], check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def finetune_stage(experiment, epochs: int) -> dict:
    """The finetune strategy from the experiment's frozen model, timed, with the process's peak RSS after it."""
    started = time.perf_counter()
    result = experiment.fit("finetune", epochs)
    history = experiment.run.read_history("finetune")
    return {
        "epochs": epochs, "seconds": time.perf_counter() - started, "epoch_seconds": [row["seconds"] for row in history],
        "val_acc": history[-1]["val_acc"], "trunk_views": result.metrics.get("trunk_views", 0),
        "training_precision": result.metrics["training_precision"], "inference_precision": result.metrics.get("inference_precision"),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--finetune-epochs", type=int, default=0, help="then finetune this many epochs (the seed recipe's: 4)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "scale.json")
    args = parser.parse_args()
    if args.finetune_epochs < 0:
        parser.error(f"--finetune-epochs must be 0 (no finetune) or more, got {args.finetune_epochs}")
    work = Path(scratch(prefix="tlab-scale-"))
    os.environ["TLAB_DATA_DIR"] = str(work / "cache")  # cold feature and photo caches

    seconds = {"data check, cold": timed_check(args.data), "data check, photo cache warm": timed_check(args.data)}
    import transferlab as tl
    from transferlab.config import CompareConfig

    started = time.perf_counter()
    config = CompareConfig(data=str(args.data), out=str(work / "run"), strategies=["frozen"], recipe="seed", epochs={"frozen": args.epochs})
    experiment = tl.Experiment(config, recipe="seed")
    clock = time.perf_counter()
    index = experiment.index
    seconds["index the data (checks from the cache)"] = time.perf_counter() - clock
    clock = time.perf_counter()
    result = experiment.fit("frozen", args.epochs, keep_finished=True)
    fit_seconds = time.perf_counter() - clock
    seconds["features (backbone on every photo and view)"] = result.metrics.get("feature_seconds", 0.0)
    seconds[f"training the head, {args.epochs} epochs"] = result.metrics["seconds"]
    seconds["rest of the stage (model, checkpoints, plots)"] = fit_seconds - seconds["features (backbone on every photo and view)"] - result.metrics["seconds"]
    clock = time.perf_counter()
    metrics = experiment.evaluate()
    seconds[f"evaluation of {len(index.val)} photos"] = time.perf_counter() - clock
    clock = time.perf_counter()
    html, _ = experiment.report()
    seconds["report"] = time.perf_counter() - clock
    compare_total = time.perf_counter() - started
    rss_before_finetune = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finetune = finetune_stage(experiment, args.finetune_epochs) if args.finetune_epochs else None

    machine = cpu()
    rows = ["| stage | seconds | share of compare |", "| --- | ---: | ---: |"]
    for name, value in seconds.items():
        share = f"{value / compare_total:.0%}" if not name.startswith("data check") else ""
        rows.append(f"| {name} | {value:.1f} | {share} |")
    rows.append(f"| **tlab compare --strategies frozen, end to end** | **{compare_total:.1f}** ({compare_total / 60:.1f} min) | 100% |")
    summary = {
        "cpu": machine,
        "data": {"classes": len(index.classes), "train": len(index.train), "val": len(index.val)},
        "epochs": args.epochs,
        "seconds": seconds,
        "compare_seconds": compare_total,
        "val_accuracy": metrics["frozen"]["accuracy"],
        "report_mib": html.stat().st_size / 2**20,
        "peak_rss_mib": rss_before_finetune,
        "finetune": finetune,
        "table": "\n".join(rows),
    }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"cpu: {describe(machine)}")
    print(f"data: {len(index.classes)} classes, {len(index.train)} train, {len(index.val)} val; report {summary['report_mib']:.1f} MiB")
    print("\n".join(rows))
    print(f"peak RSS through the frozen compare: {rss_before_finetune:.0f} MiB")
    if finetune:
        epochs = ", ".join(f"{s:.0f}" for s in finetune["epoch_seconds"])
        print(f"finetune, {args.finetune_epochs} epochs from it: {finetune['seconds']:.0f} s (epochs, with validation: {epochs} s), "
              f"val acc {finetune['val_acc']:.3f}, trunk views {finetune['trunk_views']}, {finetune['training_precision']}; "
              f"peak RSS {finetune['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
