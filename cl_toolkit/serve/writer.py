"""The background writer: the one thread that owns the feedback store while serving.

Answer threads hand predictions to a bounded queue and move on; the writer stores them in
order through the store's public API. When the store falls `maxsize` rows behind, new
predictions wait for room rather than being dropped. Feedback goes through the same
queue and its caller waits for the result, so feedback on an answer always lands after
the answer's own row. `close()` drains the queue before it returns: a clean shutdown
loses nothing.
"""

from __future__ import annotations

import queue
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from cl_toolkit.core.errors import BadInput, CltError
from cl_toolkit.feedback.store import open_store

DEFAULT_QUEUE = 10_000
FEEDBACK_TIMEOUT_S = 60


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
    failed: int = 0  # rows lost to a store error


class StoreWriter:
    """Writes predictions and feedback into the workspace's store from one thread."""

    def __init__(self, workspace: Path | None = None, maxsize: int = DEFAULT_QUEUE):
        self.workspace = workspace
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.stats = WriterStats()
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._closed = False
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
        """Store feedback after every prediction queued before it: 'added', 'updated' or
        'unchanged'. UnknownRequest or BadInput when the store refuses it."""
        if self._closed:
            raise CltError("the prediction log is closed")
        done: Future = Future()
        self.queue.put(("feedback", (request_id, fields), done))
        return done.result(timeout=FEEDBACK_TIMEOUT_S)

    @property
    def pending(self) -> int:
        return self.queue.qsize()

    def close(self) -> WriterStats:
        """Write everything queued, then close the store."""
        if not self._closed:
            self._closed = True
            self.queue.put(None)
            self._thread.join()
        return self.stats

    def _run(self) -> None:
        try:
            store = open_store(self.workspace)
        except BaseException as e:
            self._open_error = e
            self._ready.set()
            return
        self._ready.set()
        with store:
            while (item := self.queue.get()) is not None:
                kind, payload, done = item
                if kind == "prediction":
                    self._write_prediction(store, payload)
                else:
                    self._write_feedback(store, payload, done)

    def _write_prediction(self, store, p: Prediction) -> None:
        try:
            added = store.log_prediction(p.request_id, p.input, p.output, p.model_version,
                                         timestamp=p.timestamp, domain=p.domain, latency_ms=p.latency_ms,
                                         metadata=p.metadata)
        except BadInput as e:
            self.stats.rejected += 1
            print(f"clt serve: prediction {p.request_id} not logged: {e}", file=sys.stderr)
            return
        except Exception as e:  # a store error must not stop the writer: count it, say it
            self.stats.failed += 1
            print(f"clt serve: prediction {p.request_id} lost: {type(e).__name__}: {e}", file=sys.stderr)
            return
        if added:
            self.stats.written += 1
        else:
            self.stats.duplicates += 1

    @staticmethod
    def _write_feedback(store, payload, done: Future) -> None:
        request_id, fields = payload
        try:
            if not store.has_prediction(request_id):
                raise UnknownRequest(f"unknown request_id {request_id!r}")
            done.set_result(store.add_feedback(request_id, **{"source": "user", **fields}))
        except Exception as e:  # handed to the waiting request thread
            done.set_exception(e)
