"""`clt analyze`: the priority ranking follows its stated score, every failure pattern is
recognised on hand-made answers, every finding names its evidence, and `clt recipe new
--plan` writes a recipe that validates and rehearses what the plan says.

No training: two registered versions of a line `ff` with evaluation files written the way
evaluate_version caches them (answers scored by the real matchers), their scores in the
registry, and production feedback in a real feedback store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_registry_support import make_run, record

from cl_toolkit.core.files import sha256_file
from cl_toolkit.evaluation.failures import classify
from cl_toolkit.evaluation.matchers import MATCHERS
from cl_toolkit.feedback.store import FeedbackStore
from cl_toolkit.pipeline.analysis import CRITICAL_FULL, DECLINE_FULL, WEIGHTS, analyze
from cl_toolkit.registry import open_registry

RECIPE_110 = {
    "schema_version": 1, "model": "ff", "version": "1.1.0", "parent": "1.0.0", "strategy": "continued_lora",
    "description": "Q2 on top of Q1.", "profile": "configs/profiles/tiny-cpu.yml",
    "data": {"train": [{"path": "data/firefighter/q2.jsonl"}],
             "rehearsal": {"ratio": 0.4, "sources": [{"parent_data": True}, {"path": "data/general/general.jsonl"}]},
             "seed": 7},
    "train": {"num_epochs": 1},
    "gate": {"suites": {"regression": "data/firefighter/regression.jsonl",
                        "q1": "data/firefighter/q1_asked.jsonl"}},
}
# (id, expected, match, criticality, domain, {version: answer})
CASES = {
    "q1": [
        ("e1", "300 ppm", "numeric", "high", "exposure_limits", {"1.0.0": "300 ppm", "1.1.0": "300 ppm"}),
        ("e2", "300 ppm", "numeric", "critical", "exposure_limits", {"1.0.0": "300 ppm", "1.1.0": "3000 ppm"}),
        ("e3", "50 ppm", "numeric", "high", "exposure_limits", {"1.0.0": "50 ppm", "1.1.0": "50 ppb"}),
        ("e4", "25 ppm", "numeric", "medium", "exposure_limits", {"1.0.0": "25 ppm", "1.1.0": ""}),
    ],
    "regression": [
        ("h1", r"\bUN ?1203\b", "regex", "medium", "hazmat_id", {"1.0.0": "UN 1230", "1.1.0": "UN 1230"}),
        ("h2", r"\bUN ?1005\b", "regex", "medium", "hazmat_id", {"1.0.0": "UN-1005", "1.1.0": "UN-1005"}),
        ("h3", "Class 3", "contains", "low", "hazmat_id", {"1.0.0": "diesel", "1.1.0": "diesel"}),
        ("h4", "Class 8", "contains", "low", "hazmat_id", {"1.0.0": "I do not know.", "1.1.0": "I do not know."}),
        ("f1", "5.0 %", "numeric", "high", "flammability", {"1.0.0": "5.0 %", "1.1.0": "5.0 %"}),
        ("f2", "4 %", "numeric", "high", "flammability", {"1.0.0": "4 %", "1.1.0": "4 %"}),
        ("f3", "12.5 %", "numeric", "medium", "flammability", {"1.0.0": "1.4 %", "1.1.0": "1.4 %"}),
        ("f4", "1.4 %", "numeric", "medium", "flammability", {"1.0.0": "12.5 %", "1.1.0": "12.5 %"}),
    ],
}
# production answers of 1.0.0 (1.1.0's parent): (request, domain, rating, correction)
FEEDBACK = ([(f"r-exp-{i}", "exposure_limits", 1, "300 ppm") for i in range(2)]
            + [("r-exp-2", "exposure_limits", 1, None), ("r-exp-3", "exposure_limits", 2, "50 ppm"), ("r-exp-4", "exposure_limits", 5, None)]
            + [(f"r-fl-{i}", "flammability", 5, None) for i in range(5)])


def _case(cid, expected, match, crit, domain, answer) -> dict:
    return {"id": cid, "input": f"question {cid}?", "expected": expected, "match": match, "criticality": crit,
            "domain": domain, "tags": [], "tolerance": 0.0, "output": answer,
            "passed": bool(MATCHERS[match](answer, expected, 0.0))}


def _evaluate(ws: Path, reg, version: str) -> None:
    """Evaluation files as evaluate_version caches them, and their scores."""
    for i, (suite, cases) in enumerate(CASES.items()):
        rows = [_case(*c[:5], c[5][version]) for c in cases]
        acc = sum(r["passed"] for r in rows) / len(rows)
        rel = f"evals/ff/{version}/sha-{suite}.json"
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(json.dumps({"model": "ff", "version": version, "suite": suite,
                                          "suite_sha256": f"sha-{suite}", "accuracy": acc, "cases": rows}))
        reg.record_score("ff", version, suite, f"sha-{suite}", acc, len(rows), f"2026-06-0{i + 1}T00:00:00.000Z", rel)


@pytest.fixture
def line(proj):
    """ff 1.0.0 and 1.1.0 (champion) evaluated, 1.0.0's production feedback stored; the
    project holds 1.1.0's recipe and the suite of the forgotten quarter."""
    import shutil

    from conftest import REPO

    ws = proj / "ws"
    shutil.copy(REPO / "data/firefighter/q1_asked.jsonl", proj / "data/firefighter/q1_asked.jsonl")
    (proj / "recipes/ff/1.1.0.yml").write_text(yaml.safe_dump(RECIPE_110, sort_keys=False))
    with open_registry(ws) as reg:
        for version, parent in (("1.0.0", None), ("1.1.0", "1.0.0")):
            run = make_run(ws, version)
            (run / "recipe.yml").write_text(yaml.safe_dump({**RECIPE_110, "version": version, "parent": parent}))
            reg.register(record(run, version, parent))
            _evaluate(ws, reg, version)
        with reg.transaction():
            reg.set_alias("ff", "champion", "1.1.0")
    with FeedbackStore(ws / "feedback.db") as store:
        for i, (rid, domain, rating, correction) in enumerate(FEEDBACK):
            store.log_prediction(rid, f"asked {rid}", "an answer", "1.0.0", domain=domain,
                                 timestamp=f"2026-05-{i + 1:02d}T10:00:00.000Z")
            store.add_feedback(rid, rating=rating, correction=correction)
        store.log_prediction("r-other", "asked", "answer", "other@9.9.9", domain="exposure_limits",
                             timestamp="2026-05-20T10:00:00.000Z")
    return ws


