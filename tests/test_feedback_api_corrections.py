"""Corrections posted to the server's API (source "api") are unverified: `clt feedback
extract` leaves them out unless an expert reviewed the request or the user trusts them
(--trust-api-corrections); API ratings count like user ratings. Also: the feedback-token
key, and the store migration that admits the "api" source."""

from __future__ import annotations

import json
import os
import sqlite3

from feedback_helpers import fws_fixture, read_jsonl, run_main, store_fixture  # noqa: F401 (fixtures)

from cl_toolkit.feedback.schema import _V1, _V2, _V3, LATEST
from cl_toolkit.feedback.store import FeedbackStore
from cl_toolkit.feedback.tokens import FeedbackTokens, key_path, load_key


def _answers(path) -> list[str]:
    return [m["messages"][1]["content"] for m in read_jsonl(path)]


def _fill(store) -> None:
    store.log_prediction("forged", "question forged", "answer forged", "1.0.0", timestamp="2025-04-01T00:00:00Z")
    store.add_feedback("forged", source="api", rating=1, correction="POISON from the api")
    store.log_prediction("reviewed", "question reviewed", "answer reviewed", "1.0.0",
                         timestamp="2025-04-01T00:00:01Z")
    store.add_feedback("reviewed", source="api", rating=1, correction="api fix, reviewed")
    store.add_feedback("reviewed", source="expert", notes="checked the api correction")  # annotation import
    store.log_prediction("liked", "question liked", "answer liked", "1.0.0", timestamp="2025-04-01T00:00:02Z")
    store.add_feedback("liked", source="api", thumbs=1)  # ratings work as before
    store.log_prediction("user", "question user", "answer user", "1.0.0", timestamp="2025-04-01T00:00:03Z")
    store.add_feedback("user", source="user", rating=2, correction="imported user fix")


def test_an_api_correction_is_left_out_unless_reviewed_or_trusted(fws, store, capsys, tmp_path):
    _fill(store)
    out = tmp_path / "out.jsonl"
    code, said, _ = run_main(["feedback", "extract", "-o", str(out), "--json"], capsys)
    assert code == 0
    answers = _answers(out)
    assert "POISON from the api" not in answers
    assert answers == ["api fix, reviewed", "answer liked", "imported user fix"]
    m = json.loads(said)
    assert m["api_corrections"] == {"trusted": False, "withheld": 1}
    assert m["counts"]["bad_without_correction"] == 1 and m["filters"]["trust_api_corrections"] is False

    trusted = tmp_path / "trusted.jsonl"
    code, _, _ = run_main(["feedback", "extract", "-o", str(trusted), "--trust-api-corrections"], capsys)
    assert code == 0
    assert _answers(trusted) == ["POISON from the api", "api fix, reviewed", "answer liked", "imported user fix"]


def test_a_user_or_expert_correction_beats_an_api_one(store, tmp_path):
    from cl_toolkit.feedback.extract import extract

    store.log_prediction("both", "q", "a", "1.0.0", timestamp="2025-04-01T00:00:00Z")
    store.add_feedback("both", source="api", rating=1, correction="from the api")
    store.add_feedback("both", source="expert", rating=2, correction="from the expert")
    m = extract(store, tmp_path / "o.jsonl", trust_api_corrections=True)
    assert _answers(tmp_path / "o.jsonl") == ["from the expert"] and m["counts"]["corrected_by_expert"] == 1


def test_a_v3_store_is_migrated_to_admit_api_feedback_and_keeps_its_rows(tmp_path):
    path = tmp_path / "feedback.db"
    conn = sqlite3.connect(path)
    for stmt in _V1 + _V2 + _V3:
        conn.execute(stmt)
    conn.execute("INSERT INTO predictions (request_id, timestamp, input, output, model_version) "
                 "VALUES ('r1', '2025-04-01T00:00:00.000Z', 'q', 'a', '1.0.0')")
    conn.execute("INSERT INTO feedback (request_id, source, rating, timestamp) "
                 "VALUES ('r1', 'user', 4, '2025-04-01T00:00:00.000Z')")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    with FeedbackStore(path) as store:
        assert store.schema_version == LATEST
        assert store.get_feedback("r1")[0]["rating"] == 4
        assert store.add_feedback("r1", source="api", rating=1) == "added"
        assert [f["source"] for f in store.get_feedback("r1")] == ["api", "user"]


def test_the_token_key_is_private_stable_and_tokens_bind_their_id(tmp_path):
    old = os.umask(0o022)
    try:
        key = load_key(tmp_path)
    finally:
        os.umask(old)
    assert key_path(tmp_path).stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path) == key and len(key) == 32  # created once, then read
    tokens = FeedbackTokens(key)
    t = tokens.sign("chatcmpl-1")
    assert tokens.verify("chatcmpl-1", t) and not tokens.verify("chatcmpl-2", t)
    assert not tokens.verify("chatcmpl-1", t[:-1]) and not tokens.verify("chatcmpl-1", "")
    assert not FeedbackTokens(load_key(tmp_path / "other")).verify("chatcmpl-1", t)  # another key


def test_an_api_correction_reaches_the_experts_sheet_and_their_review_admits_it(store, tmp_path):
    """The review that admits an API correction must be able to see it: the annotation
    sheet shows API feedback in the user columns (a user's own row wins when both exist)."""
    from cl_toolkit.feedback.annotate import export_batch, read_rows
    from cl_toolkit.feedback.extract import extract

    _fill(store)
    sheet = tmp_path / "sheet.csv"
    export_batch(store, sheet, n=4, seed=0)
    by_id = {row["request_id"]: row for _, row in read_rows(sheet)}
    assert by_id["forged"]["user_correction"] == "POISON from the api" and by_id["forged"]["user_rating"] == "1"
    assert by_id["user"]["user_correction"] == "imported user fix"
    store.add_feedback("forged", source="expert", notes="checked: the api correction is right")
    extract(store, tmp_path / "o.jsonl")
    assert "POISON from the api" in _answers(tmp_path / "o.jsonl")  # reviewed now
