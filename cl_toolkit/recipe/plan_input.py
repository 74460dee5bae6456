"""`clt recipe new --plan plan.json`: the next recipe takes the data sources and the
rehearsal split an improvement plan (`clt analyze`, docs/formats.md) names, and records the
plan's path and SHA-256 under `plan:` (the run's manifest copies it).

- `data.train`: the `--data` files, then every training file the plan's steps produce that
  exists by now (annotated feedback, synthetic examples); none at all is an error.
- `data.rehearsal`: the plan's ratio and one source per entry of its split (`parent_data`,
  `buffer`, or a path), its weights as `data.rehearsal.split`."""

from __future__ import annotations

import json
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import sha256_bytes
from cl_toolkit.core.workspace import portable_path, resolve_path
from cl_toolkit.core.yamlio import display

PLAN_KIND = "clt-improvement-plan"
PLAN_SCHEMA_VERSION = 1


def read_plan(path: Path, model: str) -> tuple[dict, str]:
    """The plan's data and the SHA-256 of its bytes; BadInput (file, key) when it is not a
    plan of this model line that this toolkit can read."""
    fname = display(path)
    if not Path(path).is_file():
        raise BadInput([Problem(fname, "plan file not found")])
    data = Path(path).read_bytes()
    try:
        plan = json.loads(data)
    except json.JSONDecodeError as e:
        raise BadInput([Problem(fname, f"not valid JSON: {e.msg}", e.lineno)]) from None
    if not isinstance(plan, dict) or plan.get("kind") != PLAN_KIND:
        raise BadInput([Problem(fname, f"not an improvement plan (kind must be {PLAN_KIND!r}; "
                                       "`clt analyze` writes one)", key="kind")])
    if plan.get("schema_version") != PLAN_SCHEMA_VERSION:
        raise BadInput([Problem(fname, f"plan schema_version {plan.get('schema_version')!r} is not "
                                       f"{PLAN_SCHEMA_VERSION}, the one this toolkit reads", key="schema_version")])
    if plan.get("model") != model:
        raise BadInput([Problem(fname, f"the plan is for {plan.get('model')!r}, not {model!r}", key="model")])
    recipe = plan.get("recipe")
    if not (isinstance(recipe, dict) and isinstance(recipe.get("train"), list)
            and isinstance((recipe.get("rehearsal") or {}).get("split"), dict)):
        raise BadInput([Problem(fname, "the plan has no recipe.train list and recipe.rehearsal.split mapping",
                                key="recipe")])
    return plan, sha256_bytes(data)


def _source(label: str) -> dict:
    return {label: True} if label in ("parent_data", "buffer") else {"path": label}


def apply_plan(recipe: dict, plan: dict, plan_path: Path, sha256: str, data_paths: list[str], root: Path,
               workspace: Path) -> dict:
    """The scaffolded recipe with the plan's data sources, rehearsal and provenance."""
    fname = display(plan_path)
    wanted = plan["recipe"]
    ready = [p for p in wanted["train"] if _exists(p, root, workspace)]
    train = list(dict.fromkeys([*data_paths, *ready]))
    if not train:
        raise BadInput([Problem(fname, "none of the plan's training files exists yet ("
                                       + ", ".join(wanted["train"]) + "): run the plan's steps first, "
                                       "or pass --data with this quarter's data", key="recipe.train")])
    split = {str(k): float(v) for k, v in wanted["rehearsal"]["split"].items()}
    rehearsal = {"ratio": float(wanted["rehearsal"].get("ratio", recipe["data"].get("rehearsal", {}).get("ratio", 0.2))),
                 "sources": [_source(label) for label in split], "split": split}
    ref = {"path": portable_path(Path(plan_path).resolve(), root, workspace), "sha256": sha256}
    return {**recipe, "data": {**recipe["data"], "train": [{"path": p} for p in train], "rehearsal": rehearsal},
            "plan": ref}


def _exists(raw: str, root: Path, workspace: Path) -> bool:
    try:
        return resolve_path(raw, root, workspace).is_file()
    except BadInput:
        return False
