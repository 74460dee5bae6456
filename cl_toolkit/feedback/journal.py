"""The store's journal: what the serve writer could not store while the store stayed
locked or unavailable, appended beside the store (``feedback.journal.jsonl``, 0600) and
replayed into it later: by the writer once the store takes writes again or at its next
start, and by `clt feedback import`.

One JSON object a line (docs/formats.md, "The journal"): ``{"v": 1, "kind": "prediction"
| "feedback", "row": {column: value}}``. Appends hold an exclusive lock on the file and
write whole lines in one write with fsync. A replay first takes the store's write lock,
then renames the journal to a claimed name (``feedback.journal.replay-<ns>-<pid>.jsonl``),
so appends that follow go to a fresh file; it applies the claimed files in order in one
transaction and deletes them only after the commit. Replaying is idempotent: a prediction
whose request id is stored is skipped, feedback replaces a source's row only when it is
not older. A line that does not parse (torn by a crash mid-append), and feedback on a
request the store never saw, are skipped, reported and copied to the quarantine file.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cl_toolkit.core.errors import Problem
from cl_toolkit.core.files import PRIVATE_MODE, ensure_private_file
from cl_toolkit.feedback.quarantine import Quarantine
from cl_toolkit.feedback.records import RecordError, check_feedback, check_prediction, now_timestamp
from cl_toolkit.feedback.redact import redact
from cl_toolkit.feedback.store import FEEDBACK_COLUMNS, PREDICTION_COLUMNS, FeedbackStore

VERSION = 1
KINDS = {"prediction": PREDICTION_COLUMNS, "feedback": FEEDBACK_COLUMNS}


def entry_line(kind: str, row: tuple) -> str:
    """A checked prediction or feedback row as one journal line."""
    fields = dict(zip(KINDS[kind], row, strict=True))
    if kind == "prediction" and fields["metadata"] is not None:
        fields["metadata"] = json.loads(fields["metadata"])  # readable, not a string in a string
    return json.dumps({"v": VERSION, "kind": kind, "row": fields}, sort_keys=True,
                      ensure_ascii=False) + "\n"


def append(path: Path, lines: list[str]) -> None:
    """Append whole lines to the journal at `path` (created 0600), fsynced, under an
    exclusive lock; after a torn last line the first line starts on a fresh one."""
    if not lines:
        return
    data = "".join(lines).encode("utf-8")
    while True:
        ensure_private_file(path)
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            try:
                same = os.stat(path).st_ino == st.st_ino
            except FileNotFoundError:
                same = False
            if not same:  # a replay claimed this file while we waited: use the new one
                continue
            if st.st_mode & 0o077:
                os.fchmod(fd, PRIVATE_MODE)
            out = data
            if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
                out = b"\n" + data
            while out:
                out = out[os.write(fd, out):]
            os.fsync(fd)
            return
        finally:
            os.close(fd)


def claimed_journals(path: Path) -> list[Path]:
    """Journals claimed by a replay that has not finished (or crashed), oldest first."""
    stem = path.name.removesuffix(".jsonl")
    return sorted(path.parent.glob(f"{stem}.replay-*.jsonl"))


def pending(path: Path) -> bool:
    """Whether anything waits to be replayed."""
    return path.exists() or bool(claimed_journals(path))


def _claim(path: Path) -> None:
    """Rename the live journal to a claimed name, under its lock (appenders reopen)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return  # another replay claimed it first
        except FileNotFoundError:
            return
        stem = path.name.removesuffix(".jsonl")
        os.rename(path, path.with_name(f"{stem}.replay-{time.time_ns():020d}-{os.getpid()}.jsonl"))
    finally:
        os.close(fd)


@dataclass
class ReplaySummary:
    """What a replay did."""

    files: int = 0
    lines: int = 0
    predictions_added: int = 0
    predictions_existing: int = 0
    feedback_added: int = 0
    feedback_updated: int = 0
    feedback_unchanged: int = 0
    orphaned: int = 0  # feedback on a request the store has never seen: quarantined
    skipped: int = 0  # torn or unreadable lines: quarantined
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["problems"] = [str(p) for p in self.problems]
        return d


def _parse(raw: bytes) -> tuple[str, tuple]:
    """One journal line -> (kind, checked row); RecordError when torn or wrong."""
    try:
        entry = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RecordError("torn or unreadable journal line (a crash mid-append?)") from None
    if not isinstance(entry, dict) or entry.get("kind") not in KINDS or not isinstance(entry.get("row"), dict):
        raise RecordError("not a journal entry")
    if entry.get("v") != VERSION:
        raise RecordError(f"journal version {entry.get('v')!r}, this toolkit reads {VERSION}")
    kind, r = entry["kind"], entry["row"]
    if kind == "prediction":
        return kind, check_prediction(
            r.get("request_id"), r.get("input"), r.get("output"), r.get("model_version"),
            timestamp=r.get("timestamp"), domain=r.get("domain"), confidence=r.get("confidence"),
            latency_ms=r.get("latency_ms"), quality_score=r.get("quality_score"),
            metadata=r.get("metadata"))
    row = check_feedback(r.get("request_id"), rating=r.get("rating"), thumbs=r.get("thumbs"),
                         correction=r.get("correction"), notes=r.get("notes"),
                         source=r.get("source", "user"), timestamp=r.get("timestamp"))
    if row is None:
        raise RecordError("feedback that says nothing")
    return kind, row


def _apply(store: FeedbackStore, path: Path, s: ReplaySummary, rejects: list[dict]) -> None:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            s.lines += 1
            try:
                kind, row = _parse(raw)
            except RecordError as e:
                s.skipped += 1
                rejects.append(_reject(store, path, number, raw, str(e), e.key))
                continue
            if kind == "prediction":
                added = store.insert_predictions([row])
                s.predictions_added += added
                s.predictions_existing += 1 - added
            elif not store.has_prediction(row[0]):
                s.orphaned += 1
                rejects.append(_reject(store, path, number, raw, f"feedback on unknown request_id {row[0]!r}",
                                       "request_id"))
            else:
                added, updated = store.upsert_feedback([row], newer_only=True)
                s.feedback_added += added
                s.feedback_updated += updated
                s.feedback_unchanged += 1 - added - updated


def _reject(store: FeedbackStore, path: Path, number: int, raw: bytes, error: str,
            key: str | None) -> dict:
    raw = raw.rstrip(b"\r\n")
    text = raw.decode("utf-8", "surrogateescape")
    return {"file": str(path), "line": number, "error": error, "key": key, "bytes": len(raw),
            "truncated": False, "raw": redact(text) if store.redact else text}


def replay(store: FeedbackStore, *, now: str | None = None) -> ReplaySummary:
    """Replay every journal beside the store into it (see the module docstring). Raises
    a database error (core.dbbackend.DB_ERRORS) when the store cannot take the write lock;
    nothing is claimed then."""
    s = ReplaySummary()
    path = store.journal_path
    if not pending(path):
        return s
    rejects: list[dict] = []
    with store.transaction():
        _claim(path)
        claimed = claimed_journals(path)
        for journal in claimed:
            _apply(store, journal, s, rejects)
    if rejects:
        Quarantine(store.quarantine_path).add(rejects, now or now_timestamp())
        s.problems = [Problem(file=r["file"], line=r["line"], key=r["key"],
                              message=f"{r['error']}; copied to {store.quarantine_path.name}")
                      for r in rejects[:1000]]
    for journal in claimed:
        journal.unlink(missing_ok=True)
    s.files = len(claimed)
    return s
