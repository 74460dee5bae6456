"""Deep validation: what `clt recipe validate` checks beyond the recipe layer's schema,
semver and file rules, each problem with the recipe's file, line and key.

- The recipe's `axolotl:` keys are judged by Axolotl's own config schema (extended by the
  plugins that the profile, the recipe and the strategy bring): a key it does not know
  would be dropped silently at training. The nearest known key is suggested. Axolotl's
  schema takes seconds to import, so it is imported only when the block has keys, and the
  key set it yields is kept in the workspace (per Axolotl version and plugin list).
- The versions the recipe continues from (its parent, a distillation teacher: the
  strategy's `parent_refs`) must be in the workspace's registry, when the workspace has one:
  a parent never trained has no adapter or data to continue from. A version planned in the
  same call (`clt recipe validate` of a whole line, parents first) counts as there.

A key given with `--set` is reported against `--set`, not a line of the file."""

from __future__ import annotations

from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.workspace import resolve_path
from cl_toolkit.core.yamlio import LineMap, display, format_key, load_yaml
from cl_toolkit.recipe.model import LoadedRecipe, thaw
from cl_toolkit.registry import open_registry
from cl_toolkit.registry.db import registry_target
from cl_toolkit.training.axolotl_check import unknown_keys
from cl_toolkit.training.profiles import load_profile
from cl_toolkit.training.strategies import STRATEGIES

KEYS_CACHE = ("cache", "axolotl_keys")  # under the workspace: Axolotl's key set per version and plugins


def override_paths(lr: LoadedRecipe) -> list[tuple]:
    """The key path of each `--set KEY=VALUE` the recipe was loaded with."""
    paths = []
    for pair in lr.overrides:
        key = pair.partition("=")[0]
        paths.append(tuple(int(p) if p.isdigit() else p for p in key.split(".")))
    return paths


class RecipeLocator:
    """Where a key path of a loaded recipe was written: its file and line, or `--set`."""

    def __init__(self, lr: LoadedRecipe):
        self.fname = display(lr.source)
        self.overrides = override_paths(lr)
        try:
            self.lines = load_yaml(lr.source, text=lr.text)[1]
        except BadInput:  # it loaded once; keep going without lines rather than fail here
            self.lines = LineMap()

    def problem(self, at: tuple, message: str) -> Problem:
        if any(at[:len(o)] == o or o[:len(at)] == at for o in self.overrides):
            return Problem("--set", message, key=format_key(at))
        return Problem(self.fname, message, self.lines.line_for(at), format_key(at))


def training_plugins(lr: LoadedRecipe) -> list[str]:
    """The Axolotl plugins the recipe will train with: the profile's, the strategy's, its own."""
    profile = load_profile(resolve_path(lr.recipe.profile, lr.root, lr.workspace), lr.root, lr.workspace)
    found = [*(profile.axolotl.get("plugins") or []), *STRATEGIES[lr.recipe.strategy].plugins,
             *(thaw(lr.recipe.axolotl).get("plugins") or [])]
    return list(dict.fromkeys(p for p in found if isinstance(p, str)))


def axolotl_key_problems(lr: LoadedRecipe, locate: RecipeLocator) -> list[Problem]:
    """A problem for every key of the recipe's `axolotl:` that Axolotl does not know;
    nothing is imported when the block is empty."""
    block = thaw(lr.recipe.axolotl)
    if not block:
        return []
    try:
        unknown = unknown_keys(block, training_plugins(lr), lr.workspace.joinpath(*KEYS_CACHE))
    except ImportError as e:  # a toolkit installed without its training extras
        return [locate.problem(("axolotl",), f"cannot judge these keys: Axolotl's schema does not import ({e})")]
    return [locate.problem(("axolotl", key), why) for key, why in unknown.items()]


def version_refs(lr: LoadedRecipe) -> list[tuple[tuple, str]]:
    """(key path, version) for the parent and every other key naming a version to continue from."""
    refs = [(("parent",), lr.recipe.parent)] if lr.recipe.parent else []
    for dotted in STRATEGIES[lr.recipe.strategy].parent_refs:
        node = thaw(lr.raw)
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str) and node != lr.recipe.parent:
            refs.append((tuple(dotted.split(".")), node))
    return refs


def registry_problems(lr: LoadedRecipe, locate: RecipeLocator, planned: set = frozenset()) -> list[Problem]:
    """A problem for every version the recipe continues from that the workspace's registry
    lacks and `planned` ({(model, version)} validated together) does not hold; none when
    the workspace has no registry yet (nothing is created)."""
    refs = [(at, v) for at, v in version_refs(lr) if (lr.recipe.model, v) not in planned]
    db = registry_target(lr.workspace)
    if not refs or not db.exists():
        return []
    model = lr.recipe.model
    with open_registry(lr.workspace) as reg:
        missing = [(at, v) for at, v in refs if reg.get(model, v) is None]
    return [locate.problem(at, f"{model} {v} is not in this workspace's registry ({db if db.is_postgres else display(db.target)}): "
                               f"it was never trained here{_train_hint(lr.source, v)}") for at, v in missing]


def _train_hint(source: Path, version: str) -> str:
    sibling = source.parent / f"{version}.yml"
    return f"; train it first (clt train {display(sibling)})" if sibling.is_file() else ""


def deep_problems(lr: LoadedRecipe, planned: set = frozenset()) -> list[Problem]:
    """Every problem of a loaded recipe that needs Axolotl's schema or the registry;
    `planned`: the (model, version) pairs of recipes validated along with it."""
    locate = RecipeLocator(lr)
    return registry_problems(lr, locate, planned) + axolotl_key_problems(lr, locate)
