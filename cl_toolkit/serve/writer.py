"""The background writer: the one thread that owns the feedback store while serving.

Answer threads hand predictions to a bounded queue and move on; the writer stores them in
order through the store's public API. When the store falls `maxsize` rows behind, new
predictions wait for room rather than being dropped (back-pressure). Feedback goes through
the same queue and its caller waits for the result, so feedback on an answer always lands
after the answer's own row. `close()` drains the queue before it returns: a clean shutdown
loses nothing.

A busy store loses nothing either. Each write waits `attempt_timeout_s` for the lock and
is retried with exponential backoff; when the store is still unavailable `give_up_s`
after the first failure, the writer switches to the journal (feedback/journal.py): this
row and every later one are appended to ``feedback.journal.jsonl`` beside the store (0600),
in order, and feedback is answered ``"journaled"``. Meanwhile it tries the store again
with backoff (up to every `PROBE_MAX_S`); once a write lock is had, the journal is replayed
and direct writes resume. A journal left by a crash is replayed when the writer starts
(and by `clt feedback import`).

PII at ingest: with ``redact=True`` (default: $CLT_REDACT_AT_INGEST) every row is redacted
before it reaches the store or the journal.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from cl_toolkit.core.dbbackend import DB_ERRORS
from cl_toolkit.core.errors import BadInput, CltError, Problem
from cl_toolkit.feedback import journal
from cl_toolkit.feedback.records import (
    RecordError,
    check_feedback,
    check_prediction,
    redact_feedback,
    redact_prediction,
)
from cl_toolkit.feedback.store import FeedbackStore, open_store, redact_at_ingest_default

DEFAULT_QUEUE = 10_000
FEEDBACK_TIMEOUT_S = 60
GIVE_UP_S = 10.0  # retrying one write this long, then the journal (well under FEEDBACK_TIMEOUT_S)
ATTEMPT_TIMEOUT_S = 1.0  # SQLite's busy timeout for one attempt
BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 2.0
PROBE_START_S = 0.5  # while journaling: first retry of the store, doubling up to PROBE_MAX_S
PROBE_MAX_S = 5.0
JOURNAL_BATCH = 1000  # queued rows journaled in one append (one fsync) while the store is away
JOURNALED = "journaled"  # what feedback() returns when the feedback went to the journal

class UnknownRequest(BadInput):
    """Feedback on a request id the store has never seen."""


@dataclass(frozen=True)
class Prediction:
    """One answered request, as log_prediction takes it."""

    request_id: str
    input: str
    output: str
    model_version: str
    timestamp: float  # epoch seconds when the request arrived
    latency_ms: float
    domain: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass
class WriterStats:
    written: int = 0
    duplicates: int = 0  # request ids already stored: the first answer is kept
    rejected: int = 0  # rows the store refused (e.g. an empty answer)
    failed: int = 0  # rows lost: neither the store nor the journal could take them
    journaled: int = 0  # rows appended to the journal while the store was unavailable
    replayed: int = 0  # journal lines replayed into the store
    retries: int = 0  # write attempts that found the store busy or unavailable


class StoreWriter:
    """Writes predictions and feedback into the workspace's store from one thread."""

    def __init__(self, workspace: Path | None = None, maxsize: int = DEFAULT_QUEUE, *,
                 give_up_s: float | None = None, attempt_timeout_s: float | None = None,
                 redact: bool | None = None):
        self.workspace = workspace
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.stats = WriterStats()
        self.give_up_s = GIVE_UP_S if give_up_s is None else give_up_s
        self.attempt_timeout_s = ATTEMPT_TIMEOUT_S if attempt_timeout_s is None else attempt_timeout_s
        self.redact = redact_at_ingest_default() if redact is None else redact
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._closed = False
        self._journaling = False
        self._journaled_ids: set[str] = set()  # predictions in the journal, for feedback's 404
        self._probe_at = 0.0
        self._probe_wait = PROBE_START_S
        self._thread = threading.Thread(target=self._run, name="clt-serve-writer", daemon=True)

    def start(self) -> StoreWriter:
        """Open the store (in the writer thread: SQLite connections stay in their thread)."""
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise self._open_error
        return self

    def log(self, prediction: Prediction) -> None:
        """Queue a prediction; waits only while the queue is full."""
        if self._closed:
            raise CltError("the prediction log is closed")
        self.queue.put(("prediction", prediction, None))

    def feedback(self, request_id: str, **fields) -> str:
        """Store feedback after every prediction queued before it: 'added', 'updated',
        'unchanged', or 'journaled' when the store stayed unavailable and the feedback was
        appended to the journal (it is stored when the journal is replayed). UnknownRequest
        or BadInput when the store refuses it."""
        if self._closed:
            raise CltError("the prediction log is closed")
        done: Future = Future()
        self.queue.put(("feedback", (request_id, fields), done))
        return done.result(timeout=FEEDBACK_TIMEOUT_S)

    @property
    def pending(self) -> int:
        return self.queue.qsize()

    @property
    def journaling(self) -> bool:
        """Whether rows go to the journal now (the store stayed unavailable)."""
        return self._journaling

    def close(self) -> WriterStats:
        """Write everything queued, then close the store."""
        if not self._closed:
            self._closed = True
            self.queue.put(None)
            self._thread.join()
        return self.stats

    # --- the writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        try:
            store = open_store(self.workspace, redact=self.redact, busy_timeout_s=self.attempt_timeout_s)
        except BaseException as e:
            self._open_error = e
            self._ready.set()
            return
        self._ready.set()
        with store:
            if journal.pending(store.journal_path):  # left by an earlier run: replay first
                self._journaling = True
                self._probe(store)
            while True:
                item = self._next()
                if item is None:
                    break
                if item == ():  # no work, time to try the store again
                    self._probe(store)
                    continue
                if self._journaling and time.monotonic() >= self._probe_at:
                    self._probe(store)
                if self._journaling:
                    if self._journal_batch(store, item):
                        break
                    continue
                kind, payload, done = item
                if kind == "prediction":
                    self._write_prediction(store, payload)
                else:
                    self._write_feedback(store, payload, done)
            if self._journaling:  # one last try, so a clean shutdown leaves no journal behind
                self._probe(store)

    def _next(self):
        """The next queued item; () when journaling and it is time to try the store again."""
        if not self._journaling:
            return self.queue.get()
        try:
            return self.queue.get(timeout=max(0.0, self._probe_at - time.monotonic()))
        except queue.Empty:
            return ()

    def _retry(self, store: FeedbackStore, write):
        """Run `write` (one transaction) until it succeeds or `give_up_s` has passed since the
        first failure; -> its result, or raises _Unavailable."""
        deadline, backoff = None, BACKOFF_START_S
        while True:
            try:
                return write()
            except (*DB_ERRORS, OSError) as e:
                self.stats.retries += 1
                _rollback(store)
                now = time.monotonic()
                deadline = deadline or now + self.give_up_s
                if now + backoff > deadline:
                    raise _Unavailable(e) from None
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _write_prediction(self, store: FeedbackStore, p: Prediction) -> None:
        def write() -> bool:
            return store.log_prediction(p.request_id, p.input, p.output, p.model_version,
                                        timestamp=p.timestamp, domain=p.domain,
                                        latency_ms=p.latency_ms, metadata=p.metadata)

        try:
            added = self._retry(store, write)
        except BadInput as e:
            self.stats.rejected += 1
            print(f"clt serve: prediction {p.request_id} not logged: {e}", file=sys.stderr)
            return
        except _Unavailable as e:
            self._start_journaling(e)
            self._journal_batch(store, ("prediction", p, None), more=False)
            return
        if added:
            self.stats.written += 1
        else:
            self.stats.duplicates += 1

    def _write_feedback(self, store: FeedbackStore, payload, done: Future) -> None:
        request_id, fields = payload

        def write() -> str:
            if not store.has_prediction(request_id):
                raise UnknownRequest(f"unknown request_id {request_id!r}")
            return store.add_feedback(request_id, **{"source": "user", **fields})  # the server says "api"

        try:
            done.set_result(self._retry(store, write))
        except _Unavailable as e:
            self._start_journaling(e)
            self._journal_batch(store, ("feedback", payload, done), more=False)
        except Exception as e:  # handed to the waiting request thread
            done.set_exception(e)

    def _start_journaling(self, cause: _Unavailable) -> None:
        self._journaling = True
        self._probe_wait = PROBE_START_S
        self._probe_at = time.monotonic() + self._probe_wait
        print(f"clt serve: the feedback store stayed unavailable for {self.give_up_s:g} s "
              f"({cause}); writing to the journal until it is back", file=sys.stderr)

    def _journal_batch(self, store: FeedbackStore, first, more: bool = True) -> bool:
        """Journal `first` and (with `more`) whatever else is queued, in one append;
        True when the end marker was taken from the queue."""
        items, end = [first], False
        while more and len(items) < JOURNAL_BATCH:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                end = True
                break
            items.append(item)
        entries = []
        for kind, payload, done in items:
            try:
                if kind == "prediction":
                    entries.append((kind, _prediction_row(payload), None))
                else:
                    request_id, fields = payload
                    row = _feedback_row(store, request_id, fields)
                    if request_id not in self._journaled_ids and not _maybe_stored(store, request_id):
                        raise UnknownRequest(f"unknown request_id {request_id!r}")
                    entries.append((kind, row, done))
            except BadInput as e:
                if done is None:
                    self.stats.rejected += 1
                    print(f"clt serve: prediction {payload.request_id} not logged: {e}", file=sys.stderr)
                else:
                    done.set_exception(e)
        self._journal(store, entries)
        return end

    def _journal(self, store: FeedbackStore, entries: list) -> None:
        """Append checked rows to the journal (redacted when the writer redacts)."""
        lines = []
        for kind, row, _ in entries:
            if self.redact:
                row = redact_prediction(row) if kind == "prediction" else redact_feedback(row)
            lines.append(journal.entry_line(kind, row))
        try:
            journal.append(store.journal_path, lines)
        except OSError as e:  # neither the store nor the journal: the rows are lost, say so
            self.stats.failed += len(entries)
            print(f"clt serve: {len(entries)} rows lost: the store is unavailable and the "
                  f"journal {store.journal_path} cannot be written ({e})", file=sys.stderr)
            for _, _, done in entries:
                if done is not None:
                    done.set_exception(CltError("the feedback store is unavailable"))
            return
        self.stats.journaled += len(entries)
        for kind, row, done in entries:
            if kind == "prediction":
                self._journaled_ids.add(row[0])
            else:
                done.set_result(JOURNALED)

    def _probe(self, store: FeedbackStore) -> None:
        """Try to replay the journal; on success direct writes resume, else back off."""
        try:
            summary = journal.replay(store)
        except (*DB_ERRORS, OSError):
            self._probe_wait = min(self._probe_wait * 2, PROBE_MAX_S)
            self._probe_at = time.monotonic() + self._probe_wait
            return
        self._journaling = False
        self._journaled_ids.clear()
        self.stats.replayed += summary.lines - summary.skipped - summary.orphaned
        if summary.lines:
            print(f"clt serve: replayed {summary.lines} journal lines into the store "
                  f"({summary.predictions_added} predictions added, {summary.skipped} torn lines "
                  f"and {summary.orphaned} orphaned feedback quarantined)", file=sys.stderr)
        for p in summary.problems[:20]:
            print(f"clt serve: {p}", file=sys.stderr)


