"""Load a recipe file: parse safely, apply --set overrides, validate against the schema and
the cross-field rules, and return a frozen Recipe. Every problem is collected and
reported together (file, line, key path); nothing is written.

Strategies live above this layer (cl_toolkit.training.strategies, whose `load_recipe` is
the one to call): the table comes in as `strategies`, name -> an object with `rules` (a
JSON Schema for recipes of that strategy) and `parent_refs` (dotted keys defaulting to the
parent). Its names replace the schema's `strategy` enum when validating."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cl_toolkit.core import semver
from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import sha256_bytes
from cl_toolkit.core.workspace import project_root, resolve_path, workspace_dir
from cl_toolkit.core.yamlio import LineMap, display, format_key, load_yaml
from cl_toolkit.recipe.model import (
    LoadedRecipe,
    apply_defaults,
    build_recipe,
    freeze,
    recipe_schema,
)


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> list[tuple[list, object]]:
    """`a.b.0.c=value` pairs; the value is read as a YAML scalar (safe_load)."""
    out = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BadInput([Problem("--set", f"expected KEY=VALUE, got {pair!r}")])
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            raise BadInput([Problem("--set", f"cannot read the value of {key!r}: {raw!r}")]) from None
        out.append(([int(p) if p.isdigit() else p for p in key.split(".")], value))
    return out


def apply_overrides(data: dict, overrides: list[tuple[list, object]]) -> dict:
    data = copy.deepcopy(data)
    for path, value in overrides:
        node = data
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise BadInput([Problem("--set", f"no list item {part} at {format_key(path[:i])}")])
                node = node[part]
            else:
                node = node.setdefault(part, [] if isinstance(nxt, int) else {})
        last = path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last > len(node):
                raise BadInput([Problem("--set", f"no list item {last} at {format_key(path[:-1])}")])
            node[last:last + 1] = [value]
        else:
            node[last] = value
    return data


def schema_for(strategies: Mapping[str, Any]) -> dict:
    """The recipe schema as validation uses it: the strategy enum is the table's names, and
    each strategy's `rules` apply to the recipes of that strategy."""
    schema = copy.deepcopy(recipe_schema())
    schema["properties"]["strategy"]["enum"] = list(strategies)
    schema["allOf"] = [{"if": {"properties": {"strategy": {"const": name}}, "required": ["strategy"]},
                        "then": copy.deepcopy(s.rules)} for name, s in strategies.items() if s.rules]
    return schema


def _schema_problems(data: dict, lines: LineMap, fname: str, schema: dict) -> list[Problem]:
    problems = []
    validator = jsonschema.Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set(err.schema.get("properties", {}))
            for extra in sorted(set(err.instance) - allowed):
                problems.append(Problem(fname, f"unknown key {extra!r} (allowed: {', '.join(sorted(allowed))})",
                                        lines.line_for([*path, extra]), format_key([*path, extra])))
            continue
        msg = err.message
        if err.validator == "oneOf":
            msg = "must be one of {path: FILE}, {parent_data: true} or {buffer: true}"
        problems.append(Problem(fname, msg, lines.line_for(path), format_key(path) or None))
    return problems


def _path_problems(data: dict, lines: LineMap, fname: str, root: Path, ws: Path) -> list[Problem]:
    """Every file the recipe names must exist inside the project root or the workspace."""
    refs = [(("profile",), data["profile"])]
    refs += [(("data", "train", i, "path"), s["path"]) for i, s in enumerate(data["data"]["train"])]
    for i, s in enumerate(data["data"].get("rehearsal", {}).get("sources", [])):
        if "path" in s:
            refs.append((("data", "rehearsal", "sources", i, "path"), s["path"]))
    gate = data.get("gate") or {}
    if "suite" in gate:
        refs.append((("gate", "suite"), gate["suite"]))
    for name, entry in (gate.get("suites") or {}).items():
        refs.append((("gate", "suites", name) + (() if isinstance(entry, str) else ("path",)),
                     entry if isinstance(entry, str) else entry["path"]))
    problems = []
    for key, raw in refs:
        try:
            path = resolve_path(raw, root, ws)
        except BadInput as e:
            problems.append(Problem(fname, e.problems[0].message, lines.line_for(key), format_key(key)))
            continue
        if not path.is_file():
            problems.append(Problem(fname, f"file not found: {raw}", lines.line_for(key), format_key(key)))
    return problems


def _parent_base_model(recipe_file: Path, parent: str, root: Path, ws: Path) -> str | None:
    """The base model the parent was trained on: its registry record, else its sibling recipe."""
    sibling = recipe_file.parent / f"{parent}.yml"
    if sibling.is_file():
        try:
            pdata, _ = load_yaml(sibling)
            prof, _ = load_yaml(resolve_path(pdata["profile"], root, ws))
            return prof.get("base_model")
        except (BadInput, KeyError, TypeError, AttributeError):
            return None
    return None


def _semantic_problems(data: dict, lines: LineMap, fname: str, recipe_file: Path, root: Path, ws: Path) -> list[Problem]:
    problems = []
    parent = data.get("parent")
    if parent is not None:
        if semver.parse(data["version"]) <= semver.parse(parent):
            problems.append(Problem(fname, f"version {data['version']} must be greater than its parent {parent}",
                                    lines.line_for(["version"]), "version"))
        parent_base = _parent_base_model(recipe_file, parent, root, ws)
        try:
            prof, _ = load_yaml(resolve_path(data["profile"], root, ws))
            base = prof.get("base_model") if isinstance(prof, dict) else None
        except BadInput:
            base = None
        if parent_base and base and parent_base != base and \
                semver.parse(data["version"])[0] <= semver.parse(parent)[0]:
            problems.append(Problem(fname, f"the base model changed ({parent_base} -> {base}): that needs a major version bump",
                                    lines.line_for(["version"]), "version"))
    sources = data["data"].get("rehearsal", {}).get("sources", [])
    if parent is None and any("parent_data" in s for s in sources):
        problems.append(Problem(fname, "parent_data needs a parent", lines.line_for(["data", "rehearsal"]), "data.rehearsal.sources"))
    return problems


def _fill_parent_refs(data: dict, keys: tuple[str, ...]) -> None:
    """A strategy's version references left out (distillation.teacher) name the parent."""
    for dotted in keys:
        *path, last = dotted.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node.setdefault(last, data["parent"])


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), workspace: Path | None = None,
                check_files: bool = True, *, strategies: Mapping[str, Any]) -> LoadedRecipe:
    """Read, validate and freeze a recipe against the strategy table `strategies`.
    Raises BadInput with every problem found."""
    path = Path(path)
    fname = display(path)
    raw_bytes = path.read_bytes() if path.is_file() else None
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise BadInput([Problem(fname, "a recipe must be a YAML mapping", 1)])
    data = apply_overrides(data, parse_overrides(overrides))
    problems = _schema_problems(data, lines, fname, schema_for(strategies))
    if problems:
        raise BadInput(problems)
    data = apply_defaults(data)
    root, ws = project_root(path), (workspace or workspace_dir())
    if check_files:
        problems += _path_problems(data, lines, fname, root, ws)
    problems += _semantic_problems(data, lines, fname, path.resolve(), root, ws)
    if problems:
        raise BadInput(problems)
    _fill_parent_refs(data, strategies[data["strategy"]].parent_refs)
    text = raw_bytes.decode("utf-8")
    return LoadedRecipe(recipe=build_recipe(data), source=path.resolve(), root=root, workspace=ws,
                        text=text, sha256=sha256_bytes(raw_bytes), raw=freeze(data), overrides=tuple(overrides))
