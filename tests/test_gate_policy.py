"""Gate logic on crafted evaluations: what a regression is, and what the policy blocks."""

from __future__ import annotations

from cl_toolkit.evaluation.evaluate import summarize
from cl_toolkit.evaluation.gate import compare, decide, default_policy
from cl_toolkit.evaluation.gate_report import gate_markdown


def case(cid, passed, criticality="medium", domain="d1", output=None):
    return {"id": cid, "input": f"question {cid}?", "expected": f"answer {cid}", "match": "contains",
            "criticality": criticality, "domain": domain, "tags": [], "tolerance": 0.0,
            "output": output or ("answer " + cid if passed else "no idea"), "passed": passed}


def evaluation(rows):
    return {"cases": rows, **summarize(rows)}


BASE = [case("a", True, "critical", "limits"), case("b", True, "high", "flammability"),
        case("c", False, "medium", "hazmat"), case("d", False, "low", "ics"), case("e", True, "low", "ics")]


def diff_with(candidate_passes: dict):
    cand = [case(r["id"], candidate_passes.get(r["id"], r["passed"]), r["criticality"], r["domain"])
            for r in BASE]
    return compare(evaluation(BASE), evaluation(cand))


def test_default_policy_comes_from_the_schema():
    assert default_policy() == {"max_critical_regressions": 0, "min_accuracy_delta": 0.0, "max_regressions": {}}
    assert default_policy({"suite": "x", "min_accuracy_delta": -0.1})["min_accuracy_delta"] == -0.1


def test_a_lost_critical_case_blocks():
    diff = diff_with({"a": False})
    assert [r["id"] for r in diff["regressions"]] == ["a"]
    reg = diff["regressions"][0]
    assert (reg["criticality"], reg["baseline_output"], reg["candidate_output"]) == ("critical", "answer a", "no idea")
    reasons = decide(diff, default_policy())
    assert any("critical regression" in r and "a" in r for r in reasons)


def test_a_case_both_fail_is_not_a_regression():
    diff = diff_with({})
    assert diff["regressions"] == [] and diff["improvements"] == []
    assert diff["both_failed"] == ["c", "d"]
    assert decide(diff, default_policy()) == []


def test_improvements_and_per_domain_deltas():
    diff = diff_with({"c": True, "e": False})
    assert [r["id"] for r in diff["improvements"]] == ["c"]
    assert [r["id"] for r in diff["regressions"]] == ["e"]
    assert diff["per_domain"]["hazmat"]["delta"] == 1.0
    assert diff["per_domain"]["ics"] == {"total": 2, "baseline": 0.5, "candidate": 0.0, "delta": -0.5,
                                         "regressions": 1, "improvements": 0}
    assert diff["accuracy"] == {"baseline": 0.6, "candidate": 0.6, "delta": 0.0}
    assert decide(diff, default_policy()) == []  # a low regression offset by an improvement passes
    blocked = decide(diff, {**default_policy(), "max_regressions": {"low": 0}})
    assert blocked and "1 low regression(s)" in blocked[0]


def test_accuracy_delta_below_the_minimum_blocks():
    diff = diff_with({"e": False})
    assert decide(diff, default_policy()) == [
        "accuracy delta -0.2000 is below the minimum +0.0000"]
    assert decide(diff, {**default_policy(), "min_accuracy_delta": -0.25}) == []
    assert decide(diff_with({}), {**default_policy(), "min_accuracy_delta": 0.1})  # must improve: it did not


def test_a_critical_allowance_can_be_granted():
    diff = diff_with({"a": False, "c": True})
    assert decide(diff, {**default_policy(), "max_critical_regressions": 1}) == []


def test_the_markdown_report_shows_every_regression_in_full():
    diff = diff_with({"a": False, "c": True})
    gate = {"model": "m", "candidate": "1.1.0", "baseline": "1.0.0", "suite": "s.jsonl", "suite_sha256": "f" * 64,
            "passed": False, "reasons": decide(diff, default_policy()), "policy": default_policy(),
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
    assert config.policy == {"max_critical_regressions": 0, "min_accuracy_delta": 0.0, "max_regressions": {"high": 2}}


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
