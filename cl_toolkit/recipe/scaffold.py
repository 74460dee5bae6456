"""`clt recipe new`: write the next recipe of a model line from an existing one, with the
chosen strategy's defaults. The new file is validated before it is put in place.

Strategies live above this layer (cl_toolkit.training.strategies): the table comes in as
an argument, name -> an object with `scaffold(source) -> ScaffoldDefaults | None` and
`rehearses_parent_data`.

Every quarter stays in the gate: the new recipe carries the parent's `gate.suites` forward
(the quarter the parent learned becomes a regression suite) and adds each new training
file's suite beside `<name>.jsonl` — `<name>_asked.jsonl` (its rows asked as trained), else
`<name>_test.jsonl` — as the suite `<name>` with role `learning`; a `min_learning` rule moves from the old learning suite to the new one."""

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
from cl_toolkit.core.workspace import project_root
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
             strategies: Mapping[str, Any], root: Path | None = None) -> dict:
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
    if "gate" in source:
        out["gate"] = scaffold_gate(source["gate"], data_paths, root)
    if "axolotl" in source:
        out["axolotl"] = source["axolotl"]
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
    text = header + yaml.safe_dump(scaffold(source, strategy, version, data_paths, strategies=strategies,
                                            root=project_root(model_dir)),
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
