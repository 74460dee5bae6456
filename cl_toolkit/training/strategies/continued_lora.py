"""continued_lora: keep training the parent's LoRA adapter on the new data (plus rehearsal),
optionally anchored to the parent's weights (`train.anchor`: L2-SP or EWC, training/anchor.py)."""

from __future__ import annotations

import json
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.recipe.model import LoadedRecipe, thaw
from cl_toolkit.registry import RegistryStore
from cl_toolkit.training.fisher import ANCHOR_PLUGIN, anchor_plan
from cl_toolkit.training.profiles import Profile
from cl_toolkit.training.strategies.interface import CHAT_DATASET, Plan, ScaffoldDefaults, Strategy


def plan(lr: LoadedRecipe, registry: RegistryStore, profile: Profile, rows: list[dict]) -> Plan:
    """Start from the parent's adapter, trainable; rank and alpha come from its config.
    With `train.anchor`, the anchor plugin's keys (EWC: the parent's Fisher, computed or reused)."""
    parent = registry.require(lr.recipe.model, lr.recipe.parent)
    if not parent.adapter_dir or not (Path(parent.adapter_dir) / "adapter_config.json").is_file():
        raise BadInput(f"{lr.recipe.model} {parent.version} has no LoRA adapter to continue from")
    adapter_cfg = json.loads((Path(parent.adapter_dir) / "adapter_config.json").read_text())
    keys = {"base_model": parent.base_model, "lora_model_dir": parent.adapter_dir,
            "lora_r": adapter_cfg["r"], "lora_alpha": adapter_cfg["lora_alpha"]}
    if adapter_cfg.get("modules_to_save"):
        keys["lora_modules_to_save"] = list(adapter_cfg["modules_to_save"])
    manifest = {}
    if anchor := lr.recipe.train.get("anchor"):
        max_len = int(lr.recipe.axolotl.get("sequence_len") or profile.axolotl.get("sequence_len") or 2048)
        anchor_keys, manifest = anchor_plan(lr, registry, parent, thaw(anchor), max_len)
        plugins = [*(profile.axolotl.get("plugins") or []), *anchor_keys.pop("plugins")]
        keys.update(anchor_keys, plugins=list(dict.fromkeys(plugins)))  # the profile's plugins kept
    return Plan(keys, CHAT_DATASET, manifest=manifest)


def scaffold(source: dict) -> ScaffoldDefaults:
    """A gentle continuation: a low learning rate, one epoch, some dropout; rehearsal drawn
    afresh each epoch (per_epoch), which the continual-learning benchmark measured to cover
    the history where one fixed sample forgets what it leaves out."""
    return ScaffoldDefaults(rehearsal_ratio=0.2, resample="per_epoch",
                            train={"learning_rate": 1.0e-5, "num_epochs": 1, "lora_dropout": 0.1})


STRATEGY = Strategy(about="the parent's adapter loaded trainable (lora_model_dir), rank and alpha from its config",
                    plan=plan, scaffold=scaffold, plugins=(ANCHOR_PLUGIN,), anchors=True)
