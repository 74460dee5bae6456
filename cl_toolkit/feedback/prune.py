"""`clt feedback prune`: old predictions, and every piece of feedback on them, out of the
store into a gzip-compressed JSONL archive that `clt feedback import` reads back; then
VACUUM, so the file shrinks.

The order of work, so that nothing is lost:

1. take the store's write lock (one transaction): nothing changes while we work;
2. write the archive to a temp file beside the target, fsync, rename it into place;
3. read the archive back and check it line by line against the store: each line must
   parse, as `clt feedback import` parses it, into exactly the stored prediction and
   feedback row;
4. only then delete, in the same transaction (feedback, annotation samples, incident
   review records, predictions), and commit; VACUUM comes after.

Archive lines are in the import format (docs/formats.md). A prediction with feedback from
several sources takes one line per source (import is idempotent on the prediction).
The annotation-sample and incident-review bookkeeping of pruned rows is deleted and
counted, not archived (an incident's context lives on in its feedback's notes).
"""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from pathlib import Path

from cl_toolkit.core import dbbackend
from cl_toolkit.core.errors import BadInput, CltError
from cl_toolkit.core.files import atomic_open, sha256_file
from cl_toolkit.feedback.records import (
    COLUMN_KEYS,
    RecordError,
    format_timestamp,
    records_from_import_row,
)
from cl_toolkit.feedback.store import FeedbackStore

UNITS = {"h": "hours", "d": "days", "w": "weeks"}
PROGRESS_EVERY = 50_000
FEEDBACK_KEYS = ("source", "rating", "thumbs", "correction", "notes", "timestamp")
BOOKKEEPING = ("annotation_samples", "incident_reviews")
_OLD = "SELECT request_id FROM predictions WHERE timestamp < ?"
# every prediction joined with its feedback (one row per source), in import_row's column order
JOINED_ROWS = """SELECT p.request_id, p.timestamp, p.input, p.output, p.model_version, p.domain,
    p.confidence, p.latency_ms, p.quality_score, p.metadata,
    f.source, f.rating, f.thumbs, f.correction, f.notes, f.timestamp
FROM predictions p LEFT JOIN feedback f ON f.request_id = p.request_id"""
JOINED_ORDER = " ORDER BY p.timestamp, p.request_id, f.source"
_ROWS = JOINED_ROWS + " WHERE p.timestamp < ?" + JOINED_ORDER


def cutoff_for(older_than: str, now: datetime | None = None) -> str:
    """The timestamp `older_than` ("365d", "12w", "36h") before now, in store format."""
    match = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", older_than or "")
    if not match:
        raise BadInput(f"--older-than {older_than!r}: give a whole number and a unit, "
                       "h, d or w (for example 365d)")
    age = timedelta(**{UNITS[match[2]]: int(match[1])})
    try:
        return format_timestamp((now or datetime.now(UTC)) - age)
    except OverflowError:
        raise BadInput(f"--older-than {older_than!r} reaches before year 1") from None


def import_row(r: tuple) -> dict:
    """One joined (prediction, feedback) row as an import line."""
    metadata = json.loads(r[9]) if r[9] else {}
    metadata.update((k, v) for k, v in zip(COLUMN_KEYS, r[5:9], strict=True) if v is not None)
    row = dict(zip(("request_id", "timestamp", "input", "output", "model_version"), r[:5],
                   strict=True))
    if metadata:
        row["metadata"] = metadata
    if r[10] is not None:
        row["user_feedback"] = {k: v for k, v in zip(FEEDBACK_KEYS, r[10:16], strict=True)
                                if v is not None}
    return row


def _comparable(prediction: tuple, feedback: tuple | None) -> tuple:
    """A (prediction, feedback) pair with its metadata JSON parsed, so formatting is moot."""
    metadata = json.loads(prediction[9]) if prediction[9] else None
    return (*prediction[:9], metadata or None), feedback


def _stored(r: tuple) -> tuple:
    feedback = (r[0], *r[10:16]) if r[10] is not None else None
    return _comparable(r[:10], feedback)


