"""The registry of trained versions: a SQLite file (`workspace/registry/registry.db`, WAL)
or a PostgreSQL database shared by a team (a URL: core/storeurl.py says how one is chosen).

Tables: `versions` (one immutable row per model and version), `artifacts` (the SHA-256 of
every file copied into the version's artifact folder), `aliases` ((model, alias) ->
version: champion, challenger), `events` (append-only: what, who, when, why, forced) and
`gates` (gate results recorded for a candidate against a baseline). Every write is one
`BEGIN IMMEDIATE` transaction, so concurrent writers are serialised and a process killed
mid-write leaves the state from before it. On PostgreSQL the invariants are the database's
own: one holder per alias (the primary key of `aliases`), promotion, rollback and archive
under row locks on the line's versions (`lock_line`: SELECT ... FOR UPDATE), and triggers
that refuse any UPDATE, DELETE or TRUNCATE of `events`.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from cl_toolkit.core import dbbackend, sqlitedb, storeurl
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.semver import parse as parse_semver
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.core.workspace import (
    absolute_under,
    from_workspace_ref,
    relative_inside,
    workspace_dir,
    workspace_ref,
)
from cl_toolkit.registry.artifacts import ArtifactFile, artifact_store, local_root, run_artifacts

ARTIFACT_ROOT_ENV = "CLT_REGISTRY_ARTIFACTS"  # a local folder or an fsspec URL
PAUSE_ENV = "CLT_TEST_PAUSE_AT"  # tests: stop at a named point so they can SIGKILL us there
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# every table -> its primary key (the order `clt store migrate` copies and hashes in)
TABLES = {"versions": ("model", "version"), "artifacts": ("model", "version", "path"),
          "aliases": ("model", "alias"), "events": ("id",), "gates": ("id",),
          "scores": ("model", "version", "suite", "suite_sha256")}

# schema 1: the registry as first shipped, one table
_V1 = [
    """CREATE TABLE IF NOT EXISTS versions (
        model TEXT NOT NULL, version TEXT NOT NULL, parent TEXT, strategy TEXT NOT NULL,
        base_model TEXT NOT NULL, recipe_sha256 TEXT NOT NULL, data_sha256 TEXT NOT NULL,
        run_dir TEXT NOT NULL, adapter_dir TEXT, metrics TEXT NOT NULL DEFAULT '{}',
        train_seconds REAL, created_at TEXT NOT NULL, PRIMARY KEY (model, version))""",
]
# schema 2: artifact copies and their hashes, aliases, the append-only history, gate
# results, and the columns `versions` gained with them
_V2 = [
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
# schema 4: every evaluation score (the line's accuracy matrix is one query over `scores`),
# and gate records the registry can check: the adapter hashes it gated, the suites' hashes
# and the policy. Rows recorded before schema 4 have none of these and are marked legacy.
_V4 = [
    """CREATE TABLE IF NOT EXISTS scores (
        model TEXT NOT NULL, version TEXT NOT NULL, suite TEXT NOT NULL, suite_sha256 TEXT NOT NULL,
        accuracy REAL NOT NULL, n INTEGER NOT NULL, evaluated_at TEXT NOT NULL, eval_cache TEXT,
        PRIMARY KEY (model, version, suite, suite_sha256))""",
    "CREATE INDEX IF NOT EXISTS scores_by_model ON scores (model, suite, evaluated_at)",
    "ALTER TABLE gates ADD COLUMN candidate_adapter_sha256 TEXT",
    "ALTER TABLE gates ADD COLUMN baseline_adapter_sha256 TEXT",
    "ALTER TABLE gates ADD COLUMN suites TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE gates ADD COLUMN policy TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE gates ADD COLUMN legacy INTEGER NOT NULL DEFAULT 1",
]


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
    run_dir: str  # the training run folder
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
    """SQLite-backed registry. Every write is one transaction.

    Local paths are stored relative, so a workspace that is copied or moved keeps working:
    `run_dir` relative to the workspace, `artifact_dir` relative to a local artifact root,
    `adapter_dir` relative to the artifact root when it is the version's artifact copy
    (always, for a local root) and to the workspace otherwise, and a `base_model` inside
    the workspace as `workspace:sub/path`. URLs and paths outside stay as they are (and
    `clt registry check` reports the local ones). Every record handed out has them
    resolved back to absolute paths, so callers use them as they are."""

    def __init__(self, path: Path | str, artifact_root: str | os.PathLike | None = None,
                 workspace: Path | None = None):
        target = storeurl.parse(path)
        if target.is_postgres:  # `path` as messages show it: the URL without a password
            self.path = str(target)
            self.workspace = Path(workspace or workspace_dir()).resolve()
            default_root = self.workspace / "registry" / "artifacts"
        else:
            self.path = Path(target.target)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # the registry lives at <workspace>/registry/registry.db
            self.workspace = Path(workspace or self.path.parent.parent).resolve()
            default_root = self.path.parent / "artifacts"
        self.artifact_root = str(artifact_root or default_root)
        self.local_root = local_root(self.artifact_root)
        self._artifacts = None  # built on first use (fsspec imports only then)
        self._conn = dbbackend.connect(target, what="registry", rows="row", synchronous="FULL", busy_timeout_s=30)
        dbbackend.migrate(self._conn, self.migrations(), f"registry {self.path}", store="registry")

    @property
    def conn(self):
        """The database connection (sqlite3, or core/dbbackend.py's PgConnection)."""
        return self._conn

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

    def migrations(self) -> list[sqlitedb.Migration]:
        """1: the versions table; 2: artifacts, aliases, events, gates and three columns;
        3: the absolute paths of schemas 1 and 2 made relative (see the class docstring);
        4: the scores table and checkable gate records (older gate rows marked legacy)."""
        return [(1, _V1), (2, _V2), (3, self._relative_paths), (4, _V4)]

    def transaction(self):
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front (on
        PostgreSQL: BEGIN, and the writes that read first call lock_line)."""
        return dbbackend.transaction(self._conn)

    def lock_line(self, model: str) -> None:
        """Inside a transaction: lock the model line's version rows (SELECT ... FOR UPDATE
        on PostgreSQL), so promotions, rollbacks and archives of one line run one at a time
        and each reads the aliases the previous one left. SQLite holds the whole file."""
        self._conn.execute(dbbackend.for_update("SELECT version FROM versions WHERE model=? ORDER BY version",
                                                self._conn), (model,)).fetchall()

    # -- stored paths ----------------------------------------------------------------------

    def _adapter_base(self, artifact_dir: str | None) -> Path:
        local_copy = artifact_dir and self.local_root and "://" not in artifact_dir
        return self.local_root if local_copy else self.workspace

    def to_stored(self, rec: VersionRecord) -> VersionRecord:
        """The record as the database keeps it: local paths relative to their base."""
        artifact = rec.artifact_dir
        if artifact and self.local_root:
            artifact = relative_inside(artifact, self.local_root)
        adapter = rec.adapter_dir and relative_inside(rec.adapter_dir, self._adapter_base(artifact))
        return replace(rec, run_dir=relative_inside(rec.run_dir, self.workspace), adapter_dir=adapter,
                       artifact_dir=artifact, base_model=workspace_ref(rec.base_model, self.workspace))

    def _resolved(self, rec: VersionRecord) -> VersionRecord:
        """The inverse of to_stored: what callers get, every local path absolute."""
        artifact = rec.artifact_dir
        adapter = rec.adapter_dir and absolute_under(rec.adapter_dir, self._adapter_base(artifact))
        if artifact and self.local_root and "://" not in artifact:
            artifact = absolute_under(artifact, self.local_root)
        return replace(rec, run_dir=absolute_under(rec.run_dir, self.workspace), adapter_dir=adapter,
                       artifact_dir=artifact, base_model=from_workspace_ref(rec.base_model, self.workspace))

    def stored_versions(self) -> list[VersionRecord]:
        """Every version exactly as stored (paths unresolved): what `check` inspects."""
        return [_record(r) for r in self._conn.execute("SELECT * FROM versions ORDER BY model, created_at, rowid")]

    def _relative_paths(self, conn) -> None:
        """Migration 3: absolute paths inside the workspace (artifact root) made relative,
        in the versions and in the evaluation paths of recorded gate results. The register
        events keep the absolute folder they named then: the history is append-only."""
        for row in conn.execute("SELECT * FROM versions").fetchall():
            rec = self.to_stored(_record(row))
            conn.execute("UPDATE versions SET run_dir=?, adapter_dir=?, artifact_dir=?, base_model=? "
                         "WHERE model=? AND version=?", (rec.run_dir, rec.adapter_dir, rec.artifact_dir,
                                                        rec.base_model, rec.model, rec.version))
        for gate_id, result in conn.execute("SELECT id, result FROM gates").fetchall():
            doc = json.loads(result)
            evals = doc.get("evaluations")
            if isinstance(evals, dict):
                doc["evaluations"] = {k: relative_inside(v, self.workspace) if isinstance(v, str) else v
                                      for k, v in evals.items()}
                conn.execute("UPDATE gates SET result=? WHERE id=?", (json.dumps(doc, sort_keys=True), gate_id))

    # -- versions -------------------------------------------------------------------------

    def register(self, rec: VersionRecord, *, who: str | None = None) -> VersionRecord:
        """Copy the run's artifacts into the artifact root, then record the version.

        A version is immutable: registering it twice is an error. Returns the record as
        `get` hands it out: `artifact_dir` set and, for a local root, `adapter_dir` in the
        copy (absolute paths; the row keeps them relative)."""
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
                dbbackend.lock_key(self._conn, f"registry:{rec.model}:{rec.version}")  # no row to lock yet
                if self.get(rec.model, rec.version):
                    raise BadInput(f"{rec.model} {rec.version} is already registered")
                store.publish(staging, final)
                published = True
                pause_point("after_publish")
                rec = _stored(rec, final, store.is_local)
                stored = self.to_stored(rec)
                self._insert_version(stored, files)
                self.append_event(rec.model, "register", version=rec.version, who=who,
                                  detail={"artifact_dir": stored.artifact_dir, "files": len(files)})
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
        return self._resolved(_record(row)) if row else None

    def require(self, model: str, version: str) -> VersionRecord:
        rec = self.get(model, version)
        if rec is None:
            raise BadInput(f"{model} {version} is not in the registry ({self.path}); train it first")
        return rec

    def resolve(self, model: str, ref: str) -> VersionRecord:
        """A version by number (`1.1.0`) or by alias (`champion`, `challenger`): the one
        way gate, eval, serve and report turn what a user typed into a version."""
        rec = self.lookup(model, ref)
        if rec is None:
            raise BadInput(f"{model} has no version or alias {ref!r}")
        return rec

    def lookup(self, model: str, ref: str) -> VersionRecord | None:
        """Like resolve, but None for an alias that is not set (a version number must exist)."""
        try:
            parse_semver(ref)
        except ValueError:
            version = self.alias(model, ref)
            return None if version is None else self.require(model, version)
        return self.require(model, ref)

    def versions(self, model: str | None = None) -> list[VersionRecord]:
        if model:
            rows = self._conn.execute("SELECT * FROM versions WHERE model=? ORDER BY created_at, rowid", (model,))
        else:
            rows = self._conn.execute("SELECT * FROM versions ORDER BY model, created_at, rowid")
        return [self._resolved(_record(r)) for r in rows]

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

    def insert_gate(self, model: str, candidate: str, baseline: str | None, passed: bool, result: dict, *,
                    candidate_adapter_sha256: str | None = None, baseline_adapter_sha256: str | None = None,
                    suites: dict | None = None, policy: dict | None = None) -> None:
        self._conn.execute(
            "INSERT INTO gates (model, candidate, baseline, passed, result, recorded_at, candidate_adapter_sha256, "
            "baseline_adapter_sha256, suites, policy, legacy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (model, candidate, baseline, int(passed), json.dumps(result, sort_keys=True), now(),
             candidate_adapter_sha256, baseline_adapter_sha256, json.dumps(suites or {}, sort_keys=True),
             json.dumps(policy or {}, sort_keys=True)))

    def gate_record(self, model: str, candidate: str, baseline: str | None = None) -> dict | None:
        """The latest gate row of candidate (against baseline, if given), as the registry
        keeps it: passed, the adapter hashes it gated, suite hashes, policy, legacy, result."""
        sql, args = "SELECT * FROM gates WHERE model=? AND candidate=?", [model, candidate]
        if baseline is not None:
            sql, args = sql + " AND baseline=?", args + [baseline]
        row = self._conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        if row is None:
            return None
        d = dict(row)
        return {**d, "passed": bool(d["passed"]), "legacy": bool(d["legacy"]), "result": json.loads(d["result"]),
                "suites": json.loads(d["suites"]), "policy": json.loads(d["policy"])}

    def legacy_gates(self) -> list[tuple[str, str, str | None]]:
        """(model, candidate, baseline) of every gate row recorded before schema 4 (no hashes)."""
        return [tuple(r) for r in self._conn.execute(
            "SELECT model, candidate, baseline FROM gates WHERE legacy=1 ORDER BY id")]

    def gate_result(self, model: str, candidate: str, baseline: str | None = None) -> dict | None:
        """The latest gate result recorded for candidate (against baseline, if given)."""
        row = self.gate_record(model, candidate, baseline)
        return row["result"] if row else None

    # -- scores: the accuracy matrix ------------------------------------------------------

    def record_score(self, model: str, version: str, suite: str, suite_sha256: str, accuracy: float, n: int,
                     evaluated_at: str, eval_cache: str | None = None) -> None:
        """One version's accuracy on one named suite (the newest evaluation of those bytes wins)."""
        self._conn.execute(
            "INSERT INTO scores (model, version, suite, suite_sha256, accuracy, n, evaluated_at, eval_cache) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, version, suite, suite_sha256) DO UPDATE SET "
            "accuracy=excluded.accuracy, n=excluded.n, evaluated_at=excluded.evaluated_at, "
            "eval_cache=excluded.eval_cache", (model, version, suite, suite_sha256, float(accuracy), int(n),
                                               evaluated_at, eval_cache))

    def scores(self, model: str) -> list[dict]:
        """Every score of a model line: the accuracy matrix in one query, each suite name at
        the bytes it was last evaluated with (an edited suite file starts its column afresh)."""
        rows = self._conn.execute(
            """SELECT s.* FROM scores s JOIN (
                   SELECT suite, MAX(suite_sha256) AS suite_sha256 FROM scores s2 WHERE model=:m AND evaluated_at = (
                       SELECT MAX(evaluated_at) FROM scores s3 WHERE s3.model=:m AND s3.suite=s2.suite)
                   GROUP BY suite) cur
               ON s.suite = cur.suite AND s.suite_sha256 = cur.suite_sha256
               WHERE s.model=:m ORDER BY s.suite, s.version""", {"m": model})
        return [dict(r) for r in rows]

    def integrity(self) -> str:
        return dbbackend.integrity(self._conn)


