"""`tlab data audit` on woof-bench (2,800 photos), each in its own process, as a user runs it: cold (no cached
feature, no decoded photo); with the features cached but their folder not remembered (a cache from before
transferlab remembered it: the model is built to name the folder); with the folder remembered but no kept
probabilities (as after a frozen run: the head is cross-validated); and again (everything kept); then each detector's precision and recall on
copies of woof-mini and clothing-mini with planted problems (tests/planted.py).

    .venv/bin/python bench/audit.py [--data ../shared/data/woof-bench]

Prints a table and writes bench/audit.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu, describe, scratch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def timed_audit(data: Path, out: Path, cache: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "transferlab.cli", "data", "audit", str(data), "--out", str(out)],
        check=True, stdout=subprocess.DEVNULL, env={**os.environ, "TLAB_DATA_DIR": cache},
    )
    return time.perf_counter() - started


def planted_scores(name: str, strangers: str, work: Path) -> dict:
    """Precision and recall of each detector on one planted copy."""
    sys.path.insert(0, str(REPO / "tests"))
    from planted import plant

    import transferlab as tl

    planted = plant(SHARED / name, SHARED / strangers, work / name)
    findings = tl.audit(planted.root)

    def scores(found: list[str], truth: set[str], top: int | None = None) -> dict:
        found = found[:top] if top else found
        hits = len(truth & set(found))
        return {"found": len(found), "planted": len(truth), "hits": hits,
                "precision": hits / len(found) if found else None, "recall": hits / len(truth)}

    copies = findings[findings["issue"].isin(["leak", "duplicate", "near-duplicate"])]
    paired = {path for path, kept in zip(copies["path"], copies["suggested"]) if str(planted.copies.get(Path(path), "")) == kept}
    label = findings[findings["issue"] == "label"]["path"].tolist()
    off = findings[findings["issue"] == "off-topic"]["path"].tolist()
    return {
        "copies": {**scores(copies["path"].tolist(), {str(c) for c in planted.copies}), "paired_with_original": len(paired)},
        "label errors (all candidates)": scores(label, {str(p) for p in planted.moved}),
        "label errors (top 20)": scores(label, {str(p) for p in planted.moved}, 20),
        "off-topic": scores(off, {str(p) for p in planted.off_topic}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "woof-bench")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "audit.json")
    args = parser.parse_args()
    work = Path(scratch(prefix="tlab-audit-"))
    cache = str(work / "cache")
    cold = timed_audit(args.data, work / "cold", cache)
    (work / "cache" / "features" / "stores.json").unlink()
    shutil.rmtree(work / "cache" / "audit")
    features_cached = timed_audit(args.data, work / "features-cached", cache)
    shutil.rmtree(work / "cache" / "audit")
    after_frozen = timed_audit(args.data, work / "after-frozen", cache)
    warm = timed_audit(args.data, work / "warm", cache)
    os.environ["TLAB_DATA_DIR"] = str(work / "planted-cache")
    planted = {name: planted_scores(name, strangers, work) for name, strangers in (("woof-mini", "clothing-mini"), ("clothing-mini", "woof-mini"))}
    machine = cpu()
    lines = [f"cpu: {describe(machine)}", "", "| audit of woof-bench | seconds |", "| --- | ---: |",
             f"| cold (features computed) | {cold:.1f} |", f"| features cached, folder not remembered | {features_cached:.1f} |",
             f"| folder remembered, probabilities fitted (as after a frozen run) | {after_frozen:.1f} |",
             f"| again (folder and probabilities kept) | {warm:.1f} |", "",
             "| planted set | detector | found | planted | hits | precision | recall |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, detectors in planted.items():
        for detector, s in detectors.items():
            precision = "–" if s["precision"] is None else f"{s['precision']:.2f}"
            lines.append(f"| {name} | {detector} | {s['found']} | {s['planted']} | {s['hits']} | {precision} | {s['recall']:.2f} |")
    print("\n".join(lines))
    args.out.write_text(json.dumps({"cpu": machine, "cold_s": cold, "features_cached_s": features_cached, "after_frozen_s": after_frozen, "warm_s": warm, "planted": planted, "table": "\n".join(lines)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
