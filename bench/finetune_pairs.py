"""#17's finetune target in alternated pairs: our finetune stage and the Keras reference's, one after the other.

    .venv/bin/python bench/finetune_pairs.py [--pairs 3] [--precision auto] [--keras-python /tmp/kerasenv/bin/python]

On a shared machine the speed of the cores moves by more than a code change from one hour to the next, so a ratio
of two figures measured ten minutes apart (as in bench/speed.py's single pass) moves with it. Here one frozen run is
trained first (the finetune stage's starting point); then, --pairs times, our finetune stage (bench/speed.py's: two
epochs of the notebook's trainable set, the first on a cold decoded-photo cache, each in its own process) and the
Keras reference's finetune epoch run back to back. Each pair gives a ratio of training images per second (Keras
without its first step, as it reports it); the table shows every pair and the medians. Writes
bench/finetune_pairs.json.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from machine import cpu, describe, scratch
from speed import DEFAULT_DATA, REPO, keras_strategy, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["fp32", "auto"])
    parser.add_argument("--keras-python", default="/tmp/kerasenv/bin/python")
    parser.add_argument("--work", default=None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "finetune_pairs.json")
    args = parser.parse_args()
    args.work = args.work or scratch(prefix="tlab-pairs-")
    args.views, args.threads, args.reps, args.keras_steps = 2, len(os.sched_getaffinity(0)), 1, 0
    machine = cpu()
    print(f"cpu: {describe(machine)}", file=sys.stderr, flush=True)
    print("frozen run...", file=sys.stderr, flush=True)
    run_stage("frozen", args, args.precision)
    pairs = []
    for number in range(1, args.pairs + 1):
        print(f"pair {number}...", file=sys.stderr, flush=True)
        shutil.rmtree(Path(args.work) / f"finetune_unfreeze_blocks1-{args.precision}", ignore_errors=True)
        ours = run_stage("finetune_last_block", args, args.precision)
        theirs = keras_strategy(args, "finetune")["train_images_per_s_excl_first_step"]
        pairs.append({
            "ours_epoch1": ours["finetune_train_images_per_s"], "ours_epoch2": ours["finetune_train_images_per_s_epoch2"],
            "keras": theirs, "val_acc": ours["finetune_val_acc"], "inference_precision": ours["inference_precision"]["used"],
        })
    for pair in pairs:
        pair["ratio_epoch1"], pair["ratio_epoch2"] = pair["ours_epoch1"] / pair["keras"], pair["ours_epoch2"] / pair["keras"]
    medians = {key: float(np.median([p[key] for p in pairs])) for key in ("ratio_epoch1", "ratio_epoch2")}
    lines = ["| pair | ours epoch 1 (cold) img/s | ours epoch 2 img/s | Keras img/s | ratio epoch 1 | ratio epoch 2 |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {n} | {p['ours_epoch1']:.1f} | {p['ours_epoch2']:.1f} | {p['keras']:.1f} | {p['ratio_epoch1']:.2f}x | {p['ratio_epoch2']:.2f}x |"
              for n, p in enumerate(pairs, 1)]
    lines.append(f"| median | | | | **{medians['ratio_epoch1']:.2f}x** | **{medians['ratio_epoch2']:.2f}x** |")
    args.out.write_text(json.dumps({"cpu": machine, "precision": args.precision, "pairs": pairs, "medians": medians,
                                    "table": "\n".join(lines)}, indent=2) + "\n")
    print(f"cpu: {describe(machine)}, precision {args.precision}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
