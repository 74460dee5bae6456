"""Gate logic on crafted evaluations: what a regression is, what the policy blocks on the
regression suite (through policy.suite_verdict, as run_gate applies it), and where the
named suites and the policy of a gate come from."""

from __future__ import annotations

from cl_toolkit.evaluation.evaluate import summarize
from cl_toolkit.evaluation.gate import compare, default_policy
from cl_toolkit.evaluation.gate_report import gate_markdown
from cl_toolkit.evaluation.policy import gate_verdict, suite_verdict


def case(cid, passed, criticality="medium", domain="d1", output=None):
    return {"id": cid, "input": f"question {cid}?", "expected": f"answer {cid}", "match": "contains",
            "criticality": criticality, "domain": domain, "tags": [], "tolerance": 0.0,
            "output": output or ("answer " + cid if passed else "no idea"), "passed": passed}


def evaluation(rows):
    return {"cases": rows, **summarize(rows)}


BASE = [case("a", True, "critical", "limits"), case("b", True, "high", "flammability"),
        case("c", False, "medium", "hazmat"), case("d", False, "low", "ics"), case("e", True, "low", "ics")]


def _cand(candidate_passes: dict) -> list[dict]:
    return [case(r["id"], candidate_passes.get(r["id"], r["passed"]), r["criticality"], r["domain"]) for r in BASE]


def diff_with(candidate_passes: dict):
    return compare(evaluation(BASE), evaluation(_cand(candidate_passes)))


# the counted rules alone: the statistical ones are policy.py's (tests/test_policy.py)
COUNTED = {"non_inferiority_margin": 1.0, "alpha": 1e-9, "min_accuracy_delta": 0.0}


def decide(candidate_passes: dict, policy: dict | None = None) -> list[str]:
    """Why the candidate is blocked on the regression suite, as run_gate decides it."""
    policy = default_policy({**COUNTED, **(policy or {})})
    verdict = suite_verdict("regression", "regression", evaluation(BASE), evaluation(_cand(candidate_passes)), policy)
    return gate_verdict([verdict])["reasons"]


def test_default_policy_comes_from_the_schema():
    policy = default_policy()
    assert "suites" not in policy and policy["max_critical_regressions"] == 0 and policy["max_regressions"] == {}
    assert default_policy({"suite": "x", "min_accuracy_delta": -0.1})["min_accuracy_delta"] == -0.1


def test_a_lost_critical_case_blocks():
    diff = diff_with({"a": False})
    assert [r["id"] for r in diff["regressions"]] == ["a"]
    reg = diff["regressions"][0]
    assert (reg["criticality"], reg["baseline_output"], reg["candidate_output"]) == ("critical", "answer a", "no idea")
    reasons = decide({"a": False})
    assert any("critical" in r and "regression" in r for r in reasons), reasons


def test_a_case_both_fail_is_not_a_regression():
    diff = diff_with({})
    assert diff["regressions"] == [] and diff["improvements"] == []
    assert diff["both_failed"] == ["c", "d"]
    assert decide({}) == []


def test_improvements_and_per_domain_deltas():
    diff = diff_with({"c": True, "e": False})
    assert [r["id"] for r in diff["improvements"]] == ["c"]
    assert [r["id"] for r in diff["regressions"]] == ["e"]
    assert diff["per_domain"]["hazmat"]["delta"] == 1.0
    assert diff["per_domain"]["ics"] == {"total": 2, "baseline": 0.5, "candidate": 0.0, "delta": -0.5,
                                         "regressions": 1, "improvements": 0}
    assert diff["accuracy"] == {"baseline": 0.6, "candidate": 0.6, "delta": 0.0}
    assert decide({"c": True, "e": False}) == []  # a low regression offset by an improvement passes
    blocked = decide({"c": True, "e": False}, {"max_regressions": {"low": 0}})
    assert len(blocked) == 1 and "low" in blocked[0]


def test_accuracy_delta_below_the_minimum_blocks():
    blocked = decide({"e": False})
    assert len(blocked) == 1 and "delta" in blocked[0], blocked
    assert decide({"e": False}, {"min_accuracy_delta": -0.25}) == []
    assert decide({}, {"min_accuracy_delta": 0.1})  # must improve: it did not


def test_a_critical_allowance_can_be_granted():
    assert decide({"a": False, "c": True}) != []
    assert decide({"a": False, "c": True}, {"max_critical_regressions": 1}) == []


