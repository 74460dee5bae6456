"""The typed, frozen Recipe a validated YAML file becomes. Defaults live in the JSON
Schema only (`recipe.schema.json`); `apply_defaults` copies them in before building."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema

from cl_toolkit.core.workspace import WORKSPACE_PREFIX

NAMED_SOURCES = ("parent_data", "buffer", "self_rehearsal")  # the rehearsal sources that are not a file


@cache
def recipe_schema() -> dict:
    """The recipe JSON Schema shipped in the package."""
    return json.loads(resources.files("cl_toolkit.recipe").joinpath("recipe.schema.json").read_text())


def freeze(value: Any) -> Any:
    """Deep read-only copy: dicts become mapping proxies, lists become tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of freeze, for code that needs plain dicts and lists."""
    if isinstance(value, MappingProxyType | dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


def apply_defaults(data: dict, schema: dict | None = None) -> dict:
    """Fill schema `default`s into present objects (recursively). Returns a new dict."""
    schema = schema or recipe_schema()
    out = copy.deepcopy(data)
    _fill(out, schema)
    return out


def _fill(obj: Any, schema: dict) -> None:
    if not isinstance(obj, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in obj and "default" in sub:
            obj[key] = copy.deepcopy(sub["default"])
        if key in obj:
            _fill(obj[key], sub)
    for rule in schema.get("allOf", ()):  # defaults that depend on other keys: if / then / else
        if "if" in rule:
            branch = rule.get("then") if jsonschema.Draft202012Validator(rule["if"]).is_valid(obj) else rule.get("else")
            _fill(obj, branch or {})


def source_name(source: Any) -> str:
    """A rehearsal source's name in `split:` and the manifest: its path as written
    (normalised; a `workspace:` path kept as is), `parent_data`, `buffer` or `self_rehearsal`."""
    if "path" in source:
        raw = source["path"]
        return raw if raw.startswith(WORKSPACE_PREFIX) else str(Path(raw))
    return next(k for k in NAMED_SOURCES if k in source)


def split_key(key: str) -> str:
    """The source a key of `split: {source: weight}` names (a path is normalised as in source_name)."""
    return key if key in NAMED_SOURCES else source_name({"path": key})


@dataclass(frozen=True)
class Rehearsal:
    ratio: float
    sources: tuple  # of mappings: {path}|{parent_data: true}|{buffer: true}|{self_rehearsal: {...}}
    resample: str  # per_epoch | once (the schema's default depends on the parent)
    split: Any  # even | proportional | {source name: weight}
    unit: str  # rows | tokens


@dataclass(frozen=True)
class DataSpec:
    train: tuple  # of mappings {path, max_rows?}
    rehearsal: Rehearsal | None
    seed: int


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. Top-level fields mirror the schema's properties exactly."""

    schema_version: int
    model: str
    version: str
    parent: str | None
    strategy: str
    description: str | None
    profile: str
    data: DataSpec
    train: MappingProxyType
    distillation: MappingProxyType | None
    merge: MappingProxyType | None
    gate: MappingProxyType | None
    tracking: MappingProxyType | None
    axolotl: MappingProxyType
    plan: MappingProxyType | None = None  # the improvement plan it was written from: path, sha256

    @property
    def run_name(self) -> str:
        return f"{self.model}-{self.version}"


@dataclass(frozen=True)
class LoadedRecipe:
    """A recipe plus where it came from: file, project root, workspace, its text and hash."""

    recipe: Recipe
    source: Path
    root: Path
    workspace: Path
    text: str
    sha256: str
    raw: MappingProxyType  # the validated data, defaults filled, overrides applied
    overrides: tuple[str, ...] = ()  # the --set KEY=VALUE pairs, kept for provenance


def build_recipe(data: dict) -> Recipe:
    """Build the frozen Recipe from schema-valid data with defaults filled."""
    d = data["data"]
    reh = d.get("rehearsal")
    return Recipe(
        schema_version=data["schema_version"],
        model=data["model"],
        version=data["version"],
        parent=data["parent"],
        strategy=data["strategy"],
        description=data.get("description"),
        profile=data["profile"],
        data=DataSpec(
            train=freeze(d["train"]),
            rehearsal=Rehearsal(reh["ratio"], freeze(reh["sources"]), reh["resample"], freeze(reh["split"]),
                                reh["unit"]) if reh else None,
            seed=d["seed"],
        ),
        train=freeze(data.get("train", {})),
        distillation=freeze(data["distillation"]) if "distillation" in data else None,
        merge=freeze(data["merge"]) if "merge" in data else None,
        gate=freeze(data["gate"]) if "gate" in data else None,
        tracking=freeze(data["tracking"]) if "tracking" in data else None,
        axolotl=freeze(data.get("axolotl", {})),
        plan=freeze(data["plan"]) if "plan" in data else None,
    )


def schema_path_on_disk() -> Path:
    return Path(str(resources.files("cl_toolkit.recipe").joinpath("recipe.schema.json")))
