"""The store contract: register copies a finished run's artifacts before the row exists,
versions are immutable, reads are what was written, old registries still open, and an
fsspec artifact root works like a local one."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
from safetensors.numpy import load_file
from test_registry_support import add_version, make_run, record

from cl_toolkit.core import dbbackend
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import sha256_file
from cl_toolkit.registry import artifact_file, check_registry, open_registry, read_artifact
from cl_toolkit.registry.db import RegistryStore

KEPT = {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "axolotl.yml", "data/new.jsonl",
        "manifest.json", "metrics.json", "recipe.yml"}


@pytest.fixture
def reg(store_backend, empty_workspace):
    """The workspace's registry, on SQLite and on PostgreSQL in turn."""
    with open_registry(empty_workspace) as r:
        yield r


def test_register_copies_the_run_artifacts_and_records_their_hashes(reg, empty_workspace):
    rec = add_version(reg, empty_workspace, "1.0.0")
    final = empty_workspace / "registry" / "artifacts" / "ff" / "1.0.0"
    run = empty_workspace / "runs" / "ff-1.0.0"
    assert rec.artifact_dir == str(final) and rec.run_dir == str(run)
    assert rec.adapter_dir == str(final / "adapter")  # what render's continued_lora loads from now on
    assert final.stat().st_mode & 0o755 == 0o755
    stored = {f.path: f.sha256 for f in reg.artifact_files("ff", "1.0.0")}
    assert set(stored) == KEPT  # no trainer checkpoints, no logs, no train.jsonl
    assert all(sha256_file(final / p) == sha256_file(run / p) == h
               for p, h in stored.items())
    assert load_file(str(final / "adapter" / "adapter_model.safetensors"))["lora_A"].shape == (2, 4)
    assert reg.get("ff", "1.0.0") == rec
    assert [(e.action, e.version) for e in reg.events("ff")] == [("register", "1.0.0")]
    assert check_registry(reg).ok


def test_a_version_is_immutable(reg, empty_workspace):
    first = add_version(reg, empty_workspace, "1.0.0")
    run = empty_workspace / "runs" / "ff-1.0.0"
    (run / "recipe.yml").write_text("changed\n")
    with pytest.raises(BadInput, match="already registered"):
        reg.register(record(run, "1.0.0"))
    assert reg.require("ff", "1.0.0") == first
    assert check_registry(reg).ok  # the stored copy was not touched


def test_get_require_versions(reg, empty_workspace):
    assert reg.get("ff", "1.0.0") is None
    with pytest.raises(BadInput, match="not in the registry"):
        reg.require("ff", "1.0.0")
    a = add_version(reg, empty_workspace, "1.0.0")
    b = add_version(reg, empty_workspace, "1.1.0", "1.0.0")
    c = add_version(reg, empty_workspace, "1.0.0", model="other")
    assert reg.versions("ff") == [a, b] and reg.versions() == [a, b, c]
    assert b.parents == ("1.0.0",) and b.status == "active" and b.created_at.endswith("Z")


@pytest.mark.parametrize("model, version, parent, message", [
    ("../x", "1.0.0", None, "model name"),
    ("ff", "1.0", None, "not a semantic version"),
    ("ff", "1.1.0", "1.0.0", "not in the registry"),  # an unknown parent
])
def test_bad_records_are_refused_and_write_nothing(reg, empty_workspace, model, version, parent, message):
    run = make_run(empty_workspace, "1.1.0")
    with pytest.raises(BadInput, match=message):
        reg.register(record(run, version, parent, model=model))
    assert reg.versions() == [] and reg.events() == []
    assert not (empty_workspace / "registry" / "artifacts").exists()


def test_an_incomplete_run_registers_nothing(reg, empty_workspace):
    run = make_run(empty_workspace, "1.0.0")
    (run / "adapter" / "adapter_config.json").unlink()
    (run / "manifest.json").unlink()
    with pytest.raises(BadInput, match=r"incomplete, missing: manifest.json, .*adapter_config.json"):
        reg.register(record(run, "1.0.0"))
    assert reg.versions() == [] and not (empty_workspace / "registry" / "artifacts").exists()


def test_a_failure_after_publishing_removes_the_copy(reg, empty_workspace, monkeypatch):
    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(RegistryStore, "_insert_version", boom)
    with pytest.raises(OSError, match="disk full"):
        add_version(reg, empty_workspace, "1.0.0")
    assert reg.versions() == [] and reg.events() == []
    assert list((empty_workspace / "registry" / "artifacts" / "ff").iterdir()) == []


