"""The meaning of a rating is defined once (feedback/ratings.py), and extraction and the
monitoring checks read the same store the same way."""

from __future__ import annotations

import json

import pytest
from feedback_helpers import fws_fixture, store_fixture  # noqa: F401

from cl_toolkit.feedback.extract import extract
from cl_toolkit.feedback.ratings import EFFECTIVE_RATING, SOURCE_JOINS, is_negative, is_positive
from cl_toolkit.monitoring.observe import rates
from cl_toolkit.monitoring.windows import Window

# request id -> feedback by source, and the effective rating the rule gives
CASES = {
    "user-5": ({"user": {"rating": 5}}, 5),
    "user-up": ({"user": {"thumbs": 1}}, 5),
    "user-neutral": ({"user": {"thumbs": 0}}, 3),
    "expert-overrules-user": ({"user": {"rating": 5}, "expert": {"thumbs": -1, "correction": "2.5 in"}}, 1),
    "incident-overrules-user": ({"user": {"thumbs": 1}, "incident": {"rating": 2, "correction": "2.5 in"}}, 2),
    "expert-over-incident": ({"incident": {"rating": 1}, "expert": {"rating": 4}}, 4),
    "unrated": ({"user": {"notes": "no opinion"}}, None),
}


@pytest.fixture
def rated(store):
    for i, (rid, (by_source, _)) in enumerate(CASES.items()):
        store.log_prediction(rid, f"question {i}?", f"answer {i}", "1.0.0", timestamp=f"2025-04-01T12:00:0{i}Z")
        for source, fb in by_source.items():
            store.add_feedback(rid, source=source, **fb)
    return store


def test_the_effective_rating_takes_the_most_trusted_source_and_counts_thumbs(rated):
    got = dict(rated.conn.execute(f"SELECT p.request_id, {EFFECTIVE_RATING} FROM predictions p {SOURCE_JOINS}"))
    assert got == {rid: want for rid, (_, want) in CASES.items()}


def test_positive_and_negative_have_one_definition():
    assert [is_positive(r) for r in (None, 3, 4, 5)] == [False, False, True, True]
    assert [is_negative(r) for r in (None, 1, 2, 3)] == [False, True, True, False]


def test_extract_and_monitoring_agree_on_what_is_positive_and_negative(rated, tmp_path):
    want_pos = sorted(rid for rid, (_, r) in CASES.items() if is_positive(r))
    want_neg = sorted(rid for rid, (_, r) in CASES.items() if is_negative(r))
    counted = rates(rated.conn, None, None, Window("2025-04-01T00:00:00Z", "2025-04-02T00:00:00Z"), None)
    assert (counted.rated, counted.positive, counted.negative) == (6, len(want_pos), len(want_neg)) == (6, 3, 2)
    out = tmp_path / "train.jsonl"
    extract(rated, out, redact_pii=False, dedupe=False)
    answers = [json.loads(line)["messages"][-1]["content"] for line in out.read_text().splitlines()]
    # positives keep their answer; negatives with a correction train on the correction
    assert sorted(answers) == sorted([f"answer {list(CASES).index(r)}" for r in want_pos] + ["2.5 in", "2.5 in"])
