"""What `clt cycle` tells a person: each step's seconds split into the Axolotl training
process, generation and the toolkit's own overhead (printed and kept in the stamps), a closing
summary instead of a JSON blob (JSON with --json), and a status read from the registry as it
is now, not from the release stamp: a promotion and a rollback between runs show."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from project import BASE_RECIPE, make_project, write_recipe
from test_registry_support import add_version

from cl_toolkit.pipeline.cycle import Context, _generated_since, registry_now, run_cycle
from cl_toolkit.pipeline.cycle_summary import (
    accuracy_lines,
    alias_line,
    overhead,
    step_timing,
    summary_lines,
    timing_text,
    verdict_line,
)
from cl_toolkit.registry import archive, open_registry, promote, rollback
from cl_toolkit.training.strategies import load_recipe


def test_a_step_is_split_into_axolotl_generation_and_the_toolkits_own():
    train = step_timing(95.4, {"axolotl": 88.1})
    assert train == {"seconds": 95.4, "axolotl": 88.1, "generation": 0.0, "toolkit": 7.3}
    assert timing_text("train", train) == "train 95 s (axolotl 88 s, toolkit 7.3 s)"
    evaluate = step_timing(12.0, {"generation": 9.0})
    assert timing_text("evaluate", evaluate) == "evaluate 12 s (generation 9.0 s, toolkit 3.0 s)"
    render = step_timing(2.14, {})
    assert render["toolkit"] == 2.14 and timing_text("render", render) == "render 2.1 s"
    whole = overhead(111.0, {"render": render, "train": train, "evaluate": evaluate})
    assert (whole["axolotl"], whole["generation"], whole["toolkit"]) == (88.1, 9.0, 13.9)
    assert whole["toolkit_vs_axolotl"] == round(13.9 / 88.1, 4)
    assert overhead(1.5, {"render": render})["toolkit_vs_axolotl"] is None  # nothing trained: no ratio


def test_the_verdict_names_the_rule_that_decided_it():
    blocked = {"passed": False, "reasons": ["max_critical_regressions: regression: 1 critical regression(s)",
                                            "non_inferiority: regression: ..."], "suites": {"regression": False}}
    assert verdict_line(blocked) == ("gate: BLOCKED by max_critical_regressions: regression: 1 critical "
                                     "regression(s) (and 1 more)")
    passed = {"passed": True, "reasons": [], "rules": 9, "suites": {"regression": True, "q2": True}}
    assert verdict_line(passed) == "gate: passed, all 9 rules held on 2 suite(s)"
    assert verdict_line({"passed": True, "skipped": "no parent to compare with"}) == \
        "gate: skipped (no parent to compare with)"


def test_accuracy_is_shown_per_suite_against_the_parent_in_points():
    evals = {"1.0.0": {"regression": {"accuracy": 0.95}, "q2": {"accuracy": 0.05}},
             "1.1.0": {"regression": {"accuracy": 0.9}, "q2": {"accuracy": 0.9}}}
    lines = accuracy_lines(evals, "1.1.0", "1.0.0")
    assert [line.split() for line in lines] == [["suite", "1.0.0", "1.1.0", "change"],
                                                ["regression", "95.0%", "90.0%", "-5.0", "pt"],
                                                ["q2", "5.0%", "90.0%", "+85.0", "pt"]]
    first = accuracy_lines({"1.0.0": evals["1.0.0"]}, "1.0.0", None)  # no parent: no comparison
    assert [line.split() for line in first] == [["suite", "1.0.0"], ["regression", "95.0%"], ["q2", "5.0%"]]


def test_the_status_is_the_registrys_now_not_the_release_stamps(proj):
    """Released as challenger; promoted, then rolled back: the version holds no alias."""
    lr = load_recipe(write_recipe(proj, BASE_RECIPE), workspace=proj / "ws")
    c = Context(lr, say=lambda m: None, outputs={"release": {"status": "challenger"}})
    with open_registry(lr.workspace) as reg:
        add_version(reg, lr.workspace, "0.9.0")
        add_version(reg, lr.workspace, "1.0.0", "0.9.0")
        promote(reg, "ff", "0.9.0", reason="first")
        promote(reg, "ff", "1.0.0", to="challenger", reason="gate passed")
    assert registry_now(c) == ("challenger", {"champion": "0.9.0", "challenger": "1.0.0"})
    with open_registry(lr.workspace) as reg:
        promote(reg, "ff", "1.0.0", reason="won the A/B test", force=True)
    assert registry_now(c) == ("champion", {"champion": "1.0.0"})
    with open_registry(lr.workspace) as reg:
        rollback(reg, "ff", reason="complaints")
    status, aliases = registry_now(c)
    assert (status, aliases) == ("active", {"champion": "0.9.0"})
    line = alias_line({"status": status, "released_as": "challenger", "aliases": aliases}, "1.0.0")
    assert line == ("alias: none now (1.0.0 holds no alias); released as challenger, moved since  "
                    "[line now: champion 0.9.0]")
    with open_registry(lr.workspace) as reg:
        archive(reg, "ff", "1.0.0", reason="superseded")
    assert registry_now(c)[0] == "archived"
    rejected = Context(lr, say=lambda m: None, outputs={"release": {"status": "rejected"}})
    assert registry_now(rejected)[0] == "rejected"


def test_the_gate_counts_only_the_generation_it_did_itself(proj):
    """Evaluations the gate found in the cache took no time of its own; those it wrote did."""
    lr = load_recipe(write_recipe(proj, BASE_RECIPE), workspace=proj / "ws")
    evals = lr.workspace / "evals" / "ff"
    evals.mkdir(parents=True)
    for name, seconds in (("old", 5.0), ("new", 1.25), ("other", 0.5)):
        (evals / f"{name}.json").write_text(json.dumps({"performance": {"seconds": seconds}}))
    past = time.time() - 60
    os.utime(evals / "old.json", (past, past))
    caches = {"regression": {"1.0.0": "evals/ff/old.json", "1.1.0": "evals/ff/new.json"},
              "q2": {"1.0.0": "evals/ff/other.json", "1.1.0": "evals/ff/new.json"}}  # one file counts once
    assert _generated_since(Context(lr, say=lambda m: None), caches, past + 30) == 1.75


def test_each_step_that_ran_keeps_its_timing_in_its_stamp(proj):
    lr = load_recipe(write_recipe(proj, BASE_RECIPE), workspace=proj / "ws")
    said = []
    first = run_cycle(lr, until="data", say=said.append)
    assert first["ran"] == ["validate", "data"] and first["status"] is None and first["next_step"] == "render"
    for step in ("validate", "data"):
        stamp = json.loads((lr.workspace / "cycles" / "ff-1.0.0" / f"{step}.json").read_text())
        assert stamp["timing"] == first["timings"][step]
        assert stamp["timing"]["toolkit"] == stamp["seconds"] and stamp["timing"]["axolotl"] == 0
        assert timing_text(step, stamp["timing"]) in [line.strip() for line in said]
    assert first["overhead"]["axolotl"] == 0 and first["overhead"]["toolkit_vs_axolotl"] is None
    again = run_cycle(lr, until="data", say=said.append)
    assert again["ran"] == [] and again["timings"] == {}
    text = summary_lines(again, "ff", "1.0.0", None, "initial_lora")
    assert text[0] == "ff 1.0.0 (initial_lora): stopped after data; the next run resumes at render"
    assert "nothing to run" in text[-1]


def test_clt_cycle_prints_a_summary_and_json_only_when_asked(proj, clt):
    recipe = write_recipe(proj, BASE_RECIPE)
    code, out, err = clt("cycle", recipe, "--until", "data")
    assert code == 0, err
    assert out.splitlines()[0] == "ff 1.0.0 (initial_lora): stopped after data; the next run resumes at render"
    assert not out.lstrip().startswith("{") and "> validate" in err and "  data " in err
    code, out, err = clt("cycle", recipe, "--until", "data", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ran"] == [] and doc["status"] is None and doc["overhead"]["seconds"] >= 0
    assert "= data: done before, inputs unchanged" in err


# --- slow: the case, through the real CLI: promote and roll back between runs ----
def _clt(ws, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cl_toolkit", "--workspace", str(ws), *map(str, args)],
                          cwd=ws.parent, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})


CHILD = {**BASE_RECIPE, "version": "1.1.0", "parent": "1.0.0", "strategy": "continued_lora",
         "data": {**BASE_RECIPE["data"], "train": [{"path": "data/firefighter/q2.jsonl"}]},
         "gate": {"suite": "data/firefighter/regression.jsonl", "max_critical_regressions": 100,
                  "non_inferiority_margin": 1.0, "alpha": 1e-9}}  # lenient: this test is about aliases


@pytest.mark.slow
def test_a_resumed_cycle_prints_the_alias_the_registry_holds_now(tmp_path, tiny_model_dir):
    project = make_project(tmp_path / "proj")
    ws = project / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    first = _clt(ws, "cycle", write_recipe(project, BASE_RECIPE), "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    doc = json.loads(first.stdout)
    assert doc["status"] == "champion" and "train" in doc["ran"]
    outcome = json.loads((ws / "cycles" / "ff-1.0.0" / "train_outcome.json").read_text())
    train = doc["timings"]["train"]
    assert train["axolotl"] == outcome["train_seconds"] > 0
    assert train["toolkit"] == pytest.approx(train["seconds"] - train["axolotl"], abs=0.02)
    assert doc["overhead"]["generation"] > 0 and doc["overhead"]["toolkit"] > 0
    stamp = json.loads((ws / "cycles" / "ff-1.0.0" / "train.json").read_text())
    assert stamp["timing"] == train

    child = write_recipe(project, CHILD)
    second = _clt(ws, "cycle", child)
    assert second.returncode == 0, second.stderr[-3000:]
    lines = second.stdout.splitlines()
    assert lines[0] == "ff 1.1.0 (continued_lora from 1.0.0)"
    assert lines[1].startswith("  gate: passed, all ") and lines[1].endswith(" rules held on 1 suite(s)")
    assert lines[2].split() == ["suite", "1.0.0", "1.1.0", "change"] and lines[3].split()[-1] == "pt"
    assert "  alias: challenger  [line now: challenger 1.1.0, champion 1.0.0]" in lines
    assert any(line.startswith("  train ") and "(axolotl " in line for line in second.stderr.splitlines())

    assert _clt(ws, "registry", "promote", "ff", "1.1.0", "--reason", "won").returncode == 0
    assert _clt(ws, "registry", "rollback", "ff", "--reason", "complaints").returncode == 0
    resumed = _clt(ws, "cycle", child)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "= release: done before, inputs unchanged (1.1.0 holds no alias now, released as challenger)" \
        in resumed.stderr
    assert ("  alias: none now (1.1.0 holds no alias); released as challenger, moved since  "
            "[line now: champion 1.0.0]") in resumed.stdout.splitlines()
    assert "challenger" not in resumed.stdout.replace("released as challenger", "")
    doc = json.loads(_clt(ws, "cycle", child, "--json").stdout)
    assert (doc["status"], doc["released_as"], doc["ran"]) == ("active", "challenger", [])
