"""Self-synthesised rehearsal: rows the parent version writes itself, for a line whose old
training data is gone (`{self_rehearsal: {prompts: SOURCE, n: N}}` in data.rehearsal.sources).

The parent answers n prompts drawn (seeded by data.seed, without replacement) from the
prompt sources: a file (chat rows: the first user turn; a regression suite: `input`; rows
`{"prompt"}`), `parent_data` (the first user turn of every ancestor's training row) or
`store` (the line's predictions logged in the feedback store).
Greedy decoding, batched, left padding, the tokenizer's chat template. The answers then go
through the rules of `clt feedback extract`: the heuristic quality score of
`clt feedback score` (below `min_quality`: dropped, counted), PII redaction of prompt and
answer, deduplication on the normalised pair. The result is cached in
`cache/self_rehearsal/` by the parent's weights, the drawn prompts and the settings, so a
rerun reads it instead of loading the model."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import atomic_write_json, jsonl_bytes, sha256_bytes, sha256_file
from cl_toolkit.core.progress import Bar
from cl_toolkit.core.workspace import resolve_path, workspace_ref
from cl_toolkit.core.yamlio import display
from cl_toolkit.feedback.extract import dedupe_key
from cl_toolkit.feedback.redact import PLACEHOLDERS, may_hold_pii, redact
from cl_toolkit.feedback.rehearsal import logged_prompts
from cl_toolkit.feedback.scoring import PENALTIES, heuristic_flags, log_length_reference
from cl_toolkit.recipe.model import LoadedRecipe, recipe_schema, thaw
from cl_toolkit.registry import VersionRecord, weights_sha256
from cl_toolkit.training.chat_rows import ancestor_rows, source_label
from cl_toolkit.training.teacher import load_version_model

LABEL = "self_rehearsal"
BATCH_SIZE = 16
CACHE_FORMAT = 1  # bump when the rows a key gives would change


def settings(spec) -> dict:
    """The source's settings, the schema's defaults filled in (they live only there)."""
    props = recipe_schema()["$defs"]["self_rehearsal_source"]["properties"][LABEL]["properties"]
    spec = thaw(spec)
    return {k: spec.get(k, p.get("default")) for k, p in props.items()}


def _first_user(row: dict) -> str | None:
    return next((m.get("content") for m in row.get("messages") or () if isinstance(m, dict)
                 and m.get("role") == "user" and isinstance(m.get("content"), str)), None)


def _prompt_of(row) -> str | None:
    """A row's prompt: a chat row's first user turn, else `prompt`, else a suite case's `input`."""
    if not isinstance(row, dict):
        return None
    value = _first_user(row) if "messages" in row else row.get("prompt", row.get("input"))
    return value if isinstance(value, str) and value.strip() else None


