"""The store itself: schema, migrations, WAL, and the application API, on SQLite and on
PostgreSQL (the `store` tests run on both; tests/pg_support.py starts the server)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from feedback_helpers import fws_fixture  # noqa: F401 (fixtures)

from cl_toolkit.core import dbbackend
from cl_toolkit.core.errors import BadInput, CltError
from cl_toolkit.feedback import schema
from cl_toolkit.feedback.store import FeedbackStore, open_store

COLUMNS = ["request_id", "timestamp", "input", "output", "model_version", "domain",
           "confidence", "latency_ms", "quality_score", "metadata"]


@pytest.fixture
def store(store_backend, fws):
    """The workspace's feedback store on each backend in turn, closed after the test."""
    s = open_store()
    yield s
    s.close()


@pytest.fixture
def sqlite_store(fws, monkeypatch):
    monkeypatch.delenv("CLT_FEEDBACK_URL", raising=False)
    with open_store() as s:
        yield s


def test_new_store_is_in_the_workspace_with_wal_and_latest_schema(fws, sqlite_store):
    store = sqlite_store
    assert store.path == fws.resolve() / "feedback.db"
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version == schema.LATEST
    columns = [r[1] for r in store.conn.execute("PRAGMA table_info(predictions)")]
    assert columns == COLUMNS
    indexes = {r[1] for r in store.conn.execute("PRAGMA index_list(predictions)")}
    assert {"predictions_time", "predictions_version"} <= indexes


def test_a_postgresql_store_has_the_same_schema_and_never_shows_a_password(pg_url, fws, monkeypatch):
    monkeypatch.setenv("CLT_FEEDBACK_URL", pg_url.replace("postgres@", "postgres:s3cret@"))
    monkeypatch.setenv("PGPASSWORD", "unused")  # trust auth: the password is ignored, but carried
    with open_store() as store:
        assert "s3cret" not in str(store.path) and "postgres:***@" in str(store.path)
        assert store.schema_version == schema.LATEST
        assert dbbackend.table_columns(store.conn, "predictions") == COLUMNS
        indexes = {r[0] for r in store.conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = ?",
                                                    ("predictions",))}
        assert {"predictions_time", "predictions_version"} <= indexes
        kinds = dict(store.conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                        "WHERE table_name = 'predictions'").fetchall())
        assert kinds["confidence"] == "double precision"  # SQLite's REAL is 8 bytes, not PostgreSQL's
        assert store.quarantine_path == fws.resolve() / "feedback.quarantine.jsonl"


def test_a_server_that_cannot_be_reached_is_a_clear_error_without_the_password(fws, tmp_path):
    pytest.importorskip("psycopg", reason="PostgreSQL tests skipped: the psycopg driver is not installed")
    url = f"postgresql://clt:hunter2@/nodb?host={tmp_path}&connect_timeout=2"
    with pytest.raises(CltError, match="cannot connect") as e:
        FeedbackStore(url)
    assert "hunter2" not in str(e.value) and "clt:***@" in str(e.value)


