"""`--recipe auto` against `--recipe quick` (and quick with the old constant rate), same seed and split, on an
out-of-ImageNet set (clothing-mini) and an in-domain one (woof-mini): the best strategy of each run on the same
validation photos, paired (McNemar's exact p, bootstrap 95 % interval of the accuracy difference), with wall times.

    python bench/recipe.py [--data ../shared/data] [--sets clothing-mini,woof-mini]

quick runs frozen,finetune (its scratch never wins a CPU-sized run and only costs time); auto runs its defaults,
frozen,gradual. Writes bench/recipe.json.
"""

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from machine import cpu, describe, scratch

os.environ.setdefault("TLAB_DATA_DIR", scratch("tlab-recipe-cache-"))

from transferlab.config import CompareConfig  # noqa: E402
from transferlab.evaluate.metrics import read_predictions  # noqa: E402
from transferlab.evaluate.significance import compare_paired  # noqa: E402
from transferlab.experiment import compare  # noqa: E402

RUNS = {
    "quick, constant rate": {"recipe": "quick", "schedule": "constant", "strategies": ["frozen", "finetune"]},
    "quick": {"recipe": "quick", "strategies": ["frozen", "finetune"]},
    "auto": {"recipe": "auto"},
}


def best_correct(run_path: Path) -> tuple[str, float, np.ndarray, tuple[str, ...]]:
    """The run's strategy with the highest accuracy on the validation photos, which photos it got right, and their paths."""
    predictions = read_predictions(run_path / "predictions.csv")
    name, chosen = max(predictions.items(), key=lambda item: float(item[1].correct.mean()))
    return name, float(chosen.correct.mean()), chosen.correct, chosen.paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("TLAB_TEST_DATA", "../shared/data"))
    parser.add_argument("--sets", default="clothing-mini,woof-mini")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out_root = Path(scratch("tlab-recipe-runs-"))
    results = {"cpu": cpu(), "sets": {}}
    for name in args.sets.split(","):
        rows = {}
        for label, settings in RUNS.items():
            started = time.perf_counter()
            run = compare(CompareConfig(data=str(Path(args.data) / name), out=str(out_root / name / label.replace(" ", "_").replace(",", "")), **settings))
            strategy, accuracy, correct, paths = best_correct(run.path)
            rows[label] = {"best": strategy, "accuracy": accuracy, "seconds": round(time.perf_counter() - started, 1), "correct": correct,
                           "paths": paths, "recipe": run.read_recipe()}
        reference = rows["quick"]
        for label, row in rows.items():
            assert row["paths"] == reference["paths"], "the runs must answer the same validation photos in the same order"
            paired = compare_paired(reference["correct"], row["correct"])
            row["vs_quick"] = {"difference": paired.difference, "ci": [paired.ci_low, paired.ci_high], "p": paired.p_value}
        results["sets"][name] = {label: {k: v for k, v in row.items() if k not in ("correct", "paths")} for label, row in rows.items()}
    print(f"CPU: {describe(results['cpu'])}")
    print(f"{'set':<14}{'run':<24}{'best':<10}{'val acc':>8}{'vs quick':>10}{'95% CI':>18}{'McNemar p':>11}{'wall s':>8}")
    for name, rows in results["sets"].items():
        for label, row in rows.items():
            d = row["vs_quick"]
            interval = f"[{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
            print(f"{name:<14}{label:<24}{row['best']:<10}{row['accuracy']:>8.3f}{100 * d['difference']:>+9.1f}p"
                  f"{interval:>18}{d['p']:>11.3f}{row['seconds']:>8.0f}")
    Path(__file__).with_name("recipe.json").write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
