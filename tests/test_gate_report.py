"""gate.md from a gate result: each suite's size, interval, p-value and detectable drop,
every rule with its numbers, the accuracy matrix as a table; old single-suite results
still render."""

from __future__ import annotations

from cl_toolkit.evaluation.gate_report import gate_markdown, gate_summary
from cl_toolkit.evaluation.policy import gate_verdict, normalise_gate, suite_verdict


def evaluation(passes, crit="medium"):
    return {"cases": [{"id": f"c{i:02d}", "passed": ok, "criticality": crit, "domain": "d", "match": "contains",
                       "input": f"question {i}", "expected": "yes", "output": "yes" if ok else "no"}
                      for i, ok in enumerate(passes)]}


POLICY = normalise_gate({"suites": {"q1": "q1.jsonl", "q2": {"path": "q2.jsonl", "role": "learning"}}})


def gate_result(matrix=True):
    q1 = suite_verdict("q1", "regression", evaluation([True] * 30 + [False] * 18),
                       evaluation([False] * 9 + [True] * 21 + [False] * 18), POLICY)
    q2 = suite_verdict("q2", "learning", evaluation([False] * 48), evaluation([True] * 40 + [False] * 8), POLICY)
    verdict = gate_verdict([q1, q2])
    result = {"model": "ff", "candidate": "1.2.0", "baseline": "1.1.0", "gated_at": "2025-01-01T00:00:00Z",
              "policy": POLICY, "suites": [q1, q2], **verdict}
    if matrix:
        result["matrix"] = {"versions": ["1.0.0", "1.1.0", "1.2.0"], "suites": ["q1", "q2"],
                            "scores": {"1.0.0": {"q1": 0.5, "q2": None}, "1.1.0": {"q1": 0.625, "q2": 0.0},
                                       "1.2.0": {"q1": 0.4375, "q2": 0.833333}},
                            "best": {"q1": {"version": "1.1.0", "accuracy": 0.625},
                                     "q2": {"version": "1.2.0", "accuracy": 0.833333}},
                            "forgetting": {"q1": 0.1875, "q2": 0.0}, "bwt": -0.1875}
    return result


def test_each_suite_shows_size_interval_p_value_and_detectable_drop():
    gate = gate_result()
    md = gate_markdown(gate)
    assert md.startswith("# Gate BLOCKED: ff 1.2.0 vs 1.1.0")
    q1 = next(line for line in md.splitlines() if line.startswith("| q1 | regression |"))
    v = gate["suites"][0]
    assert f"| 48 | 62.5% | 43.8% | -18.8 pt | 95%: [{100 * v['interval']['low']:+.1f} pt, " in q1
    assert f"| {v['mcnemar']['p_drop']:.3g} |" in q1 and "| 9 / 0 | 10.4 pt | BLOCKED |" in q1
    assert v["mcnemar"]["p_drop"] < 0.01
    q2 = next(line for line in md.splitlines() if line.startswith("| q2 | learning |"))
    assert "| 0 / 40 |" in q2 and q2.endswith("| passed |")
    assert "q2: with 40 case(s) won at the same time, no drop could have been significant" in md
    assert "q1: with" not in md  # nothing won on q1: the detectable drop above is the one
    mixed = suite_verdict("q3", "regression", evaluation([True] * 6 + [False] * 54),
                          evaluation([False] * 6 + [True] * 6 + [False] * 48), POLICY)
    assert "q3: with 6 case(s) won at the same time, a drop is significant from 15.0 pt" in gate_markdown(
        {**gate, "suites": [mixed]})


def test_the_verdict_lists_each_rule_with_its_numbers():
    gate = gate_result()
    md = gate_markdown(gate)
    verdict = md.split("## Verdict")[1].split("## Suites")[0]
    assert all(f"- {r}" in verdict for r in gate["reasons"]) and len(gate["reasons"]) == 2
    rules = md.split("## Rules")[1].split("## Accuracy matrix")[0]
    assert "- **BLOCK** · `significant_drop` on q1:" in rules and "b 9, c 0, p_drop" in rules
    assert "- **BLOCK** · `non_inferiority` on q1:" in rules and "margin 0.1" in rules
    assert "- pass · `min_learning` on q2: q2: candidate - parent = +83.3 pt" in rules
    assert "minimum 0, significant false" in rules
    assert rules.count("\n- ") + rules.startswith("- ") == sum(len(v["rules"]) for v in gate["suites"])
    assert "Policy: critical regressions ≤ 0, non-inferiority margin 0.1, alpha 0.05, min learning 0.0" in md


