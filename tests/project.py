"""A throwaway copy of the project (configs, a little data, recipes) for tests that write
recipes of their own."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DATA = ["data/firefighter/q1.jsonl", "data/firefighter/q2.jsonl", "data/firefighter/q2_asked.jsonl",
        "data/general/general.jsonl",
        "data/firefighter/regression.jsonl"]

BASE_RECIPE = {
    "schema_version": 1, "model": "ff", "version": "1.0.0", "parent": None, "strategy": "initial_lora",
    "profile": "configs/profiles/tiny-cpu.yml",
    "data": {"train": [{"path": "data/firefighter/q1.jsonl"}],
             "rehearsal": {"ratio": 0.2, "sources": [{"path": "data/general/general.jsonl"}]}, "seed": 7},
    "train": {"num_epochs": 1},
    "gate": {"suite": "data/firefighter/regression.jsonl"},
}


def make_project(root: Path) -> Path:
    shutil.copytree(REPO / "configs", root / "configs")
    for rel in DATA:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)
    (root / "recipes" / "ff").mkdir(parents=True)
    return root


def recipe_text(**changes) -> str:
    """BASE_RECIPE with top-level keys replaced, as YAML text."""
    data = copy.deepcopy(BASE_RECIPE)
    data.update(changes)
    return yaml.safe_dump(data, sort_keys=False)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of `text` that first contains `needle`."""
    return next(i for i, t in enumerate(text.splitlines(), 1) if needle in t)


def write_recipe(root: Path, data: dict | str, name: str | None = None) -> Path:
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    version = name or (data["version"] if isinstance(data, dict) else "bad")
    path = root / "recipes" / "ff" / f"{version}.yml"
    path.write_text(text)
    return path


def register_untrained_parent(workspace: Path, **lora):
    """firefighter 1.0.0 registered in `workspace` without training: a LoRA on the tiny base
    (`lora`: extra LoraConfig keys) with lora_B small and random (so the adapter changes the
    answers a little and every parameter has a gradient), its run folder with Q1 as its new
    data. Returns the VersionRecord."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cl_toolkit.core.files import jsonl_bytes, sha256_bytes
    from cl_toolkit.registry import VersionRecord, open_registry
    from cl_toolkit.training.chat_rows import read_chat_jsonl

    base = workspace / "models" / "tiny-llama"
    run = workspace / "runs" / "firefighter-1.0.0"
    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", **lora))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    model.save_pretrained(run / "adapter")
    AutoTokenizer.from_pretrained(base).save_pretrained(run / "adapter")
    new = jsonl_bytes(read_chat_jsonl(REPO / "data" / "firefighter" / "q1.jsonl"))
    (run / "data").mkdir(parents=True)
    (run / "data" / "new.jsonl").write_bytes(new)
    (run / "manifest.json").write_text(json.dumps({"outputs": {"data/new.jsonl": {"sha256": sha256_bytes(new)}}}))
    for name in ("axolotl.yml", "recipe.yml"):
        (run / name).write_text("{}\n")
    with open_registry(workspace) as reg:
        return reg.register(VersionRecord(model="firefighter", version="1.0.0", parent=None, strategy="initial_lora",
                                          base_model=str(base), recipe_sha256="0" * 64, data_sha256="0" * 64,
                                          run_dir=str(run), adapter_dir=str(run / "adapter")))
