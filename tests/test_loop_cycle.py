"""`clt loop --auto-train` runs the recipe's whole cycle: the automatic update is evaluated
and gated like a manual one, and the decision log says what became of it. Slow: three
Axolotl runs (the 1.0.0 champion, a candidate that passes, one the gate blocks)."""

from __future__ import annotations

import json
import shutil

import pytest
from project import BASE_RECIPE, make_project, write_recipe

from cl_toolkit.feedback.records import now_timestamp
from cl_toolkit.monitoring.windows import shift
from cl_toolkit.pipeline.cycle import run_cycle
from cl_toolkit.registry import open_registry
from cl_toolkit.training.strategies import load_recipe

pytestmark = pytest.mark.slow
SMALL_DATA = {"train": [{"path": "data/firefighter/q2.jsonl", "max_rows": 24}], "seed": 7}


def _candidate(version: str, gate: dict) -> dict:
    return {**BASE_RECIPE, "version": version, "parent": "1.0.0", "strategy": "continued_lora",
            "data": SMALL_DATA, "gate": {"suite": "data/firefighter/regression.jsonl", **gate}}


@pytest.fixture(scope="module")
def line(tmp_path_factory, tiny_model_dir):
    """ff 1.0.0 trained and released as champion through its cycle, in a project copy that
    also holds two candidate recipes: one whose gate cannot fail, one whose gate cannot pass."""
    project = make_project(tmp_path_factory.mktemp("loop-cycle") / "proj")
    ws = project / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    recipe = write_recipe(project, BASE_RECIPE)
    # the statistical rules switched off (a margin of 1 and a vanishing alpha cannot block)
    # so that each candidate's verdict is the one rule named here
    off = {"non_inferiority_margin": 1.0, "alpha": 1e-30}
    write_recipe(project, _candidate("1.1.0", {"max_critical_regressions": 1000, "min_accuracy_delta": -1.0,
                                               **off}))
    # a delta of +1 needs the baseline at 0% and the candidate at 100%: this small run cannot
    write_recipe(project, _candidate("1.2.0", {"min_accuracy_delta": 1.0, **off}))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        assert run_cycle(load_recipe(recipe, workspace=ws), say=lambda m: None)["status"] == "champion"
    return project, ws


@pytest.fixture
def env(line, monkeypatch):
    project, ws = line
    monkeypatch.chdir(project)
    monkeypatch.setenv("CLT_HOME", str(ws))
    return ws


AT = shift(now_timestamp(), 100)  # a quarter after the release: the scheduled rule makes an update due


def _last_decision(ws) -> dict:
    return json.loads((ws / "monitoring" / "decisions.jsonl").read_text().splitlines()[-1])


def test_auto_train_gates_and_releases_the_candidate(clt, env):
    code, out, err = clt("loop", "ff", "--once", "--at", AT, "--auto-train", "recipes/ff/1.1.0.yml", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["trigger"]["due"] and record["trigger"]["fired"] == ["release_interval"]
    action = record["actions"][0]
    assert action["action"] == "train" and "error" not in action, action
    cycle = action["cycle"]
    assert (cycle["version"], cycle["status"]) == ("1.1.0", "challenger")
    assert cycle["gate"] == {"passed": True, "reasons": []}
    assert cycle["ran"][-6:] == ["register", "evaluate", "gate", "release", "analyze", "report"]
    assert (cycle["gate_report"], cycle["report"]) == ("runs/ff-1.1.0/gate.md", "reports/ff/report.html")
    assert json.loads((env / "runs" / "ff-1.1.0" / "gate.json").read_text())["passed"] is True
    assert _last_decision(env) == record
    with open_registry(env) as reg:
        assert reg.aliases("ff")["challenger"] == "1.1.0" and reg.aliases("ff")["champion"] == "1.0.0"

    code, out, _ = clt("loop", "ff", "--once", "--at", AT, "--auto-train", "recipes/ff/1.1.0.yml")
    assert code == 0 and "train recipes/ff/1.1.0.yml -> skipped: ff 1.1.0 is already registered" in out


def test_a_blocked_candidate_is_archived_without_an_alias(clt, env):
    code, out, err = clt("loop", "ff", "--once", "--at", AT, "--auto-train", "recipes/ff/1.2.0.yml")
    assert code == 0, err
    assert "train recipes/ff/1.2.0.yml -> 1.2.0 rejected (gate BLOCKED: min_accuracy_delta: regression: " in out
    assert "is below the minimum +100.0 pt (min_accuracy_delta 1)), report reports/ff/report.html" in out
    cycle = _last_decision(env)["actions"][0]["cycle"]
    assert (cycle["version"], cycle["status"], cycle["gate"]["passed"]) == ("1.2.0", "rejected", False)
    assert len(cycle["gate"]["reasons"]) == 1 and "below the minimum +100.0 pt" in cycle["gate"]["reasons"][0]
    assert json.loads((env / cycle["gate_report"].replace("gate.md", "gate.json")).read_text())["passed"] is False
    with open_registry(env) as reg:
        assert reg.get("ff", "1.2.0").status == "archived"
        assert "1.2.0" not in reg.aliases("ff").values()
    code, out, _ = clt("registry", "show", "ff", "1.2.0", "--json")
    shown = json.loads(out)
    assert code == 0 and (shown["status"], shown["aliases"]) == ("archived", [])
