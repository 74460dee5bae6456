"""Profiles: the base model, tokenizer, precision, kernels and launcher a recipe trains with.

A profile is YAML under `configs/profiles/`. Its `axolotl:` map is the base of the
rendered Axolotl config; the recipe's `train:` and `axolotl:` keys override it. Its
`defaults:` map holds, per strategy, the training settings that work on it (the recipe's
`train:` keys and `rehearsal_ratio`): what `clt init` and `clt recipe new` write.

Relative paths inside a profile start at the profile's own root: the toolkit root for a
bundled profile used from another repository, else the recipe's project root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jsonschema

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.secret_scan import redact_problems, scan_document
from cl_toolkit.core.workspace import (
    TOOLKIT_PREFIX,
    WORKSPACE_PREFIX,
    profile_ref,
    profile_root,
    resolve_path,
    workspace_dir,
)
from cl_toolkit.core.yamlio import display, format_key, load_yaml
from cl_toolkit.recipe.model import recipe_schema
from cl_toolkit.recipe.passthrough import block_problems, resolve_paths


@dataclass(frozen=True)
class TinySpec:
    """The shape of a tiny model. Defaults are the tiny-cpu profile's (see docs/environment.md)."""

    seed: int = 0
    vocab_size: int = 2048
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 512
    pretrain_epochs: int = 0  # >0: full fine-tune on the bundled general text through Axolotl
    # each general Q&A row this many times per pretraining epoch (so the base answers them:
    # docs/environment.md has the measurements)
    pretrain_qa_repeats: int = 6


def _defaults_schema() -> dict:
    """One strategy's defaults: the recipe's `train:` keys (same types), rehearsal_ratio and
    rehearsal_resample."""
    train = recipe_schema()["properties"]["train"]["properties"]
    rehearsal = recipe_schema()["properties"]["data"]["properties"]["rehearsal"]["properties"]
    return {"type": "object", "additionalProperties": False,
            "properties": {**train, "rehearsal_ratio": rehearsal["ratio"],
                           "rehearsal_resample": {k: v for k, v in rehearsal["resample"].items() if k != "default"}}}


PROFILE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "base_model", "axolotl"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "base_model": {"type": "string", "minLength": 1},
        "tiny_model": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: {"type": "integer", "minimum": 0} for k in TinySpec.__dataclass_fields__},
        },
        "launcher": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "cpu": {"type": "boolean", "description": "Train on the CPU (gloo when several processes)."},
                "num_processes": {"type": "integer", "minimum": 1,
                                  "description": "Processes per machine, one per GPU (clt train --nproc)."},
                "num_machines": {"type": "integer", "minimum": 1,
                                 "description": "Machines in the job (clt train --nnodes)."},
                "mixed_precision": {"enum": ["no", "fp16", "bf16"]},
                "threads": {"type": "integer", "minimum": 1,
                            "description": "OMP/MKL threads of each CPU training process (CLT_TRAIN_THREADS overrides)."},
                "config_file": {"type": "string", "description": "An accelerate config file; it then sets the distributed type."},
            },
        },
        "defaults": {
            "type": "object",
            "description": "Per strategy (initial_lora, continued_lora, ...): the training settings that work on this profile.",
            "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,63}$"},
            "additionalProperties": _defaults_schema(),
        },
        "offline_model_config": {"type": "string", "description": "Local copy of the base model's config.json folder, used only to validate offline."},
        "axolotl": {"type": "object"},
    },
}


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    base_model: str  # resolved local path, or a hub id for real models
    base_is_local: bool
    tiny_model: TinySpec | None
    offline_model_config: Path | None = None
    launcher: dict = field(default_factory=dict)
    axolotl: dict = field(default_factory=dict)
    description: str = ""
    defaults: dict = field(default_factory=dict)  # strategy -> {train key | rehearsal_ratio: value}


def load_profile(path: Path, root: Path, workspace: Path) -> Profile:
    """Load and check a profile; BadInput lists every problem with file, line and key.
    Credentials (comments included) are refused first; the `axolotl:` block's paths must
    stay in the project or workspace (and come back absolute) and its plugins be allowed
    ones. Whether `trust_remote_code` may stand is the recipe loader's question."""
    root = profile_root(path, root)
    data, lines = load_yaml(path)
    fname = display(path)
    secrets = scan_document(Path(path).read_text(encoding="utf-8"), data, lines, fname)
    if secrets:
        raise BadInput(secrets)
    if not isinstance(data, dict):
        raise BadInput([Problem(fname, "a profile must be a YAML mapping", 1)])
    problems = [
        Problem(fname, e.message, lines.line_for(e.absolute_path), format_key(e.absolute_path) or None)
        for e in jsonschema.Draft202012Validator(PROFILE_SCHEMA).iter_errors(data)
    ]
    if not problems:
        problems = block_problems(data["axolotl"], lines, fname, ("axolotl",), root, workspace, True)
    if problems:
        raise BadInput(redact_problems(problems))
    raw = data["base_model"]
    local = raw.startswith((WORKSPACE_PREFIX, TOOLKIT_PREFIX, ".", "/"))
    base = str(resolve_path(raw, root, workspace)) if local else raw
    tiny = TinySpec(**data["tiny_model"]) if "tiny_model" in data else None
    return Profile(
        name=data["name"], path=Path(path), base_model=base, base_is_local=local, tiny_model=tiny,
        offline_model_config=resolve_path(data["offline_model_config"], root, workspace) if "offline_model_config" in data else None,
        launcher=_launcher(data.get("launcher", {}), root, workspace),
        axolotl=resolve_paths(dict(data["axolotl"]), root, workspace)[0],
        description=data.get("description", ""),
        defaults=data.get("defaults", {}),
    )


def profile_defaults(profile: str, root: Path, workspace: Path | None = None) -> dict:
    """The `defaults:` of the profile a recipe names (a path or a bundled name): strategy ->
    settings. The profile is loaded and checked first (BadInput on any problem)."""
    ws = workspace or workspace_dir()
    return load_profile(resolve_path(profile_ref(profile), root, ws), root, ws).defaults


def _launcher(block: dict, root: Path, workspace: Path) -> dict:
    """The launcher block, an accelerate config file resolved (training runs in the run folder)."""
    out = dict(block)
    if "config_file" in out:
        path = resolve_path(out["config_file"], root, workspace)
        if not path.is_file():
            raise BadInput(f"launcher.config_file not found: {out['config_file']}")
        out["config_file"] = str(path)
    return out
