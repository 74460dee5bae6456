"""core.sqlitedb, the SQLite helper of the registry and the feedback store: connection
settings, transactions, and numbered migrations (in order, one transaction each, tracked
in user_version, safe when two processes migrate a fresh file at once)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from conftest import REPO

from cl_toolkit.core import sqlitedb
from cl_toolkit.core.errors import CltError
from cl_toolkit.feedback.store import FeedbackStore
from cl_toolkit.registry import open_registry

MIGRATIONS = [
    (1, ["CREATE TABLE a (x INTEGER)"]),
    (2, ["CREATE TABLE b (y INTEGER)", "INSERT INTO b VALUES (2)"]),
    (3, lambda conn: conn.execute("INSERT INTO a SELECT y * 10 FROM b")),
]


def test_migrations_run_in_order_and_the_version_is_recorded(tmp_path):
    conn = sqlitedb.connect(tmp_path / "x.db")
    assert sqlitedb.migrate(conn, MIGRATIONS, "x") == 3
    assert sqlitedb.schema_version(conn) == 3
    assert conn.execute("SELECT x FROM a").fetchall()[0]["x"] == 20  # 3 ran after 2
    assert sqlitedb.migrate(conn, MIGRATIONS, "x") == 3  # nothing left to do: no step runs twice
    assert conn.execute("SELECT COUNT(*) FROM a").fetchone()[0] == 1


def test_a_failing_step_rolls_back_alone_and_keeps_the_steps_before(tmp_path):
    def broken(conn):
        conn.execute("INSERT INTO a VALUES (1)")
        raise RuntimeError("disk on fire")

    conn = sqlitedb.connect(tmp_path / "x.db")
    with pytest.raises(RuntimeError, match="disk on fire"):
        sqlitedb.migrate(conn, [*MIGRATIONS[:2], (3, broken)], "x")
    assert sqlitedb.schema_version(conn) == 2 and not conn.in_transaction
    assert conn.execute("SELECT COUNT(*) FROM a").fetchone()[0] == 0  # the failed step left nothing
    assert sqlitedb.migrate(conn, MIGRATIONS, "x") == 3  # and the fixed step applies later


class BeginHook:
    """A connection whose next BEGIN IMMEDIATE first lets `before` run: another process
    migrating between this one's version check and its taking the write lock."""

    def __init__(self, conn, before):
        self.conn, self.before = conn, before

    @property
    def in_transaction(self):
        return self.conn.in_transaction

    def execute(self, sql, *args):
        if sql == "BEGIN IMMEDIATE" and self.before:
            before, self.before = self.before, None
            before()
        return self.conn.execute(sql, *args)


def test_a_step_another_process_applied_while_we_waited_is_skipped(tmp_path):
    path = tmp_path / "x.db"
    other = sqlitedb.connect(path)
    ours = BeginHook(sqlitedb.connect(path), lambda: sqlitedb.migrate(other, MIGRATIONS, "x"))
    assert sqlitedb.migrate(ours, MIGRATIONS, "x") == 3  # CREATE TABLE a twice would fail
    assert other.execute("SELECT COUNT(*) FROM b").fetchone()[0] == 1


def test_processes_opening_a_fresh_registry_and_store_at_once_all_succeed(tmp_path):
    code = ("import sys; from pathlib import Path; from cl_toolkit.registry import open_registry; "
            "from cl_toolkit.feedback.store import open_store; ws = Path(sys.argv[1]); "
            "open_registry(ws).close(); open_store(ws).close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ws")], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    with open_registry(tmp_path / "ws") as reg:
        assert sqlitedb.schema_version(reg._conn) == max(n for n, _ in reg.migrations()) >= 4
        assert reg.integrity() == "ok"


def test_a_newer_file_is_refused_and_left_as_it_is(tmp_path):
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    with pytest.raises(CltError, match="x has schema version 7, newer than this toolkit knows \\(3\\)"):
        sqlitedb.migrate(sqlitedb.connect(path), MIGRATIONS, "x")
    assert sqlitedb.schema_version(sqlitedb.connect(path)) == 7


def test_migrations_must_be_numbered_from_one_without_gaps(tmp_path):
    with pytest.raises(ValueError, match="numbered 1..n"):
        sqlitedb.migrate(sqlitedb.connect(tmp_path / "x.db"), [MIGRATIONS[0], MIGRATIONS[2]], "x")


def test_a_transaction_commits_or_rolls_back_whole(tmp_path):
    conn = sqlitedb.connect(tmp_path / "x.db")
    sqlitedb.migrate(conn, MIGRATIONS, "x")
    with sqlitedb.transaction(conn):
        conn.execute("INSERT INTO a VALUES (1)")
    with pytest.raises(KeyError), sqlitedb.transaction(conn):
        conn.execute("INSERT INTO a VALUES (2)")
        raise KeyError("boom")
    assert not conn.in_transaction
    assert sorted(r[0] for r in conn.execute("SELECT x FROM a")) == [1, 20]


def test_each_store_gets_its_connection_settings(tmp_path):
    with open_registry(tmp_path / "ws") as reg, FeedbackStore(tmp_path / "ws" / "feedback.db") as store:
        for conn in (reg._conn, store.conn):
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.isolation_level is None
        assert reg._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: a version is never lost
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: many small writes
        assert reg._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 120_000
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert isinstance(reg._conn.execute("SELECT 1 AS one").fetchone(), sqlite3.Row)
        assert type(store.conn.execute("SELECT 1").fetchone()) is tuple  # plain SQL readers get tuples
