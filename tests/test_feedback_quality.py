"""Pseudo-labels in `clt feedback extract`, the heuristic scorer behind `clt feedback score`,
and extract's filter on the scores it fills."""

from __future__ import annotations

import json

import pytest
from feedback_helpers import fws_fixture, read_jsonl, run_main, store_fixture  # noqa: F401 (fixtures)

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback.extract import extract
from cl_toolkit.feedback.scoring import heuristic_flags, score_store

GOOD = "Stage 100 feet upwind and uphill, and re-check the wind every ten minutes."


def _log(store, rid, answer=GOOD, *, confidence=None, quality=None, **feedback):
    store.log_prediction(rid, f"question {rid}", answer, "1.0.0", confidence=confidence,
                         quality_score=quality,  # logged in order, a second apart
                         timestamp=f"2025-04-01T00:00:{store.count('predictions'):02d}Z")
    for source in ("user", "expert"):
        fields = {k.split("_", 1)[1]: v for k, v in feedback.items() if k.startswith(source)}
        if fields:
            store.add_feedback(rid, source=source, **fields)


def test_pseudo_labels_take_confident_unrated_answers_only_when_asked(store, tmp_path):
    _log(store, "sure", "answer sure", confidence=0.95)
    _log(store, "edge", "answer edge", confidence=0.9)
    _log(store, "unsure", "answer unsure", confidence=0.5)
    _log(store, "unknown", "answer unknown")
    _log(store, "rated", "answer rated", confidence=0.3, user_rating=5)
    _log(store, "badconf", "answer badconf", confidence=0.99, user_rating=1)  # rated: not pseudo
    _log(store, "fixedonly", "answer fixedonly", confidence=0.99, expert_correction="the fix")
    off = extract(store, tmp_path / "off.jsonl")
    assert off["counts"]["unrated"] == 5 and "pseudo_labels" not in off
    assert "pseudo_labelled" not in off["counts"] and off["counts"]["written"] == 1
    on = extract(store, tmp_path / "on.jsonl", pseudo_label_min_confidence=0.9)
    answers = [m["messages"][1]["content"] for m in read_jsonl(tmp_path / "on.jsonl")]
    assert answers == ["answer sure", "answer edge", "answer rated"]  # oldest first
    assert on["counts"]["pseudo_labelled"] == 2 and on["counts"]["unrated"] == 3
    assert on["counts"]["selected"] == 7 and on["counts"]["written"] == 3
    assert on["pseudo_labels"] == {"min_confidence": 0.9, "rows": 2, "lines": [1, 2]}
    assert on["filters"]["pseudo_label_min_confidence"] == 0.9
    with pytest.raises(BadInput):
        extract(store, tmp_path / "x.jsonl", pseudo_label_min_confidence=1.5)


def test_pseudo_label_duplicates_and_quality_floor(store, tmp_path):
    _log(store, "a", "same answer", confidence=0.99, user_rating=5)
    _log(store, "low", "answer low", confidence=0.99, quality=0.1)
    m = extract(store, tmp_path / "o.jsonl", pseudo_label_min_confidence=0.9, min_quality=0.5)
    assert m["counts"]["below_quality"] == 2 and m["counts"]["written"] == 0  # unscored: below
    _log(store, "dup", "answer dup", confidence=0.99, quality=0.9, user_rating=5)
    store.log_prediction("dup2", "question dup", "answer dup", "1.0.0", confidence=0.99,
                         quality_score=0.9, timestamp="2025-04-02T00:00:00Z")
    m = extract(store, tmp_path / "o.jsonl", pseudo_label_min_confidence=0.9, min_quality=0.5)
    assert (m["counts"]["written"], m["counts"]["duplicates"]) == (1, 1)
    assert m["pseudo_labels"]["lines"] == []  # its rated twin came first


@pytest.mark.parametrize("answer, flags", [
    (GOOD, []),
    ("5", []),
    ("...", ["empty"]),
    ("I'm sorry, but I can't help with that request.", ["refusal"]),
    ("As an AI I do not have that information.", ["refusal"]),
    ("Open the roof vent, then the", ["truncated"]),
    ("Use the nozzle at 100 psi,", ["truncated"]),
    ("```python\nprint(1)\n", ["truncated"]),
    ("check the " * 10 + "valve.", ["repetition"]),
    ("Stage upwind. " * 5, ["repetition"]),
])
def test_heuristic_flags(answer, flags):
    assert heuristic_flags(answer) == flags


def test_heuristic_scores_fill_only_unscored_rows_and_extract_filters_on_them(fws, store,
                                                                             tmp_path, capsys):
    for i in range(30):
        _log(store, f"ok{i:02d}", f"Stage {i} feet upwind and uphill; re-check the wind.",
             user_rating=5)
    _log(store, "long", " ".join(f"Step {i}: check valve {i * 7} and hose {i * 3}." for i in range(40)),
         user_rating=5)
    _log(store, "refusal", "I cannot help with that.", user_rating=5)
    _log(store, "cut", "Ventilate the roof once the attack line is charged and", user_rating=5)
    _log(store, "kept", "This one was scored by hand.", quality=0.05, user_rating=5)
    code, out, _ = run_main(["feedback", "score", "--json"], capsys)
    r = json.loads(out)
    assert code == 0 and (r["scorer"], r["selected"], r["scored"]) == ("heuristic", 33, 33)
    assert r["flags"] == {"length_outlier": 1, "refusal": 1, "truncated": 1}
    quality = {rid: store.get_prediction(rid)["quality_score"]
               for rid in ("ok07", "long", "refusal", "cut", "kept")}
    assert quality == {"ok07": 1.0, "long": 0.6, "refusal": 0.1, "cut": 0.4, "kept": 0.05}
    assert json.loads(run_main(["feedback", "score", "--json"], capsys)[1])["selected"] == 0
    again = score_store(store, rescore=True, model_versions=["1.0.0"], since="2025-04-01")
    assert again["selected"] == 34 and store.get_prediction("kept")["quality_score"] == 1.0
    m = extract(store, tmp_path / "o.jsonl", min_quality=0.5)
    assert (m["counts"]["below_quality"], m["counts"]["written"]) == (2, 32)  # refusal, cut


def test_score_cli_needs_an_endpoint_for_the_judge(fws, capsys):
    code, _, err = run_main(["feedback", "score", "--scorer", "judge"], capsys)
    assert code == 2 and "needs --base-url and --model" in err
    code, _, err = run_main(["feedback", "extract", "-o", "x.jsonl",
                             "--pseudo-label-min-confidence", "2"], capsys)
    assert code == 2
