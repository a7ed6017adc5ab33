"""Our frozen and finetune stages at an earlier revision and at this one, in alternated pairs; optionally on an
emulated AVX2-only CPU.

    .venv/bin/python bench/revisions.py --baseline 51510b7 [--pairs 3] [--emulate-avx2] [--baseline-precision auto]

#17 asks that nothing be slower than before on an AVX2-only CPU. Each pair runs, back to back, the baseline's
bench/speed.py stages and this tree's (the same venv; the baseline's sources from a git worktree; which goes first
alternates from pair to pair): frozen 10 epochs (photos -> trained head, cold caches) and a finetune stage of the
notebook's trainable set from that frozen run. This tree runs its defaults (`auto` precisions, so without
--emulate-avx2 the speed-up includes bf16's); the baseline runs its speed.py's defaults, or `--baseline-precision`
for a baseline whose speed.py has one. This tree's first finetune epoch decodes every photo, as the baseline's first
does; "speed-up epoch 2" sets this tree's second epoch (photos decoded once) against the baseline's second, or against
its only epoch when its speed.py ran one (it decoded in every epoch).

--emulate-avx2 caps both revisions' kernels at AVX2: PyTorch's own (ATEN_CPU_CAPABILITY=avx2) and oneDNN's
(ONEDNN_MAX_CPU_ISA=AVX2: PyTorch's convolutions and OpenVINO's); transferlab reads the cap, so `auto` chooses fp32
as on an AVX2-only CPU. OpenVINO's kernels outside oneDNN are not capped in a release wheel: an emulation of an
AVX2-only CPU, not one. Writes bench/revisions.json (or --out).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu, describe, scratch
from speed import DEFAULT_DATA, REPO

AVX2_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def checkout(revision: str, folder: Path) -> Path:
    """`revision`'s tree in `folder` (a detached git worktree, removed at the end)."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(folder), revision], check=True,
                   stdout=subprocess.DEVNULL)
    return folder


def stage(tree: Path, name: str, work: Path, args: argparse.Namespace, environment: dict[str, str], precision: str | None) -> dict:
    """One bench/speed.py stage of `tree`'s sources, in a child process; its JSON."""
    out = work / f"{name}.json"
    command = [sys.executable, str(tree / "bench" / "speed.py"), "--stage", name, "--data", str(args.data), "--work", str(work),
               "--out", str(out), "--views", "2", "--threads", str(len(os.sched_getaffinity(0))), "--reps", "1",
               *(["--precision", precision] if precision else [])]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=tree, env=environment | {"PYTHONPATH": str(tree / "src")})
    return json.loads(out.read_text()) | {"stage_wall_s": time.perf_counter() - started}


def imported_from(tree: Path, environment: dict[str, str]) -> str:
    """Where the child processes of `tree` import transferlab from (the worktree's sources, not the venv's install)."""
    command = [sys.executable, "-c", "import transferlab; print(transferlab.__file__)"]
    return subprocess.run(command, check=True, capture_output=True, text=True, cwd=tree,
                          env=environment | {"PYTHONPATH": str(tree / "src")}).stdout.strip()


def pair(trees: dict[str, Path], scratch_folder: Path, args: argparse.Namespace, environment: dict[str, str], order: list[str]) -> dict:
    """Both trees' frozen and finetune stages, in `order`, each in fresh work and cache folders; times and ratios."""
    result = {}
    for name in order:
        work = scratch_folder / f"work-{name}"
        shutil.rmtree(work, ignore_errors=True)
        for folder in ("tmp", "data"):  # the baseline's stages leave their feature caches in tmp
            shutil.rmtree(scratch_folder / folder, ignore_errors=True)
            (scratch_folder / folder).mkdir()
        work.mkdir()
        precision = args.baseline_precision if name == "baseline" else "auto"
        frozen = stage(trees[name], "frozen", work, args, environment, precision)
        finetune = stage(trees[name], "finetune_last_block", work, args, environment, precision)
        result[f"{name}_frozen_s"] = frozen["frozen_10_epochs_wall_s"]
        result[f"{name}_finetune_epoch1"] = finetune["finetune_train_images_per_s"]
        result[f"{name}_frozen_val_acc"] = frozen["frozen_val_acc_final"]
        result[f"{name}_finetune_val_acc"] = finetune["finetune_val_acc"]
        if "finetune_train_images_per_s_epoch2" in finetune:
            result[f"{name}_finetune_epoch2"] = finetune["finetune_train_images_per_s_epoch2"]
        if "inference_precision" in finetune:
            result[f"{name}_precisions"] = f"{frozen['inference_precision']['used']} / {finetune['inference_precision']['used']} / {finetune['training_precision']}"
    result["frozen_speedup"] = result["baseline_frozen_s"] / result["current_frozen_s"]
    result["finetune_speedup_epoch1"] = result["current_finetune_epoch1"] / result["baseline_finetune_epoch1"]
    if "current_finetune_epoch2" in result:
        baseline = result.get("baseline_finetune_epoch2", result["baseline_finetune_epoch1"])  # an older speed.py ran one epoch
        result["finetune_speedup_epoch2"] = result["current_finetune_epoch2"] / baseline
    return result


