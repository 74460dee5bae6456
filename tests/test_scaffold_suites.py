"""`clt recipe new` keeps every quarter in the gate: the parent's suites are carried forward,
the quarter it learned becomes a regression suite, and the new training file's test set is
added as the quarter being learned (with the parent's min_learning rule moved to it)."""

from __future__ import annotations

import yaml
from conftest import REPO

from cl_toolkit.recipe.scaffold import scaffold_gate


def test_the_parents_suites_carry_forward_and_the_new_quarter_is_learned():
    parent = {"suites": {"regression": "data/firefighter/regression.jsonl",
                         "q1": "data/firefighter/q1_asked.jsonl",
                         "q2": {"path": "data/firefighter/q2_asked.jsonl", "role": "learning"}},
              "max_critical_regressions": 0, "min_learning": {"q2": 0.05}}
    gate = scaffold_gate(parent, ["data/firefighter/q3.jsonl"], REPO)
    assert gate["suites"] == {"regression": "data/firefighter/regression.jsonl",
                              "q1": "data/firefighter/q1_asked.jsonl", "q2": "data/firefighter/q2_asked.jsonl",
                              "q3": {"path": "data/firefighter/q3_asked.jsonl", "role": "learning"}}
    assert gate["min_learning"] == {"q3": 0.05} and gate["max_critical_regressions"] == 0
    assert parent["suites"]["q2"]["role"] == "learning"  # the parent's recipe data is not changed


def test_a_legacy_suite_becomes_the_regression_suite():
    gate = scaffold_gate({"suite": "data/firefighter/regression.jsonl"}, ["data/firefighter/q2.jsonl"], REPO)
    assert gate == {"suites": {"regression": "data/firefighter/regression.jsonl",
                               "q2": {"path": "data/firefighter/q2_asked.jsonl", "role": "learning"}}}


def test_training_data_without_a_test_set_adds_no_suite():
    parent = {"suites": {"q1": {"path": "data/firefighter/q1_asked.jsonl", "role": "learning"}}}
    assert scaffold_gate(parent, ["data/general/general.jsonl"], REPO) == parent  # no general_test.jsonl
    assert scaffold_gate(parent, [], REPO) == parent


def test_the_shipped_recipes_name_every_quarter_so_far():
    roles = {}
    for version in ("1.0.0", "1.1.0", "2.0.0", "2.1.0"):
        suites = yaml.safe_load((REPO / "recipes" / "firefighter" / f"{version}.yml").read_text())["gate"]["suites"]
        assert all((REPO / (s if isinstance(s, str) else s["path"])).is_file() for s in suites.values())
        roles[version] = sorted(n for n, s in suites.items() if isinstance(s, dict) and s.get("role") == "learning")
    assert roles == {"1.0.0": ["q1"], "1.1.0": ["q2"], "2.0.0": ["q3"], "2.1.0": []}


def test_the_rows_asked_as_trained_win_over_the_test_set_else_the_test_set(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "q5_test.jsonl").write_text("{}\n")
    gate = scaffold_gate({}, ["d/q5.jsonl"], tmp_path)
    assert gate["suites"] == {"q5": {"path": "d/q5_test.jsonl", "role": "learning"}}
    (tmp_path / "d" / "q5_asked.jsonl").write_text("{}\n")
    assert scaffold_gate({}, ["d/q5.jsonl"], tmp_path)["suites"]["q5"]["path"] == "d/q5_asked.jsonl"
