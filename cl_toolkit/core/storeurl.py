"""Where a store lives: a SQLite file (the embedded default) or a PostgreSQL database,
named by a URL. One resolution order for the feedback store and the registry:

1. the option of the command (`--store-url`, `--registry-url`), passed in as `explicit`;
2. the environment: $CLT_FEEDBACK_URL, $CLT_REGISTRY_URL;
3. the workspace's config file, `<workspace>/clt.yml`, if there is one::

       stores:
         feedback: postgresql://clt@db.internal/clt
         registry: postgresql://clt@db.internal/clt

4. the workspace's SQLite file (`feedback.db`, `registry/registry.db`).

A SQLite target is a path (or `sqlite:///path`); a PostgreSQL one is `postgresql://...` or
`postgres://...` in libpq's URL form. Passwords belong in $PGPASSWORD or a `.pgpass` file:
a URL that carries one still works, but is never printed (`masked`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.core.yamlio import load_yaml

SQLITE, POSTGRES = "sqlite", "postgresql"
ENV = {"feedback": "CLT_FEEDBACK_URL", "registry": "CLT_REGISTRY_URL"}
CONFIG_NAME = "clt.yml"
_PG_PREFIXES = ("postgresql://", "postgres://")
_PASSWORD_IN_NETLOC = re.compile(r"^(?P<scheme>[a-z]+://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@")
_PASSWORD_IN_QUERY = re.compile(r"(?P<key>[?&]password=)[^&]*", re.IGNORECASE)


@dataclass(frozen=True)
class StoreTarget:
    """A resolved store: its backend and what to open (a file path, or a libpq URL)."""

    kind: str  # sqlite | postgresql
    target: str

    @property
    def is_postgres(self) -> bool:
        return self.kind == POSTGRES

    def __str__(self) -> str:
        return masked(self.target)

    def exists(self) -> bool:
        """Whether there is a store to read: a database server is assumed to hold one
        (opening it creates the tables), a SQLite file must be there."""
        return self.is_postgres or Path(self.target).is_file()


def is_postgres_url(text: str | os.PathLike) -> bool:
    return str(text).lower().startswith(_PG_PREFIXES)


def masked(url: str | os.PathLike) -> str:
    """The URL with any password replaced by `***`: what errors and output may show."""
    text = _PASSWORD_IN_NETLOC.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(url))
    return _PASSWORD_IN_QUERY.sub(lambda m: f"{m['key']}***", text)


def parse(raw: str | os.PathLike, *, base: Path | None = None) -> StoreTarget:
    """A URL or path as a StoreTarget; a relative SQLite path is relative to `base`."""
    text = str(raw).strip()
    if not text:
        raise BadInput("a store URL is empty")
    if is_postgres_url(text):
        return StoreTarget(POSTGRES, text)
    if text.startswith("sqlite:///"):  # sqlite:///relative, sqlite:////absolute (SQLAlchemy's form)
        text = text[len("sqlite:///"):]
    elif "://" in text:
        raise BadInput(f"store URL {masked(text)!r}: unknown scheme (use a SQLite path, sqlite:///PATH "
                       f"or postgresql://...)")
    path = Path(text).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return StoreTarget(SQLITE, str(path))


def resolve(which: str, default_path: Path, *, explicit: str | None = None,
            workspace: Path | None = None) -> StoreTarget:
    """The store `which` (feedback | registry) of a workspace, by the order in the module
    docstring; `default_path` is its SQLite file."""
    ws = workspace_dir(workspace)
    raw = explicit or os.environ.get(ENV[which]) or _from_config(ws, which)
    return parse(raw, base=ws) if raw else StoreTarget(SQLITE, str(default_path))


def _from_config(ws: Path, which: str) -> str | None:
    path = ws / CONFIG_NAME
    if not path.is_file():
        return None
    data, lines = load_yaml(path)
    stores = data.get("stores") if isinstance(data, dict) else None
    if stores is None:
        return None
    if not isinstance(stores, dict) or not isinstance(stores.get(which, ""), str):
        key = ("stores", which) if isinstance(stores, dict) else ("stores",)
        raise BadInput([Problem(file=str(path), line=lines.line_for(key), key=".".join(key),
                                message="stores must map feedback and registry to a URL or a path")])
    return stores.get(which) or None