def _normalise(rec: VersionRecord) -> VersionRecord:
    check_names(rec.model, rec.version)
    parents = tuple(rec.parents) or ((rec.parent,) if rec.parent else ())
    if parents and parents[0] != rec.parent:
        raise BadInput(f"{rec.model} {rec.version}: parents must start with parent {rec.parent}")
    if rec.version in parents:
        raise BadInput(f"{rec.model} {rec.version} cannot be its own parent")
    # absolute from here on: the stored form is relative to the workspace, not to the cwd
    adapter = str(Path(rec.adapter_dir).resolve()) if rec.adapter_dir else rec.adapter_dir
    return replace(rec, parents=parents, status="active", created_at=rec.created_at or utc_now(),
                   run_dir=str(Path(rec.run_dir).resolve()), adapter_dir=adapter)


def _stored(rec: VersionRecord, final: str, local: bool) -> VersionRecord:
    """Where the stored version's files are: a local root's copy is what loads from now on."""
    adapter = str(Path(final) / "adapter") if local and rec.adapter_dir else rec.adapter_dir
    return replace(rec, artifact_dir=final, adapter_dir=adapter)


def _record(row) -> VersionRecord:
    d = dict(row)
    d["metrics"] = json.loads(d["metrics"] or "{}")
    # rows from schema 1 got parents '[]' from migration 2: their one parent is the list
    d["parents"] = tuple(json.loads(d.get("parents") or "[]")) or ((d["parent"],) if d["parent"] else ())
    return VersionRecord(**d)


def registry_target(workspace: Path | None = None, url: str | None = None) -> storeurl.StoreTarget:
    """Where a workspace's registry is: `url`, $CLT_REGISTRY_URL, the workspace's clt.yml,
    else workspace/registry/registry.db."""
    ws = Path(workspace) if workspace else workspace_dir()
    return storeurl.resolve("registry", ws / "registry" / "registry.db", explicit=url, workspace=ws)


def open_registry(workspace: Path | None = None, *, artifact_root: str | None = None,
                  url: str | None = None) -> RegistryStore:
    """The registry of a workspace (default: $CLT_HOME; where it is: registry_target).
    Artifacts go to `artifact_root`, else $CLT_REGISTRY_ARTIFACTS, else
    workspace/registry/artifacts."""
    ws = Path(workspace) if workspace else workspace_dir()
    root = artifact_root or os.environ.get(ARTIFACT_ROOT_ENV) or None
    return RegistryStore(registry_target(ws, url).target, artifact_root=root, workspace=ws)