def _rollback(store: FeedbackStore) -> None:
    """Leave no transaction open after a failed write (a failed COMMIT keeps it open)."""
    try:
        if store.conn.in_transaction:
            store.conn.execute("ROLLBACK")
    except DB_ERRORS:
        pass


class _Unavailable(Exception):
    """The store stayed unavailable for the writer's give-up time."""


def _prediction_row(p: Prediction) -> tuple:
    try:
        return check_prediction(p.request_id, p.input, p.output, p.model_version,
                                timestamp=p.timestamp, domain=p.domain, latency_ms=p.latency_ms,
                                metadata=p.metadata)
    except RecordError as e:
        raise BadInput([Problem(file="", message=str(e), key=e.key)]) from None


def _feedback_row(store: FeedbackStore, request_id: str, fields: dict) -> tuple:
    """Feedback checked as the store checks it (BadInput), before anything is written."""
    try:
        row = check_feedback(request_id, **{"source": "user", **fields})
    except RecordError as e:
        raise BadInput([Problem(file=str(store.path), message=str(e), key=e.key)]) from None
    except TypeError as e:  # a field the store does not know
        raise BadInput(str(e)) from None
    if row is None:
        raise BadInput("feedback needs a rating, thumbs, a correction or notes")
    return row


def _maybe_stored(store: FeedbackStore, request_id: str) -> bool:
    """Whether the store has the request; True when even reading fails (journal it then)."""
    try:
        return store.has_prediction(request_id)
    except DB_ERRORS:
        return True
