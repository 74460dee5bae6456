"""The gate's policy on constructed evaluations: defaults from the schema, rules per suite,
the non-inferiority boundary, the significance rule, the learning rule, pass rates, and
bad policy values in a recipe (exit 2 with file, line and key)."""

from __future__ import annotations

import copy
import random

import pytest
from project import BASE_RECIPE, write_recipe

from cl_toolkit.core.errors import BadInput
from cl_toolkit.evaluation.paired import paired_bootstrap
from cl_toolkit.evaluation.policy import gate_verdict, normalise_gate, rules_for, suite_verdict


def evaluation(passes, criticality="medium", rates=None, ids=None):
    ids = ids or [f"c{i:03d}" for i in range(len(passes))]
    cases = []
    for i, (cid, ok) in enumerate(zip(ids, passes, strict=True)):
        crit = criticality[i] if isinstance(criticality, list) else criticality
        row = {"id": cid, "passed": bool(ok), "criticality": crit, "domain": "d", "match": "contains",
               "input": f"q {cid}", "expected": "a", "output": "a" if ok else "x"}
        if rates is not None:
            row["pass_rate"] = rates[i]
        cases.append(row)
    return {"cases": cases}


def pair(b, c, both=20, neither=15):
    """Evaluations with b cases lost and c won, plus cases both pass / neither passes."""
    base = [True] * b + [False] * c + [True] * both + [False] * neither
    cand = [False] * b + [True] * c + [True] * both + [False] * neither
    return evaluation(base), evaluation(cand)


def rule(verdict, name):
    return next(r for r in verdict["rules"] if r["rule"] == name)


POLICY = normalise_gate({"suites": {"regression": "r.jsonl", "q2": {"path": "q2.jsonl", "role": "learning"}}})


def test_defaults_come_from_the_schema_and_legacy_suite_is_the_regression_suite():
    p = normalise_gate({"suite": "data/reg.jsonl"})
    assert p["suites"] == {"regression": {"path": "data/reg.jsonl", "role": "regression"}}
    assert (p["max_critical_regressions"], p["non_inferiority_margin"], p["alpha"], p["min_learning"]) == \
        (0, 0.1, 0.05, 0.0)
    assert p["bootstrap"] == {"resamples": 10000, "confidence": 0.95, "seed": 0}
    assert (p["samples"], p["temperature"], p["min_accuracy_delta"], p["max_regressions"]) == (1, 0.7, None, {})
    both = normalise_gate({"suite": "old.jsonl", "suites": {"regression": "new.jsonl", "q1": "q1.jsonl"}})
    assert both["suites"] == {"regression": {"path": "new.jsonl", "role": "regression"},
                              "q1": {"path": "q1.jsonl", "role": "regression"}}
    assert normalise_gate(None)["suites"] == {}


def test_rules_per_suite_with_defaults_for_the_others():
    p = normalise_gate({"suites": {"a": "a.jsonl", "q2": {"path": "q2.jsonl", "role": "learning"}},
                        "alpha": {"a": 0.01}, "non_inferiority_margin": 0.2, "max_critical_regressions": {"q2": 3},
                        "min_learning": {"q2": {"delta": 0.2, "significant": True}}, "min_accuracy_delta": {"a": -0.1}})
    a, q2 = rules_for(p, "a"), rules_for(p, "q2")
    assert (a["alpha"], q2["alpha"]) == (0.01, 0.05)
    assert (a["non_inferiority_margin"], q2["non_inferiority_margin"]) == (0.2, 0.2)
    # counted rules: the regression suite by default, other suites only when named
    assert (a["max_critical_regressions"], q2["max_critical_regressions"]) == (None, 3)
    assert rules_for(p, "regression")["max_critical_regressions"] == 0
    assert rules_for(normalise_gate({"suite": "r", "max_critical_regressions": 2}), "regression")[
        "max_critical_regressions"] == 2
    assert rules_for(normalise_gate({"suite": "r", "max_critical_regressions": 2}), "q1")["max_critical_regressions"] is None
    assert rules_for(normalise_gate({"suite": "r", "max_regressions": {"high": 1}}), "q1")["max_regressions"] == {}
    assert (a["min_learning"], q2["min_learning"]) == (None, {"delta": 0.2, "significant": True})
    assert (a["min_accuracy_delta"], q2["min_accuracy_delta"]) == (-0.1, None)
    # a learning suite the map leaves out keeps the default; a number applies to every learning suite
    p2 = normalise_gate({"suites": {"q3": {"path": "x", "role": "learning"}}, "min_learning": {"q2": 0.3}})
    assert rules_for(p2, "q3")["min_learning"] == {"delta": 0.0, "significant": False}
    assert rules_for(normalise_gate({"suites": {"q3": {"path": "x", "role": "learning"}}, "min_learning": 0.2}),
                     "q3")["min_learning"] == {"delta": 0.2, "significant": False}