COLUMNS = (
    ("baseline frozen (s)", "baseline_frozen_s", "{:.0f}"), ("current frozen (s)", "current_frozen_s", "{:.0f}"),
    ("frozen speed-up", "frozen_speedup", "{:.2f}x"), ("baseline epoch 1 img/s", "baseline_finetune_epoch1", "{:.1f}"),
    ("baseline epoch 2 img/s", "baseline_finetune_epoch2", "{:.1f}"),
    ("current epoch 1 (cold) img/s", "current_finetune_epoch1", "{:.1f}"), ("current epoch 2 img/s", "current_finetune_epoch2", "{:.1f}"),
    ("speed-up epoch 1", "finetune_speedup_epoch1", "{:.2f}x"), ("speed-up epoch 2", "finetune_speedup_epoch2", "{:.2f}x"),
    ("val acc frozen base / current", None, None), ("precisions (frozen / finetune / training)", "current_precisions", "{}"),
)


def table(pairs: list[dict], medians: dict[str, float]) -> str:
    def cell(row: dict, key: str | None, form: str | None) -> str:
        if key is None:
            return f"{row['baseline_frozen_val_acc']:.3f} / {row['current_frozen_val_acc']:.3f}"
        return form.format(row[key]) if key in row else ""

    lines = ["| pair | " + " | ".join(title for title, _, _ in COLUMNS) + " |", "| ---: |" + " ---: |" * len(COLUMNS)]
    lines += [f"| {n} | " + " | ".join(cell(row, key, form) for _, key, form in COLUMNS) + " |" for n, row in enumerate(pairs, 1)]
    lines.append("| median | " + " | ".join(f"**{medians[key]:.2f}x**" if key in medians else "" for _, key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--baseline-precision", default=None, choices=["fp32", "auto"],
                        help="the baseline's speed.py --precision (default: its own default; auto once it has one)")
    parser.add_argument("--emulate-avx2", action="store_true", help="cap PyTorch's and oneDNN's kernels at AVX2")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "revisions.json")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    args.data = args.data.resolve()  # the stages run in their own trees
    scratch_folder = Path(scratch(prefix="tlab-revisions-"))
    # Temporary folders and transferlab's caches inside the scratch folder: the baseline's stages leave gigabytes
    # of features in the one, and neither tree may read or fill the user's cache.
    environment = os.environ | {"TMPDIR": str(scratch_folder / "tmp"), "TLAB_DATA_DIR": str(scratch_folder / "data")}
    environment |= AVX2_ENVIRONMENT if args.emulate_avx2 else {}
    machine = cpu()
    described = f"{describe(machine)}{', emulating AVX2 only' if args.emulate_avx2 else ''}"
    trees = {"baseline": scratch_folder / "baseline", "current": REPO}
    try:
        checkout(args.baseline, trees["baseline"])
        for name, tree in trees.items():
            where = imported_from(tree, environment)
            if not where.startswith(str(tree / "src")):
                raise SystemExit(f"{name}: transferlab imported from {where}, not from {tree / 'src'}")
        print(f"cpu: {described}", file=sys.stderr, flush=True)
        pairs = []
        for number in range(1, args.pairs + 1):
            print(f"pair {number}...", file=sys.stderr, flush=True)
            order = ["baseline", "current"] if number % 2 else ["current", "baseline"]
            pairs.append(pair(trees, scratch_folder, args, environment, order))
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees["baseline"])], check=False)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)
    speedups = [key for key in pairs[0] if "speedup" in key]
    medians = {key: float(np.median([row[key] for row in pairs])) for key in speedups}
    text = table(pairs, medians)
    args.out.write_text(json.dumps({"cpu": machine, "emulated_avx2": args.emulate_avx2, "baseline": args.baseline,
                                    "environment": AVX2_ENVIRONMENT if args.emulate_avx2 else {}, "pairs": pairs,
                                    "medians": medians, "table": text}, indent=2) + "\n")
    print(f"cpu: {described}; baseline {args.baseline}")
    print(text)


if __name__ == "__main__":
    main()
