"""Stores and appended files that may hold production or personal data are created for
their owner alone (0600), whatever the umask."""

import os
import stat

import pytest

from cl_toolkit.core import sqlitedb
from cl_toolkit.core.files import ensure_private_file, open_private_append
from cl_toolkit.feedback.store import FeedbackStore
from cl_toolkit.registry import open_registry


@pytest.fixture(autouse=True)
def open_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_sqlite_database_and_its_wal_are_private(tmp_path):
    db = tmp_path / "x.db"
    conn = sqlitedb.connect(db)
    conn.execute("CREATE TABLE t (a)")
    conn.execute("INSERT INTO t VALUES (1)")
    assert mode(db) == 0o600
    assert mode(tmp_path / "x.db-wal") == 0o600
    conn.close()


def test_existing_world_readable_database_is_tightened(tmp_path):
    db = tmp_path / "old.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    sqlitedb.connect(db).close()
    assert mode(db) == 0o600


def test_feedback_store_and_registry_files_are_private(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    store.close()
    assert mode(tmp_path / "feedback.db") == 0o600
    with open_registry(tmp_path / "ws") as reg:
        path = reg.path
    assert mode(path) == 0o600


def test_private_append_creates_0600_and_tightens(tmp_path):
    f = tmp_path / "journal.jsonl"
    with open_private_append(f) as out:
        out.write("a\n")
    assert mode(f) == 0o600
    g = tmp_path / "g"
    g.write_text("x")
    g.chmod(0o664)
    ensure_private_file(g)
    assert mode(g) == 0o600 and g.read_text() == "x"
