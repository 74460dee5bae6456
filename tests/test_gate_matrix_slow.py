"""Every quarter stays in the gate, on the tiny model trained through Axolotl: 1.0.0 learns
Q1; 1.1.0 is a deliberately forgetting child (Q2 only, no rehearsal, many epochs). The gate
evaluates both on every named suite, the registry's matrix shows both quarters for both
versions, and the candidate is blocked on the Q1 suite with its interval reported; the
blocked verdict, recorded by the registry, keeps it from champion. Two trainings in all.

The quarter suites are the regression suite's questions of each quarter, asked as trained
(tags q1 / q2). The tests' tiny base is not pretrained, so its LoRA learns few answers
exactly; what 1.0.0 knows of Q1 is therefore measured as in test_gate_slow: the Q1 suite
expects 1.0.0's own answers (written after 1.0.0 is trained), so 1.0.0 scores 100% there by
construction and every Q1 answer the candidate changes is a measured loss."""

from __future__ import annotations

import json

import pytest

from cl_toolkit.core.errors import Refused

pytestmark = pytest.mark.slow
FAST = ["--threads", "1", "--max-new-tokens", "24"]
SUITES = {"1.0.0": {"q1": "learning", "q2": "regression"}, "1.1.0": {"q1": "regression", "q2": "learning"}}
POLICY = ["gate.non_inferiority_margin=0.1", "gate.alpha=0.05", "gate.max_critical_regressions=100"]


def _known_q1(ws) -> None:
    """Rewrite the Q1 suite to expect exactly what 1.0.0 answers (blank answers dropped)."""
    from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version
    from cl_toolkit.evaluation.suite import load_suite
    from cl_toolkit.registry import open_registry

    path = ws / "suites" / "q1.jsonl"
    with open_registry(ws) as reg:
        result = evaluate_version(ws, reg.require("firefighter", "1.0.0"), load_suite(path),
                                  EvalSettings(max_new_tokens=24, threads=1))
    rows = [{k: c[k] for k in ("id", "input", "criticality", "domain", "tags")} | {"expected": c["output"],
                                                                                   "match": "exact"}
            for c in result["cases"] if c["output"].strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _quarter_suites(ws, repo_root) -> None:
    rows = [json.loads(line) for line in (repo_root / "data" / "firefighter" / "regression.jsonl").read_text().splitlines()
            if line.strip()]
    (ws / "suites").mkdir(parents=True, exist_ok=True)
    for q in ("q1", "q2"):
        (ws / "suites" / f"{q}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if q in r["tags"]))


def _recipe(project, repo_root, version: str):
    """The shipped recipe with its gate naming the workspace's quarter suites (the gate reads
    the recipe copy in the run folder, so the suites are in the file, not in overrides)."""
    text = (repo_root / "recipes" / "firefighter" / f"{version}.yml").read_text()
    suites = "".join(f"    {q}: {{path: 'workspace:suites/{q}.jsonl', role: {role}}}\n"
                     for q, role in SUITES[version].items())
    gate = ("gate:\n  suites:\n    regression: data/firefighter/regression.jsonl\n" + suites
            + "".join(f"  {rule.split('.', 1)[1].replace('=', ': ')}\n" for rule in POLICY))
    path = project / "recipes" / "firefighter" / f"{version}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text[:text.index("\ngate:")] + "\n" + gate)
    return path


@pytest.fixture(scope="module")
def line(tmp_path_factory, tiny_model_dir, repo_root):
    import shutil

    from project import make_project

    from cl_toolkit.registry import open_registry
    from cl_toolkit.training.strategies import load_recipe
    from cl_toolkit.training.train import train

    project = make_project(tmp_path_factory.mktemp("gate-matrix") / "proj")
    ws = project / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    _quarter_suites(ws, repo_root)
    training = {"1.0.0": ["train.num_epochs=10"],
                "1.1.0": ["train.num_epochs=12", "data.rehearsal.ratio=0"]}  # forgets: no rehearsal at all
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLT_HOME", str(ws))
        mp.chdir(project)
        for version, extra in training.items():
            lr = load_recipe(_recipe(project, repo_root, version), extra, workspace=ws)
            with open_registry(ws) as reg:
                train(lr, reg)
            if version == "1.0.0":
                _known_q1(ws)
    return ws


@pytest.fixture
def env(line, monkeypatch):
    monkeypatch.setenv("CLT_HOME", str(line))
    monkeypatch.chdir(line.parent)  # the project: the recipe copies' relative paths start there
    return line


def test_the_forgetting_candidate_is_blocked_on_q1_and_the_matrix_has_every_quarter(clt, env):
    from cl_toolkit.registry import open_registry, promote

    code, out, err = clt("gate", "firefighter", "--candidate", "1.1.0", *FAST)
    gate = json.loads((env / "runs" / "firefighter-1.1.0" / "gate.json").read_text())
    by_suite = {v["suite"]: v for v in gate["suites"]}
    assert list(by_suite) == ["regression", "q1", "q2"]
    q1 = by_suite["q1"]
    assert q1["baseline"] == 1.0 and q1["n"] >= 20  # its own answers, by construction
    assert code == 3 and gate["passed"] is False, out
    assert not q1["passed"] and q1["candidate"] < q1["baseline"]
    failed = [r for r in q1["rules"] if not r["passed"]]
    assert failed and {r["rule"] for r in failed} & {"non_inferiority", "significant_drop"}
    assert q1["interval"]["low"] < -0.1 and q1["interval"]["low"] <= q1["delta"] <= q1["interval"]["high"]
    assert any("q1" in reason for reason in gate["reasons"])
    assert f"suite q1 (regression, {q1['n']} cases)" in out and "BLOCKED" in out
    md = (env / "runs" / "firefighter-1.1.0" / "gate.md").read_text()
    assert "## Accuracy matrix" in md

    # the registry's matrix: both versions on every quarter, forgetting measured on Q1
    code, out, err = clt("eval", "matrix", "firefighter", "--json", "--all")
    assert code == 0, err
    m = json.loads(out)
    assert m["versions"] == ["1.0.0", "1.1.0"] and set(m["suites"]) == {"regression", "q1", "q2"}
    assert all(m["scores"][v][s] is not None for v in m["versions"] for s in m["suites"])
    assert m["scores"]["1.0.0"]["q1"] == q1["baseline"] and m["scores"]["1.1.0"]["q1"] == q1["candidate"]
    assert m["learned_at"] == {"q1": "1.0.0", "q2": "1.1.0"}
    assert m["forgetting"]["q1"] == pytest.approx(q1["baseline"] - q1["candidate"])
    assert m["bwt"] == pytest.approx(q1["candidate"] - q1["baseline"])
    code, text, _ = clt("eval", "matrix", "firefighter")
    assert code == 0 and text.splitlines()[0] == "firefighter: accuracy matrix (versions x suites)"

    # the blocked verdict is the registry's: no gate.json edit makes it champion
    gate_json = env / "runs" / "firefighter-1.1.0" / "gate.json"
    gate_json.write_text(json.dumps({**gate, "passed": True, "reasons": []}))
    with open_registry(env) as reg:
        promote(reg, "firefighter", "1.0.0", reason="first")
        with pytest.raises(Refused, match="failed its gate"):
            promote(reg, "firefighter", "1.1.0", reason="forged gate.json")
