"""A registry keeps its paths relative, so a workspace can be copied or moved: a schema-2
registry (absolute paths, as the code before migrations wrote it) upgrades keeping every
row and event, the moved copy resolves into itself, and `clt registry check` reports any
stored path that is absolute or leads out of the workspace."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_registry_support import MODEL, add_version, make_run, record

from cl_toolkit.core.workspace import (
    absolute_under,
    from_workspace_ref,
    relative_inside,
    workspace_ref,
)
from cl_toolkit.registry import artifact_file, check_registry, open_registry, promote, record_gate
from cl_toolkit.registry.artifacts import LocalArtifacts, run_artifacts

# the schema-2 tables exactly as the registry created them before numbered migrations
OLD_TABLES = [
    """CREATE TABLE IF NOT EXISTS versions (
        model TEXT NOT NULL, version TEXT NOT NULL, parent TEXT, strategy TEXT NOT NULL,
        base_model TEXT NOT NULL, recipe_sha256 TEXT NOT NULL, data_sha256 TEXT NOT NULL,
        run_dir TEXT NOT NULL, adapter_dir TEXT, metrics TEXT NOT NULL DEFAULT '{}',
        train_seconds REAL, created_at TEXT NOT NULL, PRIMARY KEY (model, version))""",
    """CREATE TABLE IF NOT EXISTS artifacts (
        model TEXT NOT NULL, version TEXT NOT NULL, path TEXT NOT NULL,
        sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (model, version, path))""",
    """CREATE TABLE IF NOT EXISTS aliases (
        model TEXT NOT NULL, alias TEXT NOT NULL, version TEXT NOT NULL,
        updated_at TEXT NOT NULL, PRIMARY KEY (model, alias))""",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version TEXT,
        action TEXT NOT NULL, alias TEXT, previous TEXT, who TEXT NOT NULL, at TEXT NOT NULL,
        why TEXT NOT NULL DEFAULT '', forced INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT '{}')""",
    "CREATE INDEX IF NOT EXISTS events_by_model ON events (model, id)",
    """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
    """CREATE TABLE IF NOT EXISTS gates (
        id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, candidate TEXT NOT NULL,
        baseline TEXT, passed INTEGER NOT NULL, result TEXT NOT NULL, recorded_at TEXT NOT NULL)""",
    "ALTER TABLE versions ADD COLUMN artifact_dir TEXT",
    "ALTER TABLE versions ADD COLUMN parents TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE versions ADD COLUMN status TEXT NOT NULL DEFAULT 'active'",
]
AT = "2025-01-01T00:00:00.000Z"


def _old_register(conn, ws: Path, version: str, parent: str | None) -> None:
    """What register did before: copy the artifacts, then a row with absolute paths."""
    run = make_run(ws, version)
    store = LocalArtifacts(ws / "registry" / "artifacts")
    staging, files = store.stage(MODEL, run_artifacts(run, str(run / "adapter")))
    final = store.version_dir(MODEL, version)
    store.publish(staging, final)
    conn.execute("INSERT INTO versions (model, version, parent, strategy, base_model, recipe_sha256, data_sha256, "
                 "run_dir, adapter_dir, metrics, train_seconds, created_at, artifact_dir, parents, status) "
                 "VALUES (?, ?, ?, 'initial_lora', ?, 'r', 'd', ?, ?, '{}', 1.0, ?, ?, ?, 'active')",
                 (MODEL, version, parent, str(ws / "models" / "base"), str(run), f"{final}/adapter", AT, final,
                  json.dumps([parent] if parent else [])))
    conn.executemany("INSERT INTO artifacts VALUES (?, ?, ?, ?, ?)",
                     [(MODEL, version, f.path, f.sha256, f.bytes) for f in files])
    conn.execute("INSERT INTO events (model, version, action, who, at, detail) VALUES (?, ?, 'register', 'me', ?, ?)",
                 (MODEL, version, AT, json.dumps({"artifact_dir": final, "files": len(files)})))


@pytest.fixture
def schema2(tmp_path) -> Path:
    """A workspace whose registry was written by the schema-2 code: two versions, a
    champion, the history, and a gate result naming its evaluations by absolute path."""
    ws = tmp_path / "old" / "ws"
    (ws / "registry").mkdir(parents=True)
    conn = sqlite3.connect(ws / "registry" / "registry.db", isolation_level=None)
    for stmt in OLD_TABLES:
        conn.execute(stmt)
    _old_register(conn, ws, "1.0.0", None)
    _old_register(conn, ws, "1.1.0", "1.0.0")
    conn.execute("INSERT INTO aliases VALUES (?, 'champion', '1.0.0', ?)", (MODEL, AT))
    conn.execute("INSERT INTO events (model, version, action, alias, who, at, why) "
                 "VALUES (?, '1.0.0', 'promote', 'champion', 'me', ?, 'first')", (MODEL, AT))
    evals = {"baseline": str(ws / "evals" / MODEL / "1.0.0" / "s.json"),
             "candidate": str(ws / "evals" / MODEL / "1.1.0" / "s.json")}
    conn.execute("INSERT INTO gates (model, candidate, baseline, passed, result, recorded_at) VALUES (?, ?, ?, 1, ?, ?)",
                 (MODEL, "1.1.0", "1.0.0", json.dumps({"passed": True, "baseline": "1.0.0", "evaluations": evals}), AT))
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    return ws


def _dump(db: Path) -> dict:
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall()
                for t in ("versions", "artifacts", "aliases", "events", "gates")}
    finally:
        conn.close()


def test_a_schema_2_registry_upgrades_keeping_every_row_and_event(schema2):
    db = schema2 / "registry" / "registry.db"
    before = _dump(db)
    with open_registry(schema2) as reg:
        recs = {r.version: r for r in reg.versions(MODEL)}
        assert reg.aliases(MODEL) == {"champion": "1.0.0"} and recs["1.1.0"].parents == ("1.0.0",)
        assert check_registry(reg).ok
    after = _dump(db)
    for table in ("artifacts", "aliases", "events"):
        assert after[table] == before[table], table  # the history is append-only: kept as written
    assert len(after["versions"]) == 2 and len(after["gates"]) == 1
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT version, run_dir, adapter_dir, artifact_dir, base_model, metrics FROM versions "
                        "ORDER BY version").fetchall()
    gate = json.loads(conn.execute("SELECT result FROM gates").fetchone()[0])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    assert conn.execute("SELECT legacy, candidate_adapter_sha256 FROM gates").fetchall() == [(1, None)]
    conn.close()
    assert rows == [(v, f"runs/ff-{v}", f"ff/{v}/adapter", f"ff/{v}", "workspace:models/base", "{}")
                    for v in ("1.0.0", "1.1.0")]
    assert gate["evaluations"] == {"baseline": "evals/ff/1.0.0/s.json", "candidate": "evals/ff/1.1.0/s.json"}
    assert recs["1.0.0"].run_dir == str(schema2 / "runs" / "ff-1.0.0")  # handed out absolute
    assert recs["1.0.0"].adapter_dir == str(schema2 / "registry" / "artifacts" / "ff" / "1.0.0" / "adapter")
    assert recs["1.0.0"].base_model == str(schema2 / "models" / "base")


def test_a_gate_recorded_before_schema_4_still_promotes_marked_legacy(schema2):
    """Old gate rows hold no adapter hashes: they keep working, and the promotion says so."""
    with open_registry(schema2) as reg:
        row = reg.gate_record(MODEL, "1.1.0", "1.0.0")
        assert (row["passed"], row["legacy"], row["candidate_adapter_sha256"]) == (True, True, None)
        assert any("1.1.0: gate against 1.0.0 recorded before schema 4 (legacy" in n for n in check_registry(reg).notes)
        promote(reg, MODEL, "1.1.0", reason="gated under schema 2")
        assert reg.events(MODEL)[-1].detail == {"gate_baseline": "1.0.0", "gate_legacy": True}


def test_a_moved_workspace_resolves_into_itself(schema2, tmp_path):
    with open_registry(schema2):
        pass  # upgraded where it was written
    moved = tmp_path / "elsewhere" / "ws"
    shutil.copytree(schema2, moved)
    shutil.rmtree(schema2)
    with open_registry(moved) as reg:
        rec = reg.require(MODEL, "1.1.0")
        assert rec.artifact_dir == str(moved / "registry" / "artifacts" / "ff" / "1.1.0")
        assert rec.adapter_dir == f"{rec.artifact_dir}/adapter" and Path(rec.adapter_dir, "adapter_config.json").is_file()
        assert artifact_file(rec, "manifest.json") == moved / "registry" / "artifacts" / "ff" / "1.1.0" / "manifest.json"
        assert artifact_file(rec, "logs/train.log").read_text() == "trained\n"  # only in the run folder
        add_version(reg, moved, "1.2.0", "1.1.0")
        record_gate(moved, MODEL, "1.2.0", {"candidate": "1.2.0", "baseline": "1.0.0", "passed": True})
        promote(reg, MODEL, "1.2.0", reason="after the move")
        report = check_registry(reg)
    assert report.ok, report.problems
    assert str(schema2) not in json.dumps(_dump(moved / "registry" / "registry.db")["versions"])


def test_check_reports_a_path_outside_the_workspace(empty_workspace, tmp_path):
    outside = make_run(tmp_path / "other", "1.0.0")  # a run folder that is not the workspace's
    with open_registry(empty_workspace) as reg:
        reg.register(record(outside, "1.0.0"))
        add_version(reg, empty_workspace, "1.1.0", "1.0.0")
        report = check_registry(reg)
    assert report.problems == [f"ff 1.0.0: stored run_dir {outside} is absolute, not relative to the workspace "
                               f"({empty_workspace}); it breaks when the workspace is moved"]


def test_check_reports_a_relative_path_leading_out(empty_workspace):
    with open_registry(empty_workspace) as reg:
        add_version(reg, empty_workspace, "1.0.0")
    conn = sqlite3.connect(empty_workspace / "registry" / "registry.db")
    conn.execute("UPDATE versions SET artifact_dir = '../../ff/1.0.0', adapter_dir = '../../ff/1.0.0/adapter'")
    conn.commit()
    conn.close()
    with open_registry(empty_workspace) as reg:
        problems = check_registry(reg).problems
    assert [p.split(" (")[0] for p in problems if "leads outside" in p] == [
        "ff 1.0.0: stored artifact_dir ../../ff/1.0.0 leads outside the artifact root",
        "ff 1.0.0: stored adapter_dir ../../ff/1.0.0/adapter leads outside the artifact root"]


def test_paths_are_made_relative_as_written_or_through_symlinks(tmp_path):
    real = tmp_path / "real" / "ws"
    (real / "runs").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    via_link = str(tmp_path / "link" / "ws" / "runs" / "x")
    assert relative_inside(via_link, real) == "runs/x"  # only equal once the link is resolved
    assert relative_inside(str(real / "runs" / "x"), tmp_path / "link" / "ws") == "runs/x"
    assert relative_inside(str(tmp_path / "real" / "wsx" / "y"), real) == str(tmp_path / "real" / "wsx" / "y")
    assert relative_inside("org/model", real) == "org/model"  # a hub id is not a path to rebase
    assert workspace_ref(str(real / "models" / "b"), real) == "workspace:models/b"
    assert from_workspace_ref("workspace:models/b", tmp_path / "moved") == str(tmp_path / "moved" / "models" / "b")
    assert absolute_under("runs/x", tmp_path / "moved") == str(tmp_path / "moved" / "runs" / "x")
