"""The feedback store's SQLite schema and its migrations.

Tables (the monitoring code reads them with plain SQL; keep them simple):

``predictions`` - one row per production request.
    request_id TEXT PRIMARY KEY, timestamp TEXT (ISO 8601 UTC, ``YYYY-MM-DDTHH:MM:SS.mmmZ``,
    so text order is time order), input TEXT, output TEXT, model_version TEXT,
    domain TEXT NULL, confidence REAL NULL (0..1), latency_ms REAL NULL,
    quality_score REAL NULL, metadata TEXT NULL (a JSON object: the import row's other
    metadata keys).

``feedback`` - at most one row per (request_id, source); newer feedback from the same
    source replaces the old. request_id TEXT (references predictions), source TEXT
    (user | expert | incident | api: posted to `clt serve`'s /v1/feedback), rating INTEGER NULL (1..5), thumbs INTEGER NULL (-1, 0, 1),
    correction TEXT NULL, notes TEXT NULL, timestamp TEXT (same format as above).

``annotation_samples`` - which requests went out in which expert annotation batch, so a
    request is not sampled twice: request_id TEXT PRIMARY KEY, batch TEXT, stratum TEXT,
    sampled_at TEXT.

``incident_reviews`` - which requests an incident review has covered, and its context;
    the rating and correction themselves are feedback rows with source incident. Also how
    a stopped review resumes. incident TEXT, request_id TEXT (references predictions),
    what_happened TEXT NULL, reviewer TEXT NULL, reviewed_at TEXT; primary key
    (incident, request_id).

The schema version is SQLite's ``PRAGMA user_version`` (on PostgreSQL, the store's row
in ``clt_schema``); MIGRATIONS upgrades an older database in place, one transaction per
step. The same statements build both backends (core/dbbackend.py translates them).
"""

from __future__ import annotations

from cl_toolkit.core import dbbackend

SOURCES = ("user", "expert", "incident", "api")  # api: posted to `clt serve`, unverified
# every table -> its primary key, parents before the tables that reference them (the order
# `clt store migrate` copies in)
TABLES = {"predictions": ("request_id",), "feedback": ("request_id", "source"),
          "annotation_samples": ("request_id",), "incident_reviews": ("incident", "request_id")}

_V1 = [
    """CREATE TABLE predictions (
        request_id    TEXT PRIMARY KEY,
        timestamp     TEXT NOT NULL,
        input         TEXT NOT NULL,
        output        TEXT NOT NULL,
        model_version TEXT NOT NULL,
        domain        TEXT,
        confidence    REAL CHECK (confidence IS NULL OR confidence BETWEEN 0 AND 1),
        latency_ms    REAL,
        quality_score REAL,
        metadata      TEXT
    )""",
    """CREATE TABLE feedback (
        request_id TEXT NOT NULL REFERENCES predictions(request_id),
        -- OR-ed equalities, not IN (...): SQLite rebuilds an IN list for every row checked
        source     TEXT NOT NULL CHECK (source = 'user' OR source = 'expert' OR source = 'incident'),
        rating     INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
        thumbs     INTEGER CHECK (thumbs IS NULL OR thumbs BETWEEN -1 AND 1),
        correction TEXT,
        notes      TEXT,
        timestamp  TEXT NOT NULL,
        PRIMARY KEY (request_id, source)
    ) WITHOUT ROWID""",
    "CREATE INDEX predictions_time ON predictions (timestamp, request_id)",
    "CREATE INDEX predictions_version ON predictions (model_version, timestamp)",
]

_V2 = [
    """CREATE TABLE annotation_samples (
        request_id TEXT PRIMARY KEY REFERENCES predictions(request_id),
        batch      TEXT NOT NULL,
        stratum    TEXT NOT NULL,
        sampled_at TEXT NOT NULL
    )""",
]

_V3 = [
    """CREATE TABLE incident_reviews (
        incident      TEXT NOT NULL,
        request_id    TEXT NOT NULL REFERENCES predictions(request_id),
        what_happened TEXT,
        reviewer      TEXT,
        reviewed_at   TEXT NOT NULL,
        PRIMARY KEY (incident, request_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX incident_reviews_request ON incident_reviews (request_id)",
]

# v4: feedback source 'api' (SQLite cannot change a CHECK in place: the table is rebuilt)
_V4 = [
    """CREATE TABLE feedback_v4 (
        request_id TEXT NOT NULL REFERENCES predictions(request_id),
        source     TEXT NOT NULL CHECK (source = 'user' OR source = 'expert' OR source = 'incident'
                                        OR source = 'api'),
        rating     INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
        thumbs     INTEGER CHECK (thumbs IS NULL OR thumbs BETWEEN -1 AND 1),
        correction TEXT,
        notes      TEXT,
        timestamp  TEXT NOT NULL,
        PRIMARY KEY (request_id, source)
    ) WITHOUT ROWID""",
    """INSERT INTO feedback_v4 (request_id, source, rating, thumbs, correction, notes, timestamp)
        SELECT request_id, source, rating, thumbs, correction, notes, timestamp FROM feedback""",
    "DROP TABLE feedback",
    "ALTER TABLE feedback_v4 RENAME TO feedback",
]

# version -> statements that bring the previous version to it. Append only.
MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: _V2, 3: _V3, 4: _V4}
LATEST = max(MIGRATIONS)


def schema_version(conn) -> int:
    """The schema version recorded in the database (0 for a new one)."""
    return dbbackend.schema_version(conn, "feedback")


def migrate(conn) -> int:
    """Bring the database to LATEST; safe when several processes open it at once."""
    return dbbackend.migrate(conn, sorted(MIGRATIONS.items()), "feedback store", store="feedback")