@pytest.mark.parametrize("seed", range(4))
def test_two_identical_evaluations_never_block(seed):
    rng = random.Random(seed)
    n = rng.randint(5, 80)
    passes = [rng.random() < 0.5 for _ in range(n)]
    crits = [rng.choice(["critical", "high", "medium", "low"]) for _ in range(n)]
    same = evaluation(passes, crits)
    for role in ("regression", "general"):
        v = suite_verdict("regression", role, same, copy.deepcopy(same),
                          normalise_gate({"suite": "s.jsonl", "max_regressions": {"low": 0}}))
        assert v["passed"], v["rules"]
        assert (v["delta"], v["interval"]["low"], v["mcnemar"]["p_drop"]) == (0.0, 0.0, 1.0)
    rates = [rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in range(n)]
    sampled = evaluation([r >= 0.5 for r in rates], crits, rates=rates)
    assert suite_verdict("s", "regression", sampled, copy.deepcopy(sampled), POLICY)["passed"]


def test_non_inferiority_at_its_boundary_with_pass_rates():
    # every case 0.1 less likely to pass: the interval is exactly [-0.1, -0.1]
    base = evaluation([True] * 20, rates=[0.6] * 20)
    cand = evaluation([True] * 20, rates=[0.5] * 20)
    inside = suite_verdict("r", "regression", base, cand, normalise_gate({"suite": "r", "non_inferiority_margin": 0.1}))
    assert rule(inside, "non_inferiority")["passed"] and inside["passed"]
    assert inside["interval"]["low"] == -0.1 and inside["regressions"] == []
    outside = suite_verdict("r", "regression", base, cand, normalise_gate({"suite": "r", "non_inferiority_margin": 0.0999}))
    assert not rule(outside, "non_inferiority")["passed"] and not outside["passed"]
    assert rule(outside, "non_inferiority")["numbers"] == {"low": -0.1, "high": -0.1, "margin": 0.0999}


def test_non_inferiority_at_the_bootstrap_bound():
    base, cand = pair(6, 3, both=30, neither=21)
    low = paired_bootstrap([c["passed"] for c in base["cases"]], [c["passed"] for c in cand["cases"]])["low"]
    assert -0.2 < low < -0.05
    just_in = normalise_gate({"suite": "r", "non_inferiority_margin": -low + 1e-4, "alpha": 0.001})
    just_out = normalise_gate({"suite": "r", "non_inferiority_margin": -low - 1e-4, "alpha": 0.001})
    assert suite_verdict("regression", "regression", base, cand, just_in)["passed"]
    blocked = suite_verdict("regression", "regression", base, cand, just_out)
    assert [r["rule"] for r in blocked["rules"] if not r["passed"]] == ["non_inferiority"]
    assert "below" in rule(blocked, "non_inferiority")["message"]


def test_a_significant_drop_blocks_at_alpha():
    loose = {"suite": "r", "non_inferiority_margin": 1.0}
    five = suite_verdict("regression", "regression", *pair(5, 0), normalise_gate(loose))
    assert rule(five, "significant_drop")["numbers"]["p_drop"] == pytest.approx(0.03125)
    assert not five["passed"] and [r["rule"] for r in five["rules"] if not r["passed"]] == ["significant_drop"]
    assert suite_verdict("regression", "regression", *pair(5, 0), normalise_gate({**loose, "alpha": 0.03}))["passed"]
    assert suite_verdict("regression", "regression", *pair(4, 0), normalise_gate(loose))["passed"]
    assert five["detectable_drop"] == pytest.approx(5 / 40, abs=1e-6)


def test_critical_and_per_criticality_regressions():
    base = evaluation([True, True, True, False], ["critical", "high", "high", "low"])
    cand = evaluation([False, False, True, True], ["critical", "high", "high", "low"])
    loose = {"suite": "r", "non_inferiority_margin": 1.0}
    v = suite_verdict("regression", "regression", base, cand, normalise_gate({**loose, "max_regressions": {"high": 0}}))
    failed = {r["rule"]: r for r in v["rules"] if not r["passed"]}
    assert set(failed) == {"max_critical_regressions", "max_regressions.high"}
    assert "c000" in failed["max_critical_regressions"]["message"]
    assert [r["id"] for r in v["regressions"]] == ["c000", "c001"] and [r["id"] for r in v["improvements"]] == ["c003"]
    allowed = normalise_gate({**loose, "max_critical_regressions": {"regression": 1}, "max_regressions": {"high": 1}})
    assert suite_verdict("regression", "regression", base, cand, allowed)["passed"]


