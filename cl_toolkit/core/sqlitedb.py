"""The one SQLite helper the registry and the feedback store share: how a connection is
opened, what a write transaction is, and how a schema is migrated.

A connection runs in autocommit mode (`isolation_level=None`) so that `transaction()`
alone decides where a write begins and ends; WAL lets readers go on while one writer
writes. Migrations are numbered, applied in order, each in its own `BEGIN IMMEDIATE`
transaction, and the number reached is kept in `PRAGMA user_version` (set inside the same
transaction, so a step is applied completely or not at all).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cl_toolkit.core.errors import CltError
from cl_toolkit.core.files import PRIVATE_MODE, ensure_private_file

# a migration: the statements that bring the previous version to this one, or a function
# that does it with the connection (inside the migration's transaction)
Step = Sequence[str] | Callable[[sqlite3.Connection], None]
Migration = tuple[int, Step]


def connect(path: str | Path, *, synchronous: str = "NORMAL", busy_timeout_s: float = 30,
            row_factory=sqlite3.Row, pragmas: Sequence[str] = ()) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with a busy timeout; rows by column name
    unless the store asks for plain tuples (`row_factory=None`). A database file is
    created 0600 (SQLite gives its -wal and -shm files the same mode)."""
    _make_private(path)
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    conn.row_factory = row_factory
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    _use_wal(conn, busy_timeout_s)
    for pragma in (f"synchronous = {synchronous}", *pragmas):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _make_private(path: str | Path) -> None:
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    path = Path(path)
    if not path.exists():
        ensure_private_file(path)
    elif path.stat().st_mode & 0o077:
        try:
            path.chmod(PRIVATE_MODE)
        except PermissionError:  # somebody else's file, opened to read: leave it be
            pass


def _use_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Switch to WAL. The switch needs a moment alone with a new file, and other processes
    opening it at the same time may be doing the same: retry until it sticks."""
    deadline = time.monotonic() + timeout_s
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction. BEGIN IMMEDIATE takes the write lock up front, so concurrent
    writers queue (busy timeout) instead of failing halfway; any exception rolls back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the file (0 for a new one)."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def latest(migrations: Sequence[Migration]) -> int:
    return migrations[-1][0] if migrations else 0


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration], what: str) -> int:
    """Apply every migration newer than the file's version, in order, one transaction each.

    Safe when several processes open a fresh file at once: each step re-reads the version
    after taking the write lock and skips what another process applied while it waited.
    A file newer than the migrations known here is refused (CltError), never touched."""
    _check_numbering(migrations)
    target = latest(migrations)
    for version, step in migrations:
        if schema_version(conn) >= version:
            continue
        with transaction(conn):
            current = schema_version(conn)
            if current >= version:
                continue  # another process migrated while we waited for the lock
            _apply(conn, step)
            conn.execute(f"PRAGMA user_version = {int(version)}")
    found = schema_version(conn)
    if found > target:
        raise CltError(f"{what} has schema version {found}, newer than this toolkit knows "
                       f"({target}); upgrade cl_toolkit")
    return found


def _apply(conn: sqlite3.Connection, step: Step) -> None:
    if callable(step):
        step(conn)
        return
    for statement in step:
        conn.execute(statement)


def _check_numbering(migrations: Sequence[Migration]) -> None:
    """Versions run 1, 2, 3...: a gap or a repeat is a programming error, caught at once."""
    numbers = [v for v, _ in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1..n in order, got {numbers}")
