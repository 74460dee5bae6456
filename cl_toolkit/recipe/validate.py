"""Load a recipe file: parse safely, apply --set overrides, validate against the schema and
the cross-field rules, and return a frozen Recipe. Every problem is collected and
reported together (file, line, key path); nothing is written.

Before anything else the raw text (comments included), the data, the `--set` values and the
profile are scanned for credentials (core.secret_scan), so no later message can echo one;
then the `axolotl:` blocks of the recipe and its profile are checked (recipe.passthrough):
paths confined, plugins allowed, `trust_remote_code` only when the caller trusts it.

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

from cl_toolkit.core import semver
from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import sha256_bytes
from cl_toolkit.core.secret_scan import find_secrets, redact_problems, scan_document
from cl_toolkit.core.workspace import (
    profile_ref,
    profile_root,
    project_root,
    resolve_path,
    workspace_dir,
)
from cl_toolkit.core.yamlio import LineMap, display, format_key, load_yaml
from cl_toolkit.recipe.domain_source import domain_problem
from cl_toolkit.recipe.model import (
    LoadedRecipe,
    apply_defaults,
    build_recipe,
    freeze,
    recipe_schema,
    source_name,
    split_key,
)
from cl_toolkit.recipe.passthrough import block_problems


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> list[tuple[list, object]]:
    """`a.b.0.c=value` pairs; the value is read as YAML (core.yamlio, so no anchors).
    Errors name the key, never the value (it may be a credential)."""
    out = []
    for n, pair in enumerate(pairs, start=1):
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BadInput([Problem("--set", f"argument {n}: expected KEY=VALUE")])
        try:
            value = load_yaml("--set", text=raw, name="--set")[0] if raw else ""
        except BadInput as e:
            why = e.problems[0].message if e.problems else "invalid YAML"
            raise BadInput([Problem("--set", f"cannot read the value: {why}", key=key)]) from None
        out.append(([int(p) if p.isdigit() else p for p in key.split(".")], value))
    return out


def override_secrets(overrides: list[tuple[list, object]]) -> list[Problem]:
    """A problem (key only) for every `--set` that would put a credential in the recipe."""
    problems = []
    for path, value in overrides:
        nested = value
        for part in reversed(path):
            nested = {part: nested}
        problems += [Problem("--set", why, key=format_key(p)) for p, why in find_secrets(nested)]
    return problems


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
    schema["allOf"] = schema.get("allOf", []) + [{"if": {"properties": {"strategy": {"const": name}}, "required": ["strategy"]},
                        "then": copy.deepcopy(s.rules)} for name, s in strategies.items() if s.rules]
    return schema


_ONE_OF = {"sources": "must be one of {path: FILE}, {parent_data: true}, {buffer: true} or {self_rehearsal: {...}}",
           "prompts": "must be {path: FILE}, {parent_data: true}, {store: true} or a list of these"}


def _schema_problems(data: dict, lines: LineMap, fname: str, schema: dict) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [p for err in errors for p in _error_problems(err, lines, fname)]


def _error_problems(err, lines: LineMap, fname: str) -> list[Problem]:
    path = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        return [Problem(fname, f"unknown key {extra!r} (allowed: {', '.join(sorted(allowed))})",
                        lines.line_for([*path, extra]), format_key([*path, extra]))
                for extra in sorted(set(err.instance) - allowed)]
    msg = err.message
    if err.validator == "oneOf":
        branch = _chosen_branch(err)
        if branch:  # the entry says which kind it is (its key): that kind's own errors, with their keys
            return [p for sub in branch for p in _error_problems(sub, lines, fname)]
        named = [k for k in path if isinstance(k, str)]
        msg = _ONE_OF.get(named[-1] if named else "", msg)
    return [Problem(fname, msg, lines.line_for(path), format_key(path) or None)]


def _chosen_branch(err) -> list:
    """The errors of the one `oneOf` branch that failed only below the entry (an entry
    `{self_rehearsal: {n: 0}}` is a self_rehearsal source with a bad n); [] when none or several."""
    by_branch: dict = {}
    for sub in err.context:
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    deep = [subs for subs in by_branch.values() if all(sub.relative_path for sub in subs)]
    return deep[0] if len(deep) == 1 else []


def _path_problems(data: dict, lines: LineMap, fname: str, root: Path, ws: Path) -> list[Problem]:
    """Every file the recipe names must exist inside the project root or the workspace."""
    refs = [(("profile",), data["profile"])]
    refs += [(("data", "train", i, "path"), s["path"]) for i, s in enumerate(data["data"]["train"])]
    for i, s in enumerate(data["data"].get("rehearsal", {}).get("sources", [])):
        if "path" in s:
            refs.append((("data", "rehearsal", "sources", i, "path"), s["path"]))
        for key, prompt_source in _prompt_sources(s, i):
            if "path" in prompt_source:
                refs.append(((*key, "path"), prompt_source["path"]))
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


def _prompt_sources(source: dict, i: int) -> list[tuple[tuple, dict]]:
    """(key path, prompt source) of a self_rehearsal source's `prompts` (one or a list)."""
    if "self_rehearsal" not in source:
        return []
    prompts, at = source["self_rehearsal"]["prompts"], ("data", "rehearsal", "sources", i, "self_rehearsal", "prompts")
    return [(at, prompts)] if isinstance(prompts, dict) else [((*at, j), p) for j, p in enumerate(prompts)]


