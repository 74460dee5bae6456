"""The SQLite registry of trained versions (`workspace/registry/registry.db`, WAL).

Tables: `versions` (one immutable row per model and version), `artifacts` (the SHA-256 of
every file copied into the version's artifact folder), `aliases` ((model, alias) ->
version: champion, challenger), `events` (append-only: what, who, when, why, forced) and
`gates` (gate results recorded for a candidate against a baseline). Every write is one
`BEGIN IMMEDIATE` transaction, so concurrent writers are serialised and a process killed
mid-write leaves the state from before it.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.semver import parse as parse_semver
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.registry.artifacts import ArtifactFile, artifact_store, run_artifacts

SCHEMA_VERSION = 2
ARTIFACT_ROOT_ENV = "CLT_REGISTRY_ARTIFACTS"  # a local folder or an fsspec URL
PAUSE_ENV = "CLT_TEST_PAUSE_AT"  # tests: stop at a named point so they can SIGKILL us there
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_TABLES = [
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
]
# columns added by schema 2 to a schema-1 `versions` table
_V2_COLUMNS = {"artifact_dir": "TEXT", "parents": "TEXT NOT NULL DEFAULT '[]'",
               "status": "TEXT NOT NULL DEFAULT 'active'"}


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
    run_dir: str  # the training run folder, as given
    adapter_dir: str | None  # a local folder that loads; None for merged / full weights
    metrics: dict = field(default_factory=dict)
    train_seconds: float | None = None
    created_at: str = ""
    artifact_dir: str | None = None  # <artifact root>/<model>/<version> (path or URL)
    parents: tuple[str, ...] = ()  # every parent, `parent` first (several for a merge)
    status: str = "active"  # active | archived


@dataclass(frozen=True)
class Event:
    """One line of the append-only history."""

    id: int
    model: str
    version: str | None
    action: str  # register | promote | rollback | unset | archive | gate
    alias: str | None
    previous: str | None  # the alias's version before this event
    who: str
    at: str
    why: str
    forced: bool
    detail: dict


now = utc_now  # the toolkit's one timestamp format


def current_user(who: str | None = None) -> str:
    if who:
        return who
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def pause_point(name: str) -> None:
    """Tests only: with CLT_TEST_PAUSE_AT=name, announce the point on stderr and wait."""
    if os.environ.get(PAUSE_ENV) == name:
        print(f"paused at {name}", file=sys.stderr, flush=True)
        time.sleep(600)


def check_names(model: str, version: str | None = None) -> None:
    """Model and version become folder names: refuse anything that is not a plain name."""
    if not _MODEL_NAME.match(model or "") or ".." in model:
        raise BadInput(f"model name {model!r} must be letters, digits, '.', '_' or '-'")
    if version is not None:
        try:
            parse_semver(version)
        except ValueError as e:
            raise BadInput(f"{model}: {e}") from None


class RegistryStore:
    """SQLite-backed registry. Every write is one transaction."""

    def __init__(self, path: Path, artifact_root: str | os.PathLike | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.artifact_root = str(artifact_root or self.path.parent / "artifacts")
        self._artifacts = None  # built on first register (fsspec imports only then)
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._ensure_schema()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def artifacts(self):
        if self._artifacts is None:
            self._artifacts = artifact_store(self.artifact_root)
        return self._artifacts

    def _ensure_schema(self) -> None:
        if self._conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        with self.transaction():
            if self._conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
                return  # another process migrated while we waited for the lock
            for stmt in _TABLES:
                self._conn.execute(stmt)
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(versions)")}
            for col, decl in _V2_COLUMNS.items():
                if col not in have:
                    self._conn.execute(f"ALTER TABLE versions ADD COLUMN {col} {decl}")
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    # -- versions -------------------------------------------------------------------------

    def register(self, rec: VersionRecord, *, who: str | None = None) -> VersionRecord:
        """Copy the run's artifacts into the artifact root, then record the version.

        A version is immutable: registering it twice is an error. Returns the record as
        stored: `artifact_dir` set and, for a local root, `adapter_dir` in the copy."""
        rec = _normalise(rec)
        if self.get(rec.model, rec.version):
            raise BadInput(f"{rec.model} {rec.version} is already registered")
        for p in rec.parents:
            self.require(rec.model, p)
        pairs = run_artifacts(Path(rec.run_dir), rec.adapter_dir)
        store = self.artifacts
        final = store.version_dir(rec.model, rec.version)
        staging, files = store.stage(rec.model, pairs)
        pause_point("after_stage")
        published = False
        try:
            with self.transaction():
                if self.get(rec.model, rec.version):
                    raise BadInput(f"{rec.model} {rec.version} is already registered")
                store.publish(staging, final)
                published = True
                pause_point("after_publish")
                rec = _stored(rec, final, store.is_local)
                self._insert_version(rec, files)
                self.append_event(rec.model, "register", version=rec.version, who=who,
                                  detail={"artifact_dir": final, "files": len(files)})
                pause_point("before_commit")
        except BaseException:
            store.remove(final if published else staging)
            raise
        pause_point("registered")
        return rec

    def _insert_version(self, rec: VersionRecord, files: list[ArtifactFile]) -> None:
        row = asdict(rec)
        row["metrics"] = json.dumps(rec.metrics, sort_keys=True)
        row["parents"] = json.dumps(list(rec.parents))
        cols, marks = ", ".join(row), ", ".join(f":{k}" for k in row)
        self._conn.execute(f"INSERT INTO versions ({cols}) VALUES ({marks})", row)
        self._conn.executemany(
            "INSERT INTO artifacts (model, version, path, sha256, bytes) VALUES (?, ?, ?, ?, ?)",
            [(rec.model, rec.version, f.path, f.sha256, f.bytes) for f in files])

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

    def resolve(self, model: str, ref: str) -> VersionRecord:
        """A version by number (`1.1.0`) or by alias (`champion`, `challenger`): the one
        way gate, eval, serve and report turn what a user typed into a version."""
        try:
            parse_semver(ref)
        except ValueError:
            version = self.alias(model, ref)
            if version is None:
                raise BadInput(f"{model} has no version or alias {ref!r}") from None
            ref = version
        return self.require(model, ref)

    def versions(self, model: str | None = None) -> list[VersionRecord]:
        if model:
            rows = self._conn.execute("SELECT * FROM versions WHERE model=? ORDER BY created_at, rowid", (model,))
        else:
            rows = self._conn.execute("SELECT * FROM versions ORDER BY model, created_at, rowid")
        return [_record(r) for r in rows]

    def models(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT DISTINCT model FROM versions ORDER BY model")]

    def set_status(self, model: str, version: str, status: str) -> None:
        self._conn.execute("UPDATE versions SET status=? WHERE model=? AND version=?", (status, model, version))

    def artifact_files(self, model: str, version: str) -> list[ArtifactFile]:
        rows = self._conn.execute("SELECT path, sha256, bytes FROM artifacts WHERE model=? AND version=? "
                                  "ORDER BY path", (model, version))
        return [ArtifactFile(*r) for r in rows]

    # -- aliases, events, gates -----------------------------------------------------------

    def aliases(self, model: str | None = None) -> dict[str, dict[str, str]]:
        """{model: {alias: version}}, or {alias: version} of one model."""
        rows = self._conn.execute("SELECT model, alias, version FROM aliases ORDER BY model, alias")
        out: dict[str, dict[str, str]] = {}
        for m, a, v in rows:
            out.setdefault(m, {})[a] = v
        return out.get(model, {}) if model else out

    def alias(self, model: str, alias: str) -> str | None:
        row = self._conn.execute("SELECT version FROM aliases WHERE model=? AND alias=?", (model, alias)).fetchone()
        return row[0] if row else None

    def set_alias(self, model: str, alias: str, version: str | None) -> None:
        if version is None:
            self._conn.execute("DELETE FROM aliases WHERE model=? AND alias=?", (model, alias))
        else:
            self._conn.execute("INSERT INTO aliases (model, alias, version, updated_at) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (model, alias) DO UPDATE SET version=excluded.version, "
                               "updated_at=excluded.updated_at", (model, alias, version, now()))

    def append_event(self, model: str, action: str, *, version: str | None = None, alias: str | None = None,
                     previous: str | None = None, who: str | None = None, why: str = "",
                     forced: bool = False, detail: dict | None = None) -> int:
        cur = self._conn.execute(
            "INSERT INTO events (model, version, action, alias, previous, who, at, why, forced, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (model, version, action, alias, previous, current_user(who), now(), why, int(forced),
             json.dumps(detail or {}, sort_keys=True)))
        return cur.lastrowid

    def events(self, model: str | None = None) -> list[Event]:
        if model:
            rows = self._conn.execute("SELECT * FROM events WHERE model=? ORDER BY id", (model,))
        else:
            rows = self._conn.execute("SELECT * FROM events ORDER BY id")
        return [Event(**{**dict(r), "forced": bool(r["forced"]), "detail": json.loads(r["detail"])}) for r in rows]

    def insert_gate(self, model: str, candidate: str, baseline: str | None, passed: bool, result: dict) -> None:
        self._conn.execute("INSERT INTO gates (model, candidate, baseline, passed, result, recorded_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (model, candidate, baseline, int(passed), json.dumps(result, sort_keys=True), now()))

    def gate_result(self, model: str, candidate: str, baseline: str | None = None) -> dict | None:
        """The latest gate result recorded for candidate (against baseline, if given)."""
        sql, args = "SELECT result FROM gates WHERE model=? AND candidate=?", [model, candidate]
        if baseline is not None:
            sql, args = sql + " AND baseline=?", args + [baseline]
        row = self._conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return json.loads(row[0]) if row else None

    def integrity(self) -> str:
        return self._conn.execute("PRAGMA quick_check").fetchone()[0]


def _normalise(rec: VersionRecord) -> VersionRecord:
    check_names(rec.model, rec.version)
    parents = tuple(rec.parents) or ((rec.parent,) if rec.parent else ())
    if parents and parents[0] != rec.parent:
        raise BadInput(f"{rec.model} {rec.version}: parents must start with parent {rec.parent}")
    if rec.version in parents:
        raise BadInput(f"{rec.model} {rec.version} cannot be its own parent")
    return replace(rec, parents=parents, status="active",
                   created_at=rec.created_at or utc_now())


def _stored(rec: VersionRecord, final: str, local: bool) -> VersionRecord:
    """Where the stored version's files are: a local root's copy is what loads from now on."""
    adapter = str(Path(final) / "adapter") if local and rec.adapter_dir else rec.adapter_dir
    return replace(rec, artifact_dir=final, adapter_dir=adapter)


def _record(row: sqlite3.Row) -> VersionRecord:
    d = dict(row)
    d["metrics"] = json.loads(d["metrics"] or "{}")
    # rows from schema 1 have no parents column: their one parent is the list
    d["parents"] = tuple(json.loads(d.get("parents") or "[]")) or ((d["parent"],) if d["parent"] else ())
    return VersionRecord(**d)


def open_registry(workspace: Path | None = None, *, artifact_root: str | None = None) -> RegistryStore:
    """The registry of a workspace (default: $CLT_HOME). Artifacts go to `artifact_root`,
    else $CLT_REGISTRY_ARTIFACTS, else workspace/registry/artifacts."""
    ws = Path(workspace) if workspace else workspace_dir()
    root = artifact_root or os.environ.get(ARTIFACT_ROOT_ENV) or None
    return RegistryStore(ws / "registry" / "registry.db", artifact_root=root)
