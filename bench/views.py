"""How many cached augmented views does the frozen strategy need? Accuracy on woof-bench by K, against
fresh augmentation every epoch (the --no-cache path), 10 epochs each, seed-keras, one seed.

    .venv/bin/python bench/views.py [--data ../shared/data/woof-bench] [--epochs 10] [--views 0 1 2 4 8]

The largest K is extracted first; smaller K reuse its first views (views are seeded by photo and view
index), so each K costs only training the head. Prints a table and writes bench/views.json.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from machine import scratch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "woof-bench")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--views", type=int, nargs="+", default=[8, 4, 2, 1, 0])
    parser.add_argument("--no-fresh", action="store_true", help="skip the --no-cache run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "views.json")
    args = parser.parse_args()
    os.environ.setdefault("TLAB_DATA_DIR", scratch(prefix="tlab-views-"))

    from transferlab.config import TrainConfig
    from transferlab.experiment import train

    work = Path(scratch(prefix="tlab-views-runs-"))
    rows = []
    runs = [(f"cached, K={k}", dict(views=k)) for k in sorted(args.views, reverse=True)]
    if not args.no_fresh:
        runs.append(("fresh augmentation every epoch (--no-cache)", dict(cache=False)))
    for name, options in runs:
        started = time.perf_counter()
        run = train(TrainConfig(data=str(args.data), out=str(work / name.split(",")[0].replace(" ", "_") / str(len(rows))),
                                strategy="frozen", epochs=args.epochs, augment="seed-keras", **options))
        wall = time.perf_counter() - started
        history = run.read_history("frozen")
        rows.append({
            "run": name, "wall_s": wall, "val_acc_final": history[-1]["val_acc"],
            "val_acc_best": max(r["val_acc"] for r in history), "val_loss_final": history[-1]["val_loss"],
            "train_acc_final": history[-1]["train_acc"],
        })
        print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)
    table = ["| frozen, 10 epochs, woof-bench | val acc final | val acc best | val loss final | train acc final | wall s |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    table += [f"| {r['run']} | {r['val_acc_final']:.3f} | {r['val_acc_best']:.3f} | {r['val_loss_final']:.3f} | "
              f"{r['train_acc_final']:.3f} | {r['wall_s']:.0f} |" for r in rows]
    args.out.write_text(json.dumps({"data": str(args.data), "epochs": args.epochs, "rows": rows, "table": "\n".join(table)}, indent=2) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