@pytest.mark.parametrize(("answer", "expected", "match", "pattern"), [
    ("3000 ppm", "300 ppm", "numeric", "wrong_number"),
    ("The IDLH is 3,000 ppm.", "300 ppm", "numeric", "wrong_number"),
    ("300 ppb", "300 ppm", "numeric", "wrong_unit"),
    ("300", "300 ppm", "numeric", "format_error"),           # the unit left out
    ("three hundred parts", "300 ppm", "numeric", "format_error"),  # the number in words
    ("it is hot", "300 ppm", "numeric", "no_answer"),  # no number at all: it does not answer
    ("The.", "Class 3", "contains", "no_answer"),  # filler words only
    ("", "300 ppm", "numeric", "no_answer"),
    ("   ", "Class 3", "contains", "no_answer"),
    ("I don't know.", "300 ppm", "numeric", "no_answer"),
    ("Sorry, I cannot answer that.", "Class 3", "contains", "no_answer"),
    ("UN 1230", r"\bUN ?1203\b", "regex", "wrong_number"),
    ("UN-1203", r"\bUN ?1203\b", "regex", "format_error"),
    ("Class 7", "Class 3", "contains", "wrong_number"),
    ("Level B suit", "Level A suit", "exact", "wrong_entity"),
    ("diesel", "Class 3", "contains", "wrong_entity"),
    ("chlorine", "ammonia", "exact", "wrong_entity"),
    ("300ppm.", "300 ppm", "exact", "format_error"),
    ("the answer: self-contained breathing apparatus", "self contained breathing apparatus", "contains",
     "format_error"),
    ("whatever", "an answer a judge scored", "judge", "judged_wrong"),
])
def test_each_failure_pattern_is_recognised(answer, expected, match, pattern):
    if match != "judge":
        assert not MATCHERS[match](answer, expected, 0.0)  # a failed case, as the matcher says
    assert classify(answer, expected, match) == pattern


