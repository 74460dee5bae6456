"""The bundled per-quarter suites asked as trained: one case per training row, in order,
the question exactly as trained and the expected value matched by the training answer
(so a model that learned the row passes its case)."""

import json

import pytest
from conftest import REPO

from cl_toolkit.evaluation.matchers import MATCHERS
from cl_toolkit.evaluation.suite import load_suite

FF = REPO / "data" / "firefighter"


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("quarter", ["q1", "q2", "q3"])
def test_asked_suite_mirrors_the_training_rows(quarter):
    train = rows(FF / f"{quarter}.jsonl")
    suite = load_suite(FF / f"{quarter}_asked.jsonl")  # checks the suite format too
    cases = rows(FF / f"{quarter}_asked.jsonl")
    assert len(suite.cases) == len(cases) == len(train) == 48
    for n, (row, case) in enumerate(zip(train, cases, strict=True), 1):
        question, answer = row["messages"][0]["content"], row["messages"][-1]["content"]
        assert case["id"] == f"{quarter}a-{n:03d}" and case["input"] == question
        assert MATCHERS[case["match"]](answer, case["expected"], case.get("tolerance", 0.0)), case["id"]
        assert quarter in case["tags"] and "asked" in case["tags"]
