"""The accuracy matrix of a model line, from the registry's scores: one row per version, one
column per named suite, forgetting and BWT as the benchmark defines them; `clt eval matrix`
prints it; the quarterly report shows it. No model is loaded: scores are recorded directly."""

from __future__ import annotations

import json
import random

import pytest
from test_registry_support import add_version

from cl_toolkit.bench import metrics as bench_metrics
from cl_toolkit.evaluation import cl_metrics
from cl_toolkit.evaluation.matrix import line_matrix
from cl_toolkit.registry import archive, open_registry

# version -> {suite: accuracy}; 1.0.0 learned q1, 1.1.0 learned q2 and forgot some q1
SCORES = {"1.0.0": {"regression": 0.5, "q1": 0.6, "q2": 0.1},
          "1.1.0": {"regression": 0.55, "q1": 0.4, "q2": 0.5},
          "1.2.0": {"regression": 0.6, "q1": 0.5, "q2": 0.45}}
ROLES = {"1.0.0": {"q1": "learning"}, "1.1.0": {"q2": "learning"}, "1.2.0": {}}


def _recipe_copy(run, roles: dict) -> None:
    suites = {"regression": "data/firefighter/regression.jsonl", "q1": "data/firefighter/q1_test.jsonl",
              "q2": "data/firefighter/q2_test.jsonl"}
    gate = {"suites": {n: ({"path": p, "role": roles[n]} if n in roles else p) for n, p in suites.items()}}
    (run / "recipe.yml").write_text(json.dumps({"model": "ff", "gate": gate}))  # JSON is YAML


@pytest.fixture
def line(empty_workspace):
    ws = empty_workspace
    with open_registry(ws) as reg:
        parent = None
        for v, scores in SCORES.items():
            rec = add_version(reg, ws, v, parent)
            _recipe_copy(ws / "runs" / f"ff-{v}", ROLES[v])
            for i, (suite, acc) in enumerate(scores.items()):
                reg.record_score("ff", v, suite, f"sha-{suite}", acc, 48, f"2026-01-0{i + 1}T00:00:00.000Z",
                                 f"evals/ff/{v}/sha-{suite}.json")
            parent = rec.version
    return ws


def test_the_matrix_is_every_version_on_every_suite_with_forgetting_and_bwt(line):
    m = line_matrix(line, "ff", suite_order=["regression", "q1", "q2"])
    assert m["versions"] == ["1.0.0", "1.1.0", "1.2.0"] and m["suites"] == ["regression", "q1", "q2"]
    assert m["scores"] == SCORES and m["n"] == {"regression": 48, "q1": 48, "q2": 48}
    assert m["learned_at"] == {"q1": "1.0.0", "q2": "1.1.0"}
    assert m["best"]["q1"] == {"version": "1.0.0", "accuracy": 0.6}
    # drop from the best score before the newest version, counted from where it was learned
    assert m["forgetting"] == {"regression": pytest.approx(-0.05), "q1": pytest.approx(0.1),
                               "q2": pytest.approx(0.05)}
    # BWT: mean over learned quarters of (newest - right after learning it)
    assert m["bwt"] == pytest.approx(((0.5 - 0.6) + (0.45 - 0.5)) / 2)


def test_the_final_row_is_the_named_candidate_and_archived_versions_are_left_out(line):
    with open_registry(line) as reg:
        archive(reg, "ff", "1.1.0", reason="rejected")
    m = line_matrix(line, "ff")
    assert m["versions"] == ["1.0.0", "1.2.0"]
    assert line_matrix(line, "ff", include_archived=True)["versions"] == ["1.0.0", "1.1.0", "1.2.0"]
    m = line_matrix(line, "ff", final="1.1.0")  # a gate's candidate is last, archived or not
    assert m["versions"] == ["1.0.0", "1.2.0", "1.1.0"] and m["bwt"] == pytest.approx(0.4 - 0.6)


def test_an_edited_suite_starts_its_column_afresh(line):
    with open_registry(line) as reg:
        reg.record_score("ff", "1.2.0", "q1", "sha-q1-v2", 0.9, 50, "2026-02-01T00:00:00.000Z")
        rows = reg.scores("ff")
    assert {(r["version"], r["suite_sha256"]) for r in rows if r["suite"] == "q1"} == {("1.2.0", "sha-q1-v2")}
    m = line_matrix(line, "ff")
    assert [m["scores"][v]["q1"] for v in m["versions"]] == [None, None, 0.9] and m["n"]["q1"] == 50


def test_a_rerun_replaces_its_own_score(line):
    with open_registry(line) as reg:
        reg.record_score("ff", "1.0.0", "q1", "sha-q1", 0.7, 48, "2026-01-09T00:00:00.000Z")
        assert [r["accuracy"] for r in reg.scores("ff") if (r["version"], r["suite"]) == ("1.0.0", "q1")] == [0.7]


def test_on_a_square_matrix_the_line_metrics_are_the_benchmarks():
    rng = random.Random(3)
    for t in (2, 3, 5):
        r = [[round(rng.random(), 3) for _ in range(t)] for _ in range(t)]
        diag = list(range(t))
        assert cl_metrics.line_backward_transfer(r, diag) == bench_metrics.backward_transfer(r)
        assert cl_metrics.line_forgetting(r, diag)[:-1] == bench_metrics.forgetting_per_experience(r)
    assert bench_metrics.backward_transfer is cl_metrics.backward_transfer  # one definition


def test_clt_eval_matrix_prints_the_table_and_json(line, clt):
    code, out, err = clt("eval", "matrix", "ff")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "ff: accuracy matrix (versions x suites)"
    assert lines[1].split() == ["version", "q1", "q2", "regression"]
    assert lines[3].split() == ["1.0.0", "60.0%", "10.0%", "50.0%"]
    assert lines[-3].split()[:2] == ["forgetting", "+10.0"] and lines[-1] == "BWT: -7.5 pt"
    code, out, err = clt("eval", "matrix", "ff", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["scores"]["1.1.0"]["q2"] == 0.5 and doc["bwt"] == pytest.approx(-0.075)
    code, out, err = clt("eval", "matrix", "nobody")
    assert code == 2 and "no versions of 'nobody'" in err


def test_the_quarterly_report_shows_the_matrix_table_and_heat_map(line):
    from PIL import Image

    from cl_toolkit.pipeline.quarterly_report import write_report

    paths = write_report(line, "ff", html=True)
    md = paths["markdown"].read_text()
    assert "## Accuracy matrix" in md and "| 1.1.0 | 40.0% | 50.0% | 55.0% |" in md
    assert "| forgetting | +10.0 pt | +5.0 pt | -5.0 pt |" in md and "(BWT) over the learned quarters: -7.5 pt" in md
    page = paths["html"].read_text()
    assert "<td>1.1.0</td><td>40.0%</td><td>50.0%</td><td>55.0%</td>" in page
    assert 'alt="accuracy_matrix.png"' in page
    with Image.open(line / "reports" / "ff" / "plots" / "accuracy_matrix.png") as im:
        im.verify()
