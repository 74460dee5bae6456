"""The feedback benchmark runs end to end on a small input, and its table adds up: every
figure is a positive number with its unit, the counts are the ones asked for, the
speed-up is the quotient of the two per-event figures, and each PASS/FAIL is what the
figure says against the target the table states."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_feedback.py"
ROWS, EVENTS, NAIVE_SAMPLE = 2000, 200, 3
FIGURE = re.compile(r"^(?P<n>\d[\d,]*(?:\.(?P<dec>\d+))?) ?(?P<unit>s|us|ms|rows/s|events/s|x)$")


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_feedback", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def parse_table(out: str) -> dict[str, dict[str, str]]:
    """{measurement label: {column header: cell}}, cut at the columns of the dashed rule."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    starts = [m.start() for m in re.finditer(r"-+", lines[rule])] + [None]

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in zip(starts, starts[1:], strict=False)]

    header = cells(lines[rule - 1])
    table = {}
    for line in lines[rule + 1:]:
        if not line.strip() or line.startswith("load average"):
            break
        row = dict(zip(header, cells(line), strict=True))
        table[row.pop("measurement")] = row
    return table


def figure(cell: str, unit: str) -> tuple[float, float]:
    """(value, half of its last printed digit): the number in `cell`, which must carry `unit`."""
    m = FIGURE.match(cell)
    assert m, f"not a number with a unit: {cell!r}"
    assert m["unit"] == unit, f"{cell!r}: expected unit {unit}"
    value = float(m["n"].replace(",", ""))
    assert value > 0, f"{cell!r} is not positive"
    return value, 0.5 * 10 ** -len(m["dec"] or "")


def row_starting(table: dict, prefix: str) -> tuple[str, dict]:
    found = [(label, row) for label, row in table.items() if label.startswith(prefix)]
    assert len(found) == 1, f"one row starting {prefix!r} expected, got {list(table)}"
    return found[0]


@pytest.fixture(scope="module")
def run():
    """The benchmark on 2,000 rows and 200 events: (exit code, parsed table)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = load_bench().main(["--rows", str(ROWS), "--events", str(EVENTS),
                                  "--naive-sample", str(NAIVE_SAMPLE)])
    return code, parse_table(buf.getvalue())


def test_every_measurement_is_a_positive_number_with_its_unit_and_the_counts_asked(run):
    _, table = run
    assert len(table) == 6
    label, gen = row_starting(table, "generate ")
    assert label == "generate 2,000 rows (setup)" and figure(gen["wall time"], "s")
    for prefix in ("import ", "extract "):
        label, row = row_starting(table, prefix)
        assert label.startswith(f"{prefix}2,000 predictions")
        wall, wall_err = figure(row["wall time"], "s")
        figure(row["CPU time"], "s")
        rate, _ = figure(row["throughput (wall)"], "rows/s")
        # rows/s is the row count over the printed wall time, within the rounding of both
        assert ROWS / (wall + wall_err) - 0.5 <= rate <= ROWS / (wall - wall_err) + 0.5
    written = int(re.search(r"\(([\d,]+) written\)", row_starting(table, "extract ")[0])[1].replace(",", ""))
    assert 0 < written <= ROWS
    label, store = row_starting(table, "feedback event, store")
    assert label == "feedback event, store (200 events)"
    us, us_err = figure(store["wall time"], "us")
    per_s, _ = figure(store["throughput (wall)"], "events/s")
    assert 1e6 / (us + us_err) - 0.5 <= per_s <= 1e6 / (us - us_err) + 0.5
    label, naive = row_starting(table, "feedback event, naive JSONL")
    assert label == f"feedback event, naive JSONL rewrite ({NAIVE_SAMPLE} of 200 timed)"
    ms, ms_err = figure(naive["wall time"], "ms")
    per_s, per_s_err = figure(naive["throughput (wall)"], "events/s")
    assert 1e3 / (ms + ms_err) - per_s_err <= per_s <= 1e3 / (ms - ms_err) + per_s_err


def test_the_speed_up_is_naive_over_store_as_printed(run):
    _, table = run
    us, us_err = figure(row_starting(table, "feedback event, store")[1]["wall time"], "us")
    ms, ms_err = figure(row_starting(table, "feedback event, naive")[1]["wall time"], "ms")
    ratio, ratio_err = figure(row_starting(table, "per-event speed-up")[1]["wall time"], "x")
    low, high = (ms - ms_err) * 1e3 / (us + us_err), (ms + ms_err) * 1e3 / (us - us_err)
    assert low - ratio_err <= ratio <= high + ratio_err, (ratio, low, high)


def test_each_verdict_is_the_printed_figure_against_the_printed_target(run):
    code, table = run
    bench = load_bench()
    _, extract = row_starting(table, "extract ")
    _, speed = row_starting(table, "per-event speed-up")
    # the targets the benchmark states: 30 s per million rows, and 100x
    assert extract["target"] == f"<= {30.0 * ROWS / 1e6:.3f} s"
    assert speed["target"] == ">= 100.0x"
    assert (bench.EXTRACT_TARGET_S_PER_MILLION, bench.EVENT_RATIO_TARGET) == (30.0, 100.0)
    seconds, _ = figure(extract["wall time"], "s")
    limit, _ = figure(extract["target"].removeprefix("<= "), "s")
    assert extract["result"] == ("PASS" if seconds <= limit else "FAIL")
    ratio, _ = figure(speed["wall time"], "x")
    floor, _ = figure(speed["target"].removeprefix(">= "), "x")
    assert speed["result"] == ("PASS" if ratio >= floor else "FAIL")
    assert code == (0 if extract["result"] == speed["result"] == "PASS" else 1)
    others = [row["result"] for label, row in table.items() if not label.startswith(("extract", "per-event"))]
    assert others == [""] * 4  # a verdict only where there is a target
