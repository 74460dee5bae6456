"""Build a recipe's training mix: the new data plus a seeded rehearsal sample, with exact
counts, materialised as canonical JSONL and described in a manifest (SHA-256 of every input).

Rehearsal mixing is ours, not Axolotl's: with N new rows and ratio r, the mix holds
round(N * r / (1 - r)) rehearsal rows, split evenly over the rehearsal sources. A source
smaller than its share is repeated in reshuffled passes (recorded in the manifest).

A strategy can add data trained on in full (`Strategy.history`; merge_and_retrain: every
ancestor's), deduplicated with the new rows, before rehearsal is counted."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import (
    atomic_write_bytes,
    atomic_write_json,
    jsonl_bytes,
    sha256_bytes,
    sha256_file,
)
from cl_toolkit.core.workspace import resolve_path
from cl_toolkit.core.yamlio import display
from cl_toolkit.recipe.domain_source import domain_problem, recorded_domains
from cl_toolkit.recipe.model import LoadedRecipe, thaw
from cl_toolkit.training.chat_rows import ancestor_rows, dedupe, read_chat_jsonl, source_label
from cl_toolkit.training.strategies import STRATEGIES

__all__ = ["Mix", "build_mix", "dedupe", "read_chat_jsonl", "rehearsal_count", "sample_exact", "source_label"]


@dataclass(frozen=True)
class Mix:
    rows: list[dict]          # the final shuffled training mix
    new_rows: list[dict]      # this version's own new data (kept for descendants' rehearsal)
    inputs: list[dict]        # manifest entries: role, source, sha256, rows
    counts: dict              # new, rehearsal per source, total, ratios


def _rehearsal_pools(lr: LoadedRecipe, registry, sources) -> list[tuple[str, list[dict], list[dict]]]:
    pools = []
    for src in sources:
        if "path" in src:
            path = resolve_path(src["path"], lr.root, lr.workspace)
            rows = read_chat_jsonl(path, src.get("max_rows"))
            pools.append((source_label(src["path"]), rows,
                          [{"role": "rehearsal", "source": source_label(src["path"]), "sha256": sha256_file(path), "rows": len(rows),
                            **_domains(src, path)}]))
        elif "parent_data" in src:
            rows, inputs = ancestor_rows(lr, registry)
            pools.append(("parent_data", rows, inputs))
        else:
            from cl_toolkit.feedback.rehearsal import load_buffer

            rows = load_buffer(lr.workspace, lr.recipe.model)
            pools.append(("buffer", rows, [{"role": "rehearsal", "source": "buffer", "sha256": sha256_bytes(jsonl_bytes(rows)), "rows": len(rows)}]))
    return pools


def _domains(src: dict, path: Path) -> dict:
    """{"domains": [...]} for a source with `domain:` (checked again: the file may have
    changed since validation), {} for one without."""
    if "domain" not in src:
        return {}
    why = domain_problem(src, path)
    if why:
        raise BadInput(f"{source_label(src['path'])}: {why}")
    return {"domains": list(recorded_domains(path))}


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
    strategy = STRATEGIES[recipe.strategy]
    new_rows, inputs = [], []
    for src in recipe.data.train:
        path = resolve_path(src["path"], lr.root, lr.workspace)
        rows = read_chat_jsonl(path, src.get("max_rows"))
        new_rows.extend(rows)
        inputs.append({"role": "train", "source": source_label(src["path"]), "sha256": sha256_file(path), "rows": len(rows),
                       **_domains(src, path)})
    rng = random.Random(recipe.data.seed)
    mixed, history = list(new_rows), None
    if strategy.history is not None:  # trained on in full, with the new rows (merge: every ancestor's data)
        past, past_inputs = strategy.history(lr, registry)
        inputs.extend({**i, "role": "history"} for i in past_inputs)
        mixed = dedupe(new_rows + past)
        history = len(mixed) - len(dedupe(new_rows))
    reh = recipe.data.rehearsal
    sources_left = [s for s in (reh.sources if reh else ()) if strategy.rehearses_parent_data or "parent_data" not in s]
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
    if history is not None:
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
