"""Build a recipe's training mix: the new data plus a seeded rehearsal sample, with exact
counts, materialised as canonical JSONL and described in a manifest (SHA-256 of every input).

Rehearsal mixing is ours, not Axolotl's: with N new rows and ratio r, the mix holds
round(N * r / (1 - r)) rehearsal rows (`unit: tokens`: that share of the new rows' tokens),
shared between the sources by `split` (even, proportional to their rows, or weights).

- `resample: once` (today's mix, byte for byte): one sample, drawn in reshuffled passes (a
  source smaller than its share is repeated), trained on every epoch.
- `resample: per_epoch`: the toolkit writes every epoch of the training stream itself, each
  with all new rows and a fresh draw from each source that cycles through it (draw.Cycler),
  so every old row is replayed before any repeats; render has Axolotl make one pass over it.
  The counts record, per source, rows drawn per epoch and how often each row was seen.

A strategy can add data trained on in full (`Strategy.history`; merge_and_retrain: every
ancestor's), deduplicated with the new rows, before rehearsal is counted. File sources are
pools.Pool: a large one is streamed, never loaded whole."""

from __future__ import annotations

import random
from collections.abc import Callable
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
from cl_toolkit.recipe.model import LoadedRecipe, split_key, thaw
from cl_toolkit.training.chat_rows import dedupe, read_chat_jsonl, source_label
from cl_toolkit.training.draw import Cycler, Passes, allocate, coverage, take_tokens
from cl_toolkit.training.pools import Pool, open_pools, source_domains
from cl_toolkit.training.profiles import Profile, load_profile
from cl_toolkit.training.strategies import STRATEGIES

__all__ = ["Mix", "build_mix", "dedupe", "read_chat_jsonl", "rehearsal_count", "sample_exact", "source_label",
           "training_epochs"]


@dataclass(frozen=True)
class Mix:
    rows: list[dict]          # the final shuffled training mix (per_epoch: every epoch, in order)
    new_rows: list[dict]      # this version's own new data (kept for descendants' rehearsal)
    inputs: list[dict]        # manifest entries: role, source, sha256, rows
    counts: dict              # new, rehearsal per source, total, ratios (per_epoch: epochs, coverage)


