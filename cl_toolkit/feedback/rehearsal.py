"""The rehearsal buffer: a seeded reservoir sample of each version's training examples.

Recipes name it as a rehearsal source so a new version keeps seeing what earlier ones
learned. Layout, under the workspace::

    rehearsal/<model>/<version>.jsonl   # up to `capacity` chat examples, canonical JSONL
    rehearsal/<model>/index.json        # per version: seen, kept, capacity, seed, sha256

Adding a version again replaces its sample (same examples and seed: same bytes).
load_buffer returns every version's sample, oldest version first. logged_prompts reads
what a line was asked in production (self-rehearsal's `{store: true}` prompts).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_write_bytes, atomic_write_json, jsonl_bytes, sha256_bytes
from cl_toolkit.feedback.store import open_store, store_target

ROLES = ("system", "user", "assistant")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}\Z")


def _buffer_dir(workspace: Path, model: str) -> Path:
    if not _NAME.match(model):
        raise BadInput(f"model name {model!r} is not a plain name (letters, digits, . _ + -)")
    return Path(workspace) / "rehearsal" / model


def version_key(version: str) -> tuple:
    """Sort key for versions: numeric parts numerically ('1.10.0' after '1.9.0')."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+-]", version))


def check_example(example, where: str = "example") -> dict:
    """A chat training example {"messages": [{"role", "content"}, ...]}, else BadInput."""
    messages = example.get("messages") if isinstance(example, dict) else None
    if not isinstance(messages, list) or not messages:
        raise BadInput(f"{where}: needs a non-empty 'messages' list")
    for i, message in enumerate(messages):
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise BadInput(f"{where}: messages[{i}] needs a role ({'/'.join(ROLES)}) "
                           "and a string content")
    return example


def reservoir_sample(items: Iterable, capacity: int, rng: random.Random) -> tuple[list, int]:
    """Algorithm R: a uniform sample of up to `capacity` items in one pass. -> (kept, seen)."""
    kept, seen = [], 0
    for seen, item in enumerate(items, 1):
        if len(kept) < capacity:
            kept.append(item)
        else:
            j = rng.randrange(seen)
            if j < capacity:
                kept[j] = item
    return kept, seen


def _read_index(folder: Path) -> dict:
    path = folder / "index.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"versions": {}}


def add_to_buffer(workspace: Path, model: str, version: str, examples: list[dict], *,
                  capacity: int = 1000, seed: int = 0) -> None:
    """Keep a seeded reservoir sample of `examples` as `version`'s share of the buffer."""
    folder = _buffer_dir(workspace, model)
    if not _NAME.match(version):
        raise BadInput(f"version {version!r} is not a plain name")
    if capacity < 1:
        raise BadInput(f"capacity must be at least 1, got {capacity}")
    checked = (check_example(e, f"{model} {version} example {i + 1}")
               for i, e in enumerate(examples))
    # a string seed hashes deterministically, so each (model, version) draws its own stream
    kept, seen = reservoir_sample(checked, capacity, random.Random(f"{seed}:{model}:{version}"))
    data = jsonl_bytes(kept)
    atomic_write_bytes(folder / f"{version}.jsonl", data)
    index = _read_index(folder)
    index["versions"][version] = {"file": f"{version}.jsonl", "seen": seen, "kept": len(kept),
                                  "capacity": capacity, "seed": seed, "sha256": sha256_bytes(data)}
    index["model"] = model
    atomic_write_json(folder / "index.json", index)


def load_buffer(workspace: Path, model: str) -> list[dict]:
    """Every version's sampled examples, oldest version first; [] when there are none."""
    folder = _buffer_dir(workspace, model)
    examples = []
    for version in sorted(_read_index(folder)["versions"], key=version_key):
        path = folder / f"{version}.jsonl"
        with open(path, encoding="utf-8") as f:
            examples += [json.loads(line) for line in f if line.strip()]
    return examples


def logged_prompts(workspace: Path, model: str, versions: list[str]) -> list[str]:
    """The inputs of the predictions logged for `versions` of `model`, oldest first (one
    without a `model` in its metadata counts as this line's); [] when there is no store."""
    if not versions or not store_target(workspace).exists():
        return []
    marks = ", ".join("?" * len(versions))
    with open_store(workspace) as store:
        rows = store.conn.execute(
            f"SELECT input FROM predictions WHERE model_version IN ({marks}) "
            "AND COALESCE(json_extract(metadata, '$.model'), ?) = ? ORDER BY timestamp, request_id",
            [*versions, model, model])
        return [r[0] for r in rows]