def _domain_problems(data: dict, lines: LineMap, fname: str, root: Path, ws: Path) -> list[Problem]:
    """A source with `domain:` must be a domain-filtered extract or synth output of those domains."""
    sources = [(("data", "train", i), s) for i, s in enumerate(data["data"]["train"])]
    sources += [(("data", "rehearsal", "sources", i), s)
                for i, s in enumerate(data["data"].get("rehearsal", {}).get("sources", [])) if "path" in s]
    problems = []
    for key, src in sources:
        if "domain" not in src:
            continue
        try:
            path = resolve_path(src["path"], root, ws)
        except BadInput:
            continue  # _path_problems reports it
        why = domain_problem(src, path) if path.is_file() else None
        if why:
            problems.append(Problem(fname, why, lines.line_for([*key, "domain"]), format_key([*key, "domain"])))
    return problems


def _parent_base_model(recipe_file: Path, parent: str, root: Path, ws: Path) -> str | None:
    """The base model the parent was trained on: its registry record, else its sibling recipe."""
    sibling = recipe_file.parent / f"{parent}.yml"
    if sibling.is_file():
        try:
            pdata, _ = load_yaml(sibling)
            prof, _ = load_yaml(resolve_path(profile_ref(pdata["profile"]), root, ws))
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
    selfs = [i for i, s in enumerate(sources) if "self_rehearsal" in s]
    for i in selfs if parent is None else ():
        key = ["data", "rehearsal", "sources", i, "self_rehearsal"]
        problems.append(Problem(fname, "self_rehearsal needs a parent: the parent version writes its rows",
                                lines.line_for(key), format_key(key)))
    for i in selfs[1:]:
        key = ["data", "rehearsal", "sources", i, "self_rehearsal"]
        problems.append(Problem(fname, "only one self_rehearsal source (give it a list of prompts sources)",
                                lines.line_for(key), format_key(key)))
    return problems


def _split_problems(reh: dict, lines: LineMap, fname: str) -> list[Problem]:
    """A `split: {source: weight}` map names every rehearsal source, and nothing else."""
    split = reh.get("split")
    if not isinstance(split, dict):
        return []
    names = [source_name(s) for s in reh.get("sources", [])]
    at = ["data", "rehearsal", "split"]
    problems = [Problem(fname, f"unknown rehearsal source {key!r} (the sources: {', '.join(names) or 'none'})",
                        lines.line_for([*at, key]), format_key([*at, key]))
                for key in split if split_key(key) not in names]
    missing = [n for n in names if n not in {split_key(k) for k in split}]
    if missing:
        problems.append(Problem(fname, f"give every rehearsal source a weight; missing: {', '.join(missing)}",
                                lines.line_for(at), format_key(at)))
    return problems


