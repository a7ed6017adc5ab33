"""Load on `tlab serve` over 127.0.0.1: throughput and latency at several concurrencies.

    .venv/bin/python bench/serve.py [--run RUN] [--requests 300] [--concurrency 1 4 8] [--baseline-src OLD/src]
        [--precision auto fp32]

Without --run, a frozen model is trained on woof-mini first (a minute). Requests carry one woof-bench
photo each, cycling through the validation set; each client thread keeps its connection open (as a browser
does), so the client's own CPU (it shares the machine's cores) stays small. With --baseline-src, a server
from that source tree (e.g. a `git worktree` of an older commit) is measured in the same run first. Each
server is measured once per --precision. Prints a table and writes bench/serve.json.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from machine import cpu, describe, scratch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def trained_run(work: Path) -> Path:
    from transferlab.config import TrainConfig
    from transferlab.experiment import train

    return train(TrainConfig(data=str(SHARED / "woof-mini"), out=str(work / "run"), strategy="frozen", epochs=3)).path


def load(url: str, photos: list[bytes], requests: int, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0

    clients = threading.local()

    def one(i: int) -> None:
        nonlocal errors
        if not hasattr(clients, "client"):
            clients.client = httpx.Client(timeout=60)
        started = time.perf_counter()
        try:
            answer = clients.client.post(url, files=[("files", (f"{i}.jpg", photos[i % len(photos)]))])
            ok = answer.status_code == 200
        except httpx.HTTPError:
            ok = False
        latencies.append(time.perf_counter() - started)
        errors += not ok

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {"concurrency": concurrency, "requests": requests, "errors": errors, "requests_per_s": requests / wall,
            "p50_ms": 1000 * p50, "p95_ms": 1000 * p95, "p99_ms": 1000 * p99}


def measure(run: Path, photos: list[bytes], args, src: Path | None, precision: str) -> tuple[dict, list[dict]]:
    """Start a server (from `src`, else this checkout) and load it at each concurrency; (its /health, rows)."""
    port = free_port()
    env = {**os.environ, **({"PYTHONPATH": str(src)} if src else {})}
    command = [sys.executable, "-m", "transferlab.cli", "serve", str(run), "--port", str(port)]
    if src is None:
        command += ["--inference-precision", precision]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise SystemExit("the server did not start")
        url = f"http://127.0.0.1:{port}/predict"
        load(url, photos, 10, 1)  # warm-up
        return health, [load(url, photos, args.requests, c) for c in args.concurrency]
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--baseline-src", type=Path, help="the src/ folder of an older checkout, measured first")
    parser.add_argument("--precision", nargs="+", default=["auto"], help="--inference-precision of this checkout's server")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "serve.json")
    args = parser.parse_args()
    work = Path(scratch(prefix="tlab-serve-"))
    run = args.run or trained_run(work)
    photos = [p.read_bytes() for p in sorted((SHARED / "woof-bench" / "val").rglob("*.JPEG"))[:200]]
    servers = ([("baseline", args.baseline_src, "fp32")] if args.baseline_src else []) + [("this", None, p) for p in args.precision]
    rows = []
    for name, src, precision in servers:
        health, measured = measure(run, photos, args, src, precision)
        label = f"{name} ({health['runtime']}, {health.get('precision', 'fp32')})"
        rows += [{"server": label, **row} for row in measured]
    table = ["| server | concurrency | requests | errors | requests/s | p50 ms | p95 ms | p99 ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    table += [f"| {r['server']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['requests_per_s']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} |" for r in rows]
    machine = cpu()
    args.out.write_text(json.dumps({"cpu": machine, "rows": rows, "table": "\n".join(table)}, indent=2) + "\n")
    print(f"cpu: {describe(machine)}")
    print("\n".join(table))


if __name__ == "__main__":
    main()
