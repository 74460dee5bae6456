"""`clt recipe new`: write the next recipe of a model line from an existing one, with the
chosen strategy's defaults. The new file is validated before it is put in place."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import yaml

from cl_toolkit.core import semver
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.yamlio import display, load_yaml
from cl_toolkit.recipe.model import recipe_schema
from cl_toolkit.recipe.validate import load_recipe

# What each strategy starts from when scaffolded (the recipe can change any of it).
STRATEGY_DEFAULTS = {
    "continued_lora": {"train": {"learning_rate": 1.0e-5, "num_epochs": 1, "lora_dropout": 0.1},
                       "rehearsal_ratio": 0.2},
    "merge_and_retrain": {"train": {"learning_rate": 2.0e-4, "num_epochs": 3}, "rehearsal_ratio": 0.2},
    "distillation": {"train": {}, "rehearsal_ratio": 0.2},
}


def _distillation_defaults() -> dict:
    props = recipe_schema()["properties"]["distillation"]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def scaffold(source: dict, strategy: str, version: str, data_paths: list[str]) -> dict:
    """The next recipe as data: parent = the source's version, the strategy's defaults."""
    defaults = STRATEGY_DEFAULTS[strategy]
    other_sources = [s for s in source["data"].get("rehearsal", {}).get("sources", []) if "parent_data" not in s]
    sources = other_sources if strategy == "merge_and_retrain" else [{"parent_data": True}, *other_sources]
    out = {
        "schema_version": 1, "model": source["model"], "version": version, "parent": source["version"],
        "strategy": strategy, "description": f"TODO: why {version} exists",
        "profile": source["profile"],
        "data": {"train": [{"path": p} for p in data_paths] or source["data"]["train"],
                 "rehearsal": {"ratio": defaults["rehearsal_ratio"], "sources": sources},
                 "seed": source["data"].get("seed", 42)},
    }
    if defaults["train"]:
        out["train"] = dict(defaults["train"])
    if strategy == "distillation":
        out["distillation"] = {"teacher": source["version"], **_distillation_defaults()}
    for key in ("gate", "axolotl"):
        if key in source:
            out[key] = source[key]
    return out


def new_recipe(model_dir: Path, from_version: str, strategy: str, bump: str, data_paths: list[str],
               force: bool = False) -> Path:
    """Write recipes/<model>/<next>.yml; BadInput if the source is missing or the target exists."""
    src_path = model_dir / f"{from_version}.yml"
    if not src_path.is_file():
        raise BadInput(f"no recipe for {model_dir.name} {from_version} at {display(src_path)}")
    if strategy not in STRATEGY_DEFAULTS:
        raise BadInput(f"--strategy must be one of {', '.join(STRATEGY_DEFAULTS)}")
    source, _ = load_yaml(src_path)
    version = semver.bump(from_version, bump)
    target = model_dir / f"{version}.yml"
    if target.exists() and not force:
        raise BadInput(f"{display(target)} exists; pass --force to overwrite it")
    header = (f"# {source['model']} {version}: {strategy} from {from_version} (written by `clt recipe new`).\n"
              f"# Point data.train at this quarter's data and say why in description.\n")
    text = header + yaml.safe_dump(scaffold(source, strategy, version, data_paths), sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{version}.", suffix=".yml", dir=model_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:  # validate before it takes the real name
            load_recipe(Path(tmp))
        except BadInput as e:
            raise BadInput([dataclasses.replace(p, file=display(target)) for p in e.problems]) from None
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target
