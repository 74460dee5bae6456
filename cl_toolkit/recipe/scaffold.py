"""`clt recipe new`: write the next recipe of a model line from an existing one (or, for a
strategy that starts fresh, the first recipe of a new line), with the training defaults of
the recipe's profile for that strategy over the strategy's own. The new file is validated
before it is put in place.

Strategies and profiles live above this layer (cl_toolkit.training): the table comes in as
an argument, name -> an object with `scaffold(source) -> ScaffoldDefaults | None` and
`rehearses_parent_data`; the profile's defaults through `defaults_for(profile, root)`
(strategy -> {train key | rehearsal_ratio: value}).

Every quarter stays in the gate: the new recipe carries the parent's `gate.suites` forward
(the quarter the parent learned becomes a regression suite) and adds each new training
file's suite beside `<name>.jsonl` — `<name>_asked.jsonl` (its rows asked as trained), else
`<name>_test.jsonl` — as the suite `<name>` with role `learning`; a `min_learning` rule moves from the old learning suite to the new one."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cl_toolkit.core import semver
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.workspace import project_root, workspace_dir
from cl_toolkit.core.yamlio import display, load_yaml
from cl_toolkit.recipe.init import (
    DEFAULT_PROFILE,
    FIRST_VERSION,
    check_line_name,
    first_recipe,
    recipe_text,
)
from cl_toolkit.recipe.plan_input import apply_plan, read_plan
from cl_toolkit.recipe.validate import load_recipe

DefaultsFor = Callable[[str, Path], dict]  # (profile as a recipe names it, project root) -> defaults


@dataclass(frozen=True)
class ScaffoldDefaults:
    """What a strategy's scaffolded recipe starts from (the recipe can change any of it)."""

    rehearsal_ratio: float
    train: dict = field(default_factory=dict)   # the recipe's `train:` block (none if empty)
    blocks: dict = field(default_factory=dict)  # further top-level blocks, e.g. `distillation:`
    parent: bool = True  # False: a fresh start (parent null), as initial_lora
    resample: str | None = None  # data.rehearsal.resample to write (None: leave it to the schema's default)


def with_profile_defaults(defaults: ScaffoldDefaults, profile: Mapping) -> ScaffoldDefaults:
    """The strategy's scaffold defaults, with the profile's settings for it on top: what
    was measured to work on that base and hardware wins over a strategy's generic guess."""
    if not profile:
        return defaults
    train = {**defaults.train, **{k: v for k, v in profile.items() if not k.startswith("rehearsal_")}}
    return dataclasses.replace(defaults, train=train,
                               rehearsal_ratio=profile.get("rehearsal_ratio", defaults.rehearsal_ratio),
                               resample=profile.get("rehearsal_resample", defaults.resample))


def scaffold_names(strategies: Mapping[str, Any]) -> list[str]:
    """The strategies that can be scaffolded, in table order."""
    return [name for name, s in strategies.items() if s.scaffold is not None]


# the suite beside a training file `<name>.jsonl`, first found: its rows asked as trained
# (did the version learn them?), else its test set
SUITE_SUFFIXES = ("_asked", "_test")


def _test_suite(data_path: str, root: Path | None) -> tuple[str, str] | None:
    """(name, path) of the suite beside a training file, when there is one."""
    p = Path(data_path)
    if ":" in data_path or p.suffix != ".jsonl":
        return None
    for suffix in SUITE_SUFFIXES:
        test = p.with_name(f"{p.stem}{suffix}.jsonl")
        if (root / test if root and not test.is_absolute() else test).is_file():
            return p.stem, test.as_posix()
    return None