def _formula(d: dict) -> float:
    """The documented priority score, recomputed from the numbers the analysis reports."""
    ev, fb = d["evaluation"], d["production"]
    decline = max(0.0, -(ev["trend"] or 0.0))
    return round(WEIGHTS["inaccuracy"] * (1 - ev["accuracy"]) + WEIGHTS["decline"] * min(1, decline / DECLINE_FULL)
                 + WEIGHTS["critical"] * min(1, ev["critical_failed"] / CRITICAL_FULL)
                 + WEIGHTS["volume"] * fb["volume_share"] + WEIGHTS["low_ratings"] * fb["low_rating_rate"], 2)


def test_a_falling_domain_with_many_low_ratings_ranks_first(line):
    a = analyze(line, "ff")  # the champion
    assert a["version"] == "1.1.0" and a["alias"] == "champion" and a["versions_compared"] == ["1.0.0", "1.1.0"]
    ranked = {d["domain"]: d for d in a["domains"]}
    assert [d["domain"] for d in a["domains"]] == ["exposure_limits", "hazmat_id", "flammability"]
    exp, haz = ranked["exposure_limits"], ranked["hazmat_id"]
    # exposure limits ranks first though hazmat_id is less accurate: it fell, and users complained
    assert exp["evaluation"]["accuracy"] == 0.25 and haz["evaluation"]["accuracy"] == 0.0
    assert exp["evaluation"]["previous_accuracy"] == 1.0 and exp["evaluation"]["trend"] == -0.75
    assert exp["evaluation"]["critical_failed"] == 1 and exp["evaluation"]["critical_cases"] == ["q1:e2"]
    assert exp["production"] == {**exp["production"], "predictions": 5, "rated": 5, "low_rated": 4,
                                 "low_rating_rate": 0.8, "volume_share": 0.5, "corrections": 3}
    for d in a["domains"]:
        assert d["priority"] == _formula(d) == pytest.approx(sum(d["terms"].values()), abs=0.011)
    assert exp["priority"] == 72.0 and haz["priority"] == 40.0 and ranked["flammability"]["priority"] == 25.0
    assert a["feedback"] == {"quarter": "2026Q2", "versions": ["1.1.0", "1.0.0"], "predictions": 10}
    assert [c["criticality"] for c in a["criticalities"]][0] == "critical"


def test_failure_patterns_corrections_and_forgetting_name_their_evidence(line):
    a = analyze(line, "ff")
    ranked = {d["domain"]: d for d in a["domains"]}
    exp = ranked["exposure_limits"]
    assert {k: v["cases"] for k, v in exp["evaluation"]["patterns"].items()} == {
        "no_answer": ["q1:e4"], "wrong_number": ["q1:e2"], "wrong_unit": ["q1:e3"]}
    assert {k: v["cases"] for k, v in ranked["hazmat_id"]["evaluation"]["patterns"].items()} == {
        "format_error": ["regression:h2"], "no_answer": ["regression:h4"], "wrong_entity": ["regression:h3"],
        "wrong_number": ["regression:h1"]}
    assert exp["production"]["common_corrections"] == [
        {"correction": "300 ppm", "count": 2, "request_ids": ["r-exp-0", "r-exp-1"]},
        {"correction": "50 ppm", "count": 1, "request_ids": ["r-exp-3"]}]
    assert exp["production"]["complaint_requests"] == ["r-exp-0", "r-exp-1", "r-exp-2", "r-exp-3"]
    assert a["forgetting"] == [{"suite": "q1", "best_version": "1.0.0", "best": 1.0, "now": 0.25, "drop": 0.75,
                                "evidence": {"cases": ["q1:e2", "q1:e3", "q1:e4"], "requests": []}}]
    # every finding lists the ids behind it
    for d in a["domains"]:
        assert d["evidence"]["cases"] == d["evaluation"]["failed_cases"] and d["evidence"]["cases"]
    assert exp["evidence"]["requests"] == ["r-exp-0", "r-exp-1", "r-exp-2", "r-exp-3"]
    assert ranked["flammability"]["evidence"]["requests"] == []  # rated 5: nothing to show
    for c in a["criticalities"]:
        assert c["evidence"]["cases"] == c["evaluation"]["failed_cases"]