# keys that make a per_epoch stream wrong: (key, why, is it a problem for this value)
_PER_EPOCH_CONFLICTS = (
    ("max_steps", "training then counts steps, not epochs, so there are no epochs to draw; "
                  "use num_epochs, or data.rehearsal.resample: once", lambda v: v is not None),
    ("num_epochs", "per_epoch writes whole epochs: num_epochs must be a whole number "
                   "(or data.rehearsal.resample: once)", lambda v: v is not None and float(v) != int(v)),
    ("val_set_size", "Axolotl would draw the evaluation split from a stream that repeats the training rows; "
                     "use test_datasets, or data.rehearsal.resample: once", lambda v: bool(v)),
    ("dataset_exact_deduplication", "it would drop the replayed rows; or data.rehearsal.resample: once",
     lambda v: bool(v)),
)


def _resample_problems(data: dict, lines: LineMap, fname: str, root: Path, ws: Path, explicit: bool) -> list[Problem]:
    """With `resample: per_epoch` the toolkit writes every epoch: training must count whole
    epochs, with no split or deduplication that would undo the replay. Each conflicting key is
    reported where it is set: the recipe's `train:` / `axolotl:` (they win), else the profile."""
    reh = data["data"].get("rehearsal")
    if not reh or reh.get("resample") != "per_epoch" or not reh["ratio"] or not reh["sources"]:
        return []  # nothing rehearsed: the mix is once's
    why_default = "" if explicit else " (the default for a recipe with a parent)"
    places = [(fname, lines, ("axolotl",), data.get("axolotl") or {}), (fname, lines, ("train",), data.get("train") or {})]
    try:
        ppath = resolve_path(data["profile"], root, ws)
        pdata, plines = load_yaml(ppath)
        places.append((display(ppath), plines, ("axolotl",), (pdata or {}).get("axolotl") or {}))
    except (BadInput, OSError, AttributeError):
        pass  # reported elsewhere
    problems = []
    for key, why, bad in _PER_EPOCH_CONFLICTS:
        where = next((p for p in places if isinstance(p[3], dict) and key in p[3]), None)
        if where and _safe(bad, where[3][key]):
            file, at_lines, prefix, _ = where
            problems.append(Problem(file, f"data.rehearsal.resample is per_epoch{why_default}: {key} "
                                          f"{where[3][key]!r} does not go with it: {why}",
                                    at_lines.line_for([*prefix, key]), format_key([*prefix, key])))
    return problems


def _safe(check, value) -> bool:
    try:
        return bool(check(value))
    except (TypeError, ValueError):
        return False  # the schema reports a value of the wrong type


def _anchor_problems(data: dict, lines: LineMap, fname: str, strategies: Mapping[str, Any]) -> list[Problem]:
    """`train.anchor` only for a strategy whose plan anchors to the parent's adapter."""
    if "anchor" not in (data.get("train") or {}) or getattr(strategies[data["strategy"]], "anchors", False):
        return []
    able = " or ".join(n for n, s in strategies.items() if getattr(s, "anchors", False)) or "none here"
    return [Problem(fname, f"train.anchor pulls the weights toward the parent's adapter, which strategy "
                           f"{data['strategy']} does not continue (use {able})",
                    lines.line_for(["train", "anchor"]), "train.anchor")]


def _todo_problems(data: dict, lines: LineMap, fname: str) -> list[Problem]:
    """A description that still says TODO (as `clt init` and `clt recipe new` write it):
    the registry and the report show it, so it must say why the version exists."""
    if "TODO" not in (data.get("description") or ""):
        return []
    return [Problem(fname, "the description still says TODO: say why this version exists",
                    lines.line_for(["description"]), "description")]


def _named_profile(data: dict, lines: LineMap, fname: str) -> list[Problem]:
    """A profile given by name becomes the bundled profile's `toolkit:` ref (in place)."""
    try:
        data["profile"] = profile_ref(data["profile"])
    except BadInput as e:
        return [Problem(fname, e.problems[0].message, lines.line_for(["profile"]), "profile")]
    return []


def _fill_parent_refs(data: dict, keys: tuple[str, ...]) -> None:
    """A strategy's version references left out (distillation.teacher) name the parent."""
    for dotted in keys:
        *path, last = dotted.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node.setdefault(last, data["parent"])


