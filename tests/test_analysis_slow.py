"""The demo's two quarters on the tiny model, then evaluate → analyze → improve: `clt cycle`
analyses what it released, `clt analyze firefighter` names the weakest domain with the
numbers its evaluation files and the bundled production logs give, `clt recipe new --plan`
writes a recipe that validates and rehearses what the plan says, and the quarterly report
has its Analysis section. Slow: trains twice through Axolotl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest
import yaml
from conftest import REPO

from cl_toolkit.core.files import sha256_file

pytestmark = pytest.mark.slow
MODEL = "firefighter"
FAST = ["--set", "train.num_epochs=2"]
# 1.1.0's gate made unable to block (q2 gated as a plain suite, the counted rules off), so
# the line ends with 1.0.0 champion and 1.1.0 challenger whatever two epochs learn
LENIENT = ["--set", "gate.suites.q2=data/firefighter/q2_asked.jsonl", "--set", "gate.max_critical_regressions=1000",
           "--set", "gate.min_accuracy_delta=-1.0", "--set", "gate.non_inferiority_margin=1.0",
           "--set", "gate.alpha=1.0e-30"]


def clt(project, ws, *args):
    env = {**os.environ, "CLT_HOME": str(ws), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cl_toolkit", *map(str, args)], cwd=project, env=env,
                          capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def two_quarters(tmp_path_factory, tiny_model_dir):
    """A copy of the demo project after 1.0.0's and 1.1.0's cycles, with Q2's production logs
    (answered by 1.0.0) imported between them."""
    project = tmp_path_factory.mktemp("analysis") / "proj"
    shutil.copytree(REPO / "configs", project / "configs")
    shutil.copytree(REPO / "data", project / "data")
    (project / "recipes" / MODEL).mkdir(parents=True)
    for v in ("1.0.0", "1.1.0"):
        shutil.copy(REPO / "recipes" / MODEL / f"{v}.yml", project / "recipes" / MODEL / f"{v}.yml")
    ws = project / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    done = clt(project, ws, "cycle", f"recipes/{MODEL}/1.0.0.yml", "--json", *FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = clt(project, ws, "feedback", "import", "data/firefighter/feedback_q2.jsonl")
    assert imported.returncode == 0, imported.stderr[-2000:]
    done = clt(project, ws, "cycle", f"recipes/{MODEL}/1.1.0.yml", "--json", *FAST, *LENIENT)
    assert done.returncode == 0, done.stderr[-3000:]
    return project, ws, json.loads(done.stdout)


def _domain_accuracy(ws, version: str, domain: str) -> tuple[int, int]:
    """(passed, total) of one domain over every suite the version's score rows point at."""
    import sqlite3

    con = sqlite3.connect(ws / "registry" / "registry.db")
    caches = [r[0] for r in con.execute("SELECT eval_cache FROM scores WHERE model=? AND version=?", (MODEL, version))]
    cases = [c for path in caches for c in json.loads((ws / path).read_text())["cases"] if c["domain"] == domain]
    return sum(c["passed"] for c in cases), len(cases)


def test_the_cycle_analyses_what_it_released(two_quarters):
    project, ws, out = two_quarters
    assert out["ran"][-3:] == ["release", "analyze", "report"] and out["status"] == "challenger"
    analyzed = out["outputs"]["analyze"]
    assert analyzed["version"] == "1.1.0" and analyzed["plan"] == f"analysis/{MODEL}/1.1.0/plan.json"
    assert sha256_file(ws / analyzed["plan"]) == analyzed["sha256"]
    stamp = json.loads((ws / "cycles" / f"{MODEL}-1.1.0" / "analyze.json").read_text())
    assert stamp["outputs"] == analyzed


def test_clt_analyze_names_the_weakest_domain_with_its_numbers(two_quarters):
    project, ws, _ = two_quarters
    done = clt(project, ws, "analyze", MODEL, "--json")  # the champion, 1.0.0
    assert done.returncode == 0, done.stderr[-2000:]
    a = json.loads(done.stdout)["analysis"]
    assert a["version"] == "1.0.0" and a["alias"] == "champion"
    top = a["domains"][0]
    assert top["priority"] == max(d["priority"] for d in a["domains"])
    passed, total = _domain_accuracy(ws, "1.0.0", top["domain"])
    assert (top["evaluation"]["cases"], top["evaluation"]["cases"] - top["evaluation"]["failed"]) == (total, passed)
    logs = [json.loads(line) for line in (REPO / "data/firefighter/feedback_q2.jsonl").read_text().splitlines()]
    served = Counter(r["metadata"]["domain"] for r in logs)
    assert top["production"]["predictions"] == served[top["domain"]]
    assert a["feedback"] == {"quarter": "2026Q2", "versions": ["1.0.0"], "predictions": len(logs)}
    text = clt(project, ws, "analyze", MODEL)
    assert text.returncode == 0
    assert (f"1. **{top['domain']}** — priority {top['priority']}: accuracy "
            f"{100 * passed / total:.1f}% ({passed}/{total})") in text.stdout

    done = clt(project, ws, "analyze", MODEL, "--version", "challenger", "--json")
    b = json.loads(done.stdout)["analysis"]
    assert b["version"] == "1.1.0" and b["versions_compared"] == ["1.0.0", "1.1.0"]
    for d in b["domains"]:
        if d["evaluation"] and d["evaluation"]["previous_accuracy"] is not None:
            was_passed, was_total = _domain_accuracy(ws, "1.0.0", d["domain"])
            assert d["evaluation"]["previous_accuracy"] == pytest.approx(was_passed / was_total)


def test_recipe_new_from_the_plan_validates_and_rehearses_the_plans_sources(two_quarters):
    project, ws, out = two_quarters
    plan_path = ws / out["outputs"]["analyze"]["plan"]
    plan = json.loads(plan_path.read_text())
    done = clt(project, ws, "recipe", "new", MODEL, "--strategy", "continued_lora", "--plan", plan_path,
               "--data", "data/firefighter/q3.jsonl")
    assert done.returncode == 0, done.stderr[-2000:]
    path = project / "recipes" / MODEL / "1.2.0.yml"
    recipe = yaml.safe_load(path.read_text())
    split = plan["recipe"]["rehearsal"]["split"]
    assert [s.get("path") or next(iter(s)) for s in recipe["data"]["rehearsal"]["sources"]] == list(split)
    assert recipe["data"]["rehearsal"]["ratio"] == plan["recipe"]["rehearsal"]["ratio"]
    assert recipe["plan"]["sha256"] == sha256_file(plan_path) and recipe["data"]["rehearsal"]["split"] == split
    path.write_text(path.read_text().replace("TODO: why 1.2.0 exists", "Q3, from the plan of 1.1.0."))
    done = clt(project, ws, "recipe", "validate", path)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_report_shows_the_analysis_section(two_quarters):
    project, ws, _ = two_quarters
    a = json.loads(clt(project, ws, "analyze", MODEL, "--json").stdout)["analysis"]
    md = (ws / "reports" / MODEL / "report.md").read_text()
    section = md.split("\n## Analysis\n")[1].split("\n## ")[0]
    assert "The top 3 priorities of 1.0.0 (champion)" in section
    assert f"1. **{a['domains'][0]['domain']}** — priority {a['domains'][0]['priority']}" in section
    assert '<h2 id="analysis">Analysis</h2>' in (ws / "reports" / MODEL / "report.html").read_text()
