"""Nothing is lost when the store is busy: another process holds SQLite's write lock
(BEGIN EXCLUSIVE, a real subprocess) while the serve writer takes predictions and feedback;
the writer retries, then journals beside the store (0600), and replays the journal once
the lock is gone, or at its next start. Journal replay is idempotent and survives a torn
last line and a SIGKILL mid-append."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cl_toolkit.feedback import journal
from cl_toolkit.feedback.records import check_feedback, check_prediction
from cl_toolkit.feedback.store import open_store
from cl_toolkit.serve.writer import JOURNALED, Prediction, StoreWriter, UnknownRequest

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 60  # the longest any poll below waits
FAST = {"give_up_s": 0.5, "attempt_timeout_s": 0.1}

# holds the write lock until a line arrives on stdin (or `limit` seconds, a fail-safe)
LOCKER = """
import select, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("CREATE TABLE IF NOT EXISTS lock_holder (x)")
print("locked", flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", flush=True)
"""


class Locker:
    """Another process holding the store's write lock."""

    def __init__(self, db: Path, limit_s: float = 300):
        self.proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(limit_s)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline().strip() == "released"
        self.proc.wait(timeout=WAIT_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.delenv("CLT_REDACT_AT_INGEST", raising=False)
    old = os.umask(0o022)
    yield tmp_path / "ws"
    os.umask(old)


@pytest.fixture
def locker_factory():
    made = []

    def make(db: Path, limit_s: float = 300) -> Locker:
        made.append(Locker(db, limit_s))
        return made[-1]

    yield make
    for locker in made:
        locker.kill()


def prediction(i: int, **kw) -> Prediction:
    return Prediction(kw.pop("request_id", f"req-{i}"), kw.pop("input", f"question {i}"),
                      kw.pop("output", f"answer {i}"), "1.0.0", 1_750_000_000.0 + i, 12.5,
                      "hose", kw.pop("metadata", {"arm": "champion"}))


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def rows(ws: Path) -> tuple[list, list]:
    """Every prediction and feedback row, raw from SQLite."""
    conn = sqlite3.connect(ws / "feedback.db")
    try:
        return (conn.execute("SELECT * FROM predictions ORDER BY request_id").fetchall(),
                conn.execute("SELECT * FROM feedback ORDER BY request_id, source").fetchall())
    finally:
        conn.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_locked_store_loses_nothing_the_journal_holds_it_until_the_lock_goes(ws, locker_factory):
    writer = StoreWriter(ws, **FAST).start()
    writer.log(prediction(0))
    assert writer.feedback("req-0", rating=5) == "added"  # the store works: written directly
    locker = locker_factory(ws / "feedback.db")
    for i in range(1, 51):
        writer.log(prediction(i))
    # feedback on a stored answer and on a journaled one: both journaled, neither lost
    assert writer.feedback("req-0", rating=2, correction="better") == JOURNALED
    assert writer.feedback("req-7", thumbs=1) == JOURNALED
    with pytest.raises(UnknownRequest):  # still a 404 while journaling
        writer.feedback("never-answered", rating=3)
    assert writer.journaling and writer.stats.journaled == 52
    path = ws / "feedback.journal.jsonl"
    assert mode(path) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["row"]["request_id"] for e in lines if e["kind"] == "prediction"] == \
        [f"req-{i}" for i in range(1, 51)]
    assert len(rows(ws)[0]) == 1  # the lock held: only the row written before it
    locker.release()
    wait_for(lambda: not writer.journaling, "the writer to replay its journal")
    stats = writer.close()
    predictions, feedback = rows(ws)
    assert [r[0] for r in predictions] == sorted(f"req-{i}" for i in range(51))
    assert [(r[0], r[2], r[3], r[4]) for r in feedback] == [("req-0", 2, None, "better"),
                                                            ("req-7", None, 1, None)]
    assert (stats.failed, stats.written, stats.journaled, stats.replayed) == (0, 1, 52, 52)
    assert not path.exists() and journal.claimed_journals(path) == []


def test_a_journal_left_at_shutdown_is_replayed_at_the_next_start(ws, locker_factory):
    StoreWriter(ws).start().close()  # the store exists
    locker = locker_factory(ws / "feedback.db")
    writer = StoreWriter(ws, **FAST).start()
    for i in range(20):
        writer.log(prediction(i))
    stats = writer.close()  # the lock is still held: the rows stay in the journal
    assert (stats.journaled, stats.failed) == (20, 0)
    assert len(rows(ws)[0]) == 0 and (ws / "feedback.journal.jsonl").exists()
    locker.release()
    writer = StoreWriter(ws, **FAST).start()
    writer.log(prediction(99))
    stats = writer.close()
    assert stats.replayed == 20 and stats.written == 1
    assert len(rows(ws)[0]) == 21 and not (ws / "feedback.journal.jsonl").exists()


def test_the_writer_redacts_at_ingest_in_the_store_and_in_the_journal(ws, locker_factory, monkeypatch):
    monkeypatch.setenv("CLT_REDACT_AT_INGEST", "1")
    pii = {"input": "mail me at maria@example.gr", "output": "call +30 210 123 4567",
           "metadata": {"messages": [{"role": "user", "content": "maria@example.gr"}]}}
    writer = StoreWriter(ws, **FAST).start()
    writer.log(prediction(0, **pii))
    writer.close()
    locker = locker_factory(ws / "feedback.db")
    writer = StoreWriter(ws, **FAST).start()
    writer.log(prediction(1, **pii))
    assert writer.feedback("req-0", correction="write to maria@example.gr") == JOURNALED
    journal_text = (ws / "feedback.journal.jsonl").read_text()
    locker.release()
    writer.close()
    predictions, feedback = rows(ws)
    dump = repr(predictions) + repr(feedback) + journal_text
    assert "maria@example.gr" not in dump and "123 4567" not in dump
    assert dump.count("[EMAIL]") == 2 * 2 + 1 + 3  # 2 rows x (input, messages), correction, journal
    assert all("[PHONE]" in r[3] for r in predictions)


def test_without_the_setting_nothing_is_redacted(ws):
    writer = StoreWriter(ws).start()
    writer.log(prediction(0, input="maria@example.gr"))
    writer.close()
    assert rows(ws)[0][0][2] == "maria@example.gr"


# --- the journal itself ------------------------------------------------------------------
def entries(n: int, start: int = 0) -> list[str]:
    out = []
    for i in range(start, start + n):
        out.append(journal.entry_line("prediction", check_prediction(
            f"j-{i}", f"q{i}", f"a{i}", "1.0.0", timestamp=1_750_000_000 + i, metadata={"k": i})))
        if i % 5 == 0:
            out.append(journal.entry_line("feedback", check_feedback(
                f"j-{i}", rating=4, timestamp=1_750_000_100 + i)))
    return out


def test_replaying_a_journal_twice_changes_nothing(ws):
    store = open_store(ws)
    lines = entries(30)
    journal.append(store.journal_path, lines)
    first = journal.replay(store)
    assert (first.predictions_added, first.feedback_added, first.skipped) == (30, 6, 0)
    before = rows(ws)
    journal.append(store.journal_path, lines)  # the same journal again (a crash before its delete)
    second = journal.replay(store)
    assert (second.predictions_added, second.predictions_existing, second.feedback_added,
            second.feedback_updated, second.feedback_unchanged) == (0, 30, 0, 0, 6)
    assert rows(ws) == before
    store.close()


def test_replay_does_not_undo_newer_feedback(ws):
    store = open_store(ws)
    journal.append(store.journal_path, entries(1))  # j-0 rated 4, journaled earlier
    store.log_prediction("j-0", "q0", "a0", "1.0.0", timestamp=1_750_000_000)
    store.add_feedback("j-0", rating=1, timestamp=1_760_000_000)  # newer, stored directly
    s = journal.replay(store)
    assert s.feedback_unchanged == 1 and store.get_feedback("j-0")[0]["rating"] == 1
    store.close()


def test_a_torn_last_line_is_skipped_reported_and_quarantined(ws):
    store = open_store(ws)
    lines = entries(10)
    journal.append(store.journal_path, lines)
    torn = lines[3][: len(lines[3]) // 2]
    with open(store.journal_path, "a") as f:
        f.write(torn)  # a crash mid-append
    journal.append(store.journal_path, entries(1, start=50))  # the next append starts a new line
    s = journal.replay(store)
    assert (s.predictions_added, s.skipped) == (11, 1)
    (problem,) = s.problems
    assert problem.line == len(lines) + 1 and "torn" in problem.message
    q = [json.loads(x) for x in store.quarantine_path.read_text().splitlines()]
    assert [e["raw"] for e in q] == [torn]
    assert mode(store.quarantine_path) == 0o600
    store.close()


def test_feedback_on_a_request_never_stored_is_quarantined_not_fatal(ws):
    store = open_store(ws)
    journal.append(store.journal_path, [journal.entry_line("feedback", check_feedback("ghost", rating=2)),
                                        *entries(1)])
    s = journal.replay(store)
    assert (s.orphaned, s.predictions_added, s.feedback_added) == (1, 1, 1)
    assert "ghost" in store.quarantine_path.read_text()
    store.close()


APPENDER = """
import sys
from cl_toolkit.feedback import journal
from cl_toolkit.feedback.records import check_prediction
path = sys.argv[1]
for i in range(1_000_000):
    row = check_prediction(f"k-{i}", "q" * 20000, "a", "1.0.0", timestamp=1_750_000_000)
    journal.append(journal.Path(path), [journal.entry_line("prediction", row)])
    if i == 20:
        print("going", flush=True)
"""


def test_sigkill_mid_append_does_not_break_replay(ws):
    store = open_store(ws)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(store.journal_path)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "going"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=WAIT_S)
    data = store.journal_path.read_bytes()
    complete = data.count(b"\n")
    s = journal.replay(store)
    assert complete > 20
    assert s.predictions_added == complete and s.skipped == (0 if data.endswith(b"\n") else 1)
    assert store.count("predictions") == complete
    store.close()


@pytest.mark.slow
def test_a_store_locked_for_150_s_with_default_timeouts_loses_none_of_50_requests(ws, locker_factory):
    writer = StoreWriter(ws).start()  # the defaults: nothing configured short
    locker = locker_factory(ws / "feedback.db")
    t0 = time.monotonic()
    for i in range(50):  # spread over the first part of the lock
        writer.log(prediction(i))
        time.sleep(1.0)
    assert writer.feedback("req-3", rating=4) == JOURNALED
    wait_for(lambda: writer.journaling, "the writer to journal")
    while time.monotonic() - t0 < 150:
        time.sleep(0.5)
    assert len(rows(ws)[0]) == 0  # the lock held for the whole 150 s
    locker.release()
    stats = writer.close()
    predictions, feedback = rows(ws)
    assert len(predictions) == 50 and [(r[0], r[2]) for r in feedback] == [("req-3", 4)]
    assert stats.failed == 0 and not (ws / "feedback.journal.jsonl").exists()


def test_the_journal_example_in_the_docs_replays(ws):
    text = (REPO / "docs" / "formats.md").read_text(encoding="utf-8")
    section = text[text.index("**`feedback.journal.jsonl`**"):text.index("**Redaction at ingest**")]
    (line,) = [b for b in section.split("```json\n")[1:]]
    store = open_store(ws)
    journal.append(store.journal_path, [line.split("```")[0].strip() + "\n"])
    s = journal.replay(store)
    assert (s.predictions_added, s.skipped) == (1, 0)
    assert store.get_prediction("req-000124")["latency_ms"] == 180.0
    store.close()