def read_prompts(path: Path) -> list[str]:
    """The prompts of a JSONL file; BadInput names the file and line of a row without one."""
    prompts, problems, fname = [], [], display(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                prompt = _prompt_of(json.loads(line))
            except json.JSONDecodeError as e:
                prompt, why = None, f"invalid JSON ({e.msg})"
            else:
                why = 'no prompt: expected a chat row, a suite case ("input") or {"prompt": ...}'
            if prompt is None:
                problems.append(Problem(fname, why, lineno))
            else:
                prompts.append(prompt)
    if problems:
        raise BadInput(problems[:20])
    return prompts


def gather_prompts(lr: LoadedRecipe, registry, prompts_spec) -> tuple[list[str], list[dict]]:
    """Every prompt of the sources, in order, and one record per source (source, sha256, prompts)."""
    specs = [prompts_spec] if isinstance(prompts_spec, dict) else list(prompts_spec)
    out, records = [], []
    for spec in specs:
        if "path" in spec:
            path = resolve_path(spec["path"], lr.root, lr.workspace)
            got, label, digest = read_prompts(path), source_label(spec["path"]), sha256_file(path)
        elif "store" in spec:
            versions = [rec.version for rec in registry.versions(lr.recipe.model)]
            got = [p for p in logged_prompts(lr.workspace, lr.recipe.model, versions) if p.strip()]
            label, digest = "store", sha256_bytes(jsonl_bytes({"prompt": p} for p in got))
        else:
            rows, _ = ancestor_rows(lr, registry)
            got = [p for p in map(_prompt_of, rows) if p is not None]
            label, digest = "parent_data", sha256_bytes(jsonl_bytes({"prompt": p} for p in got))
        out.extend(got)
        records.append({"source": label, "sha256": digest, "prompts": len(got)})
    return out, records


def draw_prompts(prompts: list[str], n: int, seed: int) -> tuple[list[str], int]:
    """(n distinct prompts drawn with `seed`, in pool order; all when n >= the pool, the pool's size).
    Prompts equal up to case and whitespace count once (the first is kept)."""
    unique, seen = [], set()
    for p in prompts:
        key = " ".join(p.casefold().split())
        if key not in seen:
            seen.add(key)
            unique.append(p)
    if n >= len(unique):
        return unique, len(unique)
    picked = sorted(random.Random(f"{seed}:{LABEL}").sample(range(len(unique)), n))
    return [unique[i] for i in picked], len(unique)


def generate_answers(rec: VersionRecord, prompts: list[str], max_new_tokens: int, bar: Bar | None = None,
                     batch_size: int = BATCH_SIZE) -> list[str]:
    """The version's greedy answers to `prompts` (one user turn each, chat template applied), in order."""
    import torch

    model, tok = load_version_model(rec)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    answers = []
    for start in range(0, len(texts), batch_size):
        enc = tok(texts[start:start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        answers += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
        if bar:
            bar.update(len(answers))
    return answers


def keep_rows(prompts: list[str], answers: list[str], min_quality: float) -> tuple[list[dict], dict]:
    """The extraction rules over (prompt, answer) pairs: rows kept, and what each rule did.
    The length reference of the heuristic is these answers' own (as the store's is for extract)."""
    reference = log_length_reference(len(a) for a in answers)
    rows, seen, dropped, flags, redactions = [], set(), Counter(), Counter(), Counter()
    for prompt, answer in zip(prompts, answers, strict=True):
        found = heuristic_flags(answer, reference)
        if math.prod(PENALTIES[f] for f in found) < min_quality:
            dropped["below_quality"] += 1
            flags.update(found)
            continue
        if may_hold_pii(f"{prompt}\n{answer}"):
            prompt, answer = redact(prompt, redactions), redact(answer, redactions)
        key = dedupe_key(prompt, answer)
        if key in seen:
            dropped["duplicates"] += 1
            continue
        seen.add(key)
        rows.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
    stats = {"kept": len(rows), "dropped": {"below_quality": dropped["below_quality"], "duplicates": dropped["duplicates"]},
             "flags": dict(sorted(flags.items())), "redactions": {k: redactions[k] for k in PLACEHOLDERS}}
    return rows, stats


def cache_file(workspace: Path, rec: VersionRecord, key: dict) -> Path:
    digest = sha256_bytes(json.dumps(key, sort_keys=True, ensure_ascii=False).encode())[:16]
    return workspace / "cache" / LABEL / f"{rec.model}-{rec.version}-{digest}.json"


def self_rehearsal_rows(lr: LoadedRecipe, registry, spec) -> tuple[list[dict], dict]:
    """The rows of a self_rehearsal source and its manifest block; from the cache when it holds them."""
    opts = settings(spec)
    rec = registry.require(lr.recipe.model, lr.recipe.parent)
    pool, sources = gather_prompts(lr, registry, opts["prompts"])
    if not pool:
        raise BadInput(f"self_rehearsal: its prompt sources ({', '.join(s['source'] for s in sources)}) hold no prompts")
    drawn, unique = draw_prompts(pool, opts["n"], lr.recipe.data.seed)
    key = {"format": CACHE_FORMAT, "parent": f"{rec.model} {rec.version}", "weights_sha256": weights_sha256(rec),
           "base_model": rec.base_model, "prompts_sha256": sha256_bytes(jsonl_bytes({"prompt": p} for p in drawn)),
           "n": opts["n"], "seed": lr.recipe.data.seed, "max_new_tokens": opts["max_new_tokens"],
           "min_quality": opts["min_quality"], "decoding": "greedy"}
    path = cache_file(lr.workspace, rec, key)
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        rows, stats = cached["rows"], cached["stats"]
    else:
        with Bar(f"self-rehearsal ({rec.model} {rec.version} answers)", len(drawn), unit="prompts") as bar:
            bar.update(phase="loading the parent")
            answers = generate_answers(rec, drawn, opts["max_new_tokens"], bar)
        rows, stats = keep_rows(drawn, answers, opts["min_quality"])
        atomic_write_json(path, {"key": key, "rows": rows, "stats": stats})
    block = {"parent": rec.version, "parent_weights_sha256": key["weights_sha256"], "prompts": sources,
             "pool": unique, "drawn": len(drawn), **stats, "max_new_tokens": opts["max_new_tokens"],
             "min_quality": opts["min_quality"], "cache": workspace_ref(str(path), lr.workspace)}
    return rows, block