def _write_archive(conn, cutoff: str, path: Path, progress) -> dict:
    """Write the rows to prune as gzip JSONL at `path` (atomically); count them."""
    counts = {"predictions": 0, "feedback": 0, "lines": 0}
    previous = None
    with atomic_open(path, "wb") as raw:
        # mtime 0 and no name inside: the same rows give the same bytes
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            for r in conn.execute(_ROWS, (cutoff,)):
                gz.write((json.dumps(import_row(r), sort_keys=True, ensure_ascii=False)
                          + "\n").encode("utf-8"))
                counts["lines"] += 1
                counts["predictions"] += r[0] != previous
                counts["feedback"] += r[10] is not None
                previous = r[0]
                if progress and counts["lines"] % PROGRESS_EVERY == 0:
                    progress(counts["lines"])
    return counts


def _read_back(path: Path) -> Iterator[tuple]:
    with gzip.open(path, "rb") as f:
        for line in f:
            prediction, feedback = records_from_import_row(json.loads(line), now="")
            yield _comparable(prediction, feedback)


def verify_archive(conn, cutoff: str, path: Path) -> None:
    """CltError unless the archive restores exactly the rows to prune, in order."""
    try:
        pairs = zip_longest(_read_back(path), map(_stored, conn.execute(_ROWS, (cutoff,))))
        for number, (archived, stored) in enumerate(pairs, 1):
            if archived != stored:
                raise CltError(f"{path}: line {number} does not restore the stored rows; "
                               "nothing was pruned")
    except (OSError, EOFError, ValueError, RecordError) as e:
        raise CltError(f"{path}: archive unreadable ({e}); nothing was pruned") from None


def _delete(conn, cutoff: str, counts: dict) -> dict:
    deleted = {t: conn.execute(f"DELETE FROM {t} WHERE request_id IN ({_OLD})", (cutoff,)).rowcount
               for t in ("feedback", *BOOKKEEPING)}
    deleted["predictions"] = conn.execute("DELETE FROM predictions WHERE timestamp < ?",
                                          (cutoff,)).rowcount
    if (deleted["predictions"], deleted["feedback"]) != (counts["predictions"], counts["feedback"]):
        raise CltError("the rows to delete differ from the rows archived; nothing was pruned")
    return deleted


def _vacuum(store: FeedbackStore) -> bool:
    try:
        store.conn.execute("VACUUM")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True
    except sqlite3.OperationalError:  # busy readers: the space is reused, the file not shrunk
        return False


def prune(store: FeedbackStore, older_than: str, archive: str | Path, *, dry_run: bool = False,
          now: datetime | None = None, progress: Callable[[int], None] | None = None) -> dict:
    """Archive, verify and delete the predictions older than `older_than`; then VACUUM."""
    cutoff, archive = cutoff_for(older_than, now), Path(archive)
    if dbbackend.is_postgres(store.conn):
        raise BadInput(f"{store.path}: prune works on a SQLite store only, for now (it archives, deletes "
                       f"and vacuums the file)")
    if not archive.name.endswith(".jsonl.gz"):
        raise BadInput(f"--archive {archive}: name it *.jsonl.gz (gzip JSONL, importable)")
    if archive.exists() and not dry_run:
        raise BadInput(f"--archive {archive} exists; pick a new name (archives are never overwritten)")
    summary = {"cutoff": cutoff, "archive": None, "dry_run": dry_run,
               "db_bytes_before": store.path.stat().st_size}
    with store.transaction() as conn:
        count = conn.execute(f"SELECT COUNT(*) FROM ({_OLD})", (cutoff,)).fetchone()[0]
        if dry_run or count == 0:
            return {**summary, "predictions": count, "feedback": conn.execute(
                f"SELECT COUNT(*) FROM feedback WHERE request_id IN ({_OLD})",
                (cutoff,)).fetchone()[0]}
        archive.parent.mkdir(parents=True, exist_ok=True)
        counts = _write_archive(conn, cutoff, archive, progress)
        try:
            verify_archive(conn, cutoff, archive)
        except CltError:
            archive.unlink(missing_ok=True)
            raise
        deleted = _delete(conn, cutoff, counts)
    vacuumed = _vacuum(store)
    return {**summary, **deleted, "archive": str(archive), "archive_lines": counts["lines"],
            "archive_bytes": archive.stat().st_size, "archive_sha256": sha256_file(archive),
            "vacuumed": vacuumed, "db_bytes_after": store.path.stat().st_size}
