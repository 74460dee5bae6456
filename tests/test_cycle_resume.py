"""A resumed cycle notices every input of evaluate and gate: the regression suite's bytes,
the gate policy (its defaults resolved) and the evaluation settings, not only the adapter;
and its stamps keep workspace-relative paths, so a moved workspace resumes."""

from __future__ import annotations

import json
import shutil

import pytest
from project import BASE_RECIPE, make_project, write_recipe

from cl_toolkit.evaluation.evaluate import EvalSettings
from cl_toolkit.pipeline.cycle import STEP_FUNCS, STEPS, Context, run_cycle
from cl_toolkit.registry import open_registry
from cl_toolkit.training.strategies import load_recipe

EXTRA_CASE = {"id": "reg-extra", "input": "What is the UN number for propane?", "expected": "UN1978",
              "match": "contains", "criticality": "low", "domain": "hazmat_id", "tags": []}


def _add_case(project) -> None:
    with (project / "data" / "firefighter" / "regression.jsonl").open("a") as f:
        f.write(json.dumps(EXTRA_CASE) + "\n")


def _inputs(lr, settings: EvalSettings | None = None) -> dict:
    """The inputs of register, evaluate and gate, as a resumed cycle computes them."""
    c = Context(lr, say=lambda m: None, eval_settings=settings or EvalSettings())
    c.outputs = {"train": {"adapter": "a" * 64}, "evaluate": {"1.0.0": {"accuracy": 0.5, "cache": "evals/x.json"}}}
    return {step: STEP_FUNCS[step][0](c) for step in ("register", "evaluate", "gate")}


def test_evaluate_and_gate_inputs_cover_suite_policy_and_settings(proj):
    recipe = write_recipe(proj, BASE_RECIPE)
    lr = load_recipe(recipe, workspace=proj / "ws")
    before = _inputs(lr)

    _add_case(proj)  # the suite's bytes: evaluate and gate, not register
    after = _inputs(lr)
    assert after["register"] == before["register"]
    assert after["evaluate"] != before["evaluate"] and after["gate"] != before["gate"]

    settings = _inputs(lr, EvalSettings(max_new_tokens=8))  # how answers are produced
    assert settings["register"] == after["register"]
    assert settings["evaluate"] != after["evaluate"] and settings["gate"] != after["gate"]

    stricter = _inputs(load_recipe(recipe, ["gate.min_accuracy_delta=0.05"], workspace=proj / "ws"))
    assert stricter["evaluate"] == after["evaluate"] and stricter["gate"] != after["gate"]
    assert stricter["gate"]["policy"]["min_accuracy_delta"] == 0.05

    # the policy is compared with its defaults resolved: spelling a default out changes nothing
    spelled = _inputs(load_recipe(recipe, ["gate.max_critical_regressions=0", "gate.alpha=0.05"],
                                  workspace=proj / "ws"))
    assert spelled["gate"] == after["gate"]
    assert after["gate"]["policy"]["max_critical_regressions"] == 0 and "suites" not in after["gate"]["policy"]
    assert list(after["evaluate"]["suites"]) == ["regression"]  # the legacy `suite:`


def test_every_named_suite_is_an_input_of_evaluate_and_gate(proj):
    """Adding a quarter's suite, editing any suite's bytes or changing a role reruns
    evaluate and gate; none of it touches register."""
    gate = {"suites": {"regression": "data/firefighter/regression.jsonl",
                       "q1": {"path": "data/firefighter/q1.jsonl", "role": "learning"}}}
    recipe = write_recipe(proj, {**BASE_RECIPE, "gate": gate})
    before = _inputs(load_recipe(recipe, workspace=proj / "ws"))
    assert set(before["evaluate"]["suites"]) == {"regression", "q1"}
    (proj / "data" / "firefighter" / "q1.jsonl").write_text("changed\n")
    edited = _inputs(load_recipe(recipe, workspace=proj / "ws"))
    assert edited["register"] == before["register"] and edited["evaluate"] != before["evaluate"]
    assert edited["evaluate"]["suites"]["regression"] == before["evaluate"]["suites"]["regression"]
    regression_only = {**gate, "suites": {**gate["suites"], "q1": "data/firefighter/q1.jsonl"}}
    role = _inputs(load_recipe(write_recipe(proj, {**BASE_RECIPE, "gate": regression_only}), workspace=proj / "ws"))
    assert role["evaluate"]["suites"]["q1"]["role"] == "regression" and role["gate"] != edited["gate"]


