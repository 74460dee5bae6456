"""The quarantine file: lines that could not be stored, kept beside the store (0600) so
nothing is silently dropped. One JSON object a line (docs/formats.md, "The quarantine
file"). A line already quarantined (same file, line number and bytes) is not copied again,
so importing the same bad file twice leaves the quarantine file as after the first time.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from cl_toolkit.core.files import open_private_append


def _key(file: str, line: int, raw_bytes: bytes) -> tuple[str, int, str]:
    return file, line, hashlib.sha256(raw_bytes).hexdigest()


def _entry_key(entry: dict) -> tuple[str, int, str] | None:
    try:
        return _key(str(entry["file"]), int(entry["line"]),
                    str(entry["raw"]).encode("utf-8", "surrogateescape"))
    except (KeyError, TypeError, ValueError, UnicodeEncodeError):
        return None


class Quarantine:
    """Appends rejects to one quarantine file, skipping those already in it. Keeps the keys
    it has read, so a long import reads the file once, plus what others appended since."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._known: set = set()
        self._read_to = 0

    def _catch_up(self, f) -> None:
        f.seek(self._read_to)
        while line := f.readline():
            if not line.endswith("\n"):
                break  # a torn last line (a crash mid-write) is no entry
            self._read_to = f.tell()
            try:
                key = _entry_key(json.loads(line))
            except (ValueError, AttributeError):
                continue
            if key is not None:
                self._known.add(key)

    def add(self, rejects: list[dict], now: str) -> int:
        """Append the rejects not already in the file (each a dict with at least file,
        line and raw); -> how many were appended. Whole lines, one write, under an
        exclusive lock, so concurrent imports neither interleave nor duplicate."""
        open_private_append(self.path, encoding="ascii").close()  # created 0600 (or tightened)
        with open(self.path, "r+", encoding="ascii", errors="surrogateescape", newline="") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            self._catch_up(f)
            lines = []
            for r in rejects:
                key = _entry_key(r)
                if key in self._known:
                    continue
                self._known.add(key)
                lines.append(json.dumps({**r, "quarantined_at": now}, sort_keys=True) + "\n")
            if not lines:
                return 0
            end = f.seek(0, os.SEEK_END)
            if end > self._read_to:  # after a torn last line, start a fresh one
                lines.insert(0, "\n")
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
            self._read_to = f.tell()
        return len(lines) - (lines[0] == "\n")
