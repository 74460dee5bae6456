"""The router's overhead: `clt serve --upstream` in front of an upstream, against calling the
upstream directly. The upstream is the built-in server (tiny model, its own process and
workspace) answering `bench-1.0.0`; the router (its own process, a copy of the workspace:
its own store) routes every request to the champion 1.0.0 and forwards it there. Requests
go one at a time, direct and through the router alternately, each over a keep-alive
connection, so both see the same upstream.

    python benchmarks/bench_router.py [--requests 200] [--max-tokens 4]

Prints p50/p95 latency direct and through the router, the added latency (the difference
of the percentiles, and the median and p95 of the per-pair difference), plain and
streamed. Exit 0 when every request was answered and the router logged each answer once."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import (  # noqa: E402
    HOST,
    MODEL,
    REQUEST_TIMEOUT_S,
    launch_serve,
    logged,
    setup,
    stop_server,
)

VERSION = "1.0.0"  # the champion: what the router forwards every request to (share 0)


def start(ws: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """`clt serve MODEL` on a free loopback port, in its own process."""
    return launch_serve(ws, "--threads", "1", *extra)


def timed(conn: http.client.HTTPConnection, model: str, stream: bool, max_tokens: int) -> float | None:
    """Seconds to the whole answer (None when it was not a 200)."""
    body = json.dumps({"model": model, "stream": stream, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "What is the friction loss in a 1.75 in hose?"}]})
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return time.perf_counter() - start if resp.status == 200 else None


def measure(up_port: int, router_port: int, mode: str, n: int, max_tokens: int) -> dict:
    """n pairs (direct, router), alternating which goes first; latencies in ms."""
    direct = http.client.HTTPConnection(HOST, up_port, timeout=REQUEST_TIMEOUT_S)
    routed = http.client.HTTPConnection(HOST, router_port, timeout=REQUEST_TIMEOUT_S)
    pairs, errors = [], 0
    try:
        for i in range(n):
            def call_direct():
                return timed(direct, f"{MODEL}-{VERSION}", mode == "stream", max_tokens)

            def call_router():
                return timed(routed, MODEL, mode == "stream", max_tokens)

            if i % 2 == 0:
                d = call_direct()
                r = call_router()
            else:
                r = call_router()
                d = call_direct()
            if d is None or r is None:
                errors += 1
            else:
                pairs.append((d, r))
    finally:
        direct.close()
        routed.close()
    times = np.array(pairs, dtype=float).reshape(-1, 2) * 1e3
    row = {"mode": mode, "requests": n, "errors": errors, "answered": len(pairs)}
    if len(pairs):
        d50, d95 = np.percentile(times[:, 0], [50, 95])
        r50, r95 = np.percentile(times[:, 1], [50, 95])
        added = times[:, 1] - times[:, 0]
        row.update(direct_p50=d50, direct_p95=d95, router_p50=r50, router_p95=r95, added_p50=r50 - d50,
                   added_p95=r95 - d95, pair_p50=float(np.median(added)), pair_p95=float(np.percentile(added, 95)))
    return row


def table(rows: list[dict]) -> list[str]:
    cols = [("direct_p50", "direct p50"), ("direct_p95", "direct p95"), ("router_p50", "router p50"),
            ("router_p95", "router p95"), ("added_p50", "added p50"), ("added_p95", "added p95"),
            ("pair_p50", "pair diff p50"), ("pair_p95", "pair diff p95")]
    lines = [f"{'mode':<8}{'requests':>9}{'errors':>8}" + "".join(f"{label + ' ms':>17}" for _, label in cols)]
    for r in rows:
        lines.append(f"{r['mode']:<8}{r['requests']:>9}{r['errors']:>8}"
                     + "".join(f"{r[k]:>17.2f}" if k in r else f"{'-':>17}" for k, _ in cols))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="request pairs (direct + router) per mode")
    ap.add_argument("--max-tokens", type=int, default=4, help="new tokens per answer")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clt-bench-router-") as tmp:
        up_ws, router_ws = Path(tmp) / "upstream", Path(tmp) / "router"
        what = setup(up_ws, 0.0)
        shutil.copytree(up_ws, router_ws)  # the same registry (paths are relative), a store of its own
        cap = ("--max-tokens", str(args.max_tokens))
        upstream, up_port = start(up_ws, *cap)
        try:
            router, router_port = start(router_ws, "--upstream", f"http://{HOST}:{up_port}/v1",
                                        "--challenger-share", "0", *cap)
            try:
                measure(up_port, router_port, "warmup", 4, args.max_tokens)
                rows = [measure(up_port, router_port, mode, args.requests, args.max_tokens)
                        for mode in ("plain", "stream")]
            finally:
                router_code = stop_server(router)
        finally:
            stop_server(upstream)
        stored, expected = logged(router_ws), 4 + sum(r["answered"] for r in rows)
    print(f"router overhead: {what} behind `clt serve` as the upstream, `clt serve --upstream` in front, "
          f"loopback, one request at a time, max_tokens {args.max_tokens}, {os.cpu_count()} CPUs")
    print("\n".join(table(rows)))
    print(f"the router logged {stored}/{expected} answers after shutdown (router exit {router_code})")
    return 0 if router_code == 0 and stored == expected and not any(r["errors"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
