"""The cycle benchmark's table adds up: the overhead ratio is the toolkit's seconds over the
training process's, each step's share is its own, and PASS/FAIL is what each ratio says
against the target the row states."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cl_toolkit.pipeline.cycle_summary import overhead, step_timing

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cycle.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_cycle", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def cycle_doc(render: float, train: float, axolotl: float) -> dict:
    """What `clt cycle --json` returns about time, built by the cycle's own functions."""
    timings = {"render": step_timing(render, {}), "train": step_timing(train, {"axolotl": axolotl}),
               "evaluate": step_timing(3.0, {"generation": 2.0})}
    return {"timings": timings, "overhead": overhead(render + train + 3.0, timings)}


def rows_by_label(rows):
    return {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}


def test_the_overhead_row_is_toolkit_over_training_against_its_target():
    bench = load_bench()
    rows, ok = bench.report(110.0, cycle_doc(render=5.0, train=81.0, axolotl=80.0), 20.0, [1.5, 1.0, 9.0], 3)
    table = rows_by_label(rows)
    over = table["cycle: toolkit overhead"]
    assert (over["seconds"], over["ratio"], over["target"], over["result"]) == ("7.0", "9%", "<= 15%", "PASS")
    assert table["  of which render"]["ratio"] == "6%" and table["  of which train"]["seconds"] == "1.0"
    assert table["cycle: generation (evaluation answers)"]["seconds"] == "2.0"
    assert table["  toolkit incl. start and imports"]["seconds"] == "28.0"  # 110 - 80 - 2
    again = table["render: repeated (median of 3)"]
    assert (again["seconds"], again["ratio"], again["result"]) == ("1.5", "8%", "PASS")
    assert ok


def test_a_missed_target_fails_the_benchmark():
    bench = load_bench()
    slow_render = bench.report(60.0, cycle_doc(render=20.0, train=31.0, axolotl=30.0), 20.0, [19.0], 1)
    assert rows_by_label(slow_render[0])["cycle: toolkit overhead"]["result"] == "FAIL" and not slow_render[1]
    uncached = bench.report(60.0, cycle_doc(render=1.0, train=81.0, axolotl=80.0), 20.0, [19.0], 1)
    assert rows_by_label(uncached[0])["render: repeated (median of 1)"]["result"] == "FAIL" and not uncached[1]