def test_migrates_a_version_1_file_in_place_keeping_its_rows(tmp_path):
    path = tmp_path / "feedback.db"
    conn = sqlite3.connect(path)
    for statement in schema.MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("INSERT INTO predictions (request_id, timestamp, input, output, model_version)"
                 " VALUES ('r1', '2025-01-01T00:00:00.000Z', 'q', 'a', '1.0.0')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with FeedbackStore(path) as s:
        assert s.schema_version == schema.LATEST
        assert s.count("predictions") == 1
        assert s.count("annotation_samples") == 0


def test_migrates_a_version_1_postgresql_database_in_place_keeping_its_rows(pg_url):
    import psycopg  # the PostgreSQL tests need the driver; without it pg_url skips them first

    with psycopg.connect(pg_url, autocommit=True) as conn:  # what a first release of the store built
        for statement in schema.MIGRATIONS[1]:
            for ddl in dbbackend.pg_ddl(statement):
                conn.execute(ddl)
        conn.execute("INSERT INTO predictions (request_id, timestamp, input, output, model_version)"
                     " VALUES ('r1', '2025-01-01T00:00:00.000Z', 'q', 'a', '1.0.0')")
        conn.execute("CREATE TABLE clt_schema (store TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        conn.execute("INSERT INTO clt_schema VALUES ('feedback', 1)")
    with FeedbackStore(pg_url) as s:
        assert s.schema_version == schema.LATEST
        assert s.count("predictions") == 1 and s.count("annotation_samples") == 0
        s.log_prediction("r2", "q", "a", "1.0.0")
        assert s.add_feedback("r2", rating=4, source="api") == "added"  # v4 allowed the api source


def test_refuses_a_postgresql_store_from_a_newer_toolkit(pg_url):
    import psycopg

    with FeedbackStore(pg_url):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE clt_schema SET version = %s WHERE store = 'feedback'", [schema.LATEST + 1])
    with pytest.raises(CltError, match="newer than this toolkit"):
        FeedbackStore(pg_url)


def test_prune_on_postgresql_is_a_clear_refusal(pg_url, tmp_path):
    from cl_toolkit.feedback.prune import prune

    with FeedbackStore(pg_url) as s:
        s.log_prediction("r1", "q", "a", "1.0.0", timestamp="2020-01-01T00:00:00Z")
        with pytest.raises(BadInput, match="SQLite store only"):
            prune(s, "30d", tmp_path / "old.jsonl.gz")
        assert s.count("predictions") == 1


def test_refuses_a_store_from_a_newer_toolkit(tmp_path):
    path = tmp_path / "feedback.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    conn.close()
    with pytest.raises(CltError, match="newer than this toolkit"):
        FeedbackStore(path)


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path):
    path = tmp_path / "feedback.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CltError, match="not a usable feedback store"):
        FeedbackStore(path)


def test_log_prediction_normalises_time_and_splits_columns_from_metadata(store):
    assert store.log_prediction("r1", "q", "a", "1.0.0", timestamp="2025-04-01T14:00:00+02:00",
                                domain="hose", confidence=0.5, latency_ms=30, quality_score=0.7,
                                metadata={"region": "eu", "gpu": "h100"})
    p = store.get_prediction("r1")
    assert p["timestamp"] == "2025-04-01T12:00:00.000Z"
    assert (p["domain"], p["confidence"], p["latency_ms"], p["quality_score"]) == ("hose", 0.5, 30, 0.7)
    assert json.loads(p["metadata"]) == {"gpu": "h100", "region": "eu"}


def test_log_prediction_twice_keeps_the_first(store):
    assert store.log_prediction("r1", "q", "first", "1.0.0")
    assert not store.log_prediction("r1", "q", "second", "1.0.0")
    assert store.get_prediction("r1")["output"] == "first"
    assert store.count("predictions") == 1


@pytest.mark.parametrize("kwargs, key", [
    ({"request_id": ""}, "request_id"),
    ({"output": None}, "output"),
    ({"confidence": 1.5}, "confidence"),
    ({"confidence": True}, "confidence"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"metadata": {"x": float("nan")}}, "metadata"),
])
def test_log_prediction_rejects_bad_fields(store, kwargs, key):
    args = {"request_id": "r1", "input": "q", "output": "a", "model_version": "1.0.0", **kwargs}
    with pytest.raises(BadInput) as e:
        store.log_prediction(args.pop("request_id"), args.pop("input"), args.pop("output"),
                             args.pop("model_version"), **args)
    assert e.value.problems[0].key == key
    assert store.count("predictions") == 0


def test_add_feedback_adds_replaces_and_notices_no_change(store):
    store.log_prediction("r1", "q", "a", "1.0.0")
    assert store.add_feedback("r1", rating=2, correction="b") == "added"
    assert store.add_feedback("r1", rating=2, correction="b") == "unchanged"
    assert store.add_feedback("r1", rating=1, thumbs=-1) == "updated"
    assert store.add_feedback("r1", rating=5, source="expert") == "added"
    fb = {f["source"]: f for f in store.get_feedback("r1")}
    assert (fb["user"]["rating"], fb["user"]["thumbs"], fb["user"]["correction"]) == (1, -1, None)
    assert fb["expert"]["rating"] == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"rating": 6}, "rating"), ({"rating": 0}, "rating"), ({"thumbs": 2}, "thumbs"),
    ({"rating": 3, "source": "boss"}, "source"), ({}, "needs a rating"),
])
def test_add_feedback_rejects_bad_values(store, kwargs, message):
    store.log_prediction("r1", "q", "a", "1.0.0")
    with pytest.raises(BadInput, match=message):
        store.add_feedback("r1", **kwargs)
    assert store.count("feedback") == 0


def test_feedback_on_an_unknown_request_is_bad_input(store):
    with pytest.raises(BadInput, match="unknown request_id"):
        store.add_feedback("nope", rating=4)


def test_floats_and_text_order_are_the_same_on_both_backends(store):
    for rid in ("b", "B", "a", "é", "_"):  # SQLite orders text by bytes; so does COLLATE "C"
        store.log_prediction(rid, "q", "a", "1.0.0", confidence=0.1 + 0.2, latency_ms=1e-7)
    rows = store.conn.execute("SELECT request_id, confidence, latency_ms FROM predictions "
                              "ORDER BY request_id").fetchall()
    assert [r[0] for r in rows] == ["B", "_", "a", "b", "é"]
    assert {(r[1], r[2]) for r in rows} == {(0.1 + 0.2, 1e-7)}


def test_open_store_takes_an_explicit_workspace(tmp_path):
    with open_store(tmp_path / "elsewhere") as s:
        assert s.path == (tmp_path / "elsewhere" / "feedback.db").resolve()
