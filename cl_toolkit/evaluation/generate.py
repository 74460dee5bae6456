"""Load a version (base + LoRA adapter, or a merged model) and answer prompts greedily in
batches. Left padding, no sampling, a fixed batch order: the same model, prompts and
settings always give the same answers."""

from __future__ import annotations

import resource
import sys
import time
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
    outputs: list[str]
    new_tokens: list[int]  # generated tokens per prompt, eos included, padding not
    seconds: float
    peak_memory_mb: float

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


def _generate_batch(lm: LoadedModel, prompts: list[str], max_new_tokens: int, eos: list[int]):
    import torch

    tok = lm.tokenizer
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
    with torch.no_grad():
        out = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                eos_token_id=eos, pad_token_id=tok.pad_token_id,
                                temperature=None, top_p=None, top_k=None)
    return out[:, enc["input_ids"].shape[1]:].cpu()


def generate(lm: LoadedModel, inputs: list[str], batch_size: int = DEFAULT_BATCH_SIZE,
             max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Generation:
    """Greedy answers to `inputs`, in their order. Prompts are batched longest first (less
    padding per batch); the order depends only on the prompts, so results are reproducible."""
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be >= 1")
    if lm.device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
    prompts = build_prompts(lm.tokenizer, inputs)
    lengths = [len(ids) for ids in lm.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: (-lengths[i], i))
    eos = sorted(_eos_ids(lm))
    outputs, counts = [""] * len(prompts), [0] * len(prompts)
    start = time.perf_counter()
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        new = _generate_batch(lm, [prompts[i] for i in idx], max_new_tokens, eos)
        texts = lm.tokenizer.batch_decode(new, skip_special_tokens=True)
        for i, text, n in zip(idx, texts, _new_token_counts(new, set(eos)), strict=True):
            outputs[i], counts[i] = text.strip(), n
    seconds = time.perf_counter() - start
    return Generation(outputs=outputs, new_tokens=counts, seconds=seconds, peak_memory_mb=peak_memory_mb(lm.device))


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
