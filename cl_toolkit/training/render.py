"""Render a recipe into a run folder: the Axolotl config, the materialised training mix,
and a manifest with the SHA-256 of every input and output. Pure composition first
(`compose_config`), then validation, then one atomic publish of the whole folder."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cl_toolkit import __version__
from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import dump_json, jsonl_bytes, publish_dir, sha256_bytes, sha256_file
from cl_toolkit.core.secret_scan import refuse_secrets
from cl_toolkit.core.workspace import portable_path, resolve_path
from cl_toolkit.core.yamlio import display, dump_yaml, format_key
from cl_toolkit.recipe.model import LoadedRecipe, thaw
from cl_toolkit.recipe.passthrough import refuse_plugins, resolve_paths
from cl_toolkit.registry import RegistryStore
from cl_toolkit.training.axolotl_check import validate_with_axolotl
from cl_toolkit.training.launch import Topology, fill_topology
from cl_toolkit.training.mix import Mix, build_mix
from cl_toolkit.training.profiles import Profile, load_profile
from cl_toolkit.training.strategies import STRATEGIES
from cl_toolkit.training.strategies.interface import Plan

FILES = ("axolotl.yml", "manifest.json", "recipe.yml", "data/train.jsonl", "data/new.jsonl")


@dataclass(frozen=True)
class Rendered:
    run_dir: Path
    config: dict
    profile: Profile
    manifest: dict


def tracking_keys(tracking: dict | None, run_name: str, source: str = "recipe") -> dict:
    """Axolotl's own W&B and MLflow keys for a recipe's `tracking:`. Keys and tokens
    (WANDB_API_KEY, MLFLOW_TRACKING_TOKEN, ...) stay in the environment: a tracking URI
    that carries a password is refused."""
    tracking = tracking or {}
    keys = {}
    if wandb := tracking.get("wandb"):
        keys.update({"use_wandb": True, "wandb_project": wandb["project"], "wandb_name": run_name})
        if wandb.get("entity"):
            keys["wandb_entity"] = wandb["entity"]
    if mlflow := tracking.get("mlflow"):
        uri = mlflow["tracking_uri"]
        if urlsplit(uri).password:
            raise BadInput([Problem(source, "a tracking URI must not carry a password; set "
                                    "MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN in the environment",
                                    key="tracking.mlflow.tracking_uri")])
        keys.update({"use_mlflow": True, "mlflow_tracking_uri": uri,
                     "mlflow_experiment_name": mlflow["experiment"], "mlflow_run_name": run_name})
    return keys


def engine_keys(cfg: dict, lr: LoadedRecipe, profile: Profile, world_size: int) -> dict:
    """What the launch needs inside the config: the DeepSpeed JSON as an absolute path
    (training runs in the run folder), and for several CPU processes a CPU-only
    `max_memory`: Axolotl maps each rank to device LOCAL_RANK, a GPU index, unless a
    memory map says where the model goes."""
    keys = {}
    if isinstance(cfg.get("deepspeed"), str):
        path = resolve_path(cfg["deepspeed"], lr.root, lr.workspace)
        if not path.is_file():
            raise BadInput([Problem("axolotl.yml (rendered)", f"DeepSpeed config not found: {display(path)}",
                                    key="deepspeed")])
        keys["deepspeed"] = str(path)
    if profile.launcher.get("cpu") and world_size > 1 and not cfg.get("max_memory"):
        keys["max_memory"] = {"cpu": "256GiB"}
    return keys


def passthrough(lr: LoadedRecipe) -> dict:
    """The recipe's `axolotl:` block with its paths absolute (training runs in the run
    folder); BadInput for a path outside the project and workspace (load_recipe already
    refuses those, with their lines)."""
    block, problems = resolve_paths(thaw(lr.recipe.axolotl), lr.root, lr.workspace)
    if problems:
        raise BadInput([Problem(display(lr.source), why, key=format_key(("axolotl", *at))) for at, why in problems])
    return block


def compose_config(lr: LoadedRecipe, profile: Profile, plan: Plan, run_dir: Path) -> dict:
    """The Axolotl config: profile < strategy < tracking < recipe.train < recipe.axolotl < fixed paths."""
    recipe = lr.recipe
    cfg = {**profile.axolotl, **plan.keys, **tracking_keys(thaw(recipe.tracking), recipe.run_name, display(lr.source)),
           **thaw(recipe.train), **passthrough(lr)}
    cfg.setdefault("seed", recipe.data.seed)
    cfg["datasets"] = [{"path": str(run_dir / "data" / "train.jsonl"), **plan.dataset}]
    cfg["dataset_prepared_path"] = str(run_dir / "prepared")
    cfg["output_dir"] = str(run_dir / "adapter")
    return dict(sorted(cfg.items()))


def _manifest(lr: LoadedRecipe, profile: Profile, mix: Mix, outputs: dict) -> dict:
    r = lr.recipe
    return {
        "toolkit_version": __version__, "model": r.model, "version": r.version, "parent": r.parent,
        "strategy": r.strategy, "seed": r.data.seed,
        "recipe": {"path": portable_path(lr.source, lr.root, lr.workspace), "sha256": lr.sha256,
                   "overrides": list(lr.overrides)},
        "profile": {"name": profile.name, "path": portable_path(profile.path, lr.root, lr.workspace),
                    "sha256": sha256_file(profile.path),
                    "base_model": portable_path(profile.base_model, lr.root, lr.workspace)},
        "inputs": mix.inputs, "mix": mix.counts, "outputs": outputs,
    }


def render(lr: LoadedRecipe, out_dir: Path, registry: RegistryStore, *, validate: bool = True,
           topology: Topology | None = None) -> Rendered:
    """Render `lr` into `out_dir` (replaced atomically); nothing is written on error.
    `topology` (clt train --nproc/--nnodes) overrides the profile's process count."""
    recipe = lr.recipe
    profile = load_profile(resolve_path(recipe.profile, lr.root, lr.workspace), lr.root, lr.workspace)
    refuse_secrets(profile.axolotl, display(profile.path))
    refuse_secrets(thaw(recipe.axolotl), display(lr.source))
    out_dir = Path(out_dir).resolve()
    mix = build_mix(lr, registry)
    plan = STRATEGIES[recipe.strategy].plan(lr, registry, profile, mix.rows)
    if plan.rows is not None:
        mix = dataclasses.replace(mix, rows=plan.rows)
    cfg = compose_config(lr, profile, plan, out_dir)
    world_size = fill_topology(profile.launcher, topology).world_size
    cfg = dict(sorted({**cfg, **engine_keys(cfg, lr, profile, world_size)}.items()))
    refuse_secrets(cfg, "axolotl.yml (rendered)")
    refuse_plugins(cfg, "axolotl.yml (rendered)")  # before Axolotl's validator imports any
    if validate:
        validate_with_axolotl(cfg, cpu=bool(profile.launcher.get("cpu")), num_processes=world_size,
                              offline_model_config=profile.offline_model_config)
    return _write(lr, profile, mix, cfg, out_dir)


def _write(lr: LoadedRecipe, profile: Profile, mix: Mix, cfg: dict, out_dir: Path) -> Rendered:
    blobs = {
        "axolotl.yml": dump_yaml(cfg, sort_keys=True, allow_unicode=True).encode(),
        "recipe.yml": lr.text.encode(),
        "data/train.jsonl": jsonl_bytes(mix.rows),
        "data/new.jsonl": jsonl_bytes(mix.new_rows),
    }
    outputs = {name: {"sha256": sha256_bytes(b)} for name, b in blobs.items()}
    outputs["data/train.jsonl"]["rows"] = len(mix.rows)
    outputs["data/new.jsonl"]["rows"] = len(mix.new_rows)
    manifest = _manifest(lr, profile, mix, outputs)
    blobs["manifest.json"] = dump_json(manifest).encode()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.render.", dir=out_dir.parent))
    try:
        for name, data in blobs.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        staging.chmod(0o755)
        publish_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Rendered(run_dir=out_dir, config=cfg, profile=profile, manifest=manifest)
