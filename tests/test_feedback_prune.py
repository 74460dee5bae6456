"""`clt feedback prune`: the archive holds exactly the pruned rows and importing it restores
them; nothing is deleted unless the archive reads back right. Also `import` of .jsonl.gz
and the latency percentiles of `clt feedback stats`."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from feedback_helpers import fws_fixture, run_main, store_fixture  # noqa: F401 (fixtures)

from cl_toolkit.core.errors import BadInput, CltError
from cl_toolkit.feedback import annotate, prune, review
from cl_toolkit.feedback.records import format_timestamp

NOW = datetime.now(UTC)


def _days_ago(days: float) -> str:
    return format_timestamp(NOW - timedelta(days=days))


def _fill(store) -> set[str]:
    """Old and recent predictions with feedback of every kind; returns the old ids."""
    old = set()
    for i in range(12):
        rid, age = f"r{i:02d}", 400 + i if i % 2 else 30 + i
        store.log_prediction(rid, f"question {i}, caf\u00e9 \"q\"", f"answer {i}\nline 2", "1.0.0",
                             timestamp=_days_ago(age), domain="hose" if i % 3 else None,
                             confidence=0.5 + i / 100 if i % 4 else None, latency_ms=100.0 + i,
                             quality_score=0.25 * (i % 4) if i % 5 else None,
                             metadata={"region": "eu", "shift": i} if i % 3 != 1 else None)
        if i % 2:
            old.add(rid)
        if i % 3 != 2:
            store.add_feedback(rid, rating=1 + i % 5, correction=f"fix {i}" if i % 4 == 1 else None,
                               timestamp=_days_ago(10))
        if i % 4 == 1:
            store.add_feedback(rid, thumbs=-1, notes="expert note", source="expert")
    review.save(store, "INC-1", [review.Answer("r01", 2, "went badly", "do better"),
                                 review.Answer("r02", 4)], reviewer="ana")
    with store.transaction() as conn:
        conn.executemany("INSERT INTO annotation_samples VALUES (?, 'b1', 'random', ?)",
                         [("r03", _days_ago(1)), ("r04", _days_ago(1))])
    return old


def _dump(store, where: str = "") -> tuple[list, list]:
    conn = store.conn
    return (conn.execute(f"SELECT * FROM predictions {where} ORDER BY request_id").fetchall(),
            conn.execute(f"SELECT * FROM feedback {where} ORDER BY request_id, source").fetchall())


def test_prune_round_trip(fws, store, tmp_path, capsys):
    old = _fill(store)
    old_where = f"WHERE request_id IN ({', '.join(repr(r) for r in sorted(old))})"
    before_old, before_all = _dump(store, old_where), _dump(store)
    archive = tmp_path / "arch" / "2024.jsonl.gz"
    code, out, err = run_main(["feedback", "prune", "--older-than", "365d", "--archive",
                               str(archive), "--json"], capsys)
    assert code == 0, err
    r = json.loads(out)
    assert (r["predictions"], r["feedback"]) == (6, len(before_old[1]))
    assert (r["incident_reviews"], r["annotation_samples"]) == (1, 1) and r["vacuumed"]
    # the archive holds exactly the pruned rows, in the import format
    lines = [json.loads(line) for line in gzip.open(archive, "rt", encoding="utf-8")]
    assert {line["request_id"] for line in lines} == old
    assert sum("user_feedback" in line for line in lines) == len(before_old[1])
    assert r["archive_lines"] == len(lines)
    # the store keeps only the recent rows
    assert {p[0] for p in _dump(store)[0]} == {f"r{i:02d}" for i in range(0, 12, 2)}
    assert store.count("incident_reviews") == 1 and store.count("annotation_samples") == 1
    # importing the archive restores every pruned row exactly
    code, out, _ = run_main(["feedback", "import", str(archive), "--json"], capsys)
    assert code == 0 and json.loads(out)["predictions_added"] == 6
    assert _dump(store) == before_all
    # and the archive is never overwritten
    code, _, err = run_main(["feedback", "prune", "--older-than", "1d", "--archive",
                             str(archive)], capsys)
    assert code == 2 and "exists" in err


def test_dry_run_and_nothing_to_prune(fws, store, tmp_path, capsys):
    _fill(store)
    archive = tmp_path / "a.jsonl.gz"
    code, out, _ = run_main(["feedback", "prune", "--older-than", "52w", "--archive",
                             str(archive), "--dry-run"], capsys)
    assert code == 0 and "would prune 6 predictions" in out and not archive.exists()
    r = prune.prune(store, "5000d", archive)
    assert (r["predictions"], r["archive"]) == (0, None) and not archive.exists()
    assert store.count("predictions") == 12


def test_a_bad_archive_deletes_nothing(store, tmp_path, monkeypatch):
    _fill(store)
    before = _dump(store)
    real = prune.import_row
    monkeypatch.setattr(prune, "import_row", lambda r: {**real(r), "output": "garbled"})
    archive = tmp_path / "a.jsonl.gz"
    with pytest.raises(CltError, match="line 1 does not restore the stored rows"):
        prune.prune(store, "365d", archive)
    assert _dump(store) == before and not archive.exists()


@pytest.mark.parametrize("older_than, archive, message", [
    ("a year", "a.jsonl.gz", "whole number and a unit"),
    ("365x", "a.jsonl.gz", "whole number and a unit"),
    ("365d", "a.jsonl", "name it *.jsonl.gz"),
    ("99999999d", "a.jsonl.gz", "before year 1"),
])
def test_bad_prune_options(store, tmp_path, older_than, archive, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        prune.prune(store, older_than, tmp_path / archive)


def test_cutoff():
    now = datetime(2025, 7, 1, 12, tzinfo=UTC)
    assert prune.cutoff_for("365d", now) == "2024-07-01T12:00:00.000Z"
    assert prune.cutoff_for("2w", now) == "2025-06-17T12:00:00.000Z"
    assert prune.cutoff_for("36h", now) == "2025-06-30T00:00:00.000Z"


def test_import_reads_gzip_and_reports_a_damaged_one(fws, store, tmp_path, capsys):
    path = tmp_path / "log.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"request_id": "g1", "input": "q", "output": "a",
                            "model_version": "1", "user_feedback": {"rating": 4}}) + "\n")
    code, out, _ = run_main(["feedback", "import", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["feedback_added"] == 1
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(path.read_bytes()[:-12])
    code, _, err = run_main(["feedback", "import", str(broken)], capsys)
    assert code == 2 and "not a readable gzip file" in err and "Traceback" not in err


def test_stats_latency_percentiles_per_model_version(fws, store, capsys):
    for i in range(1, 101):
        store.log_prediction(f"a{i}", "q", "a", "1.0.0", latency_ms=float(i))
    store.log_prediction("b1", "q", "a", "2.0.0", latency_ms=40)
    store.log_prediction("b2", "q", "a", "2.0.0")  # no latency: not counted
    store.log_prediction("c1", "q", "a", "3.0.0")
    code, out, _ = run_main(["feedback", "stats", "--json"], capsys)
    s = json.loads(out)
    assert s["latency_ms_by_model_version"] == {
        "1.0.0": {"count": 100, "p50": 50.5, "p95": 95.05, "p99": 99.01},
        "2.0.0": {"count": 1, "p50": 40.0, "p95": 40.0, "p99": 40.0}}
    code, out, _ = run_main(["feedback", "stats"], capsys)
    assert "1.0.0: p50 50.5, p95 95.05, p99 99.01 (n 100)" in out


def test_annotation_bookkeeping_survives_for_recent_rows(store, tmp_path):
    _fill(store)
    prune.prune(store, "365d", tmp_path / "a.jsonl.gz")
    export = annotate.export_batch(store, tmp_path / "batch.csv", n=2)
    assert export["rows"] == 2  # the store still works as before
