"""A throwaway copy of the project (configs, a little data, recipes) for tests that write
recipes of their own."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DATA = ["data/firefighter/q1.jsonl", "data/firefighter/q2.jsonl", "data/firefighter/q2_asked.jsonl",
        "data/general/general.jsonl",
        "data/firefighter/regression.jsonl"]

BASE_RECIPE = {
    "schema_version": 1, "model": "ff", "version": "1.0.0", "parent": None, "strategy": "initial_lora",
    "profile": "configs/profiles/tiny-cpu.yml",
    "data": {"train": [{"path": "data/firefighter/q1.jsonl"}],
             "rehearsal": {"ratio": 0.2, "sources": [{"path": "data/general/general.jsonl"}]}, "seed": 7},
    "train": {"num_epochs": 1},
    "gate": {"suite": "data/firefighter/regression.jsonl"},
}


def make_project(root: Path) -> Path:
    shutil.copytree(REPO / "configs", root / "configs")
    for rel in DATA:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)
    (root / "recipes" / "ff").mkdir(parents=True)
    return root


def recipe_text(**changes) -> str:
    """BASE_RECIPE with top-level keys replaced, as YAML text."""
    data = copy.deepcopy(BASE_RECIPE)
    data.update(changes)
    return yaml.safe_dump(data, sort_keys=False)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of `text` that first contains `needle`."""
    return next(i for i, t in enumerate(text.splitlines(), 1) if needle in t)


def write_recipe(root: Path, data: dict | str, name: str | None = None) -> Path:
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    version = name or (data["version"] if isinstance(data, dict) else "bad")
    path = root / "recipes" / "ff" / f"{version}.yml"
    path.write_text(text)
    return path
