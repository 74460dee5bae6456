"""Benchmark the toolkit's own time on the tiny profile: a cycle's overhead against its Axolotl
training process, and a repeated render against the first.

    python benchmarks/bench_cycle.py [--quick] [--repeats 3] [--epochs N] [--recipe PATH]
    (env: BENCH_CYCLE_QUICK=1, BENCH_CYCLE_REPEATS, BENCH_CYCLE_EPOCHS)

Side by side in one run, each through a real `clt` process:
- `clt cycle RECIPE --json` in a fresh workspace that holds only the tiny base: the cycle's
  toolkit overhead (everything but the Axolotl training process and the generation of
  evaluation answers, as the cycle measures it) against the training process. Target
  (issue #19): <= 15%. Also printed: each step's share and the whole process's wall time
  (Python start and imports included), for information.
- `clt recipe render RECIPE -o DIR`: the first render in a workspace, then the same render
  again (median of --repeats). Target: the repeat takes <= 10% of the first.
The load average is printed at the start and the end: on a shared machine both numbers move.
Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_BASE = ("import sys; from pathlib import Path; "
              "from cl_toolkit.training.tiny_model import TinySpec, build_tiny_model, bundled_corpus; "
              "build_tiny_model(Path(sys.argv[1]), TinySpec(), bundled_corpus(Path(sys.argv[2])))")

RECIPE = ROOT / "recipes" / "firefighter" / "1.0.0.yml"
OVERHEAD_TARGET = 0.15  # toolkit seconds / Axolotl training process seconds
RENDER_TARGET = 0.10  # repeated render / first render


def python(ws: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    """Run `python ARGS` with CLT_HOME=ws in its own process, output kept; (wall seconds, the process)."""
    env = {**os.environ, "CLT_HOME": str(ws), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc


def clt(ws: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    """The real `clt ARGS` in its own process."""
    return python(ws, "-m", "cl_toolkit", *args)


def workspace(tmp: Path, name: str, base: Path) -> Path:
    """A fresh workspace holding only the tiny base (what `clt tiny-model` would leave)."""
    ws = tmp / name
    shutil.copytree(base, ws / "models" / "tiny-llama")
    return ws


def run_cycle(tmp: Path, base: Path, recipe: Path, epochs: int | None) -> tuple[float, dict]:
    ws = workspace(tmp, "ws-cycle", base)
    args = ["cycle", str(recipe), "--json", *(["--set", f"train.num_epochs={epochs}"] if epochs else [])]
    wall, proc = clt(ws, *args)
    return wall, json.loads(proc.stdout)


def run_renders(tmp: Path, base: Path, recipe: Path, repeats: int) -> tuple[float, list[float]]:
    ws = workspace(tmp, "ws-render", base)
    first = clt(ws, "recipe", "render", str(recipe), "-o", str(tmp / "render-0"))[0]
    again = [clt(ws, "recipe", "render", str(recipe), "-o", str(tmp / f"render-{i + 1}"))[0] for i in range(repeats)]
    return first, again


def _table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio <= target else "FAIL"


def report(cycle_wall: float, doc: dict, first: float, again: list[float], repeats: int) -> tuple[list[tuple], bool]:
    o, timings = doc["overhead"], doc["timings"]
    share = o["toolkit"] / o["axolotl"]
    repeat = statistics.median(again)
    rows = [("measure", "seconds", "against", "ratio", "target", "result"),
            ("cycle: Axolotl training process", f"{o['axolotl']:.1f}", "", "", "", ""),
            ("cycle: generation (evaluation answers)", f"{o['generation']:.1f}", "", "", "", ""),
            ("cycle: toolkit overhead", f"{o['toolkit']:.1f}", "training", f"{100 * share:.0f}%",
             f"<= {100 * OVERHEAD_TARGET:.0f}%", _verdict(share, OVERHEAD_TARGET))]
    for step, t in timings.items():
        if t["toolkit"] >= 0.05:
            rows.append((f"  of which {step}", f"{t['toolkit']:.1f}", "training", f"{100 * t['toolkit'] / o['axolotl']:.0f}%",
                         "", ""))
    outside = cycle_wall - o["axolotl"] - o["generation"]
    rows += [("clt cycle process, wall (info)", f"{cycle_wall:.1f}", "", "", "", ""),
             ("  toolkit incl. start and imports", f"{outside:.1f}", "training", f"{100 * outside / o['axolotl']:.0f}%",
              "", ""),
             ("render: first (clt recipe render)", f"{first:.1f}", "", "", "", ""),
             (f"render: repeated (median of {repeats})", f"{repeat:.1f}", "first", f"{100 * repeat / first:.0f}%",
              f"<= {100 * RENDER_TARGET:.0f}%", _verdict(repeat / first, RENDER_TARGET))]
    return rows, share <= OVERHEAD_TARGET and repeat / first <= RENDER_TARGET


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table; exit 1 when a target is missed."""
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=env("BENCH_CYCLE_QUICK") == "1",
                        help="one repeated render and 2 training epochs")
    parser.add_argument("--repeats", type=int, default=int(env("BENCH_CYCLE_REPEATS", "3")),
                        help="repeated renders (the median is compared with the first)")
    parser.add_argument("--epochs", type=int, default=int(env("BENCH_CYCLE_EPOCHS", "0")) or None,
                        help="train.num_epochs for the cycle (default: the recipe's)")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="a tiny-profile recipe with no parent")
    args = parser.parse_args(argv)
    repeats, epochs = (1, args.epochs or 2) if args.quick else (max(1, args.repeats), args.epochs)
    load_start, start = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_cycle.") as tmp_name:
        tmp = Path(tmp_name)
        base = tmp / "base" / "tiny-llama"
        python(tmp, "-c", BUILD_BASE, str(base), str(ROOT))  # in a process of its own: its warnings stay there
        cycle_wall, doc = run_cycle(tmp, base, args.recipe.resolve(), epochs)
        first, again = run_renders(tmp, base, args.recipe.resolve(), repeats)
    rows, ok = report(cycle_wall, doc, first, again, repeats)
    print(_table(rows))
    load_end = os.getloadavg()
    print(f"tiny profile, {args.recipe.name}, epochs {epochs or 'the recipe’s'}, {os.cpu_count()} CPU cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load average "
          f"{load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end; renders "
          f"{', '.join(f'{s:.1f}' for s in [first, *again])} s")
    print(f"(whole benchmark {time.perf_counter() - start:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
