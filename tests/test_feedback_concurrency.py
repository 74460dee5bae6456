"""Several processes writing at once: every row lands exactly once."""

from __future__ import annotations

import multiprocessing as mp

from feedback_helpers import row, write_jsonl

from cl_toolkit.core import dbbackend
from cl_toolkit.feedback.importer import import_files
from cl_toolkit.feedback.store import FeedbackStore

PROCESSES, ROWS = 8, 2000


def _import(db: str, path: str, barrier) -> int:
    with FeedbackStore(db) as store:  # every process opens (and maybe creates) the store itself
        barrier.wait()
        return import_files(store, [path], batch_size=500).predictions_added


def test_eight_processes_importing_2000_rows_each_leave_exactly_16000(tmp_path, store_backend, request):
    files = [write_jsonl(tmp_path / f"p{p}.jsonl",
                         [row(f"p{p}-{i:05d}", rating=1 + i % 5) for i in range(ROWS)])
             for p in range(PROCESSES)]
    files = [str(f) for f in files]
    db = str(tmp_path / "ws" / "feedback.db") if store_backend == "sqlite" else request.getfixturevalue("pg_url")
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        with ctx.Pool(PROCESSES) as pool:
            added = pool.starmap(_import, [(db, f, barrier) for f in files])
    assert added == [ROWS] * PROCESSES
    with FeedbackStore(db) as store:
        assert store.count("predictions") == PROCESSES * ROWS
        assert store.count("feedback") == PROCESSES * ROWS
        assert dbbackend.integrity(store.conn) == "ok"
        assert dbbackend.backend(store.conn) == store_backend