def test_a_gate_edit_leaves_the_training_steps_inputs_alone(proj):
    """The version is immutable once trained, its gate policy is not: editing `gate:` in the
    file must not rerun validate, data or render (render would then refuse the version)."""

    def training_inputs(recipe_data):
        recipe = write_recipe(proj, recipe_data)
        c = Context(load_recipe(recipe, workspace=proj / "ws"), say=lambda m: None)
        c.outputs = {"data": {"sha256": "d" * 64}}
        return [STEP_FUNCS[step][0](c) for step in ("validate", "data", "render")]

    plain = training_inputs(BASE_RECIPE)
    stricter = {**BASE_RECIPE, "gate": {**BASE_RECIPE["gate"], "max_critical_regressions": 3}}
    assert training_inputs(stricter) == plain
    assert training_inputs({**BASE_RECIPE, "train": {"num_epochs": 2}}) != plain  # a training key counts


# --- slow: one real training --------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir):
    """A project copy whose ff 1.0.0 went through the whole cycle (one Axolotl run)."""
    project = make_project(tmp_path_factory.mktemp("resume") / "proj")
    ws = project / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    recipe = write_recipe(project, BASE_RECIPE)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        result = run_cycle(load_recipe(recipe, workspace=ws), say=lambda m: None)
    assert result["ran"] == list(STEPS) and result["status"] == "champion"
    return project, ws, recipe


def _cycle(recipe, ws) -> tuple[dict, list[str]]:
    said = []
    return run_cycle(load_recipe(recipe, workspace=ws), say=said.append), said


@pytest.mark.slow
def test_a_suite_edit_reruns_evaluate_and_gate_and_nothing_before(finished, monkeypatch):
    project, ws, recipe = finished
    monkeypatch.chdir(project)
    first = json.loads((ws / "cycles" / "ff-1.0.0" / "evaluate.json").read_text())["outputs"]["1.0.0"]["regression"]
    _add_case(project)
    result, said = _cycle(recipe, ws)
    assert result["ran"] == ["evaluate", "gate", "release", "analyze", "report"]
    for step in ("validate", "data", "render", "train", "register"):
        assert f"= {step}: done before, inputs unchanged" in said
    assert result["status"] == "champion"  # it passed again and keeps its alias
    again = result["outputs"]["evaluate"]["1.0.0"]["regression"]  # version -> named suite -> score
    assert again["cache"] != first["cache"] and again["cache"].startswith("evals/ff/1.0.0/")
    cases = json.loads((ws / again["cache"]).read_text())["cases"]
    assert cases[-1]["id"] == "reg-extra"  # the edited suite was evaluated
    with open_registry(ws) as reg:  # and the matrix moved to the edited suite's bytes
        score = [s for s in reg.scores("ff") if s["suite"] == "regression"]
    assert [(s["version"], s["n"], s["eval_cache"]) for s in score] == [("1.0.0", len(cases), again["cache"])]
    assert _cycle(recipe, ws)[0]["ran"] == []


@pytest.mark.slow
def test_a_gate_policy_edit_reruns_the_gate_and_nothing_before(finished, monkeypatch):
    project, ws, recipe = finished
    monkeypatch.chdir(project)
    text = recipe.read_text()
    recipe.write_text(text.replace("gate:\n", "gate:\n  max_critical_regressions: 2\n", 1))
    try:
        result, said = _cycle(recipe, ws)
        stamp = json.loads((ws / "cycles" / "ff-1.0.0" / "gate.json").read_text())
    finally:
        recipe.write_text(text)
        restored = _cycle(recipe, ws)[0]  # the module's workspace as the other tests expect it
    assert result["ran"] == ["gate", "release", "analyze", "report"] == restored["ran"]
    for step in ("validate", "data", "render", "train", "register", "evaluate"):
        assert f"= {step}: done before, inputs unchanged" in said
    assert stamp["inputs"]["policy"]["max_critical_regressions"] == 2


@pytest.mark.slow
def test_a_moved_workspace_resumes_with_nothing_to_do(finished, tmp_path, monkeypatch):
    project, ws, recipe = finished
    monkeypatch.chdir(project)
    moved = tmp_path / "elsewhere"
    shutil.copytree(ws, moved)
    for stamp in (moved / "cycles" / "ff-1.0.0").glob("*.json"):
        assert str(ws) not in stamp.read_text(), stamp.name
    result, _ = _cycle(recipe, moved)
    assert result["ran"] == [] and result["status"] == "champion"
    assert result["outputs"]["report"]["html"] == "reports/ff/report.html"
    assert (moved / result["outputs"]["report"]["html"]).is_file()


def test_a_node_other_than_0_ends_its_cycle_after_training():
    """Node 0 holds the adapter: only it registers, evaluates, gates and releases."""
    from cl_toolkit.pipeline.cycle import last_step
    from cl_toolkit.training.launch import Topology

    node1, node0 = Topology(nproc=8, nnodes=2, node_rank=1, master_addr="H"), Topology(nproc=8, nnodes=2)
    assert [last_step(u, node1) for u in (None, "report", "train", "data")] == ["train", "train", "train", "data"]
    assert [last_step(u, node0) for u in (None, "gate")] == [None, "gate"]
    assert last_step(None, None) is None
