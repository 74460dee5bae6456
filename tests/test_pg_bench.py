"""benchmarks/bench_pg.py: the import and extract benchmark on both backends, on a few rows
(the default, 1,000,000, is for `make bench`)."""

from __future__ import annotations

import importlib.util

from conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("bench_pg", REPO / "benchmarks" / "bench_pg.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_each_ratio_is_judged_on_the_printed_figures():
    step = {"import_s": 3.0004, "import_floor_s": 1.0, "extract_s": 3.02, "extract_floor_s": 1.0}
    table, ok = _bench().report(1000, {"postgresql": step})
    lines = table.splitlines()
    assert "3.00x" in lines[2] and lines[2].rstrip().endswith("PASS")
    assert "3.02x" in lines[3] and lines[3].rstrip().endswith("FAIL") and ok is False
    assert "1,000" in lines[3] and "333" in lines[2]  # rows/s of the toolkit: 1000 / 3.000


def test_the_benchmark_runs_on_both_backends(pg_url, capsys):
    code = _bench().main(["--rows", "400", "--pg-url", pg_url])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("sqlite ", "postgresql "))]
    assert [r.split()[:2] for r in rows] == [["sqlite", "import"], ["sqlite", "extract"],
                                            ["postgresql", "import"], ["postgresql", "extract"]]
    assert code == (0 if all(r.rstrip().endswith("PASS") for r in rows) else 1)
