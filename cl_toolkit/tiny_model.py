"""A tiny Llama-architecture model and a byte-level BPE tokenizer, built locally.

No hub, no network: the tokenizer is trained with the `tokenizers` library on bundled
text, the weights are a seeded random init, and both are saved in `save_pretrained`
format with a ChatML chat template. The same seed and text give identical files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .fsutil import publish_dir, sha256_file

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


@dataclass(frozen=True)
class TinySpec:
    """The shape of a tiny model. Defaults are the tiny-cpu profile's (measured in DESIGN.md)."""

    seed: int = 0
    vocab_size: int = 2048
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 512


def bundled_corpus(root: Path) -> list[Path]:
    """The text the tokenizer learns from: the general corpus plus every bundled JSONL."""
    data = root / "data"
    files = sorted(data.glob("general/*.txt")) + sorted(data.glob("**/*.jsonl"))
    return [f for f in files if f.is_file()]


def _corpus_lines(files: list[Path]) -> list[str]:
    lines: list[str] = []
    for f in files:
        for raw in f.read_text(encoding="utf-8").splitlines():
            if not raw.strip():
                continue
            if f.suffix == ".jsonl":
                lines.extend(_texts(json.loads(raw)))
            else:
                lines.append(raw)
    return lines


def _texts(obj) -> list[str]:
    """Every string inside a JSON value (messages, inputs, answers...)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _texts(v)]
    if isinstance(obj, list):
        return [t for v in obj for t in _texts(v)]
    return []


def train_tokenizer(lines: list[str], vocab_size: int):
    """Byte-level BPE with ChatML specials, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token=None,
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.model_max_length = 512
    return fast


def build_tiny_model(out: Path, spec: TinySpec, corpus: list[Path]) -> dict:
    """Build tokenizer + model into `out` atomically; return a small description."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if not corpus:
        raise FileNotFoundError("no bundled text found to train the tokenizer on (data/)")
    tokenizer = train_tokenizer(_corpus_lines(corpus), spec.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "tiny_spec.json").write_text(json.dumps(spec.__dict__, indent=2, sort_keys=True) + "\n")
        staging.chmod(0o755)  # mkdtemp makes it private; the published model is not
        for f in staging.iterdir():
            f.chmod(0o644)
        publish_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    params = sum(p.numel() for p in model.parameters())
    return {"path": str(out), "parameters": params, "vocab_size": len(tokenizer),
            "weights_sha256": sha256_file(out / "model.safetensors")}


def ensure_tiny_model(out: Path, spec: TinySpec, root: Path) -> bool:
    """Build the tiny model at `out` if it is missing. Returns True when it was built."""
    if (Path(out) / "config.json").exists() and (Path(out) / "model.safetensors").exists():
        return False
    build_tiny_model(out, spec, bundled_corpus(root))
    return True