def scaffold_gate(gate: dict, data_paths: list[str], root: Path | None = None) -> dict:
    """The next recipe's `gate:` from the parent's: its suites carried forward, each new
    training file's test set added as the quarter being learned."""
    gate = dict(gate)
    suites = dict(gate.pop("suites", None) or {})
    if "suite" in gate:
        suites = {"regression": gate.pop("suite"), **suites}
    new = [t for t in (_test_suite(d, root) for d in data_paths) if t]
    if not new:  # nothing new to learn from: the gate stays as it was
        return {**gate, "suites": suites} if suites else gate
    paths = {(s if isinstance(s, str) else s["path"]): name for name, s in suites.items()}
    old_learning = [n for n, s in suites.items() if isinstance(s, dict) and s.get("role") == "learning"]
    for name in old_learning:  # what the parent learned is now a quarter to keep
        suites[name] = suites[name]["path"]
    learning = []
    for name, path in new:
        name = paths.get(path) or (name if name not in suites else f"{name}_test")
        suites[name] = {"path": path, "role": "learning"}
        learning.append(name)
    rule = gate.get("min_learning")
    if isinstance(rule, dict) and rule:
        moved = {k: v for k, v in rule.items() if k not in old_learning}
        carried = [rule[n] for n in old_learning if n in rule]
        gate["min_learning"] = {**moved, **({n: carried[0] for n in learning} if carried else {})}
    return {**{k: v for k, v in gate.items() if k != "min_learning"}, "suites": suites,
            **({"min_learning": gate["min_learning"]} if gate.get("min_learning") else {})}


def scaffold(source: dict, strategy: str, version: str, data_paths: list[str], *,
             strategies: Mapping[str, Any], root: Path | None = None, profile_defaults: Mapping | None = None) -> dict:
    """The next recipe as data: parent = the source's version (none for a fresh start), the
    strategy's defaults under the profile's (`profile_defaults`: the profile's settings for
    this strategy)."""
    s = strategies[strategy]
    defaults = with_profile_defaults(s.scaffold(source), profile_defaults or {})
    other_sources = [x for x in source["data"].get("rehearsal", {}).get("sources", []) if "parent_data" not in x]
    rehearse_parent = s.rehearses_parent_data and defaults.parent
    sources = [{"parent_data": True}, *other_sources] if rehearse_parent else other_sources
    out = {
        "schema_version": 1, "model": source["model"], "version": version,
        "parent": source["version"] if defaults.parent else None,
        "strategy": strategy, "description": f"TODO: why {version} exists",
        "profile": source["profile"],
        "data": {"train": [{"path": p} for p in data_paths] or source["data"]["train"],
                 "rehearsal": {"ratio": defaults.rehearsal_ratio,
                               **({"resample": defaults.resample} if defaults.resample and sources else {}),
                               "sources": sources},
                 "seed": source["data"].get("seed", 42)},
    }
    if defaults.train:
        out["train"] = dict(defaults.train)
    out.update({key: dict(block) for key, block in defaults.blocks.items()})
    if "gate" in source:
        out["gate"] = scaffold_gate(source["gate"], data_paths, root)
    if "axolotl" in source:
        out["axolotl"] = source["axolotl"]
    return out