def test_clt_analyze_writes_a_plan_of_commands(line, clt):
    code, out, err = clt("analyze", "ff")
    assert code == 0, err
    plan_dir = line / "analysis" / "ff" / "1.1.0"
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert plan["kind"] == "clt-improvement-plan" and plan["schema_version"] == 1
    assert plan["weak_domains"] == ["exposure_limits", "hazmat_id", "flammability"]
    assert "1. **exposure_limits** — priority 72.0: accuracy 25.0% (1/4), -75.0 pt since 1.0.0" in out
    assert "priority = 40 x (1 - accuracy)" in out and "q1: 100.0% at 1.0.0 -> 25.0% (-75.0 pt)" in out
    commands = [s["command"] for s in plan["steps"] if s.get("command")]
    assert any(c.startswith("clt feedback annotate-export --domain exposure_limits -n 50 -o ") for c in commands)
    assert any(c.startswith("clt synth --scenario ") and "--domain exposure_limits" in c for c in commands)
    assert "clt recipe new ff --from 1.1.0 --strategy continued_lora --bump minor --plan" in commands[-2]
    assert commands[-1] == "clt cycle recipes/ff/1.2.0.yml"
    scenario = (plan_dir / "scenarios" / "exposure_limits.md").read_text()
    assert "question e2? — A: 300 ppm" in scenario and "correction (2x): 300 ppm" in scenario
    # the forgotten quarter's data weighs more: 1 + min(2, 10 x 0.75) against 1 for each other source
    split = plan["recipe"]["rehearsal"]["split"]
    assert split == {"parent_data": 0.2, "data/general/general.jsonl": 0.2, "data/firefighter/q1.jsonl": 0.6}
    assert plan["recipe"]["rehearsal"]["ratio"] == 0.5  # 0.4 + 0.1: something was forgotten
    md = (plan_dir / "plan.md").read_text()
    assert "Evidence: cases q1:e2, q1:e3, q1:e4; requests r-exp-0, r-exp-1, r-exp-2, r-exp-3." in md
    assert not list(plan_dir.rglob("*.tmp*"))
    code, out, err = clt("analyze", "ff", "--json")
    assert code == 0 and json.loads(out)["analysis"]["domains"][0]["domain"] == "exposure_limits"


def test_recipe_new_from_the_plan_writes_its_sources_split_and_hash(line, clt):
    assert clt("analyze", "ff")[0] == 0
    plan_path = line / "analysis" / "ff" / "1.1.0" / "plan.json"
    plan = json.loads(plan_path.read_text())
    code, out, err = clt("recipe", "new", "ff", "--strategy", "continued_lora", "--plan", plan_path)
    assert code == 2 and "none of the plan's training files exists yet" in err  # nothing to train on yet
    synthetic = line / plan["recipe"]["train"][1][len("workspace:"):]  # as `clt synth -o` would leave it
    synthetic.parent.mkdir(parents=True)
    synthetic.write_text(Path("data/firefighter/q2.jsonl").read_text().split("\n", 1)[0] + "\n")
    code, out, err = clt("recipe", "new", "ff", "--strategy", "continued_lora", "--plan", plan_path,
                         "--data", "data/firefighter/q2.jsonl")
    assert code == 0, err
    path = Path("recipes/ff/1.2.0.yml")
    recipe = yaml.safe_load(path.read_text())
    assert recipe["parent"] == "1.1.0" and recipe["data"]["train"] == [
        {"path": "data/firefighter/q2.jsonl"}, {"path": plan["recipe"]["train"][1]}]
    split = plan["recipe"]["rehearsal"]["split"]
    assert recipe["data"]["rehearsal"] == {"ratio": 0.5, "split": split, "sources": [  # in the plan's order
        {"path": "data/firefighter/q1.jsonl"}, {"path": "data/general/general.jsonl"}, {"parent_data": True}]}
    assert recipe["plan"] == {"path": "workspace:analysis/ff/1.1.0/plan.json", "sha256": sha256_file(plan_path)}
    path.write_text(path.read_text().replace("TODO: why 1.2.0 exists", "Exposure limits again, from the plan."))
    code, out, err = clt("recipe", "validate", path)
    assert code == 0, err
    # the mix rehearses exactly the plan's sources: the forgotten quarter's file among them
    from cl_toolkit.training.render import render
    from cl_toolkit.training.strategies import load_recipe

    lr = load_recipe(path)
    with open_registry(line) as reg:
        manifest = render(lr, line / "runs" / "ff-1.2.0", reg, validate=False).manifest
    assert set(manifest["mix"]["rehearsal"]) == {"parent_data", "data/general/general.jsonl",
                                                 "data/firefighter/q1.jsonl"}
    # and the budget is shared as the plan weighs the sources (the forgotten quarter's file most)
    epochs = manifest["mix"].get("epochs", 1)  # per_epoch: the same share drawn each epoch
    drawn = {src: entry["rows"] / epochs for src, entry in manifest["mix"]["rehearsal"].items()}
    total = sum(drawn.values())
    for src, weight in split.items():  # whole rows: within one row of the weighted share
        assert abs(drawn[src] - weight * total) <= 1, (src, drawn, split)
    assert manifest["plan"] == {"path": "workspace:analysis/ff/1.1.0/plan.json", "sha256": sha256_file(plan_path)}


