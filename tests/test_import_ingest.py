"""`clt feedback import` at ingest: the quarantine file does not grow with rows already
quarantined, `--redact` keeps PII out of the store (checked on the raw SQLite rows), the
serve writer's journal is replayed, and the quarantine, journal and prune archive files
are created 0600 under umask 022."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import pytest
from feedback_helpers import fws_fixture, row, run_main, write_jsonl  # noqa: F401 (fixtures)

from cl_toolkit.feedback import journal
from cl_toolkit.feedback.importer import import_files
from cl_toolkit.feedback.records import check_prediction
from cl_toolkit.feedback.store import open_store

EMAIL, PHONE, IBAN = "nikos.p@example.com", "+30 697 123 4567", "GR16 0110 1250 0000 0001 2300 695"


@pytest.fixture(autouse=True)
def umask_022(monkeypatch):
    monkeypatch.delenv("CLT_REDACT_AT_INGEST", raising=False)
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def raw_rows(ws) -> str:
    conn = sqlite3.connect(ws / "feedback.db")
    try:
        return repr(conn.execute("SELECT * FROM predictions").fetchall()
                    + conn.execute("SELECT * FROM feedback").fetchall())
    finally:
        conn.close()


def test_reimporting_a_bad_file_leaves_the_quarantine_as_after_the_first(fws, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [row("a"), b"{oops", row("b", rating=9), b"{oops"])
    assert run_main(["feedback", "import", str(bad)], capsys)[0] == 2
    quarantine = fws / "feedback.quarantine.jsonl"
    first = quarantine.read_bytes()
    assert len(first.splitlines()) == 3 and mode(quarantine) == 0o600
    code, out, err = run_main(["feedback", "import", str(bad)], capsys)
    assert code == 2 and "rejected 3" in out and "(0 new there)" in out  # still reported
    assert quarantine.read_bytes() == first
    other = write_jsonl(tmp_path / "other.jsonl", [b"{oops"])  # same bytes, another file: new
    run_main(["feedback", "import", str(other)], capsys)
    assert len(quarantine.read_bytes().splitlines()) == 4


def test_a_torn_quarantine_line_does_not_swallow_the_next(fws, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [b"{oops"])
    run_main(["feedback", "import", str(bad)], capsys)
    quarantine = fws / "feedback.quarantine.jsonl"
    with open(quarantine, "a") as f:
        f.write('{"file": "x", "li')  # a crash mid-write
    run_main(["feedback", "import", str(write_jsonl(tmp_path / "more.jsonl", [b"[1"]))], capsys)
    lines = quarantine.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["raw"] == "[1"


def pii_rows() -> list[dict]:
    return [row("p1", input=f"I am {EMAIL}, call {PHONE}", output=f"pay to {IBAN}",
                correction=f"mail {EMAIL}", rating=1,
                metadata={"domain": "hose", "messages": [{"role": "user", "content": EMAIL}]}),
            row("p2", input="no personal data here", output="1.75 in")]


def test_import_redact_keeps_pii_out_of_the_store(fws, tmp_path, capsys):
    path = write_jsonl(tmp_path / "pii.jsonl", [*pii_rows(), f'{{"request_id": "bad", "input": "{EMAIL}"}}'])
    code, out, _ = run_main(["feedback", "import", "--redact", str(path)], capsys)
    assert code == 2 and "predictions: 2 added" in out
    dump = raw_rows(fws)
    for secret in (EMAIL, "697 123 4567", "0110 1250"):
        assert secret not in dump
    assert dump.count("[EMAIL]") == 3 and "[PHONE]" in dump and "[IBAN]" in dump
    assert "no personal data here" in dump  # the rest is untouched
    quarantine = (fws / "feedback.quarantine.jsonl").read_text()
    assert EMAIL not in quarantine and "[EMAIL]" in quarantine


def test_without_redact_the_row_is_stored_as_sent_and_the_env_turns_it_on(fws, tmp_path, capsys, monkeypatch):
    path = write_jsonl(tmp_path / "pii.jsonl", pii_rows())
    assert run_main(["feedback", "import", str(path)], capsys)[0] == 0
    assert EMAIL in raw_rows(fws)
    (fws / "feedback.db").unlink()
    for extra in ("-wal", "-shm"):
        (fws / f"feedback.db{extra}").unlink(missing_ok=True)
    monkeypatch.setenv("CLT_REDACT_AT_INGEST", "1")
    assert run_main(["feedback", "import", str(path)], capsys)[0] == 0
    assert EMAIL not in raw_rows(fws)


def test_import_replays_the_journal_first_and_alone_without_files(fws, tmp_path, capsys):
    path = fws / "feedback.journal.jsonl"
    fws.mkdir(parents=True)
    journal.append(path, [journal.entry_line("prediction", check_prediction(
        f"j{i}", f"q {EMAIL}", "a", "1.0.0", timestamp=1_750_000_000)) for i in range(3)])
    assert mode(path) == 0o600
    code, out, _ = run_main(["feedback", "import", "--redact", "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["journal"]["predictions_added"] == 3
    assert not path.exists() and EMAIL not in raw_rows(fws)
    code, out, _ = run_main(["feedback", "import"], capsys)
    assert code == 0 and "nothing to import" in out


def test_replay_and_import_through_the_library_count_the_journal(fws, tmp_path):
    store = open_store(fws)
    journal.append(store.journal_path, [journal.entry_line("prediction", check_prediction(
        "j1", "q", "a", "1.0.0", timestamp=1_750_000_000))])
    s = import_files(store, [write_jsonl(tmp_path / "a.jsonl", [row("j1"), row("n1")])])
    assert s.journal.predictions_added == 1 and (s.predictions_added, s.predictions_existing) == (1, 1)
    store.close()


def test_the_prune_archive_is_private(fws, tmp_path, capsys):
    path = write_jsonl(tmp_path / "old.jsonl", [row("o1", timestamp="2001-01-01T00:00:00Z")])
    run_main(["feedback", "import", str(path)], capsys)
    archive = tmp_path / "arch.jsonl.gz"
    assert run_main(["feedback", "prune", "--older-than", "30d", "--archive", str(archive)], capsys)[0] == 0
    assert mode(archive) == 0o600


def test_the_setting_covers_every_write_into_the_store(fws, capsys, monkeypatch):
    monkeypatch.setenv("CLT_REDACT_AT_INGEST", "yes")
    assert run_main(["feedback", "log", "--request-id", "l1", "--input", f"from {EMAIL}",
                     "--output", "ok", "--model-version", "1.0.0"], capsys)[0] == 0
    assert run_main(["feedback", "rate", "l1", "--rating", "2", "--notes", f"call {PHONE}"], capsys)[0] == 0
    dump = raw_rows(fws)
    assert EMAIL not in dump and "697 123 4567" not in dump and "[EMAIL]" in dump and "[PHONE]" in dump