def test_the_learning_rule_blocks_a_version_that_learned_nothing():
    parent = evaluation([False] * 40 + [True] * 8)
    verdict = suite_verdict("q2", "learning", parent, copy.deepcopy(parent), POLICY)
    assert not verdict["passed"]
    assert [r["rule"] for r in verdict["rules"] if not r["passed"]] == ["min_learning"]
    reasons = gate_verdict([verdict])
    assert not reasons["passed"] and reasons["reasons"][0].startswith("min_learning: q2:")
    assert "learned nothing" in reasons["reasons"][0]
    # the same evaluations on a regression suite pass: learning is asked only of the new quarter
    assert suite_verdict("regression", "regression", parent, copy.deepcopy(parent), POLICY)["passed"]


@pytest.mark.parametrize(("won", "minimum", "passes"), [(1, None, True), (0, None, False), (3, 0.05, True),
                                                       (2, 0.05, False)])
def test_the_learning_rule_at_its_threshold(won, minimum, passes):
    # 48 cases; by default one more case right than the parent is enough, none is not;
    # min_learning 0.05 needs 3 more (0.0625), 2 (0.0417) are too few
    policy = POLICY if minimum is None else normalise_gate({"suites": {"q2": {"path": "q", "role": "learning"}},
                                                            "min_learning": minimum})
    base, cand = pair(0, won, both=5, neither=43 - won)
    v = suite_verdict("q2", "learning", base, cand, policy)
    assert rule(v, "min_learning")["passed"] is passes and v["passed"] is passes


def test_a_regression_suite_caps_critical_losses_and_the_others_judge_by_statistics():
    base = evaluation([True] * 10 + [False] * 38, "critical")
    cand = evaluation([False] + [True] * 9 + [True] + [False] * 37, "critical")  # one lost, one won
    assert not suite_verdict("regression", "regression", base, cand, POLICY)["passed"]
    q1 = suite_verdict("q1", "regression", base, cand, POLICY)
    assert q1["passed"] and "max_critical_regressions" not in [r["rule"] for r in q1["rules"]]
    named = normalise_gate({"suites": {"q1": "q1.jsonl"}, "max_critical_regressions": {"q1": 0}})
    assert not rule(suite_verdict("q1", "regression", base, cand, named), "max_critical_regressions")["passed"]


def test_the_learning_rule_with_significance():
    sig = normalise_gate({"suites": {"q2": {"path": "q", "role": "learning"}}, "non_inferiority_margin": 1.0,
                          "min_learning": {"q2": {"delta": 0.1, "significant": True}}})
    plain = normalise_gate({"suites": {"q2": {"path": "q", "role": "learning"}}, "non_inferiority_margin": 1.0,
                            "min_learning": {"q2": 0.1}})
    clean = pair(0, 5, both=10, neither=33)  # +5/48, p_gain = 0.5^5
    assert suite_verdict("q2", "learning", *clean, sig)["passed"]
    noisy = pair(2, 7, both=10, neither=29)  # +5/48, p_gain = P(X >= 7 | 9) = 46/512
    v = suite_verdict("q2", "learning", *noisy, sig)
    assert rule(v, "min_learning")["numbers"]["p_gain"] == pytest.approx(46 / 512)
    assert not v["passed"] and "p = 0.08984 > alpha 0.05" in rule(v, "min_learning")["message"]
    assert suite_verdict("q2", "learning", *noisy, plain)["passed"]


def test_the_legacy_minimum_delta_applies_only_when_set():
    base, cand = pair(1, 0)
    loose = {"suite": "r", "non_inferiority_margin": 1.0}
    assert "min_accuracy_delta" not in [r["rule"] for r in
                                        suite_verdict("regression", "regression", base, cand, normalise_gate(loose))["rules"]]
    v = suite_verdict("regression", "regression", base, cand, normalise_gate({**loose, "min_accuracy_delta": 0.0}))
    assert not v["passed"] and not rule(v, "min_accuracy_delta")["passed"]
    # the legacy number meant the one suite there was; other suites need the map form
    other = suite_verdict("q1", "regression", base, cand, normalise_gate({**loose, "min_accuracy_delta": 0.0}))
    assert other["passed"] and "min_accuracy_delta" not in [r["rule"] for r in other["rules"]]
    named = suite_verdict("q1", "regression", base, cand, normalise_gate({**loose, "min_accuracy_delta": {"q1": 0.0}}))
    assert not rule(named, "min_accuracy_delta")["passed"]