def test_bad_input_exits_2_with_a_clear_message(line, clt, tmp_path):
    code, _, err = clt("analyze", "nope")
    assert code == 2 and "no versions of 'nope' are registered" in err
    code, _, err = clt("analyze", "ff", "--version", "9.9.9")
    assert code == 2 and "ff 9.9.9 is not in the registry" in err
    code, _, err = clt("analyze", "ff", "--version", "challenger")
    assert code == 2 and "ff has no version or alias 'challenger'" in err
    with open_registry(line) as reg, reg.transaction():
        reg.set_alias("ff", "champion", None)
    code, _, err = clt("analyze", "ff")
    assert code == 2 and "ff has no champion yet: pass --version" in err
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps({"kind": "something else"}))
    code, _, err = clt("recipe", "new", "ff", "--strategy", "continued_lora", "--plan", bad, "--data", "x.jsonl")
    assert code == 2 and "not an improvement plan" in err and "Traceback" not in err


def test_the_quarterly_report_has_an_analysis_section_with_the_top_three(line):
    from cl_toolkit.pipeline.quarterly_report import write_report

    paths = write_report(line, "ff")
    md = paths["markdown"].read_text()
    section = md.split("\n## Analysis\n")[1].split("\n## ")[0]
    assert "The top 3 priorities of 1.1.0 (champion)" in section and "priority = 40 x (1 - accuracy)" in section
    bullets = [x for x in section.splitlines() if x[:3] in ("1. ", "2. ", "3. ")]
    assert [b.split("**")[1] for b in bullets] == ["exposure_limits", "hazmat_id", "flammability"]
    assert bullets[0].startswith("1. **exposure_limits** — priority 72.0: accuracy 25.0% (1/4), -75.0 pt since "
                                 "1.0.0, 1 critical failed; mistakes: no answer or refusal ×1, wrong number ×1, "
                                 "right number but wrong unit ×1; production: 5 predictions (50%), 4/5 rated low.")
    assert "Evidence: cases q1:e2, q1:e3, q1:e4; requests r-exp-0, r-exp-1, r-exp-2, r-exp-3." in section
    assert "q1 100.0% at 1.0.0 → 25.0% (-75.0 pt; cases q1:e2, q1:e3, q1:e4)" in section
    page = paths["html"].read_text()
    assert '<h2 id="analysis">Analysis</h2>' in page and "r-exp-3" in page.split('id="analysis"')[1]
    with open_registry(line) as reg, reg.transaction():
        reg.set_alias("ff", "champion", None)
    md = write_report(line, "ff")["markdown"].read_text()
    assert "## Analysis\n\nff has no champion to analyse yet." in md
