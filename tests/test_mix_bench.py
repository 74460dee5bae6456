"""benchmarks/bench_mix.py on a small pool, streamed as a large one would be: it prints the
table and its exit code says whether the targets held."""

from __future__ import annotations

import sys

from conftest import REPO

from cl_toolkit.training import pools

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_mix  # noqa: E402


def test_the_mix_benchmark_measures_a_streamed_pool_and_fails_a_missed_target(capsys, monkeypatch):
    monkeypatch.setattr(pools, "STREAM_BYTES", 0)  # the 2 MiB pool takes the streamed path
    monkeypatch.setattr(bench_mix, "MEMORY_TARGET", 100.0)  # a small pool: the mix, not the pool, fills memory
    argv = ["--size-mb", "2", "--new-rows", "200", "--epochs", "3"]
    monkeypatch.setattr(bench_mix, "SPEED_TARGET", 1e6)
    assert bench_mix.main(argv) == 0
    out = capsys.readouterr().out
    assert "cat pool | sha256sum (2 MiB)" in out and "build per_epoch mix (3 epochs, 1,200 rows) + sha256" in out
    assert "PASS" in out and "FAIL" not in out
    drawn = next(line for line in out.splitlines() if line.startswith("pool rows drawn"))
    assert "600 / 600 /" in drawn  # 200 rehearsal rows an epoch, none repeated: the pool is far larger
    monkeypatch.setattr(bench_mix, "SPEED_TARGET", 1e-6)
    assert bench_mix.main(argv) == 1 and "FAIL" in capsys.readouterr().out
