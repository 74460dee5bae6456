"""`clt feedback import`: idempotency, timestamps, bad lines, quarantine, crash safety."""

from __future__ import annotations

import json

import pytest
from feedback_helpers import fws_fixture, row, run_main, store_fixture, write_jsonl  # noqa: F401 (fixtures)

from cl_toolkit.feedback import importer
from cl_toolkit.feedback.importer import import_files


def test_import_then_reimport_adds_nothing(store, tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [row(f"r{i}", rating=4) for i in range(50)])
    first = import_files(store, [path])
    assert (first.predictions_added, first.feedback_added, first.rejected) == (50, 50, 0)
    before = store.conn.execute("SELECT * FROM feedback ORDER BY request_id").fetchall()
    again = import_files(store, [path])
    assert (again.predictions_added, again.predictions_existing) == (0, 50)
    assert (again.feedback_added, again.feedback_updated, again.feedback_unchanged) == (0, 0, 50)
    assert store.conn.execute("SELECT * FROM feedback ORDER BY request_id").fetchall() == before


def test_a_known_request_id_gets_its_feedback_updated(store, tmp_path):
    import_files(store, [write_jsonl(tmp_path / "a.jsonl", [row("r1", rating=5), row("r2")])])
    later = write_jsonl(tmp_path / "b.jsonl", [
        row("r1", output="changed?", rating=1, correction="the right answer"),
        row("r2", thumbs=-1)])
    s = import_files(store, [later])
    assert (s.predictions_added, s.feedback_added, s.feedback_updated) == (0, 1, 1)
    assert store.get_prediction("r1")["output"] == "1.75 in"  # predictions are immutable
    fb = store.get_feedback("r1")[0]
    assert (fb["rating"], fb["correction"], fb["source"]) == (1, "the right answer", "user")
    assert store.get_feedback("r2")[0]["thumbs"] == -1


def test_missing_timestamp_means_import_time(store, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [row("r1", timestamp=None, rating=4)])
    import_files(store, [path], now="2025-06-30T08:00:00.000Z")
    assert store.get_prediction("r1")["timestamp"] == "2025-06-30T08:00:00.000Z"
    assert store.get_feedback("r1")[0]["timestamp"] == "2025-06-30T08:00:00.000Z"
    import_files(store, [path], now="2025-07-01T08:00:00.000Z")  # idempotent: time kept
    assert store.get_prediction("r1")["timestamp"] == "2025-06-30T08:00:00.000Z"


def test_metadata_columns_and_extra_keys(store, tmp_path):
    r = row("r1", quality_score=0.8, session="s-9")  # unknown top-level keys are kept
    r["metadata"]["shift"] = "night"
    r["confidence"] = 0.3  # a column field at the top level wins over metadata's 0.9
    import_files(store, [write_jsonl(tmp_path / "a.jsonl", [r])])
    p = store.get_prediction("r1")
    assert (p["domain"], p["confidence"], p["latency_ms"], p["quality_score"]) == ("hose", 0.3, 120, 0.8)
    assert json.loads(p["metadata"]) == {"shift": "night", "session": "s-9"}


