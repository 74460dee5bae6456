"""Load a version (base + LoRA adapter, or a merged model) and answer prompts in batches:
greedily by default, or `samples` times each at a temperature (seeded per batch). Left
padding and a fixed batch order: the same model, prompts and settings (seed included)
always give the same answers."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_NEW_TOKENS = 32


@dataclass
class LoadedModel:
    model: object  # a transformers causal LM, in eval mode
    tokenizer: object
    device: str
    source: str  # what was loaded, for reports: "base + adapter" paths


@dataclass(frozen=True)
class Generation:
    outputs: list[str]  # one answer per prompt (with samples > 1: its first sample)
    new_tokens: list[int]  # generated tokens per prompt (all its samples), eos included, padding not
    seconds: float
    peak_memory_mb: float
    samples: list[list[str]] | None = None  # every sample per prompt, when samples > 1

    @property
    def tokens_per_second(self) -> float:
        return sum(self.new_tokens) / self.seconds if self.seconds > 0 else 0.0


def pick_device(device: str | None = None) -> str:
    import torch

    if device and device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _tokenizer_dir(base_model: str, adapter_dir: str | None) -> str:
    """The adapter's own tokenizer when training saved one (it may have added tokens)."""
    if adapter_dir and (Path(adapter_dir) / "tokenizer_config.json").is_file():
        return adapter_dir
    return base_model


def load_model(base_model: str, adapter_dir: str | None = None, device: str | None = None) -> LoadedModel:
    """The base model, with the LoRA adapter merged in when there is one (merged logits
    match the adapter's within 1e-6, and a merged model generates faster)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    tokenizer = AutoTokenizer.from_pretrained(_tokenizer_dir(base_model, adapter_dir))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype="auto")
    if adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    model.to(device).eval()
    source = base_model + (f" + {adapter_dir}" if adapter_dir else "")
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, source=source)


def build_prompts(tokenizer, inputs: list[str]) -> list[str]:
    """Each input as one user turn, chat template applied, ready for the assistant's turn."""
    if not getattr(tokenizer, "chat_template", None):
        return list(inputs)
    return [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                          add_generation_prompt=True) for text in inputs]


def peak_memory_mb(device: str) -> float:
    """Peak memory so far: GPU memory allocated on CUDA, the process's max RSS on CPU."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _new_token_counts(rows, eos_ids: set[int]) -> list[int]:
    """Tokens a row really generated: up to and including its first eos."""
    counts = []
    for row in rows.tolist():
        n = len(row)
        for i, tok in enumerate(row):
            if tok in eos_ids:
                n = i + 1
                break
        counts.append(n)
    return counts


def _eos_ids(lm: LoadedModel) -> set[int]:
    ids = lm.model.generation_config.eos_token_id
    ids = set(ids) if isinstance(ids, list) else {ids}
    return {i for i in ids | {lm.tokenizer.eos_token_id} if i is not None}


def _generate_batch(lm: LoadedModel, prompts: list[str], max_new_tokens: int, eos: list[int],
                    samples: int = 1, temperature: float | None = None, seed: int = 0):
    """The new tokens, one row per prompt; with samples > 1, `samples` rows per prompt in a
    row (prompt-major), sampled at `temperature` from a generator seeded with `seed`."""
    import torch

    tok = lm.tokenizer
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
    if samples > 1:
        decoding = {"do_sample": True, "num_return_sequences": samples, "temperature": temperature,
                    "top_p": 1.0, "top_k": 0}
        torch.manual_seed(seed)
    else:
        decoding = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    with torch.no_grad():
        out = lm.model.generate(**enc, max_new_tokens=max_new_tokens, num_beams=1, eos_token_id=eos,
                                pad_token_id=tok.pad_token_id, **decoding)
    return out[:, enc["input_ids"].shape[1]:].cpu()


def generate(lm: LoadedModel, inputs: list[str], batch_size: int = DEFAULT_BATCH_SIZE,
             max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, *, samples: int = 1, temperature: float = 0.7,
             seed: int = 0, on_batch: Callable[[int], None] | None = None) -> Generation:
    """Answers to `inputs`, in their order: greedy, or with samples > 1 that many sampled
    answers each. Prompts are batched longest first (less padding per batch); the order
    depends only on the prompts, and batch i samples from seed + i, so results are reproducible.
    `on_batch(prompts answered so far)` after each batch (a progress bar)."""
    if batch_size < 1 or max_new_tokens < 1 or samples < 1:
        raise ValueError("batch_size, max_new_tokens and samples must be >= 1")
    if samples > 1 and not temperature > 0:
        raise ValueError("sampling needs a temperature > 0")
    if lm.device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
    prompts = build_prompts(lm.tokenizer, inputs)
    lengths = [len(ids) for ids in lm.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: (-lengths[i], i))
    eos = sorted(_eos_ids(lm))
    texts_per: list[list[str]] = [[] for _ in prompts]
    counts = [0] * len(prompts)
    start = time.perf_counter()
    for batch, b in enumerate(range(0, len(order), batch_size)):
        idx = order[b:b + batch_size]
        new = _generate_batch(lm, [prompts[i] for i in idx], max_new_tokens, eos, samples, temperature, seed + batch)
        texts = lm.tokenizer.batch_decode(new, skip_special_tokens=True)
        owners = [i for i in idx for _ in range(samples)]  # rows are prompt-major
        for i, text, n in zip(owners, texts, _new_token_counts(new, set(eos)), strict=True):
            texts_per[i].append(text.strip())
            counts[i] += n
        if on_batch:
            on_batch(min(b + batch_size, len(order)))
    seconds = time.perf_counter() - start
    return Generation(outputs=[t[0] for t in texts_per], new_tokens=counts, seconds=seconds,
                      peak_memory_mb=peak_memory_mb(lm.device), samples=texts_per if samples > 1 else None)


@contextmanager
def torch_threads(n: int | None):
    """Run with `n` torch CPU threads, then restore (tiny models run fastest on one thread;
    on a busy machine more threads mostly wait for each other)."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
