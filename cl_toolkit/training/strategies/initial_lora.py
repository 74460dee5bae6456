"""initial_lora: the first version of a line, a LoRA on the profile's base model."""

from __future__ import annotations

from cl_toolkit.recipe.model import LoadedRecipe
from cl_toolkit.registry import RegistryStore
from cl_toolkit.training.profiles import Profile
from cl_toolkit.training.strategies.interface import CHAT_DATASET, PARENT_FORBIDDEN, Plan, Strategy


def plan(lr: LoadedRecipe, registry: RegistryStore, profile: Profile, rows: list[dict]) -> Plan:
    """A fresh LoRA on the profile's base model."""
    return Plan({"base_model": profile.base_model}, CHAT_DATASET)


# No scaffold: `clt recipe new` continues from a parent, and this strategy has none.
STRATEGY = Strategy(about="LoRA on the profile's base model", plan=plan, rules=PARENT_FORBIDDEN)