def new_recipe(model_dir: Path, from_version: str | None, strategy: str, bump: str | None, data_paths: list[str],
               force: bool = False, *, strategies: Mapping[str, Any], defaults_for: DefaultsFor | None = None,
               profile: str | None = None, plan: Path | None = None) -> Path:
    """Write recipes/<model>/<next>.yml; BadInput if the source is missing or the target exists.
    Without `from_version` a strategy that starts fresh writes the line's first recipe
    (1.0.0) on `profile`, training on `data_paths`. With `plan` (an improvement plan's
    plan.json) the data sources and rehearsal come from it (recipe/plan_input.py), and
    `from_version` and `bump` default to the plan's version and minor."""
    names = scaffold_names(strategies)
    if strategy not in names:
        raise BadInput(f"--strategy must be one of {', '.join(names)}")
    root = project_root(model_dir)
    planned = read_plan(plan, model_dir.name) if plan is not None else None
    if planned is not None:
        from_version, bump = from_version or planned[0]["version"], bump or "minor"
    if from_version is None:
        return _start_line(model_dir, strategy, data_paths, force, strategies, defaults_for, profile or DEFAULT_PROFILE)
    if bump is None:
        raise BadInput("--bump is needed with --from (major, minor or patch)")
    src_path = model_dir / f"{from_version}.yml"
    if not src_path.is_file():
        raise BadInput(f"no recipe for {model_dir.name} {from_version} at {display(src_path)}")
    source, _ = load_yaml(src_path)
    if profile:
        source = {**source, "profile": profile}
    version = semver.bump(from_version, bump)
    target = model_dir / f"{version}.yml"
    if target.exists() and not force:
        raise BadInput(f"{display(target)} exists; pass --force to overwrite it")
    header = (f"# {source['model']} {version}: {strategy} from {from_version} (written by `clt recipe new`).\n"
              f"# Point data.train at this quarter's data and say why in description.\n")
    has_profile = isinstance(source, dict) and isinstance(source.get("profile"), str)
    known = defaults_for(source["profile"], root) if defaults_for and has_profile else {}
    recipe = scaffold(source, strategy, version, data_paths, strategies=strategies, root=root,
                      profile_defaults=known.get(strategy))
    if planned is not None:
        recipe = apply_plan(recipe, planned[0], plan, planned[1], data_paths, root, workspace_dir())
        header += f"# From the improvement plan {display(plan)} (sha256 {planned[1][:12]}).\n"
    text = header + yaml.safe_dump(recipe, sort_keys=False)
    return _write_checked(model_dir, version, target, text, strategies)


def start_defaults(strategy: Any, profile_defaults: Mapping | None) -> dict:
    """A fresh-start strategy's settings for a line's first recipe (the strategy's scaffold
    defaults under the profile's), as {train key | rehearsal_ratio: value}; BadInput for
    a strategy that continues from a parent."""
    try:
        d = strategy.scaffold({"version": FIRST_VERSION, "data": {}})
    except (KeyError, TypeError, AttributeError):  # it reads the parent's recipe
        d = None
    if d is None or d.parent:
        raise BadInput("that strategy continues from a parent: pass --from VERSION (a line starts with "
                       "a strategy that starts fresh, such as initial_lora)")
    d = with_profile_defaults(d, profile_defaults or {})
    return {**d.train, "rehearsal_ratio": d.rehearsal_ratio}


def _start_line(model_dir: Path, strategy: str, data_paths: list[str], force: bool,
                strategies: Mapping[str, Any], defaults_for: DefaultsFor | None, profile: str) -> Path:
    """The first recipe of a new line, as `clt init` writes it, on the given training data."""
    line = model_dir.name
    check_line_name(line)
    known = defaults_for(profile, project_root(model_dir)) if defaults_for else {}
    settings = start_defaults(strategies[strategy], known.get(strategy))
    if not data_paths:
        raise BadInput(f"starting the line {line}: pass --data with its first training file")
    target = model_dir / f"{FIRST_VERSION}.yml"
    if target.exists() and not force:
        raise BadInput(f"{display(target)} exists; pass --force to overwrite it")
    recipe = first_recipe(line, profile, settings, list(data_paths), f"data/{line}/regression.jsonl")
    recipe["strategy"] = strategy
    header = (f"# {line} {FIRST_VERSION}: the first version of the line, {strategy} (written by `clt recipe new`).\n"
              f"# Say why in description.\n")
    return _write_checked(model_dir, FIRST_VERSION, target, recipe_text(recipe, header), strategies)


def _write_checked(model_dir: Path, version: str, target: Path, text: str, strategies: Mapping[str, Any]) -> Path:
    """Validate `text` (as a draft: its description may still say TODO), then put it in place."""
    model_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{version}.", suffix=".yml", dir=model_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:  # validate before it takes the real name
            load_recipe(Path(tmp), strategies=strategies, draft=True)
        except BadInput as e:
            raise BadInput([dataclasses.replace(p, file=display(target)) for p in e.problems]) from None
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target