def test_the_matrix_is_a_table():
    md = gate_markdown(gate_result())
    table = md.split("## Accuracy matrix")[1]
    assert "| version | q1 | q2 |" in table
    assert "| 1.0.0 | 50.0% | – |" in table and "| 1.2.0 | 43.8% | 83.3% |" in table
    assert "| best | 62.5% (1.1.0) | 83.3% (1.2.0) |" in table
    assert "| forgetting | +18.8 pt | +0.0 pt |" in table  # best earlier 62.5% - newest 43.8%
    assert "Backward transfer (BWT): -18.8 pt." in table
    assert "## Accuracy matrix" not in gate_markdown(gate_result(matrix=False))


def test_a_suite_too_small_to_see_a_drop_says_so():
    tiny = suite_verdict("smoke", "regression", evaluation([True] * 4), evaluation([True] * 4), POLICY)
    md = gate_markdown({"model": "m", "candidate": "2", "baseline": "1", "gated_at": "now", "policy": POLICY,
                        "suites": [tiny], **gate_verdict([tiny])})
    assert "| none possible | passed |" in md
    assert "smoke: with 4 cases no drop can be significant at alpha 0.05" in md


def test_an_old_single_suite_result_still_renders():
    old = {"model": "m", "candidate": "1.1.0", "baseline": "1.0.0", "suite": "s.jsonl", "suite_sha256": "f" * 64,
           "passed": True, "reasons": [], "gated_at": "now",
           "policy": {"max_critical_regressions": 0, "min_accuracy_delta": 0.0, "max_regressions": {}},
           "regressions": [], "improvements": [], "both_failed": [],
           "accuracy": {"baseline": 0.5, "candidate": 0.75, "delta": 0.25},
           "per_domain": {}, "per_criticality": {}}
    md = gate_markdown(old)
    assert "Accuracy: baseline 50.0%, candidate 75.0% (+25.0 pt)" in md
    assert "accuracy delta ≥ +0" in md and "## Suites" not in md
    assert gate_summary(old, "gate.md")[0].startswith("gate passed: m 1.1.0 vs 1.0.0: accuracy 50.0% -> 75.0%")


def test_the_terminal_summary_names_each_suite():
    lines = gate_summary(gate_result(), "runs/ff-1.2.0/gate.md")
    assert lines[0] == "gate BLOCKED: ff 1.2.0 vs 1.1.0"
    assert any(line.startswith("  suite q1 (regression, 48 cases): 62.5% -> 43.8%") and line.endswith("BLOCKED")
               for line in lines)
    assert sum(line.startswith("  blocked: ") for line in lines) == 2


def test_the_sizing_table_in_the_docs_is_what_the_code_computes():
    import re
    from pathlib import Path

    from cl_toolkit.evaluation.paired import detectable_table, paired_bootstrap

    doc = (Path(__file__).resolve().parent.parent / "docs" / "gate.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| ([\d.]+) pt \| ([\d.]+) pt \| ([\d.]+) pt \| −([\d.]+) pt \| −([\d.]+) pt \|$",
                      doc, re.MULTILINE)
    assert len(rows) == 7
    for row in rows:
        n = int(row[0])
        (want,) = detectable_table([n])
        assert [float(x) for x in row[1:4]] == [round(100 * want["drops"][s], 1) for s in (0.0, 0.05, 0.1)]
        for share, cell in ((0.05, row[4]), (0.1, row[5])):
            k = round(share * n)
            base = [True] * k + [False] * k + [True] * (n - 2 * k)
            cand = [False] * k + [True] * k + [True] * (n - 2 * k)
            assert -float(cell) == round(100 * paired_bootstrap(base, cand)["low"], 1)
