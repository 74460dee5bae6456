"""The training strategies: `STRATEGIES`, name -> Strategy, is the only list of them. Render,
the mix, `clt recipe new`, recipe validation and the benchmark look a strategy up here, so a
new one is a module with a `STRATEGY` and one line below (docs/strategies.md).

The recipe layer sits below training and cannot import this table: `load_recipe` and
`new_recipe` here are its strategy-aware entry points, and every caller uses them."""

from __future__ import annotations

from pathlib import Path

from cl_toolkit.recipe import init as _init
from cl_toolkit.recipe import scaffold as _scaffold
from cl_toolkit.recipe import validate as _validate
from cl_toolkit.recipe.model import LoadedRecipe
from cl_toolkit.training.profiles import profile_defaults
from cl_toolkit.training.strategies import (
    continued_lora,
    distillation,
    initial_lora,
    merge_adapters,
    merge_and_retrain,
)
from cl_toolkit.training.strategies.interface import Strategy

STRATEGIES: dict[str, Strategy] = {
    "initial_lora": initial_lora.STRATEGY,
    "continued_lora": continued_lora.STRATEGY,
    "merge_and_retrain": merge_and_retrain.STRATEGY,
    "distillation": distillation.STRATEGY,
    "merge_adapters": merge_adapters.STRATEGY,
}


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), workspace: Path | None = None,
                check_files: bool = True, *, trust_remote_code: bool = False) -> LoadedRecipe:
    """Read, validate (against the live table's names and rules) and freeze a recipe.
    `trust_remote_code` (the command line's --trust-remote-code) allows that key in the
    recipe's and the profile's `axolotl:`; without it they are refused.
    Raises BadInput with every problem found."""
    return _validate.load_recipe(path, overrides, workspace, check_files, strategies=STRATEGIES,
                                 trust_remote_code=trust_remote_code)


def new_recipe(model_dir: Path, from_version: str | None, strategy: str, bump: str | None, data_paths: list[str],
               force: bool = False, profile: str | None = None, plan: Path | None = None) -> Path:
    """`clt recipe new`: write the next recipe of a line (or, without `from_version`, its
    first) with the profile's defaults for the strategy over the strategy's own; with
    `plan`, the data sources and rehearsal split of an improvement plan."""
    return _scaffold.new_recipe(model_dir, from_version, strategy, bump, data_paths, force, strategies=STRATEGIES,
                                defaults_for=profile_defaults, profile=profile, plan=plan)


def init_line(line: str, dest: Path, profile: str = _init.DEFAULT_PROFILE) -> list[Path]:
    """`clt init`: a line's first recipe (initial_lora, the profile's defaults), a
    regression-suite template and a README under `dest`, never over an existing file."""
    _init.check_line_name(line)
    settings = _scaffold.start_defaults(STRATEGIES["initial_lora"], profile_defaults(profile, Path(dest))
                                        .get("initial_lora"))
    return _init.init_line(line, Path(dest), profile, settings)


def scaffold_names() -> list[str]:
    """The strategies `clt recipe new` offers: those with scaffold defaults (initial_lora
    among them: it starts a line)."""
    return _scaffold.scaffold_names(STRATEGIES)
