"""A tiny Llama-architecture model and a byte-level BPE tokenizer, built locally.

No hub, no network: the tokenizer is trained with the `tokenizers` library on bundled
text, the weights are a seeded random init, and both are saved in `save_pretrained`
format with a ChatML chat template. The same seed and text give identical files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from cl_toolkit.core.files import publish_dir, sha256_file
from cl_toolkit.core.progress import note
from cl_toolkit.core.workspace import resolve_path, toolkit_root
from cl_toolkit.recipe.model import LoadedRecipe
from cl_toolkit.training.determinism import with_plugin
from cl_toolkit.training.launch import plan_launch, run_training
from cl_toolkit.training.profiles import TinySpec, load_profile

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


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
    return describe(out)


def describe(out: Path) -> dict:
    """Path, parameter count, vocabulary size and weights hash of a saved tiny model."""
    from safetensors import safe_open

    with safe_open(str(Path(out) / "model.safetensors"), "pt") as f:
        params = sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())
    vocab = json.loads((Path(out) / "config.json").read_text())["vocab_size"]
    return {"path": str(out), "parameters": params, "vocab_size": vocab,
            "weights_sha256": sha256_file(Path(out) / "model.safetensors")}


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def ensure_tiny_model(out: Path, spec: TinySpec, root: Path) -> bool:
    """Build (and, if the spec says so, pretrain) the tiny model at `out` if it is missing.
    Returns True when it was built."""
    if (Path(out) / "config.json").exists() and (Path(out) / "model.safetensors").exists():
        return False
    what = f", then {spec.pretrain_epochs} epochs of pretraining through Axolotl (a few minutes)" if spec.pretrain_epochs else ""
    note(f"  building the tiny base model at {out}{what}")
    make_tiny_model(out, spec, root)
    return True


def ensure_base(lr: LoadedRecipe) -> bool:
    """The step that needs a recipe's base model calls this first: a profile with a
    `tiny_model:` block gets its local base built (and pretrained) when it is missing.
    Rendering never does this; it only plans. True when the base was built now. The base
    learns the toolkit's bundled text (its data/, not the recipe's project's), so a line
    kept in its own repository gets the same base as the toolkit's demo."""
    profile = load_profile(resolve_path(lr.recipe.profile, lr.root, lr.workspace), lr.root, lr.workspace)
    if not (profile.tiny_model and profile.base_is_local):
        return False
    return ensure_tiny_model(Path(profile.base_model), profile.tiny_model, toolkit_root())


def make_tiny_model(out: Path, spec: TinySpec, root: Path) -> None:
    """Build the tiny model into `out` (replacing it atomically), pretrained when the spec says."""
    if not spec.pretrain_epochs:
        build_tiny_model(out, spec, bundled_corpus(root))
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.pretrain.", dir=out.parent))
    try:
        build_tiny_model(staging / "init", spec, bundled_corpus(root))
        pretrain(staging / "init", staging, spec, root)
        publish_dir(staging / "out", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


GENERAL_QA = ("general.jsonl", "general_phrasings.jsonl")  # data/general/: the questions, other wordings of them


def pretraining_rows(root: Path, qa_repeats: int = 1) -> tuple[list[dict], list[dict]]:
    """The general corpus as short text rows (sentences fit the tiny context), and the
    general Q&A as chat rows (each question as asked and in the other wordings of
    general_phrasings.jsonl, where there is one), each `qa_repeats` times: the base learns the
    language, the ChatML turn format and the answers to the general questions (which the
    benchmark asks it before any domain training, so their forgetting can be measured)."""
    general = Path(root).resolve() / "data" / "general"
    text = (general / "corpus.txt").read_text(encoding="utf-8")
    sentences = [s.strip() for line in text.splitlines() for s in line.replace("? ", "?\n").replace(". ", ".\n").splitlines()]
    chat = [json.loads(line) for name in GENERAL_QA if (general / name).is_file()
            for line in (general / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"text": s} for s in sentences if len(s) > 3], chat * qa_repeats


def pretrain(init: Path, scratch: Path, spec: TinySpec, root: Path) -> None:
    """Full fine-tune of the random init on the bundled general data through Axolotl
    (`accelerate launch -m axolotl.cli.train`); the result lands in scratch/out."""
    import yaml

    rows, qa = pretraining_rows(root, spec.pretrain_qa_repeats)
    corpus, chat = scratch / "corpus.jsonl", scratch / "general_qa.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    chat.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in qa), encoding="utf-8")
    cfg = {
        "base_model": str(init), "model_type": "AutoModelForCausalLM", "tokenizer_type": "AutoTokenizer",
        "chat_template": "tokenizer_default", "sequence_len": 128, "sample_packing": False,
        "attn_implementation": "sdpa", "datasets": [
            {"path": str(corpus), "ds_type": "json", "type": "completion", "field": "text"},
            {"path": str(chat), "ds_type": "json", "type": "chat_template", "field_messages": "messages",
             "roles_to_train": ["assistant"]}],
        "dataset_prepared_path": str(scratch / "prepared"), "output_dir": str(scratch / "out"),
        "micro_batch_size": 16, "gradient_accumulation_steps": 1, "num_epochs": spec.pretrain_epochs,
        "learning_rate": 0.003, "optimizer": "adamw_torch", "lr_scheduler": "cosine", "warmup_steps": 10,
        "weight_decay": 0.0, "bf16": False, "fp16": False, "tf32": False, "save_strategy": "no",
        "logging_steps": 20, "val_set_size": 0.0, "dataset_num_proc": 1, "seed": spec.seed,
        "train_on_inputs": False, "save_safetensors": True, "plugins": with_plugin(None),
    }
    (scratch / "pretrain.yml").write_text(yaml.safe_dump(cfg, sort_keys=True))
    plan = plan_launch(scratch / "pretrain.yml", {"cpu": True, "num_processes": 1, "threads": 1})
    # scratch as the workspace: its HF cache goes with it; the bar counts the optimizer's steps
    run_training(plan.argv, scratch, scratch, lambda info: None, env=plan.env, label="pretraining the tiny base")
    (scratch / "out" / "tiny_spec.json").write_text(json.dumps(spec.__dict__, indent=2, sort_keys=True) + "\n")
    for junk in ("README.md", "debug.log"):
        (scratch / "out" / junk).unlink(missing_ok=True)
