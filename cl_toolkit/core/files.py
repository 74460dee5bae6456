"""Atomic writes and hashing: a crash mid-write never leaves a half-written file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# Files that may hold production data, personal data or keys (stores, quarantine, journal,
# exports, the feedback-token key) are created for their owner alone. Atomic writes are
# 0600 already: mkstemp creates the temp file that way and the rename keeps its mode.
PRIVATE_MODE = 0o600


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """Open a temp file beside `path` for writing; on a clean exit fsync it and rename it
    over `path`, on any error remove it. Readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_private_file(path: str | os.PathLike) -> Path:
    """Create `path` (empty) readable by its owner alone if it does not exist, and take
    group and other permissions away if it does. Call before a library (SQLite) opens it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_MODE)
    os.close(fd)
    if path.stat().st_mode & 0o077:
        os.chmod(path, PRIVATE_MODE)
    return path


def open_private_append(path: str | os.PathLike, encoding: str = "utf-8") -> IO[str]:
    """Open `path` for appending text, creating it 0600 (an existing file loses group and
    other permissions)."""
    ensure_private_file(path)
    return open(path, "a", encoding=encoding)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, dump_json(obj))


def jsonl_bytes(rows: Iterable[dict]) -> bytes:
    """Canonical JSONL: sorted keys, UTF-8, one object a line (byte-identical for equal rows)."""
    return b"".join(
        (json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8") for r in rows
    )


def publish_dir(staging: Path, final: Path) -> None:
    """Move a fully written staging folder into place; the old one goes only after."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
