"""`clt feedback import`: production logs into the store.

Each line is one JSON object (docs/formats.md, "The feedback row"), or one row of a CSV or
Parquet table; other shapes (the guide's collector, OpenAI logs), `--map`, a default version
and the timezone of naive timestamps are read by `import_formats.py`. Lines are checked one by one;
a bad line is reported with its file and line number and copied to the quarantine file
beside the store, and the rest still imports. Good lines are written in batches, one
transaction per batch: a crash loses at most the batch in flight, never half of one, and
re-running the import finishes the job because importing is idempotent (a known
request_id adds no prediction; its feedback is replaced only when it differs).

A file whose name ends in ``.gz`` is read through gzip (the format `clt feedback prune`
archives to), so an archive imports back as it is.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import zlib
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.feedback import journal
from cl_toolkit.feedback.import_formats import (
    ImportOptions,
    NaiveTimestamp,
    RowCounts,
    to_feedback_row,
)
from cl_toolkit.feedback.quarantine import Quarantine
from cl_toolkit.feedback.records import RecordError, now_timestamp, records_from_import_row
from cl_toolkit.feedback.redact import redact
from cl_toolkit.feedback.store import FeedbackStore
from cl_toolkit.feedback.tables import file_format, read_table

BATCH_SIZE = 20_000
MAX_LINE_BYTES = 1 << 20
QUARANTINE_KEEP_BYTES = 4096  # of a huge line, only its start is copied
# A JSONL file this large is parsed and checked by worker processes, a batch each, while this
# process writes the batches in order: parsing is the importer's own cost (the store's insert
# is the driver's), and it is the part that spreads over cores.
PARALLEL_MIN_BYTES = 8 << 20
WORKERS_ENV = "CLT_IMPORT_WORKERS"  # how many parsing processes (1: none); default min(4, cores)
MAX_PROBLEMS_KEPT = 1000  # in the summary; `rejected` counts them all


@dataclass
class ImportSummary:
    """What an import did, counted over every file."""

    files: int = 0
    lines: int = 0
    blank: int = 0
    predictions_added: int = 0
    predictions_existing: int = 0
    feedback_added: int = 0
    feedback_updated: int = 0
    feedback_unchanged: int = 0
    rejected: int = 0
    quarantined: int = 0  # rejected lines newly copied (a line already there is not copied again)
    quarantine: str | None = None
    redacted: dict = field(default_factory=dict)  # kind -> placeholders, with redact=True
    shapes: dict = field(default_factory=dict)  # feedback | guide | openai -> rows stored
    timezone: str | None = None  # the --timezone naive timestamps were read in
    localized: int = 0  # rows stored whose naive timestamp was read in `timezone`
    model_version_default: str | None = None
    defaulted_version: int = 0  # rows stored with the default version
    versions: dict = field(default_factory=dict)  # model_version -> rows stored
    unknown_versions: dict | None = None  # those the registry does not know; None: not checked
    journal: journal.ReplaySummary | None = None  # what the journal replay did, if it ran
    problems: list[Problem] = field(default_factory=list)
    _quarantine: Quarantine | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        """JSON-ready, problems as strings."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        d["problems"] = [str(p) for p in self.problems]
        d["journal"] = self.journal.as_dict() if self.journal else None
        return d


@dataclass
class _Batch:
    predictions: list[tuple] = field(default_factory=list)
    feedback: list[tuple] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    lines: int = 0
    blank: int = 0
    counts: RowCounts = field(default_factory=RowCounts)
    versions: dict = field(default_factory=dict)


def _skip_rest_of_line(f) -> int:
    skipped = 0
    while rest := f.readline(1 << 20):
        if rest.endswith(b"\n"):
            return skipped + len(rest) - 1
        skipped += len(rest)
    return skipped


