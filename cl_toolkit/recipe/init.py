"""`clt init LINE [DIR]`: a recipe repository of one's own. It holds only the user's files:
the first recipe names a bundled profile (`profile: tiny-cpu`) and the toolkit's general
data (`toolkit:general/general.jsonl`), so nothing of the toolkit is copied.

Written, never over an existing file (all refused before any is written):
- `recipes/LINE/1.0.0.yml`: strategy `initial_lora`, the profile's defaults for it, a
  description that says TODO (validation refuses it until the author says why);
- `data/LINE/regression.jsonl`: a regression-suite template, three cases showing the
  format, each marked REPLACE;
- `recipes/LINE/README.md`: the files to add and the next commands.

The profile's defaults come in as an argument (profiles are the training layer's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_write_text
from cl_toolkit.core.workspace import TOOLKIT_PREFIX
from cl_toolkit.core.yamlio import display
from cl_toolkit.recipe.model import recipe_schema

FIRST_VERSION = "1.0.0"
DEFAULT_PROFILE = "tiny-cpu"  # a new line's profile unless one is named: runs on any laptop
GENERAL_DATA = f"{TOOLKIT_PREFIX}general/general.jsonl"  # the toolkit's bundled general Q&A


def check_line_name(line: str) -> None:
    """BadInput unless `line` is a model name the registry accepts (the schema's pattern)."""
    if not re.match(recipe_schema()["properties"]["model"]["pattern"], line):
        raise BadInput(f"line name {line!r}: use lower-case letters, digits, '-' and '_' "
                       f"(at most 64, starting with a letter or digit)")

# The suite format (docs/formats.md), one case per match kind a line is likely to need.
SUITE_TEMPLATE = [
    {"id": "replace-me-1", "input": "REPLACE: a question your model must always get right",
     "expected": "REPLACE: the fact its answer must contain", "match": "contains", "criticality": "critical",
     "domain": "REPLACE-domain", "tags": ["template"]},
    {"id": "replace-me-2", "input": "REPLACE: a question with a number in its answer",
     "expected": "42 ppm", "match": "numeric", "criticality": "high", "domain": "REPLACE-domain",
     "tags": ["template"]},
    {"id": "replace-me-3", "input": "REPLACE: a question whose answer has a fixed pattern",
     "expected": "\\bUN ?1203\\b", "match": "regex", "criticality": "medium", "domain": "REPLACE-domain",
     "tags": ["template"]},
]


def first_recipe(line: str, profile: str, defaults: dict, data_paths: list[str],
                 regression: str, rehearsal: list[str] = (GENERAL_DATA,)) -> dict:
    """The first recipe of a line as data: a fresh LoRA (initial_lora) on the profile's base,
    trained with the profile's `initial_lora` defaults; the gate holds the regression suite
    and, as the quarter being learned, each training file's `<name>_asked.jsonl`."""
    train = {k: v for k, v in defaults.items() if not k.startswith("rehearsal_")}
    suites: dict = {"regression": regression}
    for raw in data_paths:
        p = Path(raw)
        suites[p.stem] = {"path": p.with_name(f"{p.stem}_asked.jsonl").as_posix(), "role": "learning"}
    out = {
        "schema_version": 1, "model": line, "version": FIRST_VERSION, "parent": None, "strategy": "initial_lora",
        "description": f"TODO: what {line} {FIRST_VERSION} learns, and from which data",
        "profile": profile,
        "data": {"train": [{"path": p} for p in data_paths],
                 "rehearsal": {"ratio": defaults.get("rehearsal_ratio", 0.2),
                               "sources": [{"path": s} for s in rehearsal]},
                 "seed": 42},
    }
    if train:
        out["train"] = train
    out["gate"] = {"suites": suites, "max_critical_regressions": 0, "min_accuracy_delta": 0.0}
    return out


def recipe_text(recipe: dict, header: str) -> str:
    return header + yaml.safe_dump(recipe, sort_keys=False)


def _readme(line: str, profile: str) -> str:
    return f"""# {line}: a model line of its own

Made by `clt init {line}`. This repository holds only this line's files; the profile
(`profile: {profile}`) and the general rehearsal data (`{GENERAL_DATA}`) are the
toolkit's, found where cl_toolkit is installed.

## Before the first cycle
1. Put the first quarter's training data in `data/{line}/q1.jsonl`: one chat example a line,
   `{{"messages": [{{"role": "user", "content": ...}}, {{"role": "assistant", "content": ...}}]}}`.
2. Put its questions, asked as trained, in `data/{line}/q1_asked.jsonl` (suite format): the
   gate checks that {FIRST_VERSION} learned them.
3. Replace every case of `data/{line}/regression.jsonl` (marked REPLACE) with what the model
   must never get wrong.
4. In `recipes/{line}/{FIRST_VERSION}.yml`, replace the TODO description with why this version exists.

## Then
    clt recipe validate recipes/{line}/{FIRST_VERSION}.yml
    clt cycle recipes/{line}/{FIRST_VERSION}.yml           # train, evaluate, gate, register, report

## Next quarter
    clt recipe new {line} --from {FIRST_VERSION} --strategy continued_lora --bump minor \\
        --data data/{line}/q2.jsonl                          # with q2_asked.jsonl beside it
    clt cycle recipes/{line}/1.1.0.yml

`clt recipe new` writes the profile's training defaults for the strategy (see the
profile's `defaults:`); every file here can be edited. CLT_HOME (default ./workspace) holds
what the cycles make.
"""


def init_line(line: str, dest: Path, profile: str, defaults: dict) -> list[Path]:
    """Write a new line's first recipe, regression-suite template and README under `dest`;
    BadInput (nothing written) if any of them exists. Returns the files written."""
    check_line_name(line)
    dest = Path(dest)
    recipe_path = dest / "recipes" / line / f"{FIRST_VERSION}.yml"
    suite_path = dest / "data" / line / "regression.jsonl"
    readme_path = dest / "recipes" / line / "README.md"
    existing = [p for p in (recipe_path, suite_path, readme_path) if p.exists()]
    if existing:
        raise BadInput(f"refusing to overwrite {', '.join(display(p) for p in existing)}: "
                       f"clt init writes only new files (pick another line name or folder)")
    recipe = first_recipe(line, profile, defaults, [f"data/{line}/q1.jsonl"], f"data/{line}/regression.jsonl")
    header = (f"# {line} {FIRST_VERSION}: the first version of the line, a LoRA on the {profile} profile's base\n"
              f"# (written by `clt init`; recipes/{line}/README.md says what to add before `clt cycle`).\n")
    atomic_write_text(suite_path, "".join(json.dumps(c) + "\n" for c in SUITE_TEMPLATE))
    atomic_write_text(readme_path, _readme(line, profile))
    atomic_write_text(recipe_path, recipe_text(recipe, header))
    return [recipe_path, suite_path, readme_path]
