"""Serving under hostile load: `clt serve` in its own process on loopback, this process as
the load generator; the same plain-request load with and without 64 slow clients that hold
connections open by sending their request bodies a byte a second (reconnecting when the
server's request deadline drops them), in alternating rounds.

    python benchmarks/bench_serve_load.py [--requests 100] [--rounds 3] [--slow 64]

Prints requests per second (median of the rounds) and p50/p95/p99 latency (all requests of
a condition) for each condition, and the ratio slow / quiet. Exit 0 when every request of
both conditions got a 200, else 1."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import HOST, MODEL, REQUEST_TIMEOUT_S, setup, start_server, stop_server  # noqa: E402

SLOW_HEAD = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
             f"Content-Length: 1000000\r\n\r\n{{").encode()


class SlowClients:
    """n connections trickling a body one byte a second; a dropped one reconnects."""

    def __init__(self, port: int, n: int):
        self.port, self.stop, self.reconnects = port, threading.Event(), 0
        self.socks = [self._open() for _ in range(n)]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self) -> socket.socket:
        s = socket.create_connection((HOST, self.port), timeout=10)
        s.sendall(SLOW_HEAD)
        return s

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            for i, s in enumerate(self.socks):
                try:
                    s.send(b" ")
                except OSError:
                    s.close()
                    self.reconnects += 1
                    try:
                        self.socks[i] = self._open()
                    except OSError:
                        pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        for s in self.socks:
            s.close()


def one(conn: http.client.HTTPConnection, max_tokens: int) -> tuple[float, bool]:
    body = json.dumps({"model": MODEL, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "What is the friction loss in a 1.75 in hose?"}]})
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return time.perf_counter() - start, resp.status == 200


def round_(port: int, n: int, concurrency: int, max_tokens: int) -> tuple[float, list[float], int]:
    """(requests per second, latencies of the 200s, errors) for n requests."""
    counter, lock = iter(range(n)), threading.Lock()

    def worker(_) -> list:
        conn, out = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S), []
        try:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return out
                try:
                    out.append(one(conn, max_tokens))
                except (OSError, http.client.HTTPException):
                    conn.close()
                    out.append((0.0, False))
        finally:
            conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [r for part in pool.map(worker, range(concurrency)) for r in part]
    wall = time.perf_counter() - start
    ok = [t for t, good in results if good]
    return len(ok) / wall, ok, n - len(ok)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100, help="requests per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per condition, alternating")
    ap.add_argument("--slow", type=int, default=64, help="slow clients in the slow condition")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads in the server")
    args = ap.parse_args(argv)
    args.share = 0.0
    results = {"quiet": {"rps": [], "lat": [], "errors": 0}, "slow": {"rps": [], "lat": [], "errors": 0}}
    reconnects = 0
    with tempfile.TemporaryDirectory(prefix="clt-bench-serve-load-") as tmp:
        ws = Path(tmp) / "ws"
        what = setup(ws, 0.0)
        proc, port = start_server(ws, args)
        try:
            round_(port, 8, 1, args.max_tokens)  # warm-up
            for _ in range(args.rounds):
                for cond in ("quiet", "slow"):
                    slow = SlowClients(port, args.slow) if cond == "slow" else None
                    try:
                        rps, lat, errors = round_(port, args.requests, args.concurrency, args.max_tokens)
                    finally:
                        if slow:
                            slow.close()
                            reconnects += slow.reconnects
                    r = results[cond]
                    r["rps"].append(rps)
                    r["lat"] += lat
                    r["errors"] += errors
        finally:
            code = stop_server(proc)
    print(f"serving {what} through `clt serve` on loopback, load from a second process: "
          f"{args.rounds} rounds x {args.requests} plain requests per condition, concurrency "
          f"{args.concurrency}, max_tokens {args.max_tokens}, {os.cpu_count()} CPUs")
    print(f"{'condition':<22}{'rps':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    rows = {}
    for cond, label in (("quiet", "quiet"), ("slow", f"{args.slow} slow clients")):
        r = results[cond]
        p50, p95, p99 = (np.percentile(r["lat"], [50, 95, 99]) * 1e3) if r["lat"] else (float("nan"),) * 3
        rows[cond] = (statistics.median(r["rps"]), p50, p95, p99)
        print(f"{label:<22}{rows[cond][0]:>8.1f}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}{r['errors']:>8}")
    q, s = rows["quiet"], rows["slow"]
    print(f"{'ratio slow / quiet':<22}{s[0] / q[0]:>8.2f}{s[1] / q[1]:>9.2f}{s[2] / q[2]:>9.2f}{s[3] / q[3]:>9.2f}")
    print(f"slow clients reconnected {reconnects} times (request deadline); server exit {code}")
    return 0 if code == 0 and not results["quiet"]["errors"] and not results["slow"]["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
