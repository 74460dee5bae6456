"""Serving the tiny model: `clt serve` in its own process on a free loopback port, this
process as the load generator (a fixed number of requests, bounded concurrency, one
keep-alive connection per worker), plain and streamed answers.

    python benchmarks/bench_serve.py [--requests 200] [--concurrency 4] [--max-tokens 8]

Prints requests per second and p50/p95 latency (and the time to the first streamed
piece). Exit 0 when every request was answered and every answer was logged, else 1."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODEL = "bench"
HOST = "127.0.0.1"
START_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 60


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    """A real LoRA adapter (q/v + a perturbed lm_head copy): versions answer differently."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"], init_lora_weights=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 0.5)
    model.save_pretrained(out)
    return out


def setup(ws: Path, share: float) -> str:
    """The tiny base, two registered versions, champion 1.0.0 and challenger 1.1.0."""
    from cl_toolkit.registry import VersionRecord, open_registry, promote
    from cl_toolkit.training.tiny_model import TinySpec, build_tiny_model, bundled_corpus

    base = ws / "models" / "tiny-llama"
    info = build_tiny_model(base, TinySpec(), bundled_corpus(REPO))
    with open_registry(ws) as reg:
        for i, version in enumerate(["1.0.0", "1.1.0"]):
            run = ws / "runs" / f"{MODEL}-{version}"
            make_adapter(base, run / "adapter", seed=i + 1)
            (run / "data").mkdir()
            for name in ("recipe.yml", "axolotl.yml", "manifest.json", "data/new.jsonl"):
                (run / name).write_text("{}\n")
            reg.register(VersionRecord(MODEL, version, "1.0.0" if i else None, "initial_lora", str(base),
                                       "r" * 64, "d" * 64, str(run), str(run / "adapter")))
        promote(reg, MODEL, "1.0.0", reason="bench")
        if share > 0:
            promote(reg, MODEL, "1.1.0", to="challenger", reason="bench")
    return f"tiny Llama ({info['parameters']:,} parameters)"


def start_server(ws: Path, args) -> tuple[subprocess.Popen, int]:
    return launch_serve(ws, "--threads", str(args.threads), "--max-tokens", str(args.max_tokens),
                        "--challenger-share", str(args.share))


def launch_serve(ws: Path, *options: str) -> tuple[subprocess.Popen, int]:
    """`clt serve MODEL OPTIONS` on a free loopback port, in its own process: (process, port)."""
    cmd = [sys.executable, "-m", "cl_toolkit", "--workspace", str(ws), "serve", MODEL, "--host", HOST,
           "--port", "0", *options]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    found: list[int] = []

    def read() -> None:
        for line in proc.stdout:
            if m := re.search(rf"http://{re.escape(HOST)}:(\d+)", line):
                found.append(int(m.group(1)))
                break
        for _ in proc.stdout:  # keep draining so the server never blocks on a full pipe
            pass

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not found and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not found:
        proc.kill()
        raise SystemExit(f"clt serve did not start within {START_TIMEOUT_S} s (exit {proc.poll()})")
    return proc, found[0]


def one_request(conn: http.client.HTTPConnection, rid: str, stream: bool, max_tokens: int):
    """(seconds to the whole answer, seconds to the first streamed piece or None, ok)."""
    body = json.dumps({"model": MODEL, "stream": stream, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "What is the friction loss in a 1.75 in hose?"}]})
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"Content-Type": "application/json", "X-Request-Id": rid})
    resp = conn.getresponse()
    first = None
    if stream and resp.status == 200:
        while line := resp.readline():
            if first is None and line.startswith(b"data: ") and b'"content": "' in line and b'"content": ""' not in line:
                first = time.perf_counter() - start
    else:
        resp.read()
    return time.perf_counter() - start, first, resp.status == 200


def load(port: int, mode: str, n: int, concurrency: int, max_tokens: int) -> dict:
    """n requests over `concurrency` keep-alive connections; their timings."""
    counter, lock = iter(range(n)), threading.Lock()

    def worker(_) -> list:
        conn, out = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S), []
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return out
                try:
                    out.append(one_request(conn, f"{mode}-{i}", mode == "stream", max_tokens))
                except (OSError, http.client.HTTPException):
                    conn.close()
                    out.append((0.0, None, False))
        finally:
            conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [r for part in pool.map(worker, range(concurrency)) for r in part]
    wall = time.perf_counter() - start
    ok = [r for r in results if r[2]]
    firsts = [r[1] for r in ok if r[1] is not None]
    return {"mode": mode, "requests": n, "errors": n - len(ok), "rps": len(ok) / wall,
            "p50": _pct(ok, 50), "p95": _pct(ok, 95),
            "first_p50": statistics.median(firsts) * 1e3 if firsts else None}


def _pct(results: list, q: int) -> float | None:
    times = sorted(r[0] for r in results)
    if not times:
        return None
    return statistics.quantiles(times, n=100, method="inclusive")[q - 1] * 1e3 if len(times) > 1 else times[0] * 1e3


def stop_server(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def logged(ws: Path) -> int:
    from cl_toolkit.feedback.store import open_store

    with open_store(ws) as store:
        return store.count("predictions")


def table(rows: list[dict], args) -> list[str]:
    def ms(x):
        return f"{x:.1f}" if x is not None else "-"

    lines = [f"{'mode':<8}{'requests':>9}{'conc':>6}{'errors':>8}{'rps':>9}{'p50 ms':>9}{'p95 ms':>9}"
             f"{'first piece p50 ms':>20}"]
    for r in rows:
        lines.append(f"{r['mode']:<8}{r['requests']:>9}{args.concurrency:>6}{r['errors']:>8}{r['rps']:>9.1f}"
                     f"{ms(r['p50']):>9}{ms(r['p95']):>9}{ms(r['first_p50']):>20}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="requests per mode (plain, stream)")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    ap.add_argument("--max-tokens", type=int, default=8, help="new tokens per answer (the server's cap)")
    ap.add_argument("--share", type=float, default=0.3, help="challenger share")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads in the server")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clt-bench-serve-") as tmp:
        ws = Path(tmp) / "ws"
        what = setup(ws, args.share)
        proc, port = start_server(ws, args)
        try:
            load(port, "warmup", 4, 1, args.max_tokens)
            rows = [load(port, mode, args.requests, args.concurrency, args.max_tokens)
                    for mode in ("plain", "stream")]
        finally:
            code = stop_server(proc)
        stored, expected = logged(ws), 4 + 2 * args.requests - sum(r["errors"] for r in rows)
        shutil.rmtree(ws, ignore_errors=True)
    print(f"serving {what} through `clt serve` on loopback: champion + challenger at {args.share:.0%}, "
          f"max_tokens {args.max_tokens}, {os.cpu_count()} CPUs")
    print("\n".join(table(rows, args)))
    print(f"logged {stored}/{expected} answered requests after shutdown (server exit {code})")
    return 0 if code == 0 and stored == expected and not any(r["errors"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
