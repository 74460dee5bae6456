"""The benchmark script runs end to end on a small input and prints its table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_feedback.py"


def test_bench_runs_small_and_prints_every_measurement(capsys):
    spec = importlib.util.spec_from_file_location("bench_feedback", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    code = bench.main(["--rows", "2000", "--events", "200", "--naive-sample", "3"])
    out = capsys.readouterr().out
    assert code in (0, 1)  # tiny inputs need not meet the 1M-row targets
    for label in ("import 2,000 predictions", "extract 2,000 predictions",
                  "feedback event, store", "feedback event, naive JSONL", "speed-up vs naive"):
        assert label in out
    assert ("PASS" in out) or ("FAIL" in out)
