"""The workspace (CLT_HOME) and the project root, and keeping recipe paths inside them."""

from __future__ import annotations

import os
from pathlib import Path

from cl_toolkit.core.errors import BadInput

WORKSPACE_PREFIX = "workspace:"  # a recipe path that names a file in the workspace


def workspace_dir(override: str | os.PathLike | None = None) -> Path:
    """The workspace: --workspace, else $CLT_HOME, else ./workspace."""
    raw = override or os.environ.get("CLT_HOME") or "workspace"
    return Path(raw).expanduser().resolve()


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The folder that holds `recipes/` and `configs/`: the nearest ancestor of `start`
    (a recipe file, or the current directory) that has a `configs` or `recipes` folder."""
    here = Path(start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for cand in [here, *here.parents]:
        if (cand / "configs").is_dir() or (cand / "recipes").is_dir():
            return cand
    return Path.cwd().resolve()


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def resolve_path(raw: str, root: Path, workspace: Path) -> Path:
    """Resolve a path written in a recipe or profile.

    `workspace:sub/path` names a file under the workspace; anything else is relative to
    the project root. The result must stay inside the project root or the workspace
    (symlinks resolved), else BadInput.
    """
    if raw.startswith(WORKSPACE_PREFIX):
        path = (workspace / raw[len(WORKSPACE_PREFIX):]).resolve()
    else:
        path = (root / raw).resolve()
    if not (_inside(path, root) or _inside(path, workspace)):
        raise BadInput(f"path {raw!r} leaves the project root and the workspace")
    return path
