"""A SQLite registry of trained versions.

One row per (model, version). A version is only written after its training run finished
and its artifacts are in place, inside one transaction, so a failed or interrupted run
records nothing. Schema (table `versions`): model, version, parent, strategy, base_model,
recipe_sha256, data_sha256, run_dir, adapter_dir, metrics (JSON), train_seconds, created_at.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import BadInput
from ..workspace import workspace_dir

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    parent TEXT,
    strategy TEXT NOT NULL,
    base_model TEXT NOT NULL,
    recipe_sha256 TEXT NOT NULL,
    data_sha256 TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    adapter_dir TEXT,
    metrics TEXT NOT NULL DEFAULT '{}',
    train_seconds REAL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
"""


@dataclass(frozen=True)
class VersionRecord:
    """A trained version: what made it and where its files are."""

    model: str
    version: str
    parent: str | None
    strategy: str
    base_model: str  # path or hub id of the base the adapter applies to
    recipe_sha256: str
    data_sha256: str
    run_dir: str
    adapter_dir: str | None  # None for a fully merged / full-weight version
    metrics: dict = field(default_factory=dict)
    train_seconds: float | None = None
    created_at: str = ""


class RegistryStore:
    """SQLite-backed registry. Every write is one transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def register(self, rec: VersionRecord) -> VersionRecord:
        """Record a finished version. A version is immutable: registering it twice is an error."""
        if not rec.created_at:
            rec = VersionRecord(**{**asdict(rec), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        row = asdict(rec)
        row["metrics"] = json.dumps(rec.metrics, sort_keys=True)
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(f"INSERT INTO versions ({cols}) VALUES ({marks})", row)
        except sqlite3.IntegrityError as e:
            raise BadInput(f"{rec.model} {rec.version} is already registered") from e
        return rec

    def get(self, model: str, version: str) -> VersionRecord | None:
        row = self._conn.execute(
            "SELECT * FROM versions WHERE model=? AND version=?", (model, version)
        ).fetchone()
        return _record(row) if row else None

    def require(self, model: str, version: str) -> VersionRecord:
        rec = self.get(model, version)
        if rec is None:
            raise BadInput(f"{model} {version} is not in the registry ({self.path}); train it first")
        return rec

    def versions(self, model: str | None = None) -> list[VersionRecord]:
        if model:
            rows = self._conn.execute("SELECT * FROM versions WHERE model=? ORDER BY created_at", (model,))
        else:
            rows = self._conn.execute("SELECT * FROM versions ORDER BY model, created_at")
        return [_record(r) for r in rows]


def _record(row: sqlite3.Row) -> VersionRecord:
    d = dict(row)
    d["metrics"] = json.loads(d["metrics"] or "{}")
    return VersionRecord(**d)


def open_registry(workspace: Path | None = None) -> RegistryStore:
    """The registry of a workspace (default: $CLT_HOME)."""
    ws = workspace or workspace_dir()
    return RegistryStore(ws / "registry" / "registry.db")
