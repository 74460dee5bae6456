"""Distillation data: the teacher's top-K log-probabilities at every token of the training
mix, in the row format Axolotl's KD plugin reads (`axolotl.integrations.kd.chat_template`):
`{"messages", "logprobs": [[K floats] per token], "target_token_ids": [[K ints] per token]}`.

Computed with transformers, batched, resumable (finished batches are appended to a partial
file that a rerun continues from) and cached by teacher version, data hash and K."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import jsonl_bytes, sha256_bytes
from cl_toolkit.core.progress import Bar
from cl_toolkit.registry import VersionRecord


def load_version_model(rec: VersionRecord, *, trainable_adapter: bool = False):
    """A registered version as a plain transformers model (adapter merged in memory) and its
    tokenizer; with `trainable_adapter` the adapter stays a trainable PEFT adapter (the Fisher
    of its weights, training/fisher.py)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(rec.base_model, dtype=torch.float32)
    if rec.adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, rec.adapter_dir, is_trainable=trainable_adapter)
        model = model if trainable_adapter else model.merge_and_unload()
    tok = AutoTokenizer.from_pretrained(rec.adapter_dir or rec.base_model)
    return model.eval(), tok


def check_shared_vocabulary(teacher_tok, student_tok, teacher: str, student: str) -> None:
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise BadInput(f"distillation needs the teacher ({teacher}) and the student ({student}) to share a "
                       f"vocabulary: {len(teacher_tok)} vs {len(student_tok)} tokens, or different ids")


def cache_path(workspace: Path, teacher: VersionRecord, rows: list[dict], top_k: int) -> Path:
    data_hash = sha256_bytes(jsonl_bytes(rows))[:16]
    return workspace / "cache" / "teacher_logprobs" / f"{teacher.model}-{teacher.version}-{data_hash}-k{top_k}.jsonl"


def _batch_logprobs(model, batch_ids: list[list[int]], pad_id: int, top_k: int):
    import torch

    width = max(map(len, batch_ids))
    ids = torch.tensor([x + [pad_id] * (width - len(x)) for x in batch_ids])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    values, indices = logprobs.topk(top_k, dim=-1)
    return [(values[i, : len(x)].tolist(), indices[i, : len(x)].tolist()) for i, x in enumerate(batch_ids)]


def teacher_rows(teacher: VersionRecord, rows: list[dict], top_k: int, out: Path, *, batch_size: int = 8,
                 student_tokenizer=None, on_progress: Callable[[int, int], None] = lambda done, total: None) -> list[dict]:
    """KD rows for `rows`, from `out` when already complete; else computed (resuming a partial run)."""
    if out.is_file():
        return [json.loads(line) for line in out.read_text().splitlines()]
    bar = Bar(f"teacher log-probs ({teacher.model} {teacher.version}, top {top_k})", len(rows), unit="rows")
    with bar:
        bar.update(phase="loading the teacher")
        _compute(teacher, rows, top_k, out, batch_size, student_tokenizer, bar, on_progress)
    return [json.loads(line) for line in out.read_text().splitlines()]


def _compute(teacher: VersionRecord, rows: list[dict], top_k: int, out: Path, batch_size: int,
             student_tokenizer, bar: Bar, on_progress: Callable[[int, int], None]) -> None:
    model, tok = load_version_model(teacher)
    if student_tokenizer is not None:
        check_shared_vocabulary(tok, student_tokenizer, f"{teacher.model} {teacher.version}", "the profile's base model")
    partial = out.with_suffix(".partial")
    done = partial.read_text().splitlines() if partial.is_file() else []
    out.parent.mkdir(parents=True, exist_ok=True)
    bar.update(len(done), phase="resumed" if done else "computing")
    with open(partial, "a", encoding="utf-8") as f:
        for start in range(len(done), len(rows), batch_size):
            batch = rows[start:start + batch_size]
            ids = [list(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False)) for r in batch]
            for row, (vals, idx) in zip(batch, _batch_logprobs(model, ids, tok.pad_token_id or 0, top_k), strict=True):
                line = json.dumps({"messages": row["messages"], "logprobs": [[round(v, 6) for v in p] for p in vals],
                                   "target_token_ids": idx}, ensure_ascii=False)
                f.write(line + "\n")
                done.append(line)
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(done))
            on_progress(len(done), len(rows))
    os.replace(partial, out)
