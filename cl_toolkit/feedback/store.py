"""The feedback store: every production prediction and every piece of feedback on it,
in one SQLite file (``workspace/feedback.db``) or a PostgreSQL database (a URL: see
:mod:`cl_toolkit.core.storeurl` for how one is chosen).

Applications use the Python API::

    from cl_toolkit.feedback.store import open_store
    with open_store() as store:
        store.log_prediction("req-1", "How wide is a 1.75in line?", "1.75 inches", "1.0.0",
                             domain="hose", confidence=0.92)
        store.add_feedback("req-1", rating=5)

The file uses WAL (readers never block the writer), ``synchronous=NORMAL`` and a busy
timeout, so several processes can write at once; every write is one transaction. On
PostgreSQL the same SQL runs through core/dbbackend.py, and bulk inserts COPY. The
tables are described in :mod:`cl_toolkit.feedback.schema`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from cl_toolkit.core import dbbackend, storeurl
from cl_toolkit.core.errors import BadInput, CltError, Problem
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.feedback.records import (
    RecordError,
    check_feedback,
    check_prediction,
    redact_feedback,
    redact_prediction,
)
from cl_toolkit.feedback.schema import migrate, schema_version

DB_NAME = "feedback.db"
PREDICTION_COLUMNS = ("request_id", "timestamp", "input", "output", "model_version", "domain",
                      "confidence", "latency_ms", "quality_score", "metadata")
FEEDBACK_COLUMNS = ("request_id", "source", "rating", "thumbs", "correction", "notes", "timestamp")
INSERT_PREDICTION = (f"INSERT OR IGNORE INTO predictions ({', '.join(PREDICTION_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(PREDICTION_COLUMNS))})")
INSERT_FEEDBACK = (f"INSERT OR IGNORE INTO feedback ({', '.join(FEEDBACK_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(FEEDBACK_COLUMNS))})")
# replaces a source's feedback only when it says something different (keeps re-imports no-ops)
UPDATE_FEEDBACK = """UPDATE feedback SET rating = ?3, thumbs = ?4, correction = ?5, notes = ?6,
    timestamp = ?7 WHERE request_id = ?1 AND source = ?2 AND (rating IS NOT ?3
    OR thumbs IS NOT ?4 OR correction IS NOT ?5 OR notes IS NOT ?6)"""
# journal replay: a row replaces a source's feedback only when it is not older than it
UPDATE_FEEDBACK_IF_NEWER = UPDATE_FEEDBACK + " AND timestamp <= ?7"
BUSY_TIMEOUT_S = 120
COPY_MIN_ROWS = 64  # on PostgreSQL, a batch of at least this many rows is COPYed
QUARANTINE_NAME = "feedback.quarantine.jsonl"
JOURNAL_NAME = "feedback.journal.jsonl"
# set to 1 (or true/yes/on) to redact PII from every row before it reaches the store or
# the journal, for `clt serve` and as the default of `clt feedback import --redact`
REDACT_ENV = "CLT_REDACT_AT_INGEST"


def redact_at_ingest_default() -> bool:
    """Whether $CLT_REDACT_AT_INGEST asks for redaction at ingest."""
    return os.environ.get(REDACT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _connect(target: storeurl.StoreTarget, busy_timeout_s: float):
    # plain tuple rows: the monitoring and extraction code reads this connection directly
    return dbbackend.connect(target, what="feedback store", rows="tuple", synchronous="NORMAL",
                             busy_timeout_s=busy_timeout_s,
                             pragmas=("foreign_keys = ON", "cache_size = -65536", "temp_store = MEMORY"))


class FeedbackStore:
    """A connection to one feedback database, migrated to the current schema on open.

    With `redact=True` every prediction and feedback row written through this connection
    has its PII replaced by placeholders first (feedback/redact.py): raw PII never reaches
    the file; `redact=None` (the default) follows $CLT_REDACT_AT_INGEST. `busy_timeout_s` is how long one write waits for another writer's lock.

    `path` is a SQLite file or a `postgresql://` URL; `path` as the store shows it is then
    the URL without its password, and the quarantine and journal files live in
    `workspace` (default: $CLT_HOME) instead of beside the file."""

    def __init__(self, path: str | Path, *, redact: bool | None = None,
                 busy_timeout_s: float = BUSY_TIMEOUT_S, workspace: Path | None = None):
        self.target = storeurl.parse(path)
        self.redact = redact_at_ingest_default() if redact is None else redact
        self.redactions: Counter = Counter()  # kind -> placeholders written, when redacting
        if self.target.is_postgres:
            self.path = str(self.target)  # masked: what messages and manifests show
            self.files_dir = workspace_dir(workspace)
        else:
            self.path = Path(self.target.target)
            self.files_dir = self.path.parent
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = _connect(self.target, busy_timeout_s)
            migrate(self.conn)
        except dbbackend.DB_ERRORS as e:
            detail = storeurl.masked(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            raise CltError(f"{self.path}: not a usable feedback store ({detail})") from None

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @property
    def schema_version(self) -> int:
        return schema_version(self.conn)

    @property
    def quarantine_path(self) -> Path:
        """Where rejected import lines are copied: beside the store."""
        return self.files_dir / QUARANTINE_NAME

    @property
    def journal_path(self) -> Path:
        """Where the serve writer appends what it could not store (feedback/journal.py)."""
        return self.files_dir / JOURNAL_NAME

    def transaction(self):
        """One write transaction (taken up front, so concurrent writers queue, not fail)."""
        return dbbackend.transaction(self.conn)

    # --- the application API -------------------------------------------------------------
    def log_prediction(self, request_id, input, output, model_version, *, timestamp=None,
                       domain=None, confidence=None, latency_ms=None, quality_score=None,
                       metadata=None) -> bool:
        """Store one prediction; False when its request_id is already stored (kept as is)."""
        try:
            row = check_prediction(request_id, input, output, model_version, timestamp=timestamp,
                                   domain=domain, confidence=confidence, latency_ms=latency_ms,
                                   quality_score=quality_score, metadata=metadata)
        except RecordError as e:
            raise BadInput([Problem(file=str(self.path), message=str(e), key=e.key)]) from None
        with self.transaction():
            return self.insert_predictions([row]) == 1

    def add_feedback(self, request_id, *, rating=None, thumbs=None, correction=None, notes=None,
                     source="user", timestamp=None) -> str:
        """Record feedback on a stored prediction: 'added', 'updated' or 'unchanged'.

        One row per (request_id, source): new feedback from the same source replaces it.
        """
        try:
            row = check_feedback(request_id, rating=rating, thumbs=thumbs, correction=correction,
                                 notes=notes, source=source, timestamp=timestamp)
        except RecordError as e:
            raise BadInput([Problem(file=str(self.path), message=str(e), key=e.key)]) from None
        if row is None:
            raise BadInput("feedback needs a rating, thumbs, a correction or notes")
        with self.transaction():
            if not self.has_prediction(request_id):
                raise BadInput(f"unknown request_id {request_id!r}")
            added, updated = self.upsert_feedback([row])
        return "added" if added else "updated" if updated else "unchanged"

    # --- bulk writes (call inside transaction()) ------------------------------------------
    def insert_predictions(self, rows: Iterable[tuple]) -> int:
        """Insert checked prediction rows; request_ids already stored are skipped. -> added."""
        if self.redact:
            rows = [redact_prediction(r, self.redactions) for r in rows]
        if dbbackend.is_postgres(self.conn):
            rows = list(rows)
            if len(rows) >= COPY_MIN_ROWS:
                return dbbackend.insert_ignoring_known(self.conn, "predictions", PREDICTION_COLUMNS, rows)
        return self.conn.executemany(INSERT_PREDICTION, rows).rowcount

    def upsert_feedback(self, rows: list[tuple], *, newer_only: bool = False) -> tuple[int, int]:
        """Insert or replace checked feedback rows. -> (added, updated). With `newer_only`
        a stored row is replaced only by a row whose timestamp is not older (replay)."""
        if self.redact:
            rows = [redact_feedback(r, self.redactions) for r in rows]
        if dbbackend.is_postgres(self.conn) and len(rows) >= COPY_MIN_ROWS:
            added = dbbackend.insert_ignoring_known(self.conn, "feedback", FEEDBACK_COLUMNS, rows)
        else:
            added = self.conn.executemany(INSERT_FEEDBACK, rows).rowcount
        if added == len(rows):  # all new: nothing to update (the common, bulk case)
            return added, 0
        update = UPDATE_FEEDBACK_IF_NEWER if newer_only else UPDATE_FEEDBACK
        updated = self.conn.executemany(update, rows).rowcount
        return added, updated

    # --- queries -------------------------------------------------------------------------
    def has_prediction(self, request_id: str) -> bool:
        """Whether a prediction with this request_id is stored."""
        sql = "SELECT 1 FROM predictions WHERE request_id = ?"
        return self.conn.execute(sql, (request_id,)).fetchone() is not None

    def get_prediction(self, request_id: str) -> dict | None:
        """One prediction as a dict of its columns, or None."""
        cur = self.conn.execute(
            f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM predictions WHERE request_id = ?",
            (request_id,))
        row = cur.fetchone()
        return dict(zip(PREDICTION_COLUMNS, row, strict=True)) if row else None

    def get_feedback(self, request_id: str) -> list[dict]:
        """The feedback on one request, one dict per source, ordered by source."""
        cur = self.conn.execute(
            f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM feedback WHERE request_id = ? "
            "ORDER BY source", (request_id,))
        return [dict(zip(FEEDBACK_COLUMNS, row, strict=True)) for row in cur]

    def count(self, table: str) -> int:
        """Rows in one of the store's tables."""
        if table not in ("predictions", "feedback", "annotation_samples", "incident_reviews"):
            raise ValueError(f"no table {table!r}")
        return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def store_target(workspace: Path | None = None, url: str | None = None) -> storeurl.StoreTarget:
    """Where the workspace's feedback store is: `url`, $CLT_FEEDBACK_URL, the workspace's
    clt.yml, else ``workspace_dir()/feedback.db``."""
    ws = workspace_dir(workspace)
    return storeurl.resolve("feedback", ws / DB_NAME, explicit=url, workspace=ws)


def open_store(workspace: Path | None = None, *, redact: bool | None = None,
               busy_timeout_s: float = BUSY_TIMEOUT_S, url: str | None = None) -> FeedbackStore:
    """The workspace's feedback store (see store_target), created if new."""
    return FeedbackStore(store_target(workspace, url).target, redact=redact, busy_timeout_s=busy_timeout_s,
                         workspace=workspace_dir(workspace))