def _read_lines(f, limit: int) -> Iterator[tuple[int, bytes, int]]:
    """(line number, bytes, size without the newline); a line over `limit` bytes comes
    back cut short, with its full size, and is never held in memory whole."""
    number = 0
    while raw := f.readline(limit + 1):
        number += 1
        size = len(raw) - raw.endswith(b"\n")
        if size > limit:
            size += _skip_rest_of_line(f)
        yield number, raw, size


def _parse(raw: bytes, size: int, limit: int, now: str, opts: ImportOptions,
           counts: RowCounts) -> tuple[tuple, tuple | None] | None:
    """One line -> (prediction, feedback), None for a blank line; RecordError if bad."""
    if size > limit:
        raise RecordError(f"line of {size:,} bytes is over the {limit:,}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(f"not UTF-8: byte 0x{raw[e.start]:02x} at byte {e.start + 1}") from None
    text = text.lstrip("\ufeff")
    if not text or text.isspace():
        return None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"not valid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise RecordError("not valid JSON: nested too deeply") from None
    if "\\ud" in text or "\\uD" in text:  # an escaped lone surrogate cannot be stored
        try:
            json.dumps(row, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise RecordError("contains an unpaired UTF-16 surrogate escape") from None
    return records_from_import_row(to_feedback_row(row, opts, counts), now)


def _reject(batch: _Batch, path: Path, number: int, raw: bytes, size: int, err: RecordError):
    kept = raw[:QUARANTINE_KEEP_BYTES].rstrip(b"\r\n")
    batch.rejects.append({
        "file": str(path), "line": number, "error": str(err), "key": err.key, "bytes": size,
        "truncated": size > QUARANTINE_KEEP_BYTES,
        # surrogateescape + ASCII JSON keep even non-UTF-8 bytes recoverable
        "raw": kept.decode("utf-8", "surrogateescape"),
    })


def _commit(store: FeedbackStore, batch: _Batch, summary: ImportSummary, now: str) -> None:
    with store.transaction():
        added = store.insert_predictions(batch.predictions)
        fb_added, fb_updated = store.upsert_feedback(batch.feedback)
    summary.lines += batch.lines
    summary.blank += batch.blank
    summary.predictions_added += added
    summary.predictions_existing += len(batch.predictions) - added
    summary.feedback_added += fb_added
    summary.feedback_updated += fb_updated
    summary.feedback_unchanged += len(batch.feedback) - fb_added - fb_updated
    for shape, n in batch.counts.shapes.items():
        summary.shapes[shape] = summary.shapes.get(shape, 0) + n
    summary.localized += batch.counts.localized
    summary.defaulted_version += batch.counts.defaulted_version
    for version, n in batch.versions.items():
        summary.versions[version] = summary.versions.get(version, 0) + n
    if batch.rejects:
        if summary._quarantine is None:
            summary._quarantine = Quarantine(store.quarantine_path)
        rejects = batch.rejects
        if store.redact:  # raw PII must not reach the quarantine beside the store either
            rejects = [{**r, "raw": redact(r["raw"], store.redactions)} for r in rejects]
        summary.quarantined += summary._quarantine.add(rejects, now)
        summary.rejected += len(batch.rejects)
        summary.quarantine = str(store.quarantine_path)
        room = MAX_PROBLEMS_KEPT - len(summary.problems)  # the quarantine file has them all
        summary.problems += [Problem(file=r["file"], line=r["line"], key=r["key"],
                                     message=r["error"]) for r in batch.rejects[:room]]


def import_file(store: FeedbackStore, path: Path, summary: ImportSummary, *, now: str,
                batch_size: int = BATCH_SIZE, max_line_bytes: int = MAX_LINE_BYTES,
                progress: Callable[[ImportSummary], None] | None = None,
                options: ImportOptions | None = None) -> None:
    """Import one JSONL, CSV or Parquet file into the store, adding its counts to `summary`.
    A naive timestamp without `options.timezone` stops the file (BadInput): the batches
    before it are stored, the one in flight is not."""
    opts = options or ImportOptions()
    workers = import_workers(path)
    if workers > 1:
        _import_parallel(store, path, summary, now=now, batch_size=batch_size, limit=max_line_bytes,
                         progress=progress, opts=opts, workers=workers)
        summary.files += 1
        return
    batch = _Batch()
    stored = 0
    try:
        for number, take in _lines(path, max_line_bytes, now, opts):
            take(batch, number)
            if batch.lines >= batch_size:
                _commit(store, batch, summary, now)
                stored, batch = number, _Batch()
                if progress:
                    progress(summary)
    except GZIP_ERRORS as e:
        # the whole batches before the damage are stored; importing again is a no-op for them
        raise _unreadable_gzip(path, e) from None
    except _Naive as e:
        raise _naive_stop(path, e.number, str(e.err), e.err.key, stored) from None
    _commit(store, batch, summary, now)
    summary.files += 1


GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def _unreadable_gzip(path: Path, e: Exception) -> BadInput:
    return BadInput([Problem(file=str(path), message=f"not a readable gzip file ({e})")])


def _naive_stop(path: Path, line: int, message: str, key: str | None, stored: int) -> BadInput:
    """A naive timestamp stops the file: what was stored before it, said with the error."""
    kept = f"lines 1-{stored} are stored" if stored else "nothing from this file was stored"
    return BadInput([Problem(file=str(path), line=line, key=key, message=f"{message}; {kept}")])


def import_workers(path: Path) -> int:
    """The parsing processes for `path`: $CLT_IMPORT_WORKERS (default min(4, cores)) for a
    JSONL file of PARALLEL_MIN_BYTES or more, else 1 (no process is started)."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    try:
        wanted = int(raw) if raw else min(4, os.cpu_count() or 1)
    except ValueError:
        raise BadInput(f"${WORKERS_ENV} must be a whole number of processes, got {raw!r}") from None
    if wanted <= 1 or file_format(path) != "jsonl":
        return 1
    try:
        return wanted if path.stat().st_size >= PARALLEL_MIN_BYTES else 1
    except OSError:
        return 1  # opening it says what is wrong


def _line_batches(path: Path, limit: int, batch_size: int) -> Iterator[list[tuple[int, bytes, int]]]:
    with _open(path) as f:
        chunk = []
        for line in _read_lines(f, limit):
            chunk.append(line)
            if len(chunk) >= batch_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _parse_batch(job) -> tuple[_Batch, tuple | None]:
    """In a worker: one batch of lines, as _take adds them; a naive timestamp ends it,
    (line, message, key) beside the batch so far."""
    path, lines, limit, now, opts = job
    batch = _Batch()
    for number, raw, size in lines:
        try:
            _take(batch, path, number, raw, size, limit, now, opts)
        except _Naive as e:
            return batch, (e.number, str(e.err), e.err.key)
    return batch, None


def _import_parallel(store: FeedbackStore, path: Path, summary: ImportSummary, *, now: str, batch_size: int,
                     limit: int, progress, opts: ImportOptions, workers: int) -> None:
    """import_file's JSONL loop with the parsing in `workers` processes: at most two batches
    a worker in flight (the file is never read whole), committed in file order, so what is
    stored, counted and reported is exactly what the loop in this process would give."""
    stored = 0
    batches = _line_batches(path, limit, batch_size)
    # fork: a worker needs nothing but this module's functions, and starts in milliseconds
    # without importing the caller's __main__ again (spawn would); elsewhere, spawn
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        pending: deque = deque()

        def submit() -> None:
            chunk = next(batches, None)
            if chunk is not None:
                pending.append((chunk[-1][0], pool.apply_async(_parse_batch, ((path, chunk, limit, now, opts),))))

        try:
            for _ in range(2 * workers):
                submit()
            while pending:
                last, result = pending.popleft()
                batch, naive = result.get()
                if naive is not None:
                    raise _naive_stop(path, *naive, stored)
                submit()
                _commit(store, batch, summary, now)
                stored = last
                if progress:
                    progress(summary)
        except GZIP_ERRORS as e:
            raise _unreadable_gzip(path, e) from None


class _Naive(Exception):
    def __init__(self, number: int, err: NaiveTimestamp):
        super().__init__(str(err))
        self.number, self.err = number, err


def _lines(path: Path, limit: int, now: str, opts: ImportOptions):
    """(line or row number, a function adding it to a batch) for each line or row of a file."""
    if file_format(path) != "jsonl":
        for number, cells in read_table(path):
            yield number, lambda batch, n, cells=cells: _take_row(batch, path, n, cells, now, opts)
        return
    with _open(path) as f:
        for number, raw, size in _read_lines(f, limit):
            yield number, lambda batch, n, raw=raw, size=size: _take(
                batch, path, n, raw, size, limit, now, opts)


def _open(path: Path):
    """The file as bytes: decompressed when its name ends in .gz."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _take(batch: _Batch, path: Path, number: int, raw: bytes, size: int, limit: int,
          now: str, opts: ImportOptions) -> None:
    """Add one line to the batch: as rows, as a reject, or counted blank."""
    batch.lines += 1
    try:
        parsed = _parse(raw, size, limit, now, opts, batch.counts)
    except NaiveTimestamp as err:
        raise _Naive(number, err) from None
    except RecordError as err:
        _reject(batch, path, number, raw, size, err)
        return
    if parsed is None:
        batch.blank += 1
        return
    _add(batch, parsed)


def _add(batch: _Batch, parsed: tuple[tuple, tuple | None]) -> None:
    batch.predictions.append(parsed[0])
    batch.versions[parsed[0][4]] = batch.versions.get(parsed[0][4], 0) + 1
    if parsed[1] is not None:
        batch.feedback.append(parsed[1])


def _take_row(batch: _Batch, path: Path, number: int, cells: dict, now: str,
              opts: ImportOptions) -> None:
    """Add one CSV or Parquet row to the batch, as rows or as a reject."""
    batch.lines += 1
    try:
        _add(batch, records_from_import_row(to_feedback_row(cells, opts, batch.counts, table=True), now))
    except NaiveTimestamp as err:
        raise _Naive(number, err) from None
    except RecordError as err:
        raw = json.dumps(cells, ensure_ascii=False, default=str).encode("utf-8", "surrogateescape")
        _reject(batch, path, number, raw, len(raw), err)


def import_files(store: FeedbackStore, paths: Iterable[str | Path], *,
                 batch_size: int = BATCH_SIZE, max_line_bytes: int = MAX_LINE_BYTES,
                 now: str | None = None, replay_journal: bool = True,
                 progress: Callable[[ImportSummary], None] | None = None,
                 options: ImportOptions | None = None,
                 known_versions: Collection[str] | None = None) -> ImportSummary:
    """Replay the serve writer's journal (unless `replay_journal` is False), then import
    JSONL, CSV and Parquet files read with `options`; rows without a timestamp get `now`
    (default: the import time). Open the store with redact=True to redact PII before it is
    stored. With `known_versions` (the registry's), the versions not among them are
    reported in `unknown_versions`."""
    options = options or ImportOptions()
    summary = ImportSummary(timezone=options.timezone, model_version_default=options.model_version)
    now = now or now_timestamp()
    if replay_journal and journal.pending(store.journal_path):
        summary.journal = journal.replay(store, now=now)
    for path in paths:
        import_file(store, Path(path), summary, now=now, batch_size=batch_size,
                    max_line_bytes=max_line_bytes, progress=progress, options=options)
    if known_versions is not None:
        known = set(known_versions)
        summary.unknown_versions = {v: n for v, n in sorted(summary.versions.items()) if v not in known}
    if store.redact:
        summary.redacted = dict(sorted(store.redactions.items()))
    return summary
