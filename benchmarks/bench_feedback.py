"""Benchmark the feedback store: bulk import and extract, and the cost of one feedback event.

    python benchmarks/bench_feedback.py [--rows 1000000] [--events 10000] [--naive-sample 50]

Everything is measured in one run on generated, seeded data and printed side by side with
the targets (issue #3): 1M predictions extracted in <= 30 s, and one feedback event
>= 100x cheaper than the naive JSONL approach (load the whole log, update one entry,
rewrite the file). Each naive event reads and writes the whole 10,000-entry log, so every
event costs the same; by default a sample of them is timed and the mean is used.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, too

from cl_toolkit.feedback.extract import extract  # noqa: E402
from cl_toolkit.feedback.importer import import_files  # noqa: E402
from cl_toolkit.feedback.store import FeedbackStore  # noqa: E402
from cl_toolkit.feedback.synth import generate_rows, write_jsonl  # noqa: E402

EXTRACT_TARGET_S_PER_MILLION = 30.0
EVENT_RATIO_TARGET = 100.0


def _timed(fn, *args, **kwargs) -> tuple[tuple[float, float], object]:
    """((wall seconds, CPU seconds of this process), result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return (time.perf_counter() - wall, time.process_time() - cpu), result


def bench_bulk(tmp: Path, rows: int, seed: int) -> dict:
    """Generate, import and extract `rows` predictions; seconds for each step."""
    log = tmp / "bulk.jsonl"
    (gen_s, _), _ = _timed(write_jsonl, log, generate_rows(rows, seed=seed))
    with FeedbackStore(tmp / "bulk" / "feedback.db") as store:
        import_s, summary = _timed(import_files, store, [log])
        extract_s, manifest = _timed(extract, store, tmp / "train.jsonl")
    assert summary.predictions_added == rows, summary
    return {"generate_s": gen_s, "import_s": import_s, "extract_s": extract_s,
            "written": manifest["counts"]["written"]}


def _naive_event(log: Path, request_id: str, rating: int) -> None:
    """What many teams start with: the whole log in memory for every feedback event."""
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    for entry in entries:
        if entry["request_id"] == request_id:
            entry["user_feedback"] = {"rating": rating}
            break
    log.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")


def bench_events(tmp: Path, events: int, naive_sample: int, seed: int) -> dict:
    """Seconds per feedback event: the store (every event) vs the naive JSONL rewrite."""
    rows = list(generate_rows(events, seed=seed, prefix="ev", feedback_rate=0.0))
    rng = random.Random(seed)
    plan = [(rows[rng.randrange(events)]["request_id"], rng.randint(1, 5)) for _ in range(events)]
    with FeedbackStore(tmp / "events" / "feedback.db") as store:
        with store.transaction():
            store.insert_predictions([(r["request_id"], r["timestamp"], r["input"], r["output"],
                                       r["model_version"], None, None, None, None, None)
                                      for r in rows])
        (store_s, _), _ = _timed(lambda: [store.add_feedback(rid, rating=n) for rid, n in plan])
    log = tmp / "naive.jsonl"
    write_jsonl(log, rows)
    sample = plan[:: max(1, events // naive_sample)][:naive_sample]
    (naive_s, _), _ = _timed(lambda: [_naive_event(log, rid, n) for rid, n in sample])
    return {"store_event_s": store_s / events, "naive_event_s": naive_s / len(sample),
            "naive_timed": len(sample)}


def _table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(args, bulk: dict, ev: dict) -> tuple[str, bool]:
    """The results table and whether every target was met.

    Each verdict is decided on the figure exactly as printed (rounded first), so a reader
    can check every PASS/FAIL against the table alone; the speed-up is the printed naive
    figure over the printed store figure."""
    target_s = round(EXTRACT_TARGET_S_PER_MILLION * args.rows / 1_000_000, 3)
    (import_s, import_cpu), (extract_s, extract_cpu) = bulk["import_s"], bulk["extract_s"]
    store_us, naive_ms = round(ev["store_event_s"] * 1e6, 2), round(ev["naive_event_s"] * 1e3, 3)
    ratio = round(naive_ms * 1e3 / store_us, 1)
    ok_extract, ok_ratio = round(extract_s, 3) <= target_s, ratio >= EVENT_RATIO_TARGET
    rows = [
        ("measurement", "wall time", "CPU time", "throughput (wall)", "target", "result"),
        (f"generate {args.rows:,} rows (setup)", f"{bulk['generate_s']:.3f} s", "", "", "", ""),
        (f"import {args.rows:,} predictions", f"{import_s:.3f} s", f"{import_cpu:.3f} s",
         f"{args.rows / import_s:,.0f} rows/s", "", ""),
        (f"extract {args.rows:,} predictions ({bulk['written']:,} written)", f"{extract_s:.3f} s",
         f"{extract_cpu:.3f} s", f"{args.rows / extract_s:,.0f} rows/s", f"<= {target_s:.3f} s",
         "PASS" if ok_extract else "FAIL"),
        (f"feedback event, store ({args.events:,} events)", f"{store_us:,.2f} us",
         "", f"{1 / ev['store_event_s']:,.0f} events/s", "", ""),
        (f"feedback event, naive JSONL rewrite ({ev['naive_timed']} of {args.events:,} timed)",
         f"{naive_ms:,.3f} ms", "", f"{1 / ev['naive_event_s']:,.1f} events/s", "", ""),
        ("per-event speed-up vs naive", f"{ratio:,.1f}x", "", "", f">= {EVENT_RATIO_TARGET:.1f}x",
         "PASS" if ok_ratio else "FAIL"),
    ]
    return _table(rows), ok_extract and ok_ratio


def _load_note(before: float, after: float) -> str:
    """Wall times mean little on a busy machine: say so, with the numbers."""
    cores = os.cpu_count() or 1
    note = f"load average {before:.1f} before, {after:.1f} after, on {cores} cores"
    if max(before, after) > cores:
        note += " - the machine was busy: wall times are inflated; CPU times are this process's own"
    return note


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--naive-sample", type=int, default=50,
                        help="naive events actually timed (each costs the same)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_feedback.") as tmp:
        bulk = bench_bulk(Path(tmp), args.rows, args.seed)
        events = bench_events(Path(tmp), args.events, args.naive_sample, args.seed)
    table, ok = report(args, bulk, events)
    print(f"feedback store benchmark (seed {args.seed})\n{table}\n"
          f"{_load_note(load_before, os.getloadavg()[0])}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
