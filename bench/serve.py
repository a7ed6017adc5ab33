"""Load on `tlab serve` over 127.0.0.1: throughput and latency at several concurrencies.

    .venv/bin/python bench/serve.py [--run RUN] [--requests 600] [--concurrency 1 4 8] [--baseline-src OLD/src]
        [--precision auto fp32] [--rounds 3]

Without --run, a frozen model is trained on woof-mini first (a minute). Requests carry one woof-bench
photo each, cycling through the validation set; each client thread keeps its connection open (as a browser
does) and sends bodies built beforehand, so the client's own CPU (it shares the machine's cores) stays small.
With --baseline-src, a server from that source tree (e.g. a `git worktree` of an older commit) is measured in
the same run first. Each
server is measured once per --precision, and all of them in turn --rounds times; with a baseline, each round's
ratio of requests/s is printed (a noisy shared machine moves both servers of a round alike). Prints a table and
writes bench/serve.json.
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

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


BOUNDARY = "tlab-bench-boundary"
WARM_UP_ROUNDS = 5
"""Requests per client sent at each concurrency before it is measured: a batching server meets its batch sizes
(OpenVINO prepares each new input shape on first use) before the clock runs, as a server long in service has."""


def multipart_body(name: str, photo: bytes) -> bytes:
    """One photo as the multipart/form-data body a browser sends (field "files")."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n'
    return head.encode() + photo + f"\r\n--{BOUNDARY}--\r\n".encode()


def load(url: str, photos: list[bytes], requests: int, concurrency: int) -> dict:
    """`requests` POSTs of one photo each from `concurrency` threads, each on its own kept-alive connection.

    The client is http.client with the bodies built beforehand: on a machine whose cores the server shares, the
    load generator's own CPU is taken from the server (httpx cost 1.9-2.3 ms a request here, this 0.5-0.7)."""
    address = urlsplit(url)
    bodies = [multipart_body(f"{i}.jpg", photo) for i, photo in enumerate(photos)]
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    latencies: list[float] = []
    errors = 0
    connections = threading.local()

    def one(i: int) -> None:
        nonlocal errors
        if not hasattr(connections, "http"):
            connections.http = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        started = time.perf_counter()
        try:
            connections.http.request("POST", address.path, bodies[i % len(bodies)], headers)
            answer = connections.http.getresponse()
            answer.read()
            ok = answer.status == 200
        except (OSError, http.client.HTTPException):
            connections.http.close()
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
        rows = []
        for concurrency in args.concurrency:
            load(url, photos, WARM_UP_ROUNDS * concurrency, concurrency)
            rows.append(load(url, photos, args.requests, concurrency))
        return health, rows
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--baseline-src", type=Path, help="the src/ folder of an older checkout, measured first")
    parser.add_argument("--precision", nargs="+", default=["auto"], help="--inference-precision of this checkout's server")
    parser.add_argument("--rounds", type=int, default=1, help="measure the servers in turn this many times (noisy machines)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "serve.json")
    args = parser.parse_args()
    work = Path(scratch(prefix="tlab-serve-"))
    run = args.run or trained_run(work)
    photos = [p.read_bytes() for p in sorted((SHARED / "woof-bench" / "val").rglob("*.JPEG"))[:200]]
    servers = ([("baseline", args.baseline_src, "fp32")] if args.baseline_src else []) + [("this", None, p) for p in args.precision]
    rows = []
    for round_ in range(1, args.rounds + 1):
        for name, src, precision in servers:
            health, measured = measure(run, photos, args, src, precision)
            label = f"{name} ({health['runtime']}, {health.get('precision', 'fp32')})"
            rows += [{"round": round_, "server": label, **row} for row in measured]
    table = ["| round | server | concurrency | requests | errors | requests/s | p50 ms | p95 ms | p99 ms |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    table += [f"| {r['round']} | {r['server']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['requests_per_s']:.1f} | "
              f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} |" for r in rows]
    ratios = speedups(rows) if args.baseline_src else []
    machine = cpu()
    args.out.write_text(json.dumps({"cpu": machine, "rows": rows, "speedups": ratios, "table": "\n".join(table)}, indent=2) + "\n")
    print(f"cpu: {describe(machine)}")
    print("\n".join(table))
    for ratio in ratios:
        print(f"{ratio['server']} / baseline, requests/s at concurrency {ratio['concurrency']}: "
              f"{', '.join(f'{r:.2f}x' for r in ratio['per_round'])} (median {ratio['median']:.2f}x)")


def speedups(rows: list[dict]) -> list[dict]:
    """Each server's requests/s over the baseline's of the same round, per concurrency: one ratio per round."""
    rate = {(r["round"], r["server"], r["concurrency"]): r["requests_per_s"] for r in rows}
    baseline = next(r["server"] for r in rows if r["server"].startswith("baseline"))
    found = []
    for server in dict.fromkeys(r["server"] for r in rows if r["server"] != baseline):
        for concurrency in dict.fromkeys(r["concurrency"] for r in rows):
            per_round = [rate[(n, server, concurrency)] / rate[(n, baseline, concurrency)]
                         for n in sorted({r["round"] for r in rows})]
            found.append({"server": server, "concurrency": concurrency, "per_round": per_round, "median": float(np.median(per_round))})
    return found


if __name__ == "__main__":
    main()
