"""The router benchmark runs end to end on a few requests and prints its table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_router.py"


@pytest.mark.slow
def test_bench_router_runs_small_and_prints_its_table(capsys):
    spec = importlib.util.spec_from_file_location("bench_router", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    code = bench.main(["--requests", "3", "--max-tokens", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    for label in ("direct p50 ms", "router p95 ms", "added p50 ms", "pair diff p95 ms", "plain", "stream"):
        assert label in out
    assert "the router logged 10/10 answers after shutdown (router exit 0)" in out
