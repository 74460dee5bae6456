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


def relative_inside(path: str, base: Path) -> str:
    """`path` relative to `base` (POSIX separators) when it lies inside it; else unchanged.

    What a store keeps instead of an absolute path, so that copying or moving the folder
    keeps every reference valid. Compared as written first (no system calls: stores do
    this for every row), then with symlinks resolved."""
    if not os.path.isabs(path):
        return path
    rel = _lexically_inside(os.path.normpath(path), os.path.normpath(str(base)))
    if rel is None:
        rel = _lexically_inside(str(Path(path).resolve()), str(Path(base).resolve()))
    return path if rel is None else rel


def _lexically_inside(path: str, base: str) -> str | None:
    if path == base:
        return "."
    prefix = base.rstrip(os.sep) + os.sep
    return Path(path[len(prefix):]).as_posix() if path.startswith(prefix) else None


def absolute_under(stored: str, base: Path | str) -> str:
    """The inverse of relative_inside: a relative stored path under `base`, as a string."""
    return stored if os.path.isabs(stored) else os.path.join(str(base), stored)


def workspace_ref(path: str, workspace: Path) -> str:
    """A local path inside the workspace as `workspace:sub/path` (the recipes' notation);
    anything else (a hub id, a path elsewhere) unchanged. For values that may also be a
    plain name, such as a base model, where a bare relative path would be ambiguous."""
    rel = relative_inside(path, workspace)
    return f"{WORKSPACE_PREFIX}{rel}" if rel != path else path


def from_workspace_ref(stored: str, workspace: Path) -> str:
    """The inverse of workspace_ref: `workspace:sub/path` as an absolute path string."""
    if stored.startswith(WORKSPACE_PREFIX):
        return absolute_under(stored[len(WORKSPACE_PREFIX):], workspace)
    return stored


def portable_path(path: str | os.PathLike, root: Path, workspace: Path) -> str:
    """A path as a record that travels keeps it: `workspace:sub/path` when inside the
    workspace, relative to the project root when inside that, else as it is."""
    text = str(path)
    ref = workspace_ref(text, workspace)
    return ref if ref != text else relative_inside(text, root)