def test_cases_pair_by_id_and_differing_ids_are_an_error():
    base, cand = pair(2, 3)
    shuffled = {"cases": list(reversed(cand["cases"]))}
    assert suite_verdict("r", "regression", base, shuffled, POLICY)["mcnemar"] == \
        suite_verdict("r", "regression", base, cand, POLICY)["mcnemar"]
    other = {"cases": [{**c, "id": c["id"] + "x"} if i == 0 else c for i, c in enumerate(cand["cases"])]}
    with pytest.raises(BadInput, match="suite r: the two evaluations are not of the same cases"):
        suite_verdict("r", "regression", base, other, POLICY)
    dup = {"cases": cand["cases"] + cand["cases"][:1]}
    with pytest.raises(BadInput, match="repeats case ids"):
        suite_verdict("r", "regression", base, dup, POLICY)


def test_pass_rates_drive_the_statistics():
    # the flags agree (every case passes at rate >= 0.5) but the rates fell on 10 of 20 cases
    base = evaluation([True] * 20, rates=[1.0] * 20)
    cand = evaluation([True] * 20, rates=[0.5] * 10 + [1.0] * 10)
    v = suite_verdict("r", "regression", base, cand, POLICY)
    assert v["regressions"] == [] and v["delta"] == -0.25
    assert (v["mcnemar"]["b_exact"], v["mcnemar"]["b"]) == (5.0, 5)
    assert not rule(v, "significant_drop")["passed"] and not rule(v, "non_inferiority")["passed"]
    flags_only = suite_verdict("r", "regression", evaluation([True] * 20), evaluation([True] * 20), POLICY)
    assert flags_only["passed"]


def test_gate_verdict_collects_every_failed_rule_naming_its_suite():
    ok = suite_verdict("regression", "regression", *pair(0, 0), POLICY)
    bad = suite_verdict("q1", "regression", *pair(8, 0), POLICY)
    v = gate_verdict([ok, bad])
    assert not v["passed"] and v["reasons"] and all(": q1: " in r for r in v["reasons"])
    assert gate_verdict([ok]) == {"passed": True, "reasons": []}
    assert not gate_verdict([])["passed"]


BAD_POLICIES = {
    "negative margin": ({"non_inferiority_margin": -0.1}, "gate.non_inferiority_margin", "less than the minimum"),
    "alpha too big": ({"alpha": {"regression": 0.7}}, "gate.alpha.regression", "greater than the maximum"),
    "unknown role": ({"suites": {"q2": {"path": "data/firefighter/q2.jsonl", "role": "learnin"}}},
                     "gate.suites.q2.role", "is not one of"),
    "learning typo": ({"min_learning": {"q2": {"delta": 0.1, "significnt": True}}},
                      "gate.min_learning.q2.significnt", "unknown key"),
    "zero samples": ({"samples": 0}, "gate.samples", "less than the minimum"),
    "missing suite file": ({"suites": {"q9": "data/firefighter/q9.jsonl"}}, "gate.suites.q9", "file not found"),
}


@pytest.mark.parametrize("name", sorted(BAD_POLICIES))
def test_bad_policy_values_exit_2_with_file_line_and_key(proj, clt, name):
    change, key, message = BAD_POLICIES[name]
    data = copy.deepcopy(BASE_RECIPE)
    data["gate"] = {**data["gate"], **change}
    path = write_recipe(proj, data)
    code, _, err = clt("recipe", "validate", path)
    assert code == 2, err
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                if text.strip().startswith(key.split(".")[-1] + ":"))
    hit = [text for text in err.splitlines() if f"{path.name}:{line}: [{key}] " in text]
    assert hit and message in hit[0], err


def test_a_suites_only_gate_validates(proj, clt):
    data = copy.deepcopy(BASE_RECIPE)
    data["gate"] = {"suites": {"regression": "data/firefighter/regression.jsonl",
                               "q2": {"path": "data/firefighter/q2_asked.jsonl", "role": "learning"}},
                    "min_learning": {"q2": {"delta": 0.1, "significant": True}}, "samples": 4}
    code, out, err = clt("recipe", "validate", write_recipe(proj, data))
    assert code == 0, err
    data["gate"] = {"max_critical_regressions": 0}
    code, _, err = clt("recipe", "validate", write_recipe(proj, data))
    assert code == 2 and "[gate] 'suites' is a required property" in err, err
