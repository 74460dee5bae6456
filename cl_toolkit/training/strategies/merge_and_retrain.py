"""merge_and_retrain: merge the parent's adapter into a new base (Axolotl's merge-lora,
cached by hash), then a fresh LoRA on the complete data: every ancestor's + the new."""

from __future__ import annotations

from cl_toolkit.recipe.model import LoadedRecipe
from cl_toolkit.registry import RegistryStore
from cl_toolkit.training.chat_rows import ancestor_rows
from cl_toolkit.training.merge_lora import merged_base
from cl_toolkit.training.profiles import Profile
from cl_toolkit.training.strategies.interface import CHAT_DATASET, Plan, ScaffoldDefaults, Strategy


def plan(lr: LoadedRecipe, registry: RegistryStore, profile: Profile, rows: list[dict]) -> Plan:
    """The parent merged into a new base (built now or reused), a fresh LoRA on top."""
    parent = registry.require(lr.recipe.model, lr.recipe.parent)
    base, _built = merged_base(parent, lr.workspace)
    return Plan({"base_model": str(base)}, CHAT_DATASET)


def history(lr: LoadedRecipe, registry: RegistryStore) -> tuple[list[dict], list[dict]]:
    """Every ancestor's new data, read from their run folders (hashes checked)."""
    return ancestor_rows(lr, registry)


def scaffold(source: dict) -> ScaffoldDefaults:
    """A fresh LoRA learns from scratch: a LoRA-sized learning rate and a few epochs."""
    return ScaffoldDefaults(rehearsal_ratio=0.2, train={"learning_rate": 2.0e-4, "num_epochs": 3})


# The history already holds every ancestor's data: `parent_data` rehearsal would repeat it.
STRATEGY = Strategy(about="the parent merged into a new base, a fresh LoRA on every ancestor's data + the new, deduplicated",
                    plan=plan, scaffold=scaffold, history=history, rehearses_parent_data=False, new_base=True)
