"""Benchmark the training mix over a large rehearsal pool: `resample: per_epoch`, 3 epochs.

    python benchmarks/bench_mix.py [--size-mb 1024] [--new-rows 5000] [--ratio 0.5] [--epochs 3]

A seeded chat JSONL pool of --size-mb is generated in a temp dir, and a continued_lora recipe
rehearses it. Measured in the same run on the same file: `cat FILE | sha256sum` (reading and
hashing it once, the floor for anything that records the pool's SHA-256, as the manifest
does) and building the mix (indexing the pool, drawing every epoch, reading the drawn rows)
plus hashing the mix. Target (issue #16): the build within 2x of cat | sha256sum, and the
pool streamed, not loaded whole: the process's peak memory (getrusage) may grow by at most a
quarter of the pool's size. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, too

from cl_toolkit.core.files import jsonl_bytes, sha256_bytes  # noqa: E402
from cl_toolkit.registry import open_registry  # noqa: E402
from cl_toolkit.training.mix import build_mix  # noqa: E402
from cl_toolkit.training.strategies import load_recipe  # noqa: E402

SPEED_TARGET = 2.0  # build + hash / (cat | sha256sum)
MEMORY_TARGET = 0.25  # peak RSS growth / pool size
WORDS = ("pressure valve hose ladder engine foam hydrant nozzle crew alarm smoke rescue "
         "vapour tank leak gauge pump shift station permit").split()


def write_pool(path: Path, size_mb: int, seed: int) -> int:
    """Distinct chat rows of varied length (a numbered question from 4,096 phrasings, one of
    4,096 answers) up to `size_mb` MiB, written in blocks (little memory)."""
    rng, target, written, rows = random.Random(seed), size_mb << 20, 0, 0
    questions = [" ".join(rng.choices(WORDS, k=rng.randint(4, 40))) for _ in range(4096)]
    answers = [" ".join(rng.choices(WORDS, k=rng.randint(8, 120))) for _ in range(4096)]
    line = '{"messages": [{"role": "user", "content": "[%d] %s?"}, {"role": "assistant", "content": "%s"}]}\n'
    with open(path, "wb") as f:
        while written < target:
            data = "".join(line % (rows + i, questions[rng.getrandbits(12)], answers[rng.getrandbits(12)])
                           for i in range(4096)).encode()
            f.write(data)
            written, rows = written + len(data), rows + 4096
    return rows


def make_project(tmp: Path, args) -> Path:
    """A project with the pool, the new rows and a per_epoch continued_lora recipe."""
    (tmp / "data").mkdir()
    (tmp / "recipes" / "bench").mkdir(parents=True)
    rows = write_pool(tmp / "data" / "pool.jsonl", args.size_mb, args.seed)
    rng = random.Random(args.seed + 1)
    with open(tmp / "data" / "new.jsonl", "w", encoding="utf-8") as f:
        for i in range(args.new_rows):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"new fact {i}: {rng.choice(WORDS)}?"},
                                             {"role": "assistant", "content": rng.choice(WORDS)}]}) + "\n")
    recipe = {"schema_version": 1, "model": "bench", "version": "1.1.0", "parent": "1.0.0",
              "strategy": "continued_lora", "profile": "tiny-cpu",
              "data": {"train": [{"path": "data/new.jsonl"}], "seed": args.seed,
                       "rehearsal": {"ratio": args.ratio, "resample": "per_epoch",
                                     "sources": [{"path": "data/pool.jsonl"}]}},
              "train": {"num_epochs": args.epochs}}
    path = tmp / "recipes" / "bench" / "1.1.0.yml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    print(f"generated {rows:,} pool rows ({args.size_mb} MiB) and {args.new_rows:,} new rows", flush=True)
    return path


def time_cat(pool: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run(f"cat '{pool}' | sha256sum", shell=True, check=True, capture_output=True, text=True)
    assert len(out.stdout.split()[0]) == 64
    return time.perf_counter() - start


def time_build(recipe: Path, ws: Path) -> tuple[float, dict, str]:
    start = time.perf_counter()
    lr = load_recipe(recipe, workspace=ws)
    with open_registry(ws) as reg:
        mix = build_mix(lr, reg)
    digest = sha256_bytes(jsonl_bytes(mix.rows))
    return time.perf_counter() - start, mix.counts, digest


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=int, default=1024, help="size of the generated pool in MiB (default 1024)")
    p.add_argument("--new-rows", type=int, default=5000, help="new rows of the recipe (default 5000: a quarter's data)")
    p.add_argument("--ratio", type=float, default=0.5, help="rehearsal ratio (default 0.5)")
    p.add_argument("--epochs", type=int, default=3, help="epochs written out (default 3)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-mix-") as tmp:
        tmp = Path(tmp)
        recipe = make_project(tmp, args)
        pool = tmp / "data" / "pool.jsonl"
        time_cat(pool)  # warm the page cache: both timings below read a cached file
        cat_s = time_cat(pool)
        rss_before = _rss_bytes()
        build_s, counts, digest = time_build(recipe, tmp / "ws")
        grew = max(0, _rss_bytes() - rss_before)
        size = pool.stat().st_size
    speed, mem = round(build_s / cat_s, 2), round(grew / size, 3)
    ok_speed, ok_mem = speed <= SPEED_TARGET, mem <= MEMORY_TARGET
    pool_counts = counts["rehearsal"]["data/pool.jsonl"]
    rows = [("measurement", "value", "target", "result"),
            (f"cat pool | sha256sum ({size / 2**20:,.0f} MiB)", f"{cat_s:.2f} s", "", ""),
            (f"build per_epoch mix ({counts['epochs']} epochs, {counts['total']:,} rows) + sha256",
             f"{build_s:.2f} s", "", ""),
            ("build / cat | sha256sum", f"{speed:.2f}x", f"<= {SPEED_TARGET:.1f}x", "PASS" if ok_speed else "FAIL"),
            ("peak RSS growth during the build", f"{grew / 2**20:,.1f} MiB ({100 * mem:.1f}% of the pool)",
             f"<= {100 * MEMORY_TARGET:.0f}%", "PASS" if ok_mem else "FAIL"),
            ("pool rows drawn / distinct / pool", f"{pool_counts['rows']:,} / {pool_counts['seen']['distinct']:,} / "
             f"{pool_counts['pool']:,}", "", ""),
            ("mix sha256", digest[:16], "", "")]
    print(_table(rows))
    print(f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}: wall times on a busy machine vary)")
    return 0 if ok_speed and ok_mem else 1


if __name__ == "__main__":
    sys.exit(main())
