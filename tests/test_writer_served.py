"""The real server (tiny model, real adapters, loopback HTTP) keeps answering while another
process holds the store's write lock: all 50 answers are journaled, feedback is answered
"journaled", and after the lock goes every row is in the store."""

from __future__ import annotations

import sqlite3

import pytest
from test_serve_support import Client, setup_line, start
from test_writer_journal import Locker, wait_for

from cl_toolkit.serve import writer as writer_module


@pytest.mark.slow  # the tiny model and three adapters: well over 20 s on a loaded machine
def test_a_locked_store_while_the_server_answers_loses_no_request(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(writer_module, "GIVE_UP_S", 0.5)  # the journal path, quickly
    monkeypatch.setattr(writer_module, "ATTEMPT_TIMEOUT_S", 0.1)
    monkeypatch.delenv("CLT_REDACT_AT_INGEST", raising=False)
    ws = tmp_path / "ws"
    setup_line(ws, tiny_model_dir)
    server = start(ws, challenger_share=0.5)
    client = Client(server.port)
    locker = Locker(ws / "feedback.db")
    try:
        ids, tokens = [], []
        for i in range(50):
            reply = client.chat(f"question {i}", max_tokens=2)
            assert reply.status == 200
            ids.append(reply.headers["x-request-id"])
            tokens.append(reply.headers["x-feedback-token"])
        wait_for(lambda: server.writer.stats.journaled == 50, "50 journaled answers")
        log = client.request("GET", "/health").json["log"]
        assert log["journaling"] is True and log["journaled"] == 50 and log["failed"] == 0
        reply = client.feedback(request_id=ids[3], rating=4, feedback_token=tokens[3])
        assert reply.status == 200 and reply.json["status"] == "journaled"
    finally:
        client.close()
        locker.release()
    wait_for(lambda: not server.writer.journaling, "the replay")
    stats = server.shutdown()
    conn = sqlite3.connect(ws / "feedback.db")
    stored = {r[0] for r in conn.execute("SELECT request_id FROM predictions")}
    rating = conn.execute("SELECT rating FROM feedback WHERE request_id = ?", (ids[3],)).fetchone()
    conn.close()
    assert stored == set(ids) and len(ids) == 50 and rating == (4,)
    assert stats.failed == 0 and not (ws / "feedback.journal.jsonl").exists()