def test_the_event_log_is_append_only(reg, empty_workspace, store_backend):
    """The database itself refuses: a client that is not the toolkit cannot rewrite history."""
    add_version(reg, empty_workspace, "1.0.0")
    statements = ["UPDATE events SET why='x'", "DELETE FROM events"]
    if store_backend == "postgresql":
        statements.append("TRUNCATE events")
    for sql in statements:
        with pytest.raises(dbbackend.DB_ERRORS, match="append-only"):
            with reg.transaction():
                reg.conn.execute(sql)
    assert [e.action for e in reg.events()] == ["register"]
    assert check_registry(reg).ok


def test_a_schema_1_registry_is_migrated(empty_workspace):
    db = empty_workspace / "registry" / "registry.db"
    db.parent.mkdir(parents=True)
    run = make_run(empty_workspace, "1.0.0")
    conn = sqlite3.connect(db)
    conn.execute("""CREATE TABLE versions (model TEXT NOT NULL, version TEXT NOT NULL, parent TEXT,
        strategy TEXT NOT NULL, base_model TEXT NOT NULL, recipe_sha256 TEXT NOT NULL, data_sha256 TEXT NOT NULL,
        run_dir TEXT NOT NULL, adapter_dir TEXT, metrics TEXT NOT NULL DEFAULT '{}', train_seconds REAL,
        created_at TEXT NOT NULL, PRIMARY KEY (model, version))""")
    conn.execute("INSERT INTO versions VALUES ('ff', '1.0.0', NULL, 'initial_lora', 'tiny', 'r', 'd', ?, ?, "
                 "'{\"a\": 1}', 3.0, '2025-01-01T00:00:00Z')", (str(run), str(run / "adapter")))
    conn.execute("INSERT INTO versions SELECT model, '1.0.1', '1.0.0', strategy, base_model, recipe_sha256, "
                 "data_sha256, run_dir, adapter_dir, metrics, train_seconds, created_at FROM versions")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with open_registry(empty_workspace) as reg:
        old = reg.require("ff", "1.0.0")
        assert (old.metrics, old.artifact_dir, old.parents, old.status) == ({"a": 1}, None, (), "active")
        assert reg.require("ff", "1.0.1").parents == ("1.0.0",)
        assert artifact_file(old, "data/new.jsonl") == run / "data" / "new.jsonl"  # falls back to the run
        add_version(reg, empty_workspace, "1.1.0", "1.0.0")
        report = check_registry(reg)
    assert report.ok and any("registered before artifacts were copied" in n for n in report.notes)
    conn = sqlite3.connect(db)  # migration 3 made the old absolute paths relative
    assert conn.execute("SELECT run_dir, adapter_dir FROM versions WHERE version='1.0.0'").fetchone() == \
        ("runs/ff-1.0.0", "runs/ff-1.0.0/adapter")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    conn.close()


def test_artifact_file_prefers_the_stored_copy(reg, empty_workspace):
    rec = add_version(reg, empty_workspace, "1.0.0")
    assert artifact_file(rec, "data/new.jsonl") == empty_workspace / "registry/artifacts/ff/1.0.0/data/new.jsonl"
    assert read_artifact(rec, "logs/train.log") == b"trained\n"  # only in the run folder


def test_an_fsspec_artifact_root(empty_workspace):
    import fsspec

    url = f"memory://clt-{uuid.uuid4().hex}/artifacts"
    fs = fsspec.filesystem("memory")
    try:
        with open_registry(empty_workspace, artifact_root=url) as reg:
            rec = add_version(reg, empty_workspace, "1.0.0")
            assert rec.artifact_dir.startswith("memory://") and rec.artifact_dir.endswith("/ff/1.0.0")
            assert rec.adapter_dir == str(empty_workspace / "runs" / "ff-1.0.0" / "adapter")  # a local path
            assert read_artifact(rec, "recipe.yml") == b"model: ff\nversion: 1.0.0\n"
            stored = fs.find(rec.artifact_dir)
            assert {p.split("/ff/1.0.0/", 1)[1] for p in stored} == KEPT
            assert check_registry(reg).ok
            fs.pipe(f"{rec.artifact_dir}/recipe.yml", b"tampered\n")
            fs.rm(f"{rec.artifact_dir}/data/new.jsonl")
            problems = check_registry(reg).problems
        assert len(problems) == 2 and "recipe.yml changed" in problems[1] and "new.jsonl is missing" in problems[0]
    finally:
        fs.rm(url.split("://")[1].split("/")[0], recursive=True)
