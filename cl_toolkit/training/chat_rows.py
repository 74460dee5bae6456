"""Chat training rows: reading and checking chat JSONL, exact deduplication, and the new
data of every ancestor of a recipe (from their run folders). Below both the mix and the
strategies, which each need them."""

from __future__ import annotations

import json
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import sha256_file
from cl_toolkit.core.workspace import WORKSPACE_PREFIX
from cl_toolkit.core.yamlio import display
from cl_toolkit.recipe.model import LoadedRecipe
from cl_toolkit.registry import artifact_file

ROLES = {"system", "user", "assistant"}


def read_chat_jsonl(path: Path, max_rows: int | None = None) -> list[dict]:
    """Read chat rows `{"messages": [...]}`; BadInput names file and line of every bad row."""
    rows, problems, fname = [], [], display(path)
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                err = parse_row(line)
                if isinstance(err, str):
                    problems.append(Problem(fname, err, lineno))
                else:
                    rows.append(err)
        except UnicodeDecodeError as e:
            problems.append(Problem(fname, f"not UTF-8 ({e.reason})"))
    if problems:
        raise BadInput(problems[:20])
    if not rows:
        raise BadInput([Problem(fname, "no training rows")])
    return rows[:max_rows] if max_rows else rows


def parse_row(line: str) -> dict | str:
    """One JSONL line as a checked chat row, or why it is not one."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        return f"invalid JSON ({e.msg})"
    msgs = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(msgs, list) or not msgs:
        return "expected {\"messages\": [{\"role\", \"content\"}, ...]}"
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return "each message needs a role (system|user|assistant) and a string content"
    if msgs[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer"
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in msgs]}


def source_label(raw: str) -> str:
    return raw if raw.startswith(WORKSPACE_PREFIX) else str(Path(raw))


def ancestor_rows(lr: LoadedRecipe, registry) -> tuple[list[dict], list[dict]]:
    """The new data of every ancestor, from their run folders (hashes checked against
    manifests), and one manifest input entry per ancestor (role `rehearsal`)."""
    rows, inputs = [], []
    version = lr.recipe.parent
    while version:
        rec = registry.require(lr.recipe.model, version)
        new_file = artifact_file(rec, "data/new.jsonl")
        manifest = json.loads(artifact_file(rec, "manifest.json").read_text())
        want = manifest["outputs"]["data/new.jsonl"]["sha256"]
        if not new_file.is_file() or sha256_file(new_file) != want:
            raise BadInput(f"the training data of {lr.recipe.model} {version} is missing or changed: {new_file}")
        got = read_chat_jsonl(new_file)
        rows.extend(got)
        inputs.append({"role": "rehearsal", "source": f"parent_data:{version}", "sha256": want, "rows": len(got)})
        version = rec.parent
    return rows, inputs


def dedupe(rows: list[dict]) -> list[dict]:
    """Drop exact repeats (canonical JSON), keeping the first occurrence's position."""
    seen, out = set(), []
    for r in rows:
        key = json.dumps(r, sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out
