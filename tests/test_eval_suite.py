"""Suites are validated on load: every problem, with file and line."""

from __future__ import annotations

import json

import pytest

from cl_toolkit.core.errors import BadInput
from cl_toolkit.evaluation.suite import load_suite

CASE = {"id": "c1", "input": "What is the IDLH for ammonia?", "expected": "300 ppm", "match": "numeric",
        "criticality": "critical", "domain": "exposure_limits", "tags": ["q1"]}


def write(tmp_path, rows, name="suite.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["regression.jsonl", "smoke_suite.jsonl", "q1_test.jsonl"])
def test_bundled_suites_load(repo_root, name):
    suite = load_suite(repo_root / "data" / "firefighter" / name)
    assert len({c.id for c in suite.cases}) == len(suite.cases) > 0
    assert len(suite.sha256) == 64


def test_any_of_keeps_its_list(repo_root):
    suite = load_suite(repo_root / "data" / "firefighter" / "regression.jsonl")
    case = next(c for c in suite.cases if c.id == "reg-056")
    assert case.expected == ("backdraft", "backdraught")


def test_every_problem_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, [
        CASE,
        {**CASE, "id": "c1"},                                      # 2: duplicate id
        {**CASE, "id": "c3", "match": "fuzzy"},                    # 3: unknown matcher
        {**CASE, "id": "c4", "criticality": "urgent"},             # 4: unknown criticality
        {**CASE, "id": "c5", "match": "regex", "expected": "(unclosed"},  # 5: bad regex
        "{not json",                                                # 6
        {**CASE, "id": "c7", "match": "any_of", "expected": "backdraft"},  # 7: any_of needs a list
        {k: v for k, v in CASE.items() if k != "domain"} | {"id": "c8"},   # 8: missing domain
        {**CASE, "id": "c9", "expected": "about three hundred"},  # 9: numeric without a number
        {**CASE, "id": "c10", "colour": "red"},                    # 10: unknown key
    ])
    with pytest.raises(BadInput) as err:
        load_suite(path)
    found = {(p.line, p.key) for p in err.value.problems}
    assert found == {(2, "id"), (3, "match"), (4, "criticality"), (5, "expected"), (6, None), (7, "expected"),
                     (8, "domain"), (9, "expected"), (10, "colour")}
    assert all(p.file.endswith("suite.jsonl") for p in err.value.problems)
    assert "first on line 1" in str(err.value)


def test_blank_lines_are_skipped_and_empty_suites_refused(tmp_path):
    assert len(load_suite(write(tmp_path, [CASE, "", {**CASE, "id": "c2"}])).cases) == 2
    with pytest.raises(BadInput, match="no cases"):
        load_suite(write(tmp_path, [""], "empty.jsonl"))
    with pytest.raises(BadInput, match="not found"):
        load_suite(tmp_path / "missing.jsonl")


def test_the_hash_is_of_the_bytes(tmp_path):
    a = load_suite(write(tmp_path, [CASE], "a.jsonl"))
    b = load_suite(write(tmp_path, [CASE], "b.jsonl"))
    c = load_suite(write(tmp_path, [{**CASE, "expected": "301 ppm"}], "c.jsonl"))
    assert a.sha256 == b.sha256 != c.sha256


def test_clt_eval_reports_a_bad_suite_as_bad_input(clt, empty_workspace, tmp_path):
    path = write(tmp_path, [CASE, {**CASE, "id": "c2", "match": "fuzzy"}])
    code, _, err = clt("eval", "firefighter@1.0.0", "--suite", path)
    assert code == 2
    assert err.startswith("error: ") and "suite.jsonl:2: [match] unknown matcher 'fuzzy'" in err
    assert "Traceback" not in err


def test_clt_eval_wants_model_at_version(clt, empty_workspace):
    code, _, err = clt("eval", "firefighter")
    assert code == 2 and "MODEL@VERSION" in err


def test_clt_init_template_cases_are_refused_until_replaced(tmp_path):
    """A gate that judged `clt init`'s REPLACE cases would judge nothing real; a case whose
    text was written keeps its `template` tag harmlessly."""
    from cl_toolkit.recipe.init import SUITE_TEMPLATE

    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in SUITE_TEMPLATE))
    with pytest.raises(BadInput) as e:
        load_suite(path)
    assert [(p.line, p.key) for p in e.value.problems] == [(1, "input"), (2, "input"), (3, "input")]
    assert "template case from `clt init` ('replace-me-1')" in e.value.problems[0].message
    written = [{**c, "input": f"question {i}?", "domain": "hazmat"} for i, c in enumerate(SUITE_TEMPLATE)]
    written[0]["expected"] = "the fact"
    path.write_text("".join(json.dumps(c) + "\n" for c in written))
    assert len(load_suite(path).cases) == 3
