"""How many augmented views must finetune's epochs cycle through? Validation accuracy and time of finetune by
`--trunk-views` K (each view's frozen-trunk output kept, so epochs after the K-th run only the layers that train),
against a fresh view every epoch (K = 0), on each data set, from one frozen run per data set.

    .venv/bin/python bench/trunk_views.py [--data DIR ...] [--views 0 1 2] [--schedules 4:1e-5 6:1e-4] [--seeds 0]

A schedule is EPOCHS:LR (the seed recipe's 4:1e-5, the auto recipe's 6:1e-4). Prints a table and writes
bench/trunk_views.json, with the CPU.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from machine import cpu, describe, scratch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def schedule(text: str) -> tuple[int, float]:
    """EPOCHS:LR, e.g. 4:1e-5."""
    epochs, _, lr = text.partition(":")
    try:
        return int(epochs), float(lr)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected EPOCHS:LR, e.g. 4:1e-5") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=[SHARED / "woof-bench", SHARED / "clothing-mini"])
    parser.add_argument("--views", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--schedules", nargs="+", type=schedule, default=[schedule("4:1e-5"), schedule("6:1e-4")])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "trunk_views.json")
    args = parser.parse_args()
    schedules = args.schedules
    os.environ.setdefault("TLAB_DATA_DIR", scratch(prefix="tlab-trunk-views-"))

    from transferlab.config import TrainConfig
    from transferlab.experiment import train

    work = Path(scratch(prefix="tlab-trunk-views-runs-"))
    rows = []
    for data in args.data:
        frozen = work / f"{data.name}-frozen"
        train(TrainConfig(data=str(data), out=str(frozen), strategy="frozen", epochs=10, augment="seed-keras"))
        for epochs, lr in schedules:
            for seed in args.seeds:
                for views in args.views:
                    out = work / f"{data.name}-{epochs}-{lr}-{seed}-{views}"
                    started = time.perf_counter()
                    run = train(TrainConfig(data=str(data), out=str(out), strategy="finetune", init=str(frozen), epochs=epochs,
                                            lr=lr, seed=seed, augment="seed-keras", trunk_views=views))
                    wall = time.perf_counter() - started
                    history = run.read_history("finetune")
                    rows.append({
                        "data": data.name, "epochs": epochs, "lr": lr, "seed": seed, "trunk_views": views, "wall_s": wall,
                        "epoch_s": [r["seconds"] for r in history], "val_acc_final": history[-1]["val_acc"],
                        "val_acc_best": max(r["val_acc"] for r in history), "val_loss_final": history[-1]["val_loss"],
                    })
                    print(rows[-1], file=sys.stderr, flush=True)
    table = ["| data | epochs, lr | trunk views | val acc final (per seed) | val loss final | epoch seconds (first seed) | finetune wall s |",
             "| --- | --- | ---: | --- | ---: | --- | ---: |"]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["data"], row["epochs"], row["lr"], row["trunk_views"]), []).append(row)
    for (data, epochs, lr, views), group in groups.items():
        accuracies = " / ".join(f"{r['val_acc_final']:.3f}" for r in group)
        seconds = " ".join(f"{s:.1f}" for s in group[0]["epoch_s"])
        table.append(
            f"| {data} | {epochs}, {lr:g} | {views or 'fresh'} | {accuracies} | "
            f"{statistics.mean(r['val_loss_final'] for r in group):.3f} | {seconds} | {statistics.mean(r['wall_s'] for r in group):.0f} |"
        )
    args.out.write_text(json.dumps({"cpu": cpu(), "rows": rows, "table": "\n".join(table)}, indent=2) + "\n")
    print(describe(cpu()))
    print("\n".join(table))


if __name__ == "__main__":
    main()
