"""What a training strategy is: one frozen `Strategy` per module, looked up by name in
`cl_toolkit.training.strategies.STRATEGIES`. Render, the mix, `clt recipe new`, recipe
validation and the benchmark ask it; none of them names a strategy. See docs/strategies.md."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cl_toolkit.recipe.model import LoadedRecipe
from cl_toolkit.recipe.scaffold import ScaffoldDefaults
from cl_toolkit.registry import RegistryStore
from cl_toolkit.training.profiles import Profile

__all__ = ["CHAT_DATASET", "PARENT_FORBIDDEN", "PARENT_REQUIRED", "Plan", "ScaffoldDefaults", "Scorer", "Strategy"]


@dataclass(frozen=True)
class Plan:
    """What a strategy contributes to the rendered run: Axolotl keys (above the profile,
    below the recipe's `train:` and `axolotl:`), the dataset entry, (for distillation)
    the rows to train on instead of the plain mix, and entries for the run's manifest
    (continued_lora's `anchor`: the reference adapter and the Fisher, with their hashes)."""

    keys: dict
    dataset: dict
    rows: list[dict] | None = None
    manifest: dict = field(default_factory=dict)


# the dataset entry of every strategy that trains on plain chat rows
CHAT_DATASET = {"ds_type": "json", "type": "chat_template", "field_messages": "messages",
                "roles_to_train": ["assistant"]}

# JSON Schema rules on a recipe (`Strategy.rules`): whether it continues from a parent
PARENT_REQUIRED = {"properties": {"parent": {"type": "string"}}}
PARENT_FORBIDDEN = {"properties": {"parent": {"type": "null"}}}

PlanHook = Callable[[LoadedRecipe, RegistryStore, Profile, list[dict]], Plan]
HistoryHook = Callable[[LoadedRecipe, RegistryStore], tuple[list[dict], list[dict]]]
ScaffoldHook = Callable[[dict], ScaffoldDefaults]
# scorer(base_model, adapter_dir, {name: suite JSONL}) -> {name: accuracy}: the evaluation
# layer's, handed in by the caller (`clt train`, the cycle), which sits above training
Scorer = Callable[[str, Path, dict[str, Path]], dict[str, float]]
FinishHook = Callable[[LoadedRecipe, RegistryStore, Path, Scorer], dict]


@dataclass(frozen=True)
class Strategy:
    """One training strategy. Only `about` and `plan` are required.

    - plan(lr, registry, profile, rows) -> Plan: the Axolotl keys and dataset it renders,
      after any preparation (merging the parent, the teacher's log-probs); `rows` is the mix.
    - rules: a JSON Schema every recipe of this strategy must also meet (checked with the
      recipe schema, so problems read `file:line: [key] message`).
    - parent_refs: dotted recipe keys that name a version and default to the parent.
    - scaffold(source recipe data) -> ScaffoldDefaults: what `clt recipe new` writes
      (the profile's `defaults:` for the strategy override it; `parent=False`: a fresh
      start that can begin a line); None: not offered there.
    - history(lr, registry) -> (rows, manifest inputs): data trained on in full besides the
      new rows (deduplicated with them); None: nothing.
    - rehearses_parent_data: False drops `parent_data` rehearsal (already in the history).
    - new_base: the version's base is not its parent's (so a new lineage is a major bump).
    - plugins: the Axolotl plugins its plan adds (validation knows their keys before any plan runs).
    - anchors: its plan honours `train.anchor` (a penalty toward the parent's adapter);
      validation refuses that block for every other strategy;
    - finish(lr, registry, run_dir, scorer) -> dict: a step after training and before the
      version is registered (merge_adapters: merge the trained adapter with the parent's).
      It leaves the version's adapter in run_dir/adapter and returns what it reports (kept
      in the version's metrics); `scorer` evaluates an adapter on suites. None: nothing."""

    about: str
    plan: PlanHook
    rules: dict = field(default_factory=lambda: dict(PARENT_REQUIRED))
    parent_refs: tuple[str, ...] = ()
    scaffold: ScaffoldHook | None = None
    history: HistoryHook | None = None
    rehearses_parent_data: bool = True
    new_base: bool = False
    plugins: tuple[str, ...] = ()
    anchors: bool = False
    finish: FinishHook | None = None
