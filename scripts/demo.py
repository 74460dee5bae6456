"""`make demo`: build the tiny base, train firefighter 1.0.0 then 1.1.0 through Axolotl,
and print where they are. Rerunning skips versions already in the registry."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cl_toolkit.registry import open_registry
from cl_toolkit.workspace import workspace_dir

ROOT = Path(__file__).resolve().parent.parent
RECIPES = [ROOT / "recipes" / "firefighter" / f"{v}.yml" for v in ("1.0.0", "1.1.0")]
CLT = [sys.executable, "-m", "cl_toolkit"]


def step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}\n$ clt {' '.join(argv)}", flush=True)
    start = time.monotonic()
    code = subprocess.call([*CLT, *argv], cwd=ROOT)
    if code != 0:
        sys.exit(f"demo stopped: `clt {' '.join(argv)}` exited {code}")
    print(f"   ({time.monotonic() - start:.0f} s)", flush=True)


def main() -> None:
    ws = workspace_dir()
    print(f"workspace: {ws}")
    step("validate every shipped recipe", ["recipe", "validate", *map(str, RECIPES)])
    for recipe in RECIPES:
        version = recipe.stem
        with open_registry(ws) as reg:
            done = reg.get("firefighter", version)
        if done:
            print(f"\n== firefighter {version} is already trained: {done.adapter_dir}")
            continue
        step(f"train firefighter {version}", ["train", str(recipe)])
    step("registry", ["registry", "list", "firefighter"])
    with open_registry(ws) as reg:
        for rec in reg.versions("firefighter"):
            print(f"firefighter {rec.version}: adapter {rec.adapter_dir}")


if __name__ == "__main__":
    main()
