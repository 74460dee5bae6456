"""Build a recipe's training mix: the new data plus a seeded rehearsal sample, with exact
counts, materialised as canonical JSONL and described in a manifest (SHA-256 of every input).

Rehearsal mixing is ours, not Axolotl's: with N new rows and ratio r, the mix holds
round(N * r / (1 - r)) rehearsal rows, split evenly over the rehearsal sources. A source
smaller than its share is repeated in reshuffled passes (recorded in the manifest)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import (
    atomic_write_bytes,
    atomic_write_json,
    jsonl_bytes,
    sha256_bytes,
    sha256_file,
)
from cl_toolkit.core.workspace import WORKSPACE_PREFIX, resolve_path
from cl_toolkit.core.yamlio import display
from cl_toolkit.recipe.model import LoadedRecipe, thaw
from cl_toolkit.registry import artifact_file

ROLES = {"system", "user", "assistant"}


@dataclass(frozen=True)
class Mix:
    rows: list[dict]          # the final shuffled training mix
    new_rows: list[dict]      # this version's own new data (kept for descendants' rehearsal)
    inputs: list[dict]        # manifest entries: role, source, sha256, rows
    counts: dict              # new, rehearsal per source, total, ratios


def read_chat_jsonl(path: Path, max_rows: int | None = None) -> list[dict]:
    """Read chat rows `{"messages": [...]}`; BadInput names file and line of every bad row."""
    rows, problems, fname = [], [], display(path)
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                err = _check_row(line)
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


def _check_row(line: str) -> dict | str:
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


def _ancestor_rows(lr: LoadedRecipe, registry) -> tuple[list[dict], list[dict]]:
    """The new data of every ancestor, from their run folders (hashes checked against manifests)."""
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


def _rehearsal_pools(lr: LoadedRecipe, registry, sources) -> list[tuple[str, list[dict], list[dict]]]:
    pools = []
    for src in sources:
        if "path" in src:
            path = resolve_path(src["path"], lr.root, lr.workspace)
            rows = read_chat_jsonl(path, src.get("max_rows"))
            pools.append((source_label(src["path"]), rows,
                          [{"role": "rehearsal", "source": source_label(src["path"]), "sha256": sha256_file(path), "rows": len(rows)}]))
        elif "parent_data" in src:
            rows, inputs = _ancestor_rows(lr, registry)
            pools.append(("parent_data", rows, inputs))
        else:
            from cl_toolkit.feedback.rehearsal import load_buffer

            rows = load_buffer(lr.workspace, lr.recipe.model)
            pools.append(("buffer", rows, [{"role": "rehearsal", "source": "buffer", "sha256": sha256_bytes(jsonl_bytes(rows)), "rows": len(rows)}]))
    return pools


def sample_exact(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """n rows drawn without replacement; a short pool is repeated in reshuffled passes."""
    out: list[dict] = []
    while len(out) < n:
        order = list(range(len(rows)))
        rng.shuffle(order)
        out.extend(rows[i] for i in order[: n - len(out)])
    return out


def rehearsal_count(n_new: int, ratio: float) -> int:
    return round(n_new * ratio / (1.0 - ratio)) if ratio > 0 else 0


def build_mix(lr: LoadedRecipe, registry) -> Mix:
    """Materialise the training mix of a recipe, deterministically for a given seed."""
    recipe = lr.recipe
    new_rows, inputs = [], []
    for src in recipe.data.train:
        path = resolve_path(src["path"], lr.root, lr.workspace)
        rows = read_chat_jsonl(path, src.get("max_rows"))
        new_rows.extend(rows)
        inputs.append({"role": "train", "source": source_label(src["path"]), "sha256": sha256_file(path), "rows": len(rows)})
    rng = random.Random(recipe.data.seed)
    mixed, history = list(new_rows), 0
    if recipe.strategy == "merge_and_retrain":  # the complete dataset: every ancestor's data + new
        past, past_inputs = _ancestor_rows(lr, registry)
        inputs.extend({**i, "role": "history"} for i in past_inputs)
        mixed = dedupe(new_rows + past)
        history = len(mixed) - len(dedupe(new_rows))
    reh = recipe.data.rehearsal
    sources_left = [s for s in (reh.sources if reh else ()) if not (recipe.strategy == "merge_and_retrain" and "parent_data" in s)]
    n_reh = rehearsal_count(len(mixed), reh.ratio) if sources_left else 0
    per_source, n_base = {}, len(mixed)
    if n_reh:
        pools = _rehearsal_pools(lr, registry, sources_left)
        shares = [n_reh // len(pools) + (1 if i < n_reh % len(pools) else 0) for i in range(len(pools))]
        for (label, rows, src_inputs), share in zip(pools, shares, strict=True):
            inputs.extend(src_inputs)
            if share and not rows:
                raise BadInput(f"rehearsal source {label} has no rows")
            picked = sample_exact(rows, share, rng)
            per_source[label] = {"rows": len(picked), "pool": len(rows), "repeated": share > len(rows)}
            mixed.extend(picked)
    rng.shuffle(mixed)
    total = len(mixed)
    counts = {"new": len(new_rows), "rehearsal": per_source, "total": total,
              "ratio_requested": reh.ratio if reh else 0.0,
              "ratio_actual": round((total - n_base) / total, 6) if total else 0.0}
    if recipe.strategy == "merge_and_retrain":
        counts["history"] = history
    return Mix(rows=[thaw(r) for r in mixed], new_rows=new_rows, inputs=inputs, counts=counts)


def write_mix(lr: LoadedRecipe, mix: Mix, out_dir: Path) -> dict:
    """`clt data build`: the mix as OUT/train.jsonl plus OUT/mix.json (every input with its
    SHA-256 and rows, the counts, the output's hash), each written atomically; returns mix.json."""
    data = jsonl_bytes(mix.rows)
    atomic_write_bytes(out_dir / "train.jsonl", data)
    summary = {"recipe": display(lr.source), "recipe_sha256": lr.sha256, "seed": lr.recipe.data.seed,
               "inputs": mix.inputs, "mix": mix.counts, "train.jsonl": {"sha256": sha256_bytes(data), "rows": len(mix.rows)}}
    atomic_write_json(out_dir / "mix.json", summary)
    return summary