BAD_LINES = [
    (b'{"request_id": "x1", "input": "q"', "not valid JSON"),
    (b'{"request_id": "x2", "input": "caf\xe9", "output": "a", "model_version": "1"}', "not UTF-8"),
    (json.dumps({"request_id": "x3", "input": "q", "model_version": "1"}).encode(), "[output]"),
    (json.dumps(row("x4", rating=7)).encode(), "[user_feedback.rating]"),
    (json.dumps(row("x5", thumbs=2)).encode(), "[user_feedback.thumbs]"),
    (json.dumps(row("x6", confidence=3)).encode(), "[confidence]"),
    (json.dumps(row("x7", timestamp="last tuesday")).encode(), "[timestamp]"),
    (b"[1, 2, 3]", "must be a JSON object"),
    (b'{"request_id": "x9", "input": "\\ud800", "output": "a", "model_version": "1"}', "surrogate"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
]


def test_bad_lines_are_reported_quarantined_and_the_rest_imports(store, tmp_path):
    good = [json.dumps(row(f"ok{i}", rating=5)).encode() for i in range(3)]
    lines = [good[0], *[b for b, _ in BAD_LINES], b"   ", good[1], good[2]]
    path = write_jsonl(tmp_path / "mixed.jsonl", lines)
    s = import_files(store, [path])
    assert (s.lines, s.blank, s.rejected, s.predictions_added) == (len(lines), 1, len(BAD_LINES), 3)
    for problem, (_, expected), line in zip(s.problems, BAD_LINES, range(2, 99), strict=False):
        assert (problem.file, problem.line) == (str(path), line)
        assert expected in str(problem)
    quarantined = [json.loads(q) for q in store.quarantine_path.read_text().splitlines()]
    assert store.quarantine_path.parent == store.path.parent
    assert [q["line"] for q in quarantined] == list(range(2, 2 + len(BAD_LINES)))
    # the exact bytes come back, even the ones that are not UTF-8
    assert quarantined[1]["raw"].encode("utf-8", "surrogateescape") == BAD_LINES[1][0]


def test_a_huge_line_is_rejected_without_reading_it_whole(store, tmp_path):
    huge = json.dumps(row("big", input="x" * 5000)).encode()
    path = write_jsonl(tmp_path / "big.jsonl", [huge, json.dumps(row("small")).encode()])
    s = import_files(store, [path], max_line_bytes=1000)
    assert (s.rejected, s.predictions_added) == (1, 1)
    assert "over the 1,000-byte limit" in str(s.problems[0]) and s.problems[0].line == 1
    q = json.loads(store.quarantine_path.read_text())
    assert q["bytes"] == len(huge) and q["truncated"] and len(q["raw"]) <= importer.QUARANTINE_KEEP_BYTES


def test_a_byte_order_mark_and_crlf_line_endings_are_fine(store, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(row("r1")).encode() + b"\r\n"
                     + json.dumps(row("r2")).encode() + b"\r\n")
    assert import_files(store, [path]).predictions_added == 2


def test_a_crash_mid_batch_leaves_only_whole_batches(store, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "a.jsonl", [row(f"r{i:03d}", rating=4) for i in range(25)])
    real, calls = store.upsert_feedback, []

    def crash_on_third_batch(rows):
        calls.append(len(rows))
        if len(calls) == 3:
            raise OSError("disk on fire")
        return real(rows)

    monkeypatch.setattr(store, "upsert_feedback", crash_on_third_batch)
    with pytest.raises(OSError):
        import_files(store, [path], batch_size=10)
    # the third batch's predictions were inserted before the crash, and rolled back with it
    assert (store.count("predictions"), store.count("feedback")) == (20, 20)
    monkeypatch.undo()
    s = import_files(store, [path], batch_size=10)  # re-running finishes the job
    assert (s.predictions_added, s.predictions_existing) == (5, 20)
    assert store.count("feedback") == 25


def test_cli_import_exit_codes_and_summary(fws, tmp_path, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", [row("r1", rating=5), row("r2")])
    code, out, err = run_main(["feedback", "import", str(good), "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["predictions_added"] == 2 and summary["feedback_added"] == 1
    bad = write_jsonl(tmp_path / "bad.jsonl", [row("r3"), b"{oops", row("r4", rating=9)])
    code, out, err = run_main(["feedback", "import", str(bad)], capsys)
    assert code == 2
    assert "predictions: 1 added" in out and "rejected 2" in out
    assert f"{bad}:2:" in err and f"{bad}:3: [user_feedback.rating]" in err
    assert "Traceback" not in err


def test_cli_import_of_a_missing_file_is_bad_input(fws, tmp_path, capsys):
    code, _, err = run_main(["feedback", "import", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 2 and "does not exist" in err


def test_a_file_of_only_bad_lines_is_batched_too(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(importer, "MAX_PROBLEMS_KEPT", 30)
    path = write_jsonl(tmp_path / "junk.jsonl", [b"{nope"] * 95)
    s = import_files(store, [path], batch_size=10)
    assert (s.rejected, len(s.problems), s.predictions_added) == (95, 30, 0)
    assert len(store.quarantine_path.read_text().splitlines()) == 95
    code, _, err = run_main(["feedback", "import", str(path)], capsys)
    assert code == 2 and "... and 75 more rejected lines" in err


def _store_rows(store) -> tuple[list, list]:
    return (store.conn.execute("SELECT * FROM predictions ORDER BY request_id").fetchall(),
            store.conn.execute("SELECT request_id, source, rating, thumbs, correction, notes, timestamp "
                               "FROM feedback ORDER BY request_id, source").fetchall())


def _mixed_log(tmp_path, n: int = 3000):
    """n good lines with bad lines and blanks among them, some rows twice."""
    lines = []
    for i in range(n):
        lines.append(json.dumps(row(f"r{i}", rating=1 + i % 5, domain=f"d{i % 7}")).encode())
        if i % 251 == 0:
            lines.append(BAD_LINES[(i // 251) % len(BAD_LINES)][0])
        if i % 397 == 0:
            lines += [b"", json.dumps(row(f"r{i // 2}", rating=5)).encode()]
    return write_jsonl(tmp_path / "mixed.jsonl", lines)


def test_a_large_file_parsed_in_worker_processes_imports_exactly_as_in_one(tmp_path, monkeypatch):
    """Over PARALLEL_MIN_BYTES the lines are parsed by worker processes, a batch each, and
    committed in file order: the store, the counts, the problems and the quarantine are
    exactly those of the one-process import."""
    from cl_toolkit.feedback.store import FeedbackStore

    path = _mixed_log(tmp_path)
    monkeypatch.setattr(importer, "PARALLEL_MIN_BYTES", 0)
    results = {}
    for workers in ("1", "2"):
        monkeypatch.setenv(importer.WORKERS_ENV, workers)
        assert importer.import_workers(path) == int(workers)
        with FeedbackStore(tmp_path / f"w{workers}" / "feedback.db", workspace=tmp_path / f"w{workers}") as store:
            s = import_files(store, [path], batch_size=400, now="2026-01-01T00:00:00.000Z")
            quarantined = [{k: v for k, v in json.loads(q).items() if k not in ("file", "quarantined_at")}
                           for q in store.quarantine_path.read_text().splitlines()]
            results[workers] = (_store_rows(store), quarantined,
                                (s.lines, s.blank, s.rejected, s.predictions_added, s.predictions_existing,
                                 s.feedback_added, s.feedback_updated, s.versions, s.shapes),
                                [(p.line, p.key, p.message) for p in s.problems])
    one, two = results["1"], results["2"]
    assert one[2][2] > 0 and one[2][1] > 0 and one[2][4] > 0  # rejects, blanks and repeats were there
    assert two == one


def test_a_naive_timestamp_stops_a_parallel_import_after_the_whole_batches_before_it(store, tmp_path, monkeypatch):
    lines = [json.dumps(row(f"r{i}")).encode() for i in range(1000)]
    lines[730] = json.dumps(row("naive", timestamp="2025-04-01T12:00:00")).encode()
    path = write_jsonl(tmp_path / "naive.jsonl", lines)
    monkeypatch.setattr(importer, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setenv(importer.WORKERS_ENV, "2")
    with pytest.raises(importer.BadInput) as e:
        import_files(store, [path], batch_size=300)
    [problem] = e.value.problems
    assert problem.line == 731 and "lines 1-600 are stored" in problem.message and "--timezone" in problem.message
    assert store.count("predictions") == 600


def test_the_worker_count_is_checked(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "a.jsonl", [json.dumps(row("a")).encode()])
    monkeypatch.setenv(importer.WORKERS_ENV, "many")
    with pytest.raises(importer.BadInput, match="CLT_IMPORT_WORKERS must be a whole number"):
        importer.import_workers(path)
    monkeypatch.setenv(importer.WORKERS_ENV, "4")
    assert importer.import_workers(path) == 1  # a small file: no process is started
