"""Repeated sampling (gate.samples > 1): every case answered k times at a temperature gives
a pass rate per case, passed = rate >= 0.5, accuracies are mean rates, the cache keeps it
under its own key (samples, temperature, seed), and the paired statistics use the rates."""

from __future__ import annotations

import json
import shutil

import pytest

from cl_toolkit.evaluation import evaluate as evaluate_mod
from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version, score_cases, summarize
from cl_toolkit.evaluation.gate_report import eval_summary
from cl_toolkit.evaluation.generate import generate, load_model, torch_threads
from cl_toolkit.evaluation.matchers import MATCHERS
from cl_toolkit.evaluation.policy import normalise_gate, suite_verdict
from cl_toolkit.evaluation.suite import load_suite
from cl_toolkit.registry import VersionRecord, open_registry

SUITE = [  # regexes that some short answers match and others do not
    {"id": "s1", "input": "What is the NIOSH IDLH for ammonia?", "expected": "[aeiou]", "match": "regex",
     "criticality": "high", "domain": "d1"},
    {"id": "s2", "input": "What is the LEL of methane?", "expected": "^.{0,12}$", "match": "regex",
     "criticality": "medium", "domain": "d1"},
    {"id": "s3", "input": "What is the UN number for gasoline?", "expected": "[0-9]", "match": "regex",
     "criticality": "low", "domain": "d2"},
    {"id": "s4", "input": "Who commands an incident?", "expected": "e", "match": "regex",
     "criticality": "medium", "domain": "d2"},
]


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "sampled.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in SUITE))
    return load_suite(path)


def test_scoring_samples_gives_pass_rates(suite):
    samples = [["yes", "nth", "yes", "xyz"], ["short", "a much longer answer than that", "ok", "fine"],
               ["none", "none", "none", "none"], ["e", "e", "e", "x"]]
    rows = score_cases(suite.cases, [s[0] for s in samples], samples=samples)
    assert [r["pass_rate"] for r in rows] == [0.5, 0.75, 0.0, 0.75]
    assert [r["passed"] for r in rows] == [True, True, False, True]
    assert rows[0]["outputs"] == samples[0] and rows[0]["output"] == "yes"
    summary = summarize(rows)
    assert summary["accuracy"] == 0.5 and summary["passed"] == 3  # the mean rate, not the share passed
    assert summary["per_domain"]["d2"]["accuracy"] == 0.375
    greedy = score_cases(suite.cases, [s[0] for s in samples])
    assert "pass_rate" not in greedy[0] and summarize(greedy)["accuracy"] == 0.75


def _register(ws, version, base):
    """A merged version (full weights in its run folder), registered the way training would."""
    run_dir = ws / "runs" / f"toy-{version}"
    (run_dir / "data").mkdir(parents=True)
    for name, text in {"recipe.yml": "model: toy\n", "axolotl.yml": "{}\n", "manifest.json": "{}\n",
                       "data/new.jsonl": ""}.items():
        (run_dir / name).write_text(text)
    shutil.copytree(base, run_dir / "merged")
    with open_registry(ws) as reg:
        return reg.register(VersionRecord(model="toy", version=version, parent=None, strategy="initial_lora",
                                          base_model=str(run_dir / "merged"), recipe_sha256="r" * 64,
                                          data_sha256="d" * 64, run_dir=str(run_dir), adapter_dir=None))


def test_sampled_generation_is_seeded(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), None, "cpu")
    prompts = [c["input"] for c in SUITE]
    with torch_threads(1):
        one = generate(lm, prompts, batch_size=2, max_new_tokens=6, samples=3, temperature=1.5, seed=4)
        two = generate(lm, prompts, batch_size=2, max_new_tokens=6, samples=3, temperature=1.5, seed=4)
        greedy = generate(lm, prompts, batch_size=2, max_new_tokens=6)
    assert one.samples == two.samples and len(one.samples) == 4 and all(len(s) == 3 for s in one.samples)
    assert one.outputs == [s[0] for s in one.samples]
    assert greedy.samples is None and len(greedy.outputs) == 4
    assert all(0 < n <= 18 for n in one.new_tokens)  # three samples of at most 6 tokens
    with pytest.raises(ValueError, match="temperature"):
        generate(lm, prompts, samples=2, temperature=0)


def test_a_sampled_evaluation_has_rates_its_own_cache_and_drives_the_statistics(tmp_path, tiny_model_dir, suite,
                                                                                 monkeypatch):
    ws = tmp_path / "ws"
    rec = _register(ws, "1.0.0", tiny_model_dir)
    sampled = EvalSettings(max_new_tokens=6, threads=1, batch_size=4, samples=4, temperature=1.5, seed=1)
    res = evaluate_version(ws, rec, suite, sampled)
    assert {k: res["settings"][k] for k in ("decoding", "samples", "temperature", "seed")} == \
        {"decoding": "sampled", "samples": 4, "temperature": 1.5, "seed": 1}
    assert res["cache_path"].endswith(f"{suite.sha256}-s4-t1.5-seed1.json")
    for row, case in zip(res["cases"], suite.cases, strict=True):
        assert len(row["outputs"]) == 4
        assert row["pass_rate"] == sum(bool(MATCHERS[case.match](o, case.expected, case.tolerance))
                                       for o in row["outputs"]) / 4
        assert row["passed"] is (row["pass_rate"] >= 0.5)
    assert res["accuracy"] == round(sum(r["pass_rate"] for r in res["cases"]) / 4, 6)
    assert "mean pass rate over 4 samples per case (temperature 1.5, seed 1)" in eval_summary(res)[1]
    greedy = evaluate_version(ws, rec, suite, EvalSettings(max_new_tokens=6, threads=1, batch_size=4))
    assert not greedy["cached"] and greedy["cache_path"].endswith(f"{suite.sha256}.json")
    assert "pass_rate" not in greedy["cases"][0]

    def no_generation(*a, **k):
        raise AssertionError("a cached evaluation must not generate")

    monkeypatch.setattr(evaluate_mod, "generate", no_generation)
    again = evaluate_version(ws, rec, suite, sampled)
    assert again["cached"] and [c["outputs"] for c in again["cases"]] == [c["outputs"] for c in res["cases"]]
    with pytest.raises(AssertionError, match="cached"):  # another seed is another evaluation
        evaluate_version(ws, rec, suite, EvalSettings(max_new_tokens=6, threads=1, batch_size=4, samples=4,
                                                      temperature=1.5, seed=2))
    # the statistics see the rates: against an all-pass baseline the lost share is 1 - rate per case
    perfect = {"cases": [{**c, "passed": True, "pass_rate": 1.0} for c in res["cases"]]}
    v = suite_verdict("sampled", "regression", perfect, res, normalise_gate({"suite": "x"}))
    assert v["mcnemar"]["b_exact"] == pytest.approx(sum(1 - c["pass_rate"] for c in res["cases"]), abs=1e-6)
    assert v["candidate"] == pytest.approx(res["accuracy"], abs=1e-6) and v["baseline"] == 1.0
