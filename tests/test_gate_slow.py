"""The real thing, end to end: firefighter 1.0.0 and 1.1.0 trained through Axolotl, then
`clt eval` and `clt gate` on them. Two training runs for the whole module."""

from __future__ import annotations

import json

import pytest

from cl_toolkit.evaluation.history import load_evolution
from cl_toolkit.evaluation.matchers import normalize
from cl_toolkit.evaluation.suite import load_suite

pytestmark = pytest.mark.slow
FAST = ["--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, repo_root):
    """A workspace where 1.0.0 (Q1) and its child 1.1.0 (Q2 only, no rehearsal: it forgets)
    were trained and registered through the real pipeline."""
    import shutil

    from cl_toolkit.registry import open_registry
    from cl_toolkit.training.strategies import load_recipe
    from cl_toolkit.training.train import train

    ws = tmp_path_factory.mktemp("gate-e2e") / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    recipes = {"1.0.0": ["train.num_epochs=10"],
               "1.1.0": ["train.num_epochs=4", "data.rehearsal.ratio=0"]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLT_HOME", str(ws))
        mp.chdir(repo_root)
        for version, overrides in recipes.items():
            lr = load_recipe(repo_root / "recipes" / "firefighter" / f"{version}.yml", overrides, workspace=ws)
            with open_registry(ws) as reg:
                train(lr, reg)
    return ws


@pytest.fixture
def env(trained, monkeypatch, repo_root):
    monkeypatch.setenv("CLT_HOME", str(trained))
    monkeypatch.chdir(repo_root)
    return trained


def _eval(clt, ws, version):
    out = ws / f"eval-{version}.json"
    code, stdout, err = clt("eval", f"firefighter@{version}", "--out", out, *FAST)
    assert code == 0, err
    return json.loads(out.read_text())


def test_eval_and_gate_on_the_recipe_suite(clt, env, repo_root):
    base, cand = _eval(clt, env, "1.0.0"), _eval(clt, env, "1.1.0")
    assert base["suite"] == "data/firefighter/regression.jsonl" and len(base["cases"]) == 60
    assert base["performance"]["tokens_per_second"] > 0
    code, out, err = clt("gate", "firefighter", "--candidate", "1.1.0", *FAST)
    gate = json.loads((env / "runs" / "firefighter-1.1.0" / "gate.json").read_text())
    expected = sorted(b["id"] for b, c in zip(base["cases"], cand["cases"], strict=True)
                      if b["passed"] and not c["passed"])
    assert sorted(r["id"] for r in gate["regressions"]) == expected
    critical = [r for r in gate["regressions"] if r["criticality"] == "critical"]
    assert [v["suite"] for v in gate["suites"]] == ["regression", "q1", "q2"]  # every quarter in the gate
    assert gate["passed"] == all(v["passed"] for v in gate["suites"]) and not (critical and gate["passed"])
    assert code == (0 if gate["passed"] else 3), err
    # the gate reused both evaluations: each version was evaluated once on this suite
    sha = load_suite(repo_root / "data" / "firefighter" / "regression.jsonl").sha256
    runs = [e["version"] for e in load_evolution(env, "firefighter")["evaluations"] if e["suite_sha256"] == sha]
    assert sorted(runs) == ["1.0.0", "1.1.0"]


def _derived_suite(ws, repo_root, expected_from: str, name: str) -> tuple:
    """The regression questions, expecting exactly what `expected_from` answered; cases where
    the two versions answer differently are critical."""
    res = {v: json.loads((ws / f"eval-{v}.json").read_text())["cases"] for v in ("1.0.0", "1.1.0")}
    rows, differ = [], []
    for b, c in zip(res["1.0.0"], res["1.1.0"], strict=True):
        answer = b["output"] if expected_from == "1.0.0" else c["output"]
        if not answer.strip():
            continue
        lost = normalize(b["output"]) != normalize(c["output"])
        differ += [b["id"]] if lost else []
        rows.append({k: b[k] for k in ("id", "input", "domain", "tags")} |
                    {"expected": answer, "match": "exact", "criticality": "critical" if lost else "medium"})
    path = ws / "suites" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, differ


def test_a_candidate_that_lost_critical_cases_is_blocked(clt, env, repo_root):
    for v in ("1.0.0", "1.1.0"):
        if not (env / f"eval-{v}.json").exists():
            _eval(clt, env, v)
    suite, differ = _derived_suite(env, repo_root, "1.0.0", "lost.jsonl")
    assert differ, "1.1.0 was trained on other data: some answers must differ"
    code, out, err = clt("gate", "firefighter", "--candidate", "1.1.0", "--baseline", "1.0.0", "--suite", suite, *FAST)
    assert code == 3, err
    gate = json.loads((env / "runs" / "firefighter-1.1.0" / "gate.json").read_text())
    assert gate["passed"] is False and sorted(r["id"] for r in gate["regressions"]) == sorted(differ)
    md = (env / "runs" / "firefighter-1.1.0" / "gate.md").read_text()
    assert md.startswith("# Gate BLOCKED: firefighter 1.1.0 vs 1.0.0")
    for reg in gate["regressions"]:
        assert f"### `{reg['id']}` — critical" in md and reg["input"] in md
        assert f"regression {reg['id']} (critical" in out


def test_a_clean_candidate_passes(clt, env, repo_root):
    for v in ("1.0.0", "1.1.0"):
        if not (env / f"eval-{v}.json").exists():
            _eval(clt, env, v)
    suite, _ = _derived_suite(env, repo_root, "1.1.0", "clean.jsonl")
    code, out, err = clt("gate", "firefighter", "--candidate", "1.1.0", "--suite", suite, *FAST)
    assert code == 0, err
    gate = json.loads((env / "runs" / "firefighter-1.1.0" / "gate.json").read_text())
    assert gate["passed"] is True and gate["regressions"] == [] and gate["accuracy"]["candidate"] == 1.0
