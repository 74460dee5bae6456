"""`clt --help` must answer in under a second: torch and Axolotl load only when a verb needs them.

Runs `clt --help` (a fresh process each time, as a user types it) and `import torch` side by
side, and prints the table. Exit 1 if the median misses the target."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

TARGET_S = 1.0
RUNS = 5


def timed(argv: list[str]) -> list[float]:
    out = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> int:
    helps = timed([sys.executable, "-m", "cl_toolkit", "--help"])
    torch = timed([sys.executable, "-c", "import torch"])
    print(f"{'what':<28}{'median s':>10}{'max s':>10}")
    print(f"{'clt --help':<28}{statistics.median(helps):>10.3f}{max(helps):>10.3f}")
    print(f"{'python -c import torch':<28}{statistics.median(torch):>10.3f}{max(torch):>10.3f}")
    ok = statistics.median(helps) < TARGET_S
    print(f"target: clt --help under {TARGET_S:.0f} s: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
