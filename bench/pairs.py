"""#17's targets in alternated pairs: our frozen and finetune stages and the Keras reference's, back to back.

    .venv/bin/python bench/pairs.py [--pairs 3] [--strategies frozen finetune] [--precision auto]
        [--keras-python /tmp/kerasenv/bin/python]

On a shared machine the speed of the cores moves by more than a code change from one hour to the next, so a ratio
of two figures measured ten minutes apart (as in bench/speed.py's single pass) moves with it. Here each pair runs,
back to back: our frozen stage (10 epochs, photos -> trained head, cold caches) and the Keras reference's (its
--keras-epochs epochs extrapolated to 10), then our finetune stage from that frozen run (bench/speed.py's: the seed
recipe's four epochs of the notebook's trainable set, the first on a cold decoded-photo cache, those after the
--trunk-views-th on kept trunk outputs) and the Keras reference's finetune epoch (every one of its epochs is alike).
Each pair gives its own ratios; the table shows every pair and the medians. Writes bench/pairs.json. With
--strategies finetune alone, one frozen run is trained first and only the finetune stages are paired.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from machine import cpu, describe, scratch
from speed import DEFAULT_DATA, FINETUNE_EPOCHS, REPO, keras_strategy, run_stage, ten_epochs_estimated_s

STRATEGIES = ("frozen", "finetune")


def frozen_pair(args) -> dict:
    shutil.rmtree(Path(args.work) / f"frozen-{args.precision}", ignore_errors=True)
    ours = run_stage("frozen", args, args.precision)["frozen_10_epochs_wall_s"]
    theirs = ten_epochs_estimated_s(keras_strategy(args, "frozen")["epoch_wall_s"])
    return {"frozen_ours_s": ours, "frozen_keras_s": theirs, "frozen_ratio": theirs / ours}


def finetune_pair(args) -> dict:
    shutil.rmtree(Path(args.work) / f"finetune_unfreeze_blocks1-{args.precision}", ignore_errors=True)
    ours = run_stage("finetune_last_block", args, args.precision)
    theirs = keras_strategy(args, "finetune")["train_images_per_s_excl_first_step"]
    return {
        "finetune_ours_epoch1": ours["finetune_train_images_per_s"], "finetune_ours_epoch2": ours["finetune_train_images_per_s_epoch2"],
        "finetune_keras": theirs, "finetune_ratio_epoch1": ours["finetune_train_images_per_s"] / theirs,
        "finetune_ratio_epoch2": ours["finetune_train_images_per_s_epoch2"] / theirs, "finetune_val_acc": ours["finetune_val_acc"],
        "finetune_ours_mean": ours["finetune_train_images_per_s_mean"], "finetune_ratio_mean": ours["finetune_train_images_per_s_mean"] / theirs,
        "finetune_ours_by_epoch": ours["finetune_train_images_per_s_by_epoch"],
    }


def table(pairs: list[dict], medians: dict[str, float]) -> str:
    columns = []
    if "frozen_ratio" in medians:
        columns += [("ours frozen 10 epochs (s)", "frozen_ours_s", "{:.0f}"), ("Keras (s, est.)", "frozen_keras_s", "{:.0f}"),
                    ("frozen ratio", "frozen_ratio", "{:.2f}x")]
    if "finetune_ratio_epoch2" in medians:
        columns += [("ours finetune epoch 1 (cold) img/s", "finetune_ours_epoch1", "{:.1f}"),
                    ("ours epoch 2 img/s", "finetune_ours_epoch2", "{:.1f}"), ("Keras img/s", "finetune_keras", "{:.1f}"),
                    ("ratio epoch 1", "finetune_ratio_epoch1", "{:.2f}x"), ("ratio epoch 2", "finetune_ratio_epoch2", "{:.2f}x"),
                    (f"ours {FINETUNE_EPOCHS} epochs, mean img/s", "finetune_ours_mean", "{:.1f}"),
                    (f"ratio, {FINETUNE_EPOCHS}-epoch mean", "finetune_ratio_mean", "{:.2f}x")]
    lines = ["| pair | " + " | ".join(title for title, _, _ in columns) + " |", "| ---: |" + " ---: |" * len(columns)]
    lines += [f"| {n} | " + " | ".join(form.format(pair[key]) for _, key, form in columns) + " |" for n, pair in enumerate(pairs, 1)]
    lines.append("| median | " + " | ".join(f"**{medians[key]:.2f}x**" if key in medians else "" for _, key, _ in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--precision", default="auto", choices=["fp32", "auto"])
    parser.add_argument("--keras-python", default="/tmp/kerasenv/bin/python")
    parser.add_argument("--keras-epochs", type=int, default=2, help="Keras frozen epochs actually run (10 are extrapolated)")
    parser.add_argument("--work", default=None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "pairs.json")
    args = parser.parse_args()
    args.work = args.work or scratch(prefix="tlab-pairs-")
    args.views, args.threads, args.reps, args.keras_steps = 2, len(os.sched_getaffinity(0)), 1, 0
    machine = cpu()
    print(f"cpu: {describe(machine)}", file=sys.stderr, flush=True)
    if "frozen" not in args.strategies:
        print("frozen run...", file=sys.stderr, flush=True)
        shutil.rmtree(Path(args.work) / f"frozen-{args.precision}", ignore_errors=True)
        run_stage("frozen", args, args.precision)
    pairs = []
    for number in range(1, args.pairs + 1):
        print(f"pair {number}...", file=sys.stderr, flush=True)
        pair = {}
        if "frozen" in args.strategies:
            pair |= frozen_pair(args)
        if "finetune" in args.strategies:
            pair |= finetune_pair(args)
        pairs.append(pair)
    ratios = [key for key in pairs[0] if "ratio" in key]
    medians = {key: float(np.median([pair[key] for pair in pairs])) for key in ratios}
    text = table(pairs, medians)
    args.out.write_text(json.dumps({"cpu": machine, "precision": args.precision, "pairs": pairs, "medians": medians,
                                    "table": text}, indent=2) + "\n")
    print(f"cpu: {describe(machine)}, precision {args.precision}")
    print(text)


if __name__ == "__main__":
    main()
