"""A version's files, copied out of its run folder into the artifact root.

The root is a local folder (default `workspace/registry/artifacts`) or an fsspec URL
(`s3://`, `gs://`, `memory://`). A version's files go to a staging folder first and are
moved to `<root>/<model>/<version>/` only when all of them are written; the registry row
that names them is committed after that move. A crash therefore leaves no version or a
complete one; at worst a folder no row names (an orphan), which the next register of that
version replaces and `clt registry check` reports as a note.

Only regular files that lie inside the folders being copied are taken: a symbolic link
anywhere in them (to a file or a folder, inside the folder or out of it) or a special
file refuses the whole register before anything is staged, naming the entry, so a link
cannot smuggle a file from elsewhere on the machine into the registry. Files are opened
without following a last-moment link as well.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.core.errors import BadInput

# run-relative file -> required? (the provenance habit: recipe as it ran, the file it came
# from, rendered config, manifest; run folders rendered before recipe.original.yml lack it)
RUN_FILES = {"axolotl.yml": True, "recipe.yml": True, "recipe.original.yml": False, "manifest.json": True,
             "data/new.jsonl": True, "metrics.json": False, "gate.json": False}
RUN_DIRS = ("eval",)  # evaluation results, kept when the evaluation step wrote them
_BLOCK = 1 << 20


@dataclass(frozen=True)
class ArtifactFile:
    """One stored file: its path inside the version folder, SHA-256 and size."""

    path: str
    sha256: str
    bytes: int


def run_artifacts(run_dir: Path, adapter_dir: str | None) -> list[tuple[Path, str]]:
    """(source file, stored path) for everything a version keeps; BadInput if incomplete."""
    missing = [name for name, required in RUN_FILES.items() if required and not (run_dir / name).is_file()]
    weights = Path(adapter_dir) if adapter_dir else run_dir / "merged"
    if not (weights / "adapter_config.json").is_file() and not (weights / "config.json").is_file():
        missing.append(f"{weights} (adapter_config.json or config.json)")
    if missing:
        raise BadInput(f"run folder {run_dir} is incomplete, missing: {', '.join(missing)}")
    pairs = [(run_dir / n, n) for n in RUN_FILES if (run_dir / n).is_file()]
    for src, _ in pairs:
        _refuse_unless(src, stat.S_ISREG)
    pairs += _tree(weights, "adapter" if adapter_dir else "merged")
    for d in RUN_DIRS:
        pairs += _tree(run_dir / d, d)
    return pairs


def _tree(folder: Path, prefix: str) -> list[tuple[Path, str]]:
    """Every file under `folder`, minus trainer checkpoints (optimizer state, not the
    result); BadInput naming the first symlink or special file among the rest."""
    if not folder.is_dir():
        return []
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith("checkpoint-"))
        for name in dirs:  # os.walk lists a link to a folder here and does not enter it
            _refuse_unless(here / name, stat.S_ISDIR)
        for name in sorted(f for f in files if not f.startswith("checkpoint-")):
            _refuse_unless(here / name, stat.S_ISREG)
            out.append((here / name, f"{prefix}/{(here / name).relative_to(folder).as_posix()}"))
    return sorted(out, key=lambda pair: pair[1])


def _refuse_unless(path: Path, is_kind) -> None:
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise BadInput(f"{path} is a symbolic link (to {os.readlink(path)}): the registry copies "
                       "only regular files inside the folder; copy the file in instead of linking it")
    if not is_kind(mode):
        raise BadInput(f"{path} is not a regular file or folder: the registry copies only regular files")


def _copy_hashing(src: Path, dst) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    try:  # a link swapped in after the check is refused, not followed
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        if os.path.islink(src):
            raise BadInput(f"{src} is a symbolic link: the registry copies only regular files") from None
        raise e
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BadInput(f"{src} is not a regular file: the registry copies only regular files")
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
            dst.write(block)
            n += len(block)
    return h.hexdigest(), n


def _hash_stream(f) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: f.read(_BLOCK), b""):
        h.update(block)
    return h.hexdigest()


class LocalArtifacts:
    """Artifacts in a local folder: fsync'd files, published with one rename."""

    is_local = True

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()

    def version_dir(self, model: str, version: str) -> str:
        return str(self.root / model / version)

    def stage(self, model: str, pairs: list[tuple[Path, str]]) -> tuple[str, list[ArtifactFile]]:
        parent = self.root / model
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
        staging.chmod(0o755)  # mkdtemp makes it private; the published version must be readable
        try:
            files = []
            for src, rel in pairs:
                dst = staging / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                with open(dst, "wb") as out:
                    sha, size = _copy_hashing(src, out)
                    out.flush()
                    os.fsync(out.fileno())
                files.append(ArtifactFile(rel, sha, size))
            for folder in {(staging / rel).parent for _, rel in pairs}:
                _fsync_dir(folder)  # the files' names survive a power cut, not only their bytes
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return str(staging), files

    def publish(self, staging: str, final: str) -> None:
        """Move staging into place; an orphan left by a crashed register is replaced."""
        final_p = Path(final)
        if final_p.exists():
            shutil.rmtree(final_p)
        os.replace(staging, final_p)
        _fsync_dir(final_p.parent)

    def remove(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def sha256(self, version_dir: str, rel: str) -> str | None:
        try:
            with open(Path(version_dir) / rel, "rb") as f:
                return _hash_stream(f)
        except FileNotFoundError:
            return None

    def read_bytes(self, version_dir: str, rel: str) -> bytes | None:
        p = Path(version_dir) / rel
        return p.read_bytes() if p.is_file() else None

    def children(self, model: str | None = None) -> list[str]:
        folder = self.root / model if model else self.root
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


class FsspecArtifacts:
    """Artifacts behind an fsspec URL. Object stores have no atomic rename: the registry
    row, committed after the move, is what makes a version exist."""

    is_local = False

    def __init__(self, url: str):
        import fsspec  # only when a URL root is configured

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def _full(self, path: str) -> str:
        return self.fs.unstrip_protocol(path)

    def _strip(self, url: str) -> str:
        return self.fs._strip_protocol(url)

    def version_dir(self, model: str, version: str) -> str:
        return self._full(f"{self.root}/{model}/{version}")

    def stage(self, model: str, pairs: list[tuple[Path, str]]) -> tuple[str, list[ArtifactFile]]:
        staging = f"{self.root}/{model}/.staging-{uuid.uuid4().hex}"
        try:
            files = []
            for src, rel in pairs:
                self.fs.makedirs(f"{staging}/{rel}".rsplit("/", 1)[0], exist_ok=True)
                with self.fs.open(f"{staging}/{rel}", "wb") as out:
                    sha, size = _copy_hashing(src, out)
                files.append(ArtifactFile(rel, sha, size))
        except BaseException:
            self.remove(staging)
            raise
        return self._full(staging), files

    def publish(self, staging: str, final: str) -> None:
        if self.fs.exists(self._strip(final)):
            self.fs.rm(self._strip(final), recursive=True)
        self.fs.mv(self._strip(staging), self._strip(final), recursive=True)

    def remove(self, path: str) -> None:
        if self.fs.exists(self._strip(path)):
            self.fs.rm(self._strip(path), recursive=True)

    def sha256(self, version_dir: str, rel: str) -> str | None:
        try:
            with self.fs.open(f"{self._strip(version_dir)}/{rel}", "rb") as f:
                return _hash_stream(f)
        except FileNotFoundError:
            return None

    def read_bytes(self, version_dir: str, rel: str) -> bytes | None:
        try:
            return self.fs.cat_file(f"{self._strip(version_dir)}/{rel}")
        except FileNotFoundError:
            return None

    def children(self, model: str | None = None) -> list[str]:
        folder = f"{self.root}/{model}" if model else self.root
        if not self.fs.isdir(folder):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def local_root(root: str | os.PathLike) -> Path | None:
    """The folder of a local root (a plain path or file://), resolved; None for a URL."""
    text = str(root)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        return None
    return Path(text).expanduser().resolve()


def artifact_store(root: str | os.PathLike):
    """The backend for a root: a plain path or file:// is local, any other URL is fsspec."""
    text = str(root)
    if "://" not in text:
        return LocalArtifacts(text)
    if text.startswith("file://"):
        return LocalArtifacts(text[len("file://"):])
    return FsspecArtifacts(text)


def store_for_dir(version_dir: str):
    """The backend that can read a version folder recorded in the registry."""
    if "://" in version_dir and not version_dir.startswith("file://"):
        return FsspecArtifacts(version_dir)
    return LocalArtifacts(Path(version_dir).parent.parent)
