"""What the toolkit prepares for parent anchoring (`train.anchor`, training/anchor.py) before
Axolotl starts: the plugin's config keys and, for EWC, the parent's diagonal Fisher.

The Fisher is the empirical one, E[(∂ log p(answer | prompt) / ∂θ)²] per trainable
parameter of the parent (its LoRA matrices and `modules_to_save` copies), estimated on a
seeded sample of `fisher_samples` rows from the parent's own training data (its run folder's
`data/new.jsonl`, hash checked) and the recipe's file rehearsal sources (general data), one
gradient per row (the squares must be per example), then normalised to mean 1 so λ means
the same for L2-SP and EWC. Computed like the teacher's log-probs: in batches, resumable
(a partial sum is written atomically after each batch and a rerun continues from it) and
cached by the SHA-256 of the parent's adapter, its base and the sampled rows, under
workspace/cache/anchor_fisher/. The manifest records the file and its hash."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

from cl_toolkit.core.files import jsonl_bytes, sha256_bytes, sha256_file
from cl_toolkit.core.progress import Bar
from cl_toolkit.core.workspace import portable_path, resolve_path
from cl_toolkit.recipe.model import LoadedRecipe
from cl_toolkit.registry import VersionRecord
from cl_toolkit.training.chat_rows import ancestor_rows, dedupe, read_chat_jsonl, source_label

ANCHOR_PLUGIN = "cl_toolkit.training.anchor.AnchorPlugin"
ADAPTER_FILE = "adapter_model.safetensors"
CACHE = ("cache", "anchor_fisher")
FISHER_FORMAT = 1  # bump when the estimate changes: old cache files are then not reused


def saved_key(name: str, adapter: str = "default") -> str:
    """The key PEFT saves a trainable parameter under: the adapter name dropped
    (`...q_proj.lora_A.default.weight` -> `...q_proj.lora_A.weight`, a modules_to_save copy
    `...lm_head.modules_to_save.default.weight` -> `...lm_head.weight`)."""
    return name.replace(f".modules_to_save.{adapter}.", ".").replace(f".{adapter}.", ".")


def fisher_rows(lr: LoadedRecipe, registry, n: int) -> tuple[list[dict], list[str]]:
    """A seeded sample of `n` rows (all, when fewer) from the parent's new data and the
    recipe's file rehearsal sources, and the sources' labels."""
    rows, inputs = ancestor_rows(lr, registry)
    pool, sources = rows[: inputs[0]["rows"]], [inputs[0]["source"]]  # the parent's own: ancestors come after
    reh = lr.recipe.data.rehearsal
    for src in (reh.sources if reh else ()):
        if "path" in src:
            pool.extend(read_chat_jsonl(resolve_path(src["path"], lr.root, lr.workspace), src.get("max_rows")))
            sources.append(source_label(src["path"]))
    pool = dedupe(pool)
    return random.Random(lr.recipe.data.seed).sample(pool, min(n, len(pool))), sources


def fisher_key(parent: VersionRecord, rows: list[dict], max_len: int) -> str:
    """The cache key: the parent's adapter files, its base and the rows (and the format)."""
    adapter = Path(parent.adapter_dir)
    base_config = Path(parent.base_model) / "config.json"
    facts = {"format": FISHER_FORMAT, "adapter": sha256_file(adapter / ADAPTER_FILE),
             "adapter_config": sha256_file(adapter / "adapter_config.json"), "base_model": parent.base_model,
             "base_config": sha256_file(base_config) if base_config.is_file() else None,
             "rows": sha256_bytes(jsonl_bytes(rows)), "max_len": max_len}
    return sha256_bytes(json.dumps(facts, sort_keys=True).encode())