def sample_exact(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """n rows drawn without replacement; a short pool is repeated in reshuffled passes."""
    return [rows[i] for i in Passes(len(rows), rng).take_n(n)]


def rehearsal_count(n_new: int, ratio: float) -> int:
    return round(n_new * ratio / (1.0 - ratio)) if ratio > 0 else 0


def training_epochs(lr: LoadedRecipe, profile: Profile) -> int:
    """The epochs the run trains: the recipe's `axolotl:`, else `train:`, else the profile's
    (Axolotl's own default is 1). Recipe validation refused a fraction with per_epoch."""
    cfg = {**profile.axolotl, **thaw(lr.recipe.train), **thaw(lr.recipe.axolotl)}
    return int(cfg.get("num_epochs") or 1)


def _weights(split, pools: list[Pool]) -> list[float]:
    if split == "even":
        return [1.0] * len(pools)
    if split == "proportional":
        return [float(p.size) for p in pools]
    named = {split_key(k): float(w) for k, w in split.items()}
    return [named[p.label] for p in pools]


def _base_rows(lr: LoadedRecipe, registry) -> tuple[list[dict], list[dict], list[dict], int | None]:
    """(new rows, the rows trained on in full: new + history, manifest inputs, history count)."""
    recipe, new_rows, inputs = lr.recipe, [], []
    for src in recipe.data.train:
        path = resolve_path(src["path"], lr.root, lr.workspace)
        rows = read_chat_jsonl(path, src.get("max_rows"))
        new_rows.extend(rows)
        inputs.append({"role": "train", "source": source_label(src["path"]), "sha256": sha256_file(path), "rows": len(rows),
                       **source_domains(src, path)})
    strategy, base, history = STRATEGIES[recipe.strategy], list(new_rows), None
    if strategy.history is not None:  # trained on in full, with the new rows (merge: every ancestor's data)
        past, past_inputs = strategy.history(lr, registry)
        inputs.extend({**i, "role": "history"} for i in past_inputs)
        base = dedupe(new_rows + past)
        history = len(base) - len(dedupe(new_rows))
    return new_rows, base, inputs, history


def build_mix(lr: LoadedRecipe, registry, profile: Profile | None = None) -> Mix:
    """Materialise the training mix of a recipe, deterministically for a given seed.
    `profile` (else loaded) gives the epochs of per_epoch and the tokenizer of unit: tokens."""
    recipe = lr.recipe
    new_rows, base, inputs, history = _base_rows(lr, registry)
    reh = recipe.data.rehearsal
    strategy = STRATEGIES[recipe.strategy]
    sources = [s for s in (reh.sources if reh else ()) if strategy.rehearses_parent_data or "parent_data" not in s]
    tokens_of = None
    if sources and reh.ratio > 0 and (reh.resample == "per_epoch" or reh.unit == "tokens"):
        profile = profile or load_profile(resolve_path(recipe.profile, lr.root, lr.workspace), lr.root, lr.workspace)
        if reh.unit == "tokens":
            from cl_toolkit.training.token_count import token_counter

            tokens_of = token_counter(profile, lr.workspace)
    budget = _budget(reh, base, tokens_of) if sources else 0
    pools = open_pools(lr, registry, sources) if budget else []
    mode = reh.resample if budget else "once"  # nothing to draw: nothing to resample (the mix of once)
    for pool in pools:
        inputs.extend(pool.inputs)
    if mode == "per_epoch":
        rows, counts = _per_epoch(recipe.data.seed, base, pools, reh, budget, tokens_of, training_epochs(lr, profile))
    else:
        rows, counts = _once(recipe.data.seed, base, pools, reh, budget, tokens_of)
    if tokens_of is not None:
        tokens_of.save()
    counts = {"new": len(new_rows), **counts}
    if history is not None:
        counts["history"] = history
    return Mix(rows=rows if mode == "per_epoch" else [thaw(r) for r in rows], new_rows=new_rows, inputs=inputs,
               counts=counts)


def _budget(reh, base: list[dict], tokens_of) -> float:
    """The rehearsal budget of one epoch: rows, or (unit: tokens) tokens."""
    if tokens_of is None:
        return rehearsal_count(len(base), reh.ratio)
    return sum(tokens_of.rows(base)) * reh.ratio / (1.0 - reh.ratio) if reh.ratio > 0 else 0


def _draws(pools: list[Pool], reh, budget: float, tokens_of, order: Callable[[Pool], object]) -> list[list[int]]:
    """One draw of row indices per pool, in pool order: the rows `allocate` gives each, or
    (unit: tokens) rows until its weighted share of the token budget."""
    weights = _weights(reh.split, pools)
    shares = allocate(int(budget), weights) if tokens_of is None else [budget * w / sum(weights) for w in weights]
    out = []
    for pool, share in zip(pools, shares, strict=True):
        if share and not pool.size:
            raise BadInput(f"rehearsal source {pool.label} has no rows")
        draw = order(pool)
        out.append(draw.take_n(share) if tokens_of is None else
                   take_tokens(draw.peek, draw.take, lambda k, p=pool: tokens_of.pool_row(p, k), share))
    return out


def _once(seed: int, base: list[dict], pools: list[Pool], reh, budget: float, tokens_of) -> tuple[list[dict], dict]:
    """One sample, one shared random.Random: exactly the mix the toolkit always made."""
    rng = random.Random(seed)
    draws = _draws(pools, reh, budget, tokens_of, lambda p: Passes(p.size, rng)) if pools else []
    mixed, per_source = list(base), {}
    for pool, idx in zip(pools, draws, strict=True):
        per_source[pool.label] = {"rows": len(idx), "pool": pool.size, "repeated": len(idx) > pool.size}
        if tokens_of is not None:
            per_source[pool.label]["tokens"] = sum(tokens_of.pool_row(pool, k) for k in idx)
        mixed.extend(pool.rows(idx))
    rng.shuffle(mixed)
    total = len(mixed)
    counts = {"rehearsal": per_source, "total": total, "ratio_requested": reh.ratio if reh else 0.0,
              "ratio_actual": round((total - len(base)) / total, 6) if total else 0.0}
    return mixed, {**counts, **_options(reh, base, per_source, tokens_of)}


def _options(reh, base: list[dict], per_source: dict, tokens_of, epochs: int = 1) -> dict:
    """split / unit (only when not today's even / rows) and the token counts of unit: tokens."""
    out = {}
    if reh and reh.split != "even":
        out["split"] = thaw(reh.split)
    if reh and reh.unit != "rows":
        new_tokens = sum(tokens_of.rows(base)) * epochs
        reh_tokens = sum(s["tokens"] for s in per_source.values())
        out["unit"] = reh.unit
        out["tokens"] = {"base": new_tokens, "rehearsal": reh_tokens,
                         "ratio_actual": round(reh_tokens / (new_tokens + reh_tokens), 6) if new_tokens + reh_tokens else 0.0}
    return out


def _per_epoch(seed: int, base: list[dict], pools: list[Pool], reh, budget: float, tokens_of,
               epochs: int) -> tuple[list[dict], dict]:
    """Every epoch written out: the base rows and a fresh draw from each pool's cycle, shuffled
    (one seeded random.Random per epoch); the pools' draw orders run on across epochs."""
    base = [thaw(r) for r in base]  # plain rows, once: each epoch repeats them (nothing mutates a row)
    cyclers = {id(p): Cycler(p.size, random.Random(f"{seed}:rehearsal:{i}:{p.label}")) for i, p in enumerate(pools)}
    stream, drawn, epoch_rows = [], [[] for _ in pools], []
    for epoch in range(epochs):
        draws = _draws(pools, reh, budget, tokens_of, lambda p: cyclers[id(p)]) if pools else []
        rows = list(base)
        for pool, idx, seen in zip(pools, draws, drawn, strict=True):
            seen.append(idx)
            rows.extend(pool.rows(idx))
        random.Random(f"{seed}:epoch:{epoch}").shuffle(rows)
        stream.extend(rows)
        epoch_rows.append(len(rows))
    per_source = {}
    for pool, per_epoch in zip(pools, drawn, strict=True):
        idx = [k for epoch in per_epoch for k in epoch]
        per_source[pool.label] = {"rows": len(idx), "pool": pool.size, "per_epoch": [len(e) for e in per_epoch],
                                  "seen": coverage(idx, pool.size)}
        if tokens_of is not None:
            per_source[pool.label]["tokens"] = sum(tokens_of.pool_row(pool, k) for k in idx)
    total = len(stream)
    counts = {"resample": "per_epoch", "epochs": epochs, "epoch_rows": epoch_rows, "rehearsal": per_source,
              "total": total, "ratio_requested": reh.ratio,
              "ratio_actual": round((total - epochs * len(base)) / total, 6) if total else 0.0}
    return stream, {**counts, **_options(reh, base, per_source, tokens_of, epochs)}


def write_mix(lr: LoadedRecipe, mix: Mix, out_dir: Path) -> dict:
    """`clt data build`: the mix as OUT/train.jsonl plus OUT/mix.json (every input with its
    SHA-256 and rows, the counts, the output's hash), each written atomically; returns mix.json."""
    data = jsonl_bytes(mix.rows)
    atomic_write_bytes(out_dir / "train.jsonl", data)
    summary = {"recipe": display(lr.source), "recipe_sha256": lr.sha256, "seed": lr.recipe.data.seed,
               "inputs": mix.inputs, "mix": mix.counts, "train.jsonl": {"sha256": sha256_bytes(data), "rows": len(mix.rows)}}
    atomic_write_json(out_dir / "mix.json", summary)
    return summary
