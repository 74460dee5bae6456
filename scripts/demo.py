"""`make demo`: one year's first two quarters of the firefighting/HAZMAT model, for real.

Builds the tiny base, runs the 1.0.0 cycle (train through Axolotl, evaluate, release as
champion), imports a simulated quarter of production feedback (ratings, corrections),
extracts training examples from it, runs the 1.1.0 cycle (continued LoRA on Q2 + the
extracted feedback, with rehearsal), gates it against 1.0.0 on every quarter's suite,
promotes it when the gate passes, prints the line's accuracy matrix and writes the report. Rerunning resumes: finished steps are skipped."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cl_toolkit.core.workspace import workspace_dir

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes" / "firefighter"
CLT = [sys.executable, "-m", "cl_toolkit"]
EXTRACTED = "extracted/q2_feedback.jsonl"
Q2_DATA = f'data.train=[{{path: data/firefighter/q2.jsonl}}, {{path: "workspace:{EXTRACTED}"}}]'


def step(title: str, *argv: str, ok: tuple[int, ...] = (0,)) -> int:
    print(f"\n== {title}\n$ clt {' '.join(argv)}", flush=True)
    start = time.monotonic()
    code = subprocess.call([*CLT, *argv], cwd=ROOT)
    if code not in ok:
        sys.exit(f"demo stopped: `clt {' '.join(argv)}` exited {code}")
    print(f"   ({time.monotonic() - start:.0f} s)", flush=True)
    return code


def main() -> None:
    ws = workspace_dir()
    start = time.monotonic()
    print(f"workspace: {ws}")
    step("validate every shipped recipe", "recipe", "validate", *sorted(str(p) for p in RECIPES.glob("*.yml")))
    step("Q1: firefighter 1.0.0 (initial LoRA), evaluated and released", "cycle", str(RECIPES / "1.0.0.yml"))
    step("a quarter of production feedback lands in the store", "feedback", "import",
         str(ROOT / "data" / "firefighter" / "feedback_q2.jsonl"), ok=(0, 2))
    step("what the users said", "feedback", "stats")
    step("training examples from the feedback (rules, dedupe, PII redaction)", "feedback", "extract",
         "-o", str(ws / EXTRACTED))
    code = step("Q2: firefighter 1.1.0 (continued LoRA + rehearsal), gated against 1.0.0", "cycle",
                str(RECIPES / "1.1.0.yml"), "--set", Q2_DATA, ok=(0, 3))
    if code == 0:
        step("the gate passed: 1.1.0 becomes the champion", "registry", "promote", "firefighter", "1.1.0",
             "--to", "champion", "--reason", "demo: gate passed against 1.0.0", ok=(0, 2))
    else:
        print("   the gate blocked 1.1.0; 1.0.0 stays champion (see the report)")
    step("lineage", "registry", "lineage", "firefighter")
    step("every version on every quarter's suite: forgetting and BWT", "eval", "matrix", "firefighter", "--all")
    step("the quarterly report", "report", "firefighter")
    print(f"\ndemo finished in {time.monotonic() - start:.0f} s")
    print(f"report: {ws / 'reports' / 'firefighter' / 'report.html'}")
    print(f"        {ws / 'reports' / 'firefighter' / 'report.md'}")


if __name__ == "__main__":
    main()
