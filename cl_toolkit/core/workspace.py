"""The workspace (CLT_HOME), the project root and the toolkit root, and keeping recipe
paths inside them.

Three roots a recipe or profile may read from: the project root (the user's repository:
the nearest folder above the recipe with `recipes/` or `configs/`), the workspace, and the
toolkit root (the folder that holds the installed `cl_toolkit` package, with the bundled
`configs/` and `data/` beside it). `workspace:PATH` names a file under the workspace,
`toolkit:PATH` one under the toolkit's `data/` folder, and a bare profile name (`tiny-cpu`)
the bundled `configs/profiles/<name>.yml`."""

from __future__ import annotations

import os
import re
from pathlib import Path

from cl_toolkit.core.errors import BadInput

WORKSPACE_PREFIX = "workspace:"  # a recipe path that names a file in the workspace
TOOLKIT_PREFIX = "toolkit:"  # a recipe path that names a file of the toolkit's bundled data/
# a profile written as a name, not a path: one of the toolkit's configs/profiles/<name>.yml
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


def toolkit_root() -> Path:
    """The folder holding the `cl_toolkit` package: the toolkit's repository, whose
    `configs/` and `data/` are the bundled profiles and data (an editable install or a
    checkout on PYTHONPATH has them; a wheel in site-packages does not)."""
    return Path(__file__).resolve().parents[2]


def toolkit_data() -> Path:
    """Where `toolkit:PATH` refs start: the toolkit's bundled `data/` folder."""
    return toolkit_root() / "data"


def bundled_profiles() -> list[str]:
    """The names a recipe's `profile:` may use: the toolkit's configs/profiles/*.yml."""
    return sorted(p.stem for p in (toolkit_root() / "configs" / "profiles").glob("*.yml"))


def is_profile_name(raw: str) -> bool:
    """A `profile:` value written as a bundled profile's name (no folder, no .yml)."""
    return bool(PROFILE_NAME.match(raw)) and not raw.endswith((".yml", ".yaml"))


def profile_ref(raw: str) -> str:
    """A recipe's `profile:` as a path ref: a name becomes the bundled profile's `toolkit:`
    ref (BadInput naming the bundled ones when there is no such profile); a path stays."""
    if not is_profile_name(raw):
        return raw
    if raw not in bundled_profiles():
        raise BadInput(f"no bundled profile named {raw!r} (bundled: {', '.join(bundled_profiles())}; "
                       f"or give a path to a profile YAML)")
    return f"{TOOLKIT_PREFIX}../configs/profiles/{raw}.yml"


def profile_root(path: str | os.PathLike, root: Path) -> Path:
    """Where a profile's relative paths start: the toolkit root for a bundled profile read
    from another project (its DeepSpeed and model-config files are the toolkit's), else
    the recipe's project root."""
    path, troot = Path(path).resolve(), toolkit_root()
    if _inside(path, troot) and not _inside(path, Path(root).resolve()):
        return troot
    return Path(root)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def resolve_path(raw: str, root: Path, workspace: Path) -> Path:
    """Resolve a path written in a recipe or profile.

    `workspace:sub/path` names a file under the workspace, `toolkit:sub/path` one under the
    toolkit's `data/`; anything else is relative to the project root. The result must stay
    inside the project root, the workspace or the toolkit root (symlinks resolved), else
    BadInput naming the three.
    """
    troot = toolkit_root()
    if raw.startswith(WORKSPACE_PREFIX):
        path = (workspace / raw[len(WORKSPACE_PREFIX):]).resolve()
    elif raw.startswith(TOOLKIT_PREFIX):
        path = (toolkit_data() / raw[len(TOOLKIT_PREFIX):]).resolve()
        if not _inside(path, troot):
            raise BadInput(f"path {raw!r} leaves the toolkit root {troot} "
                           f"({TOOLKIT_PREFIX} refs start in its data/ folder and stay inside it)")
        return path
    else:
        path = (Path(root) / raw).resolve()
    if not (_inside(path, Path(root).resolve()) or _inside(path, Path(workspace).resolve()) or _inside(path, troot)):
        raise BadInput(f"path {raw!r} leaves the project root, the workspace and the toolkit root "
                       f"(allowed roots: project root {Path(root).resolve()}, workspace {Path(workspace).resolve()}, "
                       f"toolkit root {troot}, as {TOOLKIT_PREFIX}PATH under its data/)")
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


def toolkit_ref(path: str) -> str:
    """A local path inside the toolkit root as `toolkit:sub/path` (relative to its data/,
    so a bundled profile reads `toolkit:../configs/profiles/NAME.yml`); else unchanged."""
    if not os.path.isabs(path):
        return path
    troot = toolkit_root()
    if relative_inside(path, troot) == path:
        return path
    rel = os.path.relpath(Path(path).resolve(), toolkit_data())
    return f"{TOOLKIT_PREFIX}{Path(rel).as_posix()}"


def portable_path(path: str | os.PathLike, root: Path, workspace: Path) -> str:
    """A path as a record that travels keeps it: `workspace:sub/path` when inside the
    workspace, relative to the project root when inside that, `toolkit:sub/path` when
    inside the toolkit root, else as it is."""
    text = str(path)
    ref = workspace_ref(text, workspace)
    if ref != text:
        return ref
    rel = relative_inside(text, root)
    return rel if rel != text else toolkit_ref(text)