def answer_tokens(tok, row: dict, max_len: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of a chat row: the loss on the last answer only, as Axolotl trains it."""
    ids = list(tok.apply_chat_template(row["messages"], tokenize=True, return_dict=False))[:max_len]
    prompt = list(tok.apply_chat_template(row["messages"][:-1], tokenize=True, add_generation_prompt=True,
                                          return_dict=False))
    start = next((i for i, (a, b) in enumerate(zip(ids, prompt, strict=False)) if a != b), min(len(ids), len(prompt)))
    return ids, [-100] * start + ids[start:]


def diagonal_fisher(parent: VersionRecord, rows: list[dict], out: Path, *, max_len: int = 2048, batch_size: int = 8,
                    on_progress: Callable[[int, int], None] = lambda done, total: None) -> bool:
    """The parent's diagonal Fisher over `rows` at `out` (safetensors, mean 1). Returns
    False when `out` was already there (reused), True when computed now (resuming a partial run)."""
    if out.is_file():
        return False
    bar = Bar(f"Fisher of {parent.model} {parent.version} (EWC)", len(rows), unit="rows")
    with bar:
        bar.update(phase="loading the parent")
        _compute(parent, rows, out, max_len, batch_size, bar, on_progress)
    return True


def _compute(parent: VersionRecord, rows: list[dict], out: Path, max_len: int, batch_size: int, bar: Bar,
             on_progress: Callable[[int, int], None]) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from cl_toolkit.training.teacher import load_version_model

    model, tok = load_version_model(parent, trainable_adapter=True)
    params = {saved_key(n): p for n, p in model.named_parameters() if p.requires_grad}
    partial = out.with_name(out.name + ".partial")
    sums, done, counted = {k: torch.zeros_like(p) for k, p in params.items()}, 0, 0
    if partial.is_file():  # a run cut short: continue after its last finished batch
        from safetensors import safe_open

        with safe_open(str(partial), "pt") as f:
            meta = f.metadata()
        sums, done, counted = load_file(str(partial)), int(meta["done"]), int(meta["counted"])
    out.parent.mkdir(parents=True, exist_ok=True)
    bar.update(done, phase="resumed" if done else "computing")
    for start in range(done, len(rows), batch_size):
        for row in rows[start:start + batch_size]:
            ids, labels = answer_tokens(tok, row, max_len)
            if all(x == -100 for x in labels[1:]):
                continue  # no answer token left after truncation: no gradient to count
            model.zero_grad(set_to_none=True)
            model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.backward()
            for k, p in params.items():
                sums[k] += p.grad.detach().pow(2)
            counted += 1
        done = min(start + batch_size, len(rows))
        _save_atomic(save_file, sums, partial, {"done": str(done), "counted": str(counted)})
        bar.update(done)
        on_progress(done, len(rows))
    total = sum(float(s.sum()) for s in sums.values())
    numel = sum(s.numel() for s in sums.values())
    if counted == 0 or total == 0.0:
        raise ValueError(f"the Fisher of {parent.model} {parent.version} is zero: no row has an answer to score")
    mean = total / counted / numel
    _save_atomic(save_file, {k: (s / counted / mean).contiguous() for k, s in sums.items()}, out,
                 {"rows": str(counted), "normalised": "mean 1"})
    partial.unlink()


def _save_atomic(save_file, tensors: dict, path: Path, metadata: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def anchor_plan(lr: LoadedRecipe, registry, parent: VersionRecord, anchor: dict, max_len: int) -> tuple[dict, dict]:
    """The plugin's Axolotl keys for `train.anchor` and its manifest entry (the reference
    adapter and, for EWC, the Fisher: each path with its SHA-256). EWC computes the Fisher
    now, or reuses it."""
    ws, root = lr.workspace, lr.root
    ref = Path(parent.adapter_dir) / ADAPTER_FILE
    keys = {"plugins": [ANCHOR_PLUGIN], "anchor_method": anchor["method"], "anchor_strength": anchor["strength"],
            "anchor_reference": str(ref)}
    entry = {"method": anchor["method"], "strength": anchor["strength"],
             "reference": {"version": parent.version, "path": portable_path(ref, root, ws), "sha256": sha256_file(ref)}}
    if anchor["method"] == "ewc":
        rows, sources = fisher_rows(lr, registry, anchor["fisher_samples"])
        key = fisher_key(parent, rows, max_len)
        path = ws.joinpath(*CACHE) / f"{parent.model}-{parent.version}-{key[:24]}.safetensors"
        diagonal_fisher(parent, rows, path, max_len=max_len)
        keys["anchor_fisher"] = str(path)
        entry["fisher"] = {"path": portable_path(path, root, ws), "sha256": sha256_file(path), "key": key,
                           "rows": len(rows), "sources": sources}
    return keys, {"anchor": entry}
