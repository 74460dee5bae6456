"""Rollback latency against the 1 s target: through the library (open the registry, roll
back, close) and through a whole `clt registry rollback` process.

    python benchmarks/bench_registry.py [--rollbacks 50] [--cli-rollbacks 5] [--history 200]

Exit 0 when every rollback took under the target, else 1."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from cl_toolkit.registry import VersionRecord, open_registry, promote, rollback

TARGET_S = 1.0
MODEL = "bench"


def fake_run(ws: Path, version: str) -> Path:
    """A finished run folder: the registry only copies and hashes its files."""
    run = ws / "runs" / f"{MODEL}-{version}"
    (run / "adapter").mkdir(parents=True)
    (run / "data").mkdir()
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16}))
    save_file({"lora_A": np.zeros((64, 8), dtype=np.float32)}, str(run / "adapter" / "adapter_model.safetensors"))
    for name, text in {"axolotl.yml": "base_model: tiny\n", "recipe.yml": f"version: {version}\n",
                       "manifest.json": "{}", "data/new.jsonl": "{}\n"}.items():
        (run / name).write_text(text)
    return run


def setup(ws: Path, history: int) -> None:
    """Three versions and a champion that has already moved `history` times."""
    with open_registry(ws) as reg:
        for version, parent in [("1.0.0", None), ("1.1.0", "1.0.0"), ("1.2.0", "1.1.0")]:
            run = fake_run(ws, version)
            reg.register(VersionRecord(MODEL, version, parent, "continued_lora" if parent else "initial_lora",
                                       "tiny", "r", "d", str(run), str(run / "adapter"), train_seconds=1.0))
        for i in range(history):
            promote(reg, MODEL, ("1.0.0", "1.1.0", "1.2.0")[i % 3], reason="history", force=True)
        promote(reg, MODEL, "1.1.0", reason="baseline champion", force=True)


def _repromote(ws: Path) -> None:
    with open_registry(ws) as reg:
        promote(reg, MODEL, "1.2.0", reason="bench: bad release", force=True)


def library_rollbacks(ws: Path, n: int) -> list[float]:
    times = []
    for _ in range(n):
        _repromote(ws)
        start = time.perf_counter()
        with open_registry(ws) as reg:
            move = rollback(reg, MODEL, reason="bench")
        times.append(time.perf_counter() - start)
        assert move.version == "1.1.0", move
    return times


def cli_rollbacks(ws: Path, n: int) -> list[float]:
    exe = shutil.which("clt", path=str(Path(sys.executable).parent))
    argv = [exe] if exe else [sys.executable, "-m", "cl_toolkit"]
    times = []
    for _ in range(n):
        _repromote(ws)
        start = time.perf_counter()
        subprocess.run([*argv, "--workspace", str(ws), "registry", "rollback", MODEL, "--reason", "bench"],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def table(rows: list[tuple[str, list[float]]]) -> list[str]:
    lines = [f"{'rollback path':<26}{'n':>4}{'median ms':>12}{'max ms':>10}{'target ms':>11}  ok"]
    for name, times in rows:
        ok = "yes" if max(times) < TARGET_S else "NO"
        lines.append(f"{name:<26}{len(times):>4}{statistics.median(times) * 1e3:>12.1f}"
                     f"{max(times) * 1e3:>10.1f}{TARGET_S * 1e3:>11.0f}  {ok}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollbacks", type=int, default=50, help="rollbacks through the library")
    ap.add_argument("--cli-rollbacks", type=int, default=5, help="rollbacks through a `clt` process")
    ap.add_argument("--history", type=int, default=200, help="champion moves already in the event log")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clt-bench-") as tmp:
        ws = Path(tmp) / "ws"
        setup(ws, args.history)
        rows = [("library (open+rollback)", library_rollbacks(ws, args.rollbacks))]
        if args.cli_rollbacks:
            rows.append(("clt registry rollback", cli_rollbacks(ws, args.cli_rollbacks)))
        with open_registry(ws) as reg:
            events = len(reg.events(MODEL))
    print(f"registry rollback latency: 3 versions, {events} events in the history")
    print("\n".join(table(rows)))
    return 0 if all(max(t) < TARGET_S for _, t in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
