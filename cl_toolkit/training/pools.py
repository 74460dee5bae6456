"""Rehearsal pools: the rows a rehearsal source holds, read by index.

A file under STREAM_BYTES is read and checked whole, as it always was (a bad row anywhere is
reported with its line). A larger file is streamed: one pass in blocks hashes it and finds the
byte offset of every line (numpy over each block), and a row is read, parsed and checked only
when it is drawn, so the pool is never held in memory; what it costs is the index (16 bytes a
row). `parent_data`, the rehearsal buffer and self_rehearsal (the parent's own answers,
training/self_rehearsal.py) are in memory (they are the line's own history)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import jsonl_bytes, sha256_bytes, sha256_file
from cl_toolkit.core.workspace import resolve_path
from cl_toolkit.core.yamlio import display
from cl_toolkit.recipe.domain_source import domain_problem, recorded_domains
from cl_toolkit.recipe.model import LoadedRecipe, source_name
from cl_toolkit.training.chat_rows import ancestor_rows, parse_row, read_chat_jsonl, source_label

STREAM_BYTES = 64 << 20  # a file pool at least this large is indexed and read row by row
BLOCK = 8 << 20
_SHORT = 16  # lines this short are looked at: whitespace-only lines are not rows


@dataclass
class Pool:
    """One rehearsal source: `size` rows, read with `rows(indices)`; `inputs` are its
    manifest entries (role, source, sha256, rows)."""

    label: str
    size: int
    inputs: list[dict]
    memory: list[dict] | None = None  # the rows, when in memory
    path: Path | None = None  # a streamed file, with its line index
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None
    linenos: np.ndarray | None = None
    streamed: bool = False

    def rows(self, indices) -> list[dict]:
        """The rows at `indices` (repeats allowed), in that order."""
        if self.memory is not None:
            return [self.memory[i] for i in indices]
        out, problems, fname = [], [], display(self.path)
        with open(self.path, "rb") as f:
            for i in indices:
                f.seek(int(self.starts[i]))
                raw = f.read(int(self.ends[i] - self.starts[i]))
                try:
                    row = parse_row(raw.decode("utf-8"))
                except UnicodeDecodeError as e:
                    row = f"not UTF-8 ({e.reason})"
                if isinstance(row, str):
                    problems.append(Problem(fname, row, int(self.linenos[i])))
                else:
                    out.append(row)
        if problems:
            raise BadInput(problems[:20])
        return out


def index_lines(path: Path) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over a JSONL file: (sha256, start and end byte of each non-blank line, its 1-based line number)."""
    h, newlines, size = hashlib.sha256(), [], 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            newlines.append(np.flatnonzero(np.frombuffer(buf, np.uint8, n) == 10) + size)
            size += n
    nl = np.concatenate(newlines) if newlines else np.zeros(0, np.int64)
    ends = nl if size == 0 or (nl.size and nl[-1] == size - 1) else np.append(nl, size)
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    linenos = np.arange(1, ends.size + 1, dtype=np.int64)
    keep = _non_blank(path, starts, ends)
    return h.hexdigest(), starts[keep], ends[keep], linenos[keep]


def _non_blank(path: Path, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    keep = ends > starts
    with open(path, "rb") as f:
        for i in np.flatnonzero(keep & (ends - starts <= _SHORT)):
            f.seek(int(starts[i]))
            keep[i] = bool(f.read(int(ends[i] - starts[i])).strip())
    return keep


def file_pool(raw: str, path: Path, max_rows: int | None = None) -> Pool:
    """A file source: read whole below STREAM_BYTES, else indexed and streamed."""
    label = source_name({"path": raw})
    if path.stat().st_size < STREAM_BYTES:
        rows = read_chat_jsonl(path, max_rows)
        return Pool(label, len(rows), [_input(label, sha256_file(path), len(rows))], memory=rows)
    digest, starts, ends, linenos = index_lines(path)
    if not starts.size:
        raise BadInput([Problem(display(path), "no training rows")])
    n = min(starts.size, max_rows or starts.size)
    return Pool(label, n, [_input(label, digest, n)], path=path, starts=starts[:n], ends=ends[:n],
                linenos=linenos[:n], streamed=True)


def _input(label: str, digest: str, rows: int) -> dict:
    return {"role": "rehearsal", "source": label, "sha256": digest, "rows": rows}


def source_domains(src: dict, path: Path) -> dict:
    """{"domains": [...]} for a source with `domain:` (checked again: the file may have
    changed since validation), {} for one without."""
    if "domain" not in src:
        return {}
    why = domain_problem(src, path)
    if why:
        raise BadInput(f"{source_label(src['path'])}: {why}")
    return {"domains": list(recorded_domains(path))}


def open_pools(lr: LoadedRecipe, registry, sources) -> list[Pool]:
    """The pools of `sources`, in their order."""
    pools = []
    for src in sources:
        if "path" in src:
            path = resolve_path(src["path"], lr.root, lr.workspace)
            pool = file_pool(src["path"], path, src.get("max_rows"))
            pool.inputs[0].update(source_domains(src, path))  # a `domain:` source: checked again, recorded
            pools.append(pool)
        elif "parent_data" in src:
            rows, inputs = ancestor_rows(lr, registry)
            pools.append(Pool("parent_data", len(rows), inputs, memory=rows))
        elif "self_rehearsal" in src:
            from cl_toolkit.training.self_rehearsal import LABEL, self_rehearsal_rows

            rows, block = self_rehearsal_rows(lr, registry, src["self_rehearsal"])
            entry = {**_input(LABEL, sha256_bytes(jsonl_bytes(rows)), len(rows)), "self_rehearsal": block}
            pools.append(Pool(LABEL, len(rows), [entry], memory=rows))
        else:
            from cl_toolkit.feedback.rehearsal import load_buffer

            rows = load_buffer(lr.workspace, lr.recipe.model)
            pools.append(Pool("buffer", len(rows), [_input("buffer", sha256_bytes(jsonl_bytes(rows)), len(rows))],
                              memory=rows))
    return pools
