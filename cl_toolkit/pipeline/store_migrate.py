"""`clt store migrate --from URL --to URL`: a feedback store or a registry moved to another
database (SQLite file -> PostgreSQL, back, or between two servers).

Both ends are opened as the store they are, so each is migrated to the current schema
first; the destination must be empty. Every table is copied in one transaction on the
destination, which commits only when each table's row count and content hash equal the
source's (core/storecopy.py). Registry artifacts stay where they are: their paths are
stored relative to the workspace and the artifact root, which do not move.
"""

from __future__ import annotations

from pathlib import Path

from cl_toolkit.core import dbbackend, storeurl
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.storecopy import copy_tables
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.feedback import schema as feedback_schema
from cl_toolkit.feedback.store import FeedbackStore
from cl_toolkit.registry import db as registry_db

KINDS = ("feedback", "registry")
_MARKER = {"feedback": "predictions", "registry": "versions"}  # a table only that store has


def _open(kind: str, url: str, ws: Path):
    if kind == "feedback":
        return FeedbackStore(url, workspace=ws)
    return registry_db.RegistryStore(url, workspace=ws)


def detect_kind(target: storeurl.StoreTarget) -> str:
    """Which store a source database holds (BadInput when none, or both)."""
    conn = dbbackend.connect(target, what="store", busy_timeout_s=30)
    try:
        found = [k for k in KINDS if dbbackend.has_table(conn, _MARKER[k])]
    finally:
        conn.close()
    if len(found) != 1:
        what = "both a feedback store and a registry" if found else "neither a feedback store nor a registry"
        raise BadInput(f"{target} holds {what}; say which with --kind feedback|registry")
    return found[0]


def migrate_store(source: str, dest: str, *, kind: str | None = None, workspace: Path | None = None) -> dict:
    """Copy the store at `source` into the empty `dest`; -> what was copied, per table."""
    ws = workspace_dir(workspace)
    src, dst = storeurl.parse(source, base=ws), storeurl.parse(dest, base=ws)
    if src == dst:
        raise BadInput(f"--from and --to are the same store ({src})")
    if not src.exists():
        raise BadInput(f"--from {src}: no such store")
    kind = kind or detect_kind(src)
    tables = feedback_schema.TABLES if kind == "feedback" else registry_db.TABLES
    with _open(kind, src.target, ws) as a, _open(kind, dst.target, ws) as b:
        done = copy_tables(a.conn, b.conn, tables, what=f"{kind} {src} -> {dst}")
    return {"kind": kind, "from": str(src), "to": str(dst),
            "tables": {t: {"rows": s.rows, "sha256": s.sha256} for t, s in done.items()}}