def _profile_problems(data: dict, root: Path, ws: Path, trust_remote_code: bool | None) -> list[Problem]:
    """The profile's credentials and `axolotl:` block, checked as the recipe's are (its
    schema is the training layer's, checked when it loads)."""
    try:
        ppath = resolve_path(data["profile"], root, ws)
    except BadInput:
        return []  # reported by _path_problems
    if not ppath.is_file():
        return []
    pname = display(ppath)
    try:
        text = ppath.read_text(encoding="utf-8")
        pdata, plines = load_yaml(ppath, text=text)
    except BadInput as e:
        return e.problems
    except (OSError, UnicodeDecodeError):
        return []  # load_yaml reports these when the profile loads
    problems = scan_document(text, pdata, plines, pname)
    if problems or not isinstance(pdata, dict):
        return problems
    return block_problems(pdata.get("axolotl"), plines, pname, ("axolotl",), profile_root(ppath, root), ws,
                          trust_remote_code is not False)


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), workspace: Path | None = None,
                check_files: bool = True, *, strategies: Mapping[str, Any],
                trust_remote_code: bool | None = None, draft: bool = False) -> LoadedRecipe:
    """Read, validate and freeze a recipe against the strategy table `strategies`.
    `profile:` may name a bundled profile (`tiny-cpu`); the frozen recipe holds its
    `toolkit:` ref. A description that says TODO is refused unless `draft` (the check
    `clt recipe new` runs before the author has written one).
    `trust_remote_code`: False refuses `trust_remote_code` in the recipe's or the profile's
    `axolotl:` (the command line's --trust-remote-code makes it True); None does not look
    (validation only, nothing runs). Raises BadInput with every problem found; no message
    holds a credential."""
    try:
        return _load_recipe(Path(path), overrides, workspace, check_files, strategies, trust_remote_code, draft)
    except BadInput as e:
        raise BadInput(redact_problems(e.problems)) from None


def _load_recipe(path: Path, overrides, workspace, check_files, strategies, trust_remote_code, draft) -> LoadedRecipe:
    fname = display(path)
    raw_bytes = path.read_bytes() if path.is_file() else None
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise BadInput([Problem(fname, "a recipe must be a YAML mapping", 1)])
    parsed = parse_overrides(overrides)
    problems = scan_document(raw_bytes.decode("utf-8"), data, lines, fname) + override_secrets(parsed)
    if problems:  # before any check whose message could quote a value
        raise BadInput(problems)
    data = apply_overrides(data, parsed)
    problems = _schema_problems(data, lines, fname, schema_for(strategies))
    problems = problems or _anchor_problems(data, lines, fname, strategies)
    if problems:
        raise BadInput(problems)
    explicit_resample = "resample" in (data["data"].get("rehearsal") or {})
    data = apply_defaults(data)
    root, ws = project_root(path), (workspace or workspace_dir())
    problems += [] if draft else _todo_problems(data, lines, fname)
    named = _named_profile(data, lines, fname)
    if named:  # every later check reads the profile
        raise BadInput(problems + named)
    problems += _profile_problems(data, root, ws, trust_remote_code)
    problems += block_problems(data.get("axolotl"), lines, fname, ("axolotl",), root, ws, trust_remote_code is not False)
    if check_files:
        problems += _path_problems(data, lines, fname, root, ws) + _domain_problems(data, lines, fname, root, ws)
    problems += _semantic_problems(data, lines, fname, path.resolve(), root, ws)
    problems += _split_problems(data["data"].get("rehearsal") or {}, lines, fname)
    problems += _resample_problems(data, lines, fname, root, ws, explicit_resample)
    if problems:
        raise BadInput(problems)
    _fill_parent_refs(data, strategies[data["strategy"]].parent_refs)
    text = raw_bytes.decode("utf-8")
    return LoadedRecipe(recipe=build_recipe(data), source=path.resolve(), root=root, workspace=ws,
                        text=text, sha256=sha256_bytes(raw_bytes), raw=freeze(data), overrides=tuple(overrides))
