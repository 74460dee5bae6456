"""`clt recipe new`: write the next recipe of a model line from an existing one, with the
chosen strategy's defaults. The new file is validated before it is put in place.

Strategies live above this layer (cl_toolkit.training.strategies): the table comes in as
an argument, name -> an object with `scaffold(source) -> ScaffoldDefaults | None` and
`rehearses_parent_data`."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cl_toolkit.core import semver
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.yamlio import display, load_yaml
from cl_toolkit.recipe.validate import load_recipe


@dataclass(frozen=True)
class ScaffoldDefaults:
    """What a strategy's scaffolded recipe starts from (the recipe can change any of it)."""

    rehearsal_ratio: float
    train: dict = field(default_factory=dict)   # the recipe's `train:` block (none if empty)
    blocks: dict = field(default_factory=dict)  # further top-level blocks, e.g. `distillation:`


def scaffold_names(strategies: Mapping[str, Any]) -> list[str]:
    """The strategies that can be scaffolded, in table order."""
    return [name for name, s in strategies.items() if s.scaffold is not None]


def scaffold(source: dict, strategy: str, version: str, data_paths: list[str], *,
             strategies: Mapping[str, Any]) -> dict:
    """The next recipe as data: parent = the source's version, the strategy's defaults."""
    s = strategies[strategy]
    defaults = s.scaffold(source)
    other_sources = [x for x in source["data"].get("rehearsal", {}).get("sources", []) if "parent_data" not in x]
    sources = [{"parent_data": True}, *other_sources] if s.rehearses_parent_data else other_sources
    out = {
        "schema_version": 1, "model": source["model"], "version": version, "parent": source["version"],
        "strategy": strategy, "description": f"TODO: why {version} exists",
        "profile": source["profile"],
        "data": {"train": [{"path": p} for p in data_paths] or source["data"]["train"],
                 "rehearsal": {"ratio": defaults.rehearsal_ratio, "sources": sources},
                 "seed": source["data"].get("seed", 42)},
    }
    if defaults.train:
        out["train"] = dict(defaults.train)
    out.update({key: dict(block) for key, block in defaults.blocks.items()})
    for key in ("gate", "axolotl"):
        if key in source:
            out[key] = source[key]
    return out


def new_recipe(model_dir: Path, from_version: str, strategy: str, bump: str, data_paths: list[str],
               force: bool = False, *, strategies: Mapping[str, Any]) -> Path:
    """Write recipes/<model>/<next>.yml; BadInput if the source is missing or the target exists."""
    src_path = model_dir / f"{from_version}.yml"
    if not src_path.is_file():
        raise BadInput(f"no recipe for {model_dir.name} {from_version} at {display(src_path)}")
    names = scaffold_names(strategies)
    if strategy not in names:
        raise BadInput(f"--strategy must be one of {', '.join(names)}")
    source, _ = load_yaml(src_path)
    version = semver.bump(from_version, bump)
    target = model_dir / f"{version}.yml"
    if target.exists() and not force:
        raise BadInput(f"{display(target)} exists; pass --force to overwrite it")
    header = (f"# {source['model']} {version}: {strategy} from {from_version} (written by `clt recipe new`).\n"
              f"# Point data.train at this quarter's data and say why in description.\n")
    text = header + yaml.safe_dump(scaffold(source, strategy, version, data_paths, strategies=strategies),
                                   sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{version}.", suffix=".yml", dir=model_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:  # validate before it takes the real name
            load_recipe(Path(tmp), strategies=strategies)
        except BadInput as e:
            raise BadInput([dataclasses.replace(p, file=display(target)) for p in e.problems]) from None
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target
