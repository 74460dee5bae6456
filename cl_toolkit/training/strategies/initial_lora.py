"""initial_lora: the first version of a line, a LoRA on the profile's base model."""

from __future__ import annotations

from cl_toolkit.recipe.model import LoadedRecipe
from cl_toolkit.registry import RegistryStore
from cl_toolkit.training.profiles import Profile
from cl_toolkit.training.strategies.interface import (
    CHAT_DATASET,
    PARENT_FORBIDDEN,
    Plan,
    ScaffoldDefaults,
    Strategy,
)


def plan(lr: LoadedRecipe, registry: RegistryStore, profile: Profile, rows: list[dict]) -> Plan:
    """A fresh LoRA on the profile's base model."""
    return Plan({"base_model": profile.base_model}, CHAT_DATASET)


def scaffold(source: dict) -> ScaffoldDefaults:
    """A fresh start, no parent: a line's first version (`clt init`, `clt recipe new` without
    --from) or a new LoRA from an old recipe's data and gate. The profile's `defaults:`
    for initial_lora give the learning rate and epochs."""
    return ScaffoldDefaults(rehearsal_ratio=0.2, parent=False)


STRATEGY = Strategy(about="LoRA on the profile's base model", plan=plan, rules=PARENT_FORBIDDEN, scaffold=scaffold)
