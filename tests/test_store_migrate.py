"""`clt store migrate`: a workspace's feedback store and registry to PostgreSQL and back,
with the same rows (counts and content hashes per table), still working at the other end."""

from __future__ import annotations

import json

import pytest
from feedback_helpers import row, write_jsonl
from test_registry_support import add_version

from cl_toolkit.core.storecopy import summaries
from cl_toolkit.feedback import schema
from cl_toolkit.feedback.annotate import export_batch
from cl_toolkit.feedback.importer import import_files
from cl_toolkit.feedback.store import FeedbackStore, open_store
from cl_toolkit.registry import check_registry, open_registry, promote, record_gate, rollback
from cl_toolkit.registry.db import TABLES as REGISTRY_TABLES
from cl_toolkit.registry.db import RegistryStore


@pytest.fixture
def ws(empty_workspace, monkeypatch, tmp_path):
    """A workspace with a feedback store (odd values included) and a registry with history."""
    for name in ("CLT_FEEDBACK_URL", "CLT_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    rows = [row(f"r{i:03d}", rating=1 + i % 5, correction="better" if i % 7 == 0 else None,
                input=f"Frage {i} über Schläuche – 1.75\" ‘line’ 100%", confidence=(i % 10) / 10 + 0.01,
                quality_score=i / 3) for i in range(300)]
    rows.append(row("none", domain=None, confidence=None))
    with open_store() as store:
        import_files(store, [write_jsonl(tmp_path / "in.jsonl", rows)])
        store.add_feedback("r001", rating=5, source="expert", notes="checked")
        store.add_feedback("r002", thumbs=-1, source="api")
    with open_registry(empty_workspace) as reg:
        for v, p in [("1.0.0", None), ("1.1.0", "1.0.0"), ("1.2.0", "1.1.0")]:
            add_version(reg, empty_workspace, v, p)
        promote(reg, "ff", "1.0.0", reason="first")
        record_gate(empty_workspace, "ff", "1.1.0", {"candidate": "1.1.0", "baseline": "1.0.0", "passed": True})
        promote(reg, "ff", "1.1.0", reason="gate passed")
        promote(reg, "ff", "1.2.0", to="challenger", reason="A/B")
        rollback(reg, "ff", reason="bad answers")
        reg.record_score("ff", "1.0.0", "regression", "ab" * 32, 0.875, 40, "2025-04-01T00:00:00.000Z")
    return empty_workspace


def feedback_summary(target):
    with FeedbackStore(target) as s:
        return summaries(s.conn, schema.TABLES)


def registry_summary(target, ws):
    with RegistryStore(target, workspace=ws) as r:
        return summaries(r.conn, REGISTRY_TABLES)


def test_a_workspace_goes_to_postgresql_and_back_unchanged(ws, pg_url, clt, monkeypatch):
    fb, rg = ws / "feedback.db", ws / "registry" / "registry.db"
    before = feedback_summary(fb), registry_summary(rg, ws)
    assert before[0]["predictions"].rows == 301 and before[1]["events"].rows >= 8
    # one database for both stores: a team's one PostgreSQL
    for source in (fb, rg):
        code, out, err = clt("store", "migrate", "--from", source, "--to", pg_url, "--json")
        assert code == 0, err
    on_pg = feedback_summary(pg_url), registry_summary(pg_url, ws)
    assert on_pg == before

    # the registry works there: its files are where they were, and the history goes on
    monkeypatch.setenv("CLT_REGISTRY_URL", pg_url)
    with open_registry(ws) as reg:
        assert reg.aliases("ff") == {"champion": "1.0.0", "challenger": "1.2.0"}
        assert check_registry(reg).ok
        promote(reg, "ff", "1.2.0", reason="after the move", force=True)
        ids = [e.id for e in reg.events("ff")]
        assert ids == sorted(set(ids)) and ids[-1] > before[1]["events"].rows  # the sequence moved past the copy
    code, out, _ = clt("registry", "check")
    assert code == 0
    monkeypatch.delenv("CLT_REGISTRY_URL")
    after = registry_summary(pg_url, ws)
    assert after["events"].rows == before[1]["events"].rows + 2  # promote, and unset the challenger

    # and back: the database holds both stores now, so the source's kind must be named
    code, _, err = clt("store", "migrate", "--from", pg_url, "--to", ws / "back.db")
    assert code == 2 and "both a feedback store and a registry" in err and "--kind" in err
    code, out, _ = clt("store", "migrate", "--from", pg_url, "--to", ws / "back.db", "--kind", "feedback", "--json")
    assert code == 0
    assert json.loads(out)["tables"]["feedback"]["sha256"] == before[0]["feedback"].sha256
    assert feedback_summary(ws / "back.db") == before[0]
    code, out, _ = clt("store", "migrate", "--from", pg_url, "--to", ws / "registry" / "back.db", "--kind", "registry")
    assert code == 0 and "verified" in out
    assert registry_summary(ws / "registry" / "back.db", ws) == after


def test_the_destination_must_be_empty_and_a_password_is_never_shown(ws, pg_url, clt, tmp_path):
    code, _, err = clt("store", "migrate", "--from", ws / "feedback.db", "--to", pg_url)
    assert code == 0, err
    with_password = pg_url.replace("postgres@", "postgres:hunter2@")
    code, out, err = clt("store", "migrate", "--from", ws / "feedback.db", "--to", with_password)
    assert code == 2 and "not empty" in err and "predictions: 301 rows" in err
    assert "hunter2" not in out + err and "postgres:***@" in err
    code, _, err = clt("store", "migrate", "--from", tmp_path / "missing.db", "--to", tmp_path / "x.db")
    assert code == 2 and "no such store" in err and not (tmp_path / "missing.db").exists()
    code, _, err = clt("store", "migrate", "--from", ws / "feedback.db", "--to", "mysql://db/x")
    assert code == 2 and "unknown scheme" in err


def test_sqlite_to_sqlite_copies_the_annotation_batches_too(ws, clt, tmp_path):
    with open_store() as store:
        export_batch(store, tmp_path / "batch.csv", 10, batch="b1")
    code, _, err = clt("store", "migrate", "--from", ws / "feedback.db", "--to", tmp_path / "copy.db")
    assert code == 0, err
    copied = feedback_summary(tmp_path / "copy.db")
    assert copied == feedback_summary(ws / "feedback.db") and copied["annotation_samples"].rows == 10
