"""Frozen validation accuracy of an earlier source tree and of this one at several seeds, alternated.

    .venv/bin/python bench/frozen_seeds.py --baseline-src OLD/src [--seeds 42 1 2 3] [--data ../shared/data/woof-bench]

bench/revisions.py runs both trees at the default seed only, where the two revisions' frozen accuracies differed by
more than a standard error in every pair (their augmentations draw different views from the same seed). This asks
whether that difference follows the tree or the draw: each seed trains the frozen strategy (10 epochs, seed-keras,
2 views, each tree's default precisions) once per tree, in a fresh process with cold caches, the order alternating
from seed to seed. OLD/src is the `src` folder of an older tree, e.g. `git archive 51510b7 | tar -x -C /tmp/base`.
Prints a table and writes bench/frozen_seeds.json (or --out).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from machine import cpu, describe
from speed import DEFAULT_DATA, REPO

TRAIN = """
import json, sys
from transferlab.config import TrainConfig
from transferlab.experiment import train
run = train(TrainConfig(data=sys.argv[1], out=sys.argv[2], strategy="frozen", epochs=10, augment="seed-keras", views=2,
                        seed=int(sys.argv[3])))
history = run.read_history("frozen")
print(json.dumps({"final": history[-1]["val_acc"], "best": max(row["val_acc"] for row in history)}))
"""


def imported_from(src: Path) -> Path:
    """Where a child process with `src` on its path imports transferlab from (the venv's editable install when `src`
    holds none: the current tree)."""
    command = [sys.executable, "-c", "import transferlab; print(transferlab.__file__)"]
    done = subprocess.run(command, env=os.environ | {"PYTHONPATH": str(src)}, capture_output=True, text=True, check=True)
    return Path(done.stdout.strip()).parent.parent


def frozen_accuracy(src: Path, data: Path, seed: int) -> dict:
    """Final and best validation accuracy of one frozen run of `src`'s transferlab, in its own process and caches."""
    with tempfile.TemporaryDirectory(prefix="tlab-seeds-") as folder:
        environment = os.environ | {"PYTHONPATH": str(src), "TLAB_DATA_DIR": f"{folder}/data", "TMPDIR": folder}
        done = subprocess.run([sys.executable, "-c", TRAIN, str(data), f"{folder}/run", str(seed)], env=environment,
                              cwd=src.parent, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{src} at seed {seed} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def summary(rows: list[dict]) -> dict:
    """Mean final and best accuracy per tree, and the mean of current - baseline (final) with its standard error."""
    means = {key: float(np.mean([row[key] for row in rows])) for key in rows[0] if key != "seed"}
    differences = [row["current_final"] - row["baseline_final"] for row in rows]
    error = float(np.std(differences, ddof=1) / np.sqrt(len(differences))) if len(differences) > 1 else float("nan")
    return means | {"difference_final": float(np.mean(differences)), "difference_final_standard_error": error}


def table(rows: list[dict], means: dict) -> str:
    lines = ["| seed | baseline final / best | current final / best | current - baseline (final) |", "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {row['seed']} | {row['baseline_final']:.3f} / {row['baseline_best']:.3f} | "
              f"{row['current_final']:.3f} / {row['current_best']:.3f} | {row['current_final'] - row['baseline_final']:+.3f} |"
              for row in rows]
    lines.append(f"| mean | {means['baseline_final']:.3f} / {means['baseline_best']:.3f} | "
                 f"{means['current_final']:.3f} / {means['current_best']:.3f} | "
                 f"{means['difference_final']:+.3f} ± {means['difference_final_standard_error']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", type=Path, required=True, help="the src folder of the earlier tree")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "frozen_seeds.json")
    args = parser.parse_args()
    args.data = args.data.resolve()
    trees = {"baseline": args.baseline_src.resolve(), "current": REPO / "src"}
    for name, src in trees.items():
        if imported_from(src) != src:
            parser.error(f"{name}: transferlab imports from {imported_from(src)}, not from {src} (give a tree's src folder)")
    machine = cpu()
    rows = []
    for number, seed in enumerate(args.seeds):
        row = {"seed": seed}
        for name in (["baseline", "current"] if number % 2 == 0 else ["current", "baseline"]):
            print(f"seed {seed}: {name}...", file=sys.stderr, flush=True)
            result = frozen_accuracy(trees[name], args.data, seed)
            row |= {f"{name}_final": result["final"], f"{name}_best": result["best"]}
        rows.append(row)
        means = summary(rows)
        args.out.write_text(json.dumps({"cpu": machine, "baseline_src": str(trees["baseline"]), "data": str(args.data),
                                        "rows": rows, "means": means, "table": table(rows, means)}, indent=2) + "\n")
    print(f"cpu: {describe(machine)}")
    print(table(rows, means))


if __name__ == "__main__":
    main()