def test_the_markdown_report_shows_every_regression_in_full():
    diff = diff_with({"a": False, "c": True})
    gate = {"model": "m", "candidate": "1.1.0", "baseline": "1.0.0", "suite": "s.jsonl", "suite_sha256": "f" * 64,
            "passed": False, "reasons": decide({"a": False, "c": True}), "policy": default_policy(),
            "gated_at": "now", **diff}
    md = gate_markdown(gate, [{"version": "1.0.0", "accuracy": 0.6, "per_domain": {"limits": 1.0}},
                              {"version": "1.1.0", "accuracy": 0.6, "per_domain": {"limits": 0.0}}])
    assert md.startswith("# Gate BLOCKED: m 1.1.0 vs 1.0.0")
    section = md.split("## Regressions (1)")[1].split("## Improvements")[0]
    for text in ("`a`", "critical", "question a?", "answer a", "no idea"):
        assert text in section
    assert "## Improvements (1)" in md and "| limits | 1 | 100.0% | 0.0% | -100.0 pt | 1 | 0 |" in md
    assert "| 1.1.0 | 60.0% | 0.0% |" in md


def test_markdown_survives_backticks_in_outputs():
    from cl_toolkit.evaluation.gate_report import code

    assert code("a `b` c") == "`` a `b` c ``"
    assert code("") == "*(empty)*"
    assert code(["x", "y"]) == "` x | y `"


def _record(run_dir):
    from cl_toolkit.registry import VersionRecord

    return VersionRecord(model="m", version="1.1.0", parent="1.0.0", strategy="continued_lora", base_model="b",
                         recipe_sha256="r", data_sha256="d", run_dir=str(run_dir), adapter_dir=None)


def test_the_policy_and_suite_come_from_the_recipe_copy(tmp_path, monkeypatch, repo_root):
    from cl_toolkit.evaluation.gate import gate_config

    monkeypatch.chdir(repo_root)
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yml").write_text("model: m\ngate:\n  suite: data/firefighter/smoke_suite.jsonl\n"
                                    "  max_regressions: {high: 2}\n")
    config = gate_config(_record(run), tmp_path)
    assert config.suite == repo_root / "data" / "firefighter" / "smoke_suite.jsonl"
    assert config.suites == {"regression": {"path": config.suite, "role": "regression"}}  # legacy `suite:`
    assert config.policy["max_regressions"] == {"high": 2} and "suites" not in config.policy


def test_named_suites_come_from_the_recipe_copy_in_order_with_roles(tmp_path, monkeypatch, repo_root):
    from cl_toolkit.evaluation.gate import gate_config

    monkeypatch.chdir(repo_root)
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yml").write_text(
        "model: m\ngate:\n  suites:\n    regression: data/firefighter/regression.jsonl\n"
        "    q1: data/firefighter/q1_test.jsonl\n    q2: {path: data/firefighter/q2_test.jsonl, role: learning}\n")
    config = gate_config(_record(run), tmp_path)
    data = repo_root / "data" / "firefighter"
    assert config.suites == {"regression": {"path": data / "regression.jsonl", "role": "regression"},
                             "q1": {"path": data / "q1_test.jsonl", "role": "regression"},
                             "q2": {"path": data / "q2_test.jsonl", "role": "learning"}}
    assert config.suite == data / "regression.jsonl"
    (run / "recipe.yml").write_text("model: m\ngate:\n  suites:\n    q1: data/firefighter/q1_test.jsonl\n"
                                    "    q9: data/nope.jsonl\n")
    import pytest

    from cl_toolkit.core.errors import BadInput

    with pytest.raises(BadInput) as err:
        gate_config(_record(run), tmp_path)
    assert (err.value.problems[0].line, err.value.problems[0].key) == (5, "gate.suites.q9")


def test_a_bad_gate_section_is_bad_input_with_its_line(tmp_path, monkeypatch, repo_root):
    import pytest

    from cl_toolkit.core.errors import BadInput
    from cl_toolkit.evaluation.gate import gate_config

    monkeypatch.chdir(repo_root)
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yml").write_text("model: m\ngate:\n  suite: data/firefighter/smoke_suite.jsonl\n"
                                    "  max_critical_regressions: -1\n")
    with pytest.raises(BadInput) as err:
        gate_config(_record(run), tmp_path)
    assert err.value.problems[0].line == 4 and err.value.problems[0].key == "gate.max_critical_regressions"
    (run / "recipe.yml").write_text("model: m\ngate: {suite: data/nope.jsonl}\n")
    with pytest.raises(BadInput, match="suite not found: data/nope.jsonl"):
        gate_config(_record(run), tmp_path)
    (run / "recipe.yml").write_text("model: m\n")
    assert gate_config(_record(run), tmp_path).suite is None  # then --suite is needed
