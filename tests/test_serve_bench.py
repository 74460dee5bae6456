"""The serving benchmark runs end to end on a few requests and prints its table; and
`clt serve --help` stays light (no torch until the server starts)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_serve.py"


@pytest.mark.slow
def test_bench_serve_runs_small_and_prints_its_table(capsys):
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    code = bench.main(["--requests", "6", "--concurrency", "2", "--max-tokens", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    for label in ("rps", "p50 ms", "p95 ms", "first piece p50 ms", "plain", "stream"):
        assert label in out
    assert "logged 16/16 answered requests" in out


def test_serve_help_imports_no_torch():
    code = ("import sys; from cl_toolkit.cli import main; rc = main(['serve', '--help']); "
            "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules)); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    assert "HEAVY []" in out and "--challenger-share" in out


@pytest.mark.slow
def test_bench_serve_load_runs_small_and_prints_its_ratio(capsys):
    spec = importlib.util.spec_from_file_location("bench_serve_load", BENCH.with_name("bench_serve_load.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    code = bench.main(["--requests", "6", "--rounds", "1", "--slow", "8", "--max-tokens", "2"])
    out = capsys.readouterr().out
    assert code == 0, out  # every request of both conditions answered 200
    for label in ("rps", "p50 ms", "p95 ms", "p99 ms", "quiet", "8 slow clients", "ratio slow / quiet"):
        assert label in out
