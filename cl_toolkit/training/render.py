"""Render a recipe into a run folder: the Axolotl config, the materialised training mix,
the recipe as it ran (`recipe.yml`: `--set` overrides applied, defaults filled) beside the
file it came from (`recipe.original.yml`), and a manifest with the SHA-256 of every input
and output. Pure composition first (`compose_config`), then validation (Axolotl's, skipped
when the same config passed before: axolotl_check), then one atomic publish of the folder.
Axolotl's complaints about a key point at the file and line the key came from: the recipe
(or `--set`), else the profile."""

from __future__ import annotations

import dataclasses
import math
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
from cl_toolkit.core.yamlio import display, dump_yaml, format_key, load_yaml
from cl_toolkit.recipe.model import LoadedRecipe, thaw
from cl_toolkit.recipe.passthrough import refuse_plugins, resolve_paths
from cl_toolkit.registry import RegistryStore
from cl_toolkit.training.axolotl_check import RENDERED, validate_with_axolotl
from cl_toolkit.training.determinism import with_plugin
from cl_toolkit.training.launch import Topology, fill_topology
from cl_toolkit.training.mix import Mix, build_mix
from cl_toolkit.training.profiles import Profile, load_profile
from cl_toolkit.training.strategies import STRATEGIES
from cl_toolkit.training.strategies.interface import Plan
from cl_toolkit.training.validate_deep import RecipeLocator

FILES = ("axolotl.yml", "manifest.json", "recipe.yml", "recipe.original.yml", "data/train.jsonl", "data/new.jsonl")
DEFERRED = "deferred"
CHECK_CACHE = ("cache", "axolotl_check")  # under the workspace: one stamp per config that passed


@dataclass(frozen=True)
class Rendered:
    run_dir: Path
    config: dict
    profile: Profile
    manifest: dict
    loaded: LoadedRecipe  # the recipe it came from (what a deferred check needs)
    check: str = ""  # Axolotl's check: "checked", "cached" (passed before), "deferred", "" (not run)


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


FIXED_KEYS = frozenset({"datasets", "dataset_prepared_path", "output_dir"})  # set by render itself
# `train:` keys that are not Axolotl's: the strategy renders them (continued_lora's anchor)
STRATEGY_TRAIN_KEYS = frozenset({"anchor"})


def compose_config(lr: LoadedRecipe, profile: Profile, plan: Plan, run_dir: Path) -> dict:
    """The Axolotl config: profile < strategy < tracking < recipe.train < recipe.axolotl < fixed paths;
    the determinism plugin first in `plugins:`."""
    recipe = lr.recipe
    train = {k: v for k, v in thaw(recipe.train).items() if k not in STRATEGY_TRAIN_KEYS}
    cfg = {**profile.axolotl, **plan.keys, **tracking_keys(thaw(recipe.tracking), recipe.run_name, display(lr.source)),
           **train, **passthrough(lr)}
    cfg.setdefault("seed", recipe.data.seed)
    cfg["plugins"] = with_plugin(cfg.get("plugins"))  # seeded before the model is built (determinism.py)
    cfg["datasets"] = [{"path": str(run_dir / "data" / "train.jsonl"), **plan.dataset}]
    cfg["dataset_prepared_path"] = str(run_dir / "prepared")
    cfg["output_dir"] = str(run_dir / "adapter")
    return dict(sorted(cfg.items()))


def one_pass_keys(cfg: dict, mix: Mix, world_size: int) -> tuple[dict, dict]:
    """`resample: per_epoch`: train.jsonl already holds every epoch, so Axolotl makes one pass
    (num_epochs: 1) and `evals_per_epoch` / `saves_per_epoch` scale by the epochs. Axolotl
    counts ceil(rows x epochs / batch) optimizer steps (batch: micro x accumulation x
    processes), so one pass over E epochs of rows is the same number as E epochs were; with
    sample packing the packer bins the longer stream, so it is close, not exact.
    -> (config keys, the manifest's `training` entry)."""
    epochs, rows = mix.counts["epochs"], len(mix.rows)
    keys = {"num_epochs": 1}
    for per_epoch in ("evals_per_epoch", "saves_per_epoch"):
        if cfg.get(per_epoch):
            keys[per_epoch] = cfg[per_epoch] * epochs
    batch = int(cfg.get("micro_batch_size") or 1) * int(cfg.get("gradient_accumulation_steps") or 1) * world_size
    training = {"resample": "per_epoch", "epochs": epochs, "num_epochs": 1, "rows": rows, "batch": batch,
                "optimizer_steps": None if cfg.get("sample_packing") else math.ceil(rows / batch)}
    return keys, training


def _config_header(training: dict | None) -> str:
    if not training:
        return ""
    steps = training["optimizer_steps"]
    return (f"# data.rehearsal.resample: per_epoch: data/train.jsonl holds all {training['epochs']} epochs "
            f"({training['rows']} rows, a fresh rehearsal draw in each),\n# so Axolotl makes one pass "
            f"(num_epochs: 1): {f'{steps} optimizer steps, as many as' if steps else 'about the optimizer steps of'} "
            f"{training['epochs']} epochs would take.\n")


def _manifest(lr: LoadedRecipe, profile: Profile, mix: Mix, outputs: dict, extra: dict) -> dict:
    r = lr.recipe
    return {**extra,
        "toolkit_version": __version__, "model": r.model, "version": r.version, "parent": r.parent,
        "strategy": r.strategy, "seed": r.data.seed,
        "recipe": {"path": portable_path(lr.source, lr.root, lr.workspace), "sha256": lr.sha256,
                   "overrides": list(lr.overrides)},
        "profile": {"name": profile.name, "path": portable_path(profile.path, lr.root, lr.workspace),
                    "sha256": sha256_file(profile.path),
                    "base_model": portable_path(profile.base_model, lr.root, lr.workspace)},
        "inputs": mix.inputs, "mix": mix.counts, "outputs": outputs,
        **({"plan": {"path": r.plan["path"], "sha256": r.plan["sha256"]}} if r.plan else {}),
    }


def render(lr: LoadedRecipe, out_dir: Path, registry: RegistryStore, *, validate: bool = True,
           defer_check: bool = False, topology: Topology | None = None) -> Rendered:
    """Render `lr` into `out_dir` (replaced atomically); nothing is written on error.
    `topology` (clt train --nproc/--nnodes) overrides the profile's process count. The
    result's `check` says whether Axolotl's check ran ("checked") or had passed before for
    this exact config ("cached": nothing of Axolotl is imported). With `defer_check` (a
    render that is launched right away: `clt train`, `clt cycle`) the check is left to
    `check_rendered`, which the launch runs beside the training process's start: its
    seconds of imports overlap the training process's own ("deferred"; the manifest's
    `axolotl_check` says so, with what is needed to place Axolotl's errors)."""
    recipe = lr.recipe
    profile = load_profile(resolve_path(recipe.profile, lr.root, lr.workspace), lr.root, lr.workspace)
    refuse_secrets(profile.axolotl, display(profile.path))
    refuse_secrets(thaw(recipe.axolotl), display(lr.source))
    out_dir = Path(out_dir).resolve()
    mix = build_mix(lr, registry, profile)
    plan = STRATEGIES[recipe.strategy].plan(lr, registry, profile, mix.rows)
    if plan.rows is not None:
        mix = dataclasses.replace(mix, rows=plan.rows)
    cfg = compose_config(lr, profile, plan, out_dir)
    world_size = fill_topology(profile.launcher, topology).world_size
    cfg = dict(sorted({**cfg, **engine_keys(cfg, lr, profile, world_size)}.items()))
    training = None
    if mix.counts.get("resample") == "per_epoch":
        keys, training = one_pass_keys(cfg, mix, world_size)
        cfg = dict(sorted({**cfg, **keys}.items()))
    refuse_secrets(cfg, "axolotl.yml (rendered)")
    refuse_plugins(cfg, "axolotl.yml (rendered)")  # before Axolotl's validator imports any
    toolkit_set = {*plan.keys, *tracking_keys(thaw(recipe.tracking), recipe.run_name, display(lr.source))}
    check, deferred = "", None
    if validate and defer_check:
        check, deferred = DEFERRED, {"at": "launch", "toolkit_keys": sorted(toolkit_set)}
    elif validate:
        check = _check(cfg, lr, profile, world_size, toolkit_set, out_dir)
    return dataclasses.replace(_write(lr, profile, mix, cfg, out_dir, deferred, training, plan.manifest),
                               check=check)


def _check(cfg: dict, lr: LoadedRecipe, profile: Profile, world_size: int, toolkit_set: set, run_dir: Path) -> str:
    """Axolotl's check of `cfg` (cached by fingerprint), its errors placed in the sources."""
    try:
        return validate_with_axolotl(cfg, cpu=bool(profile.launcher.get("cpu")), num_processes=world_size,
                                     offline_model_config=profile.offline_model_config,
                                     cache_dir=lr.workspace.joinpath(*CHECK_CACHE), run_dir=run_dir)
    except BadInput as e:
        raise BadInput(_at_sources(e.problems, lr, profile, toolkit_set)) from None


def check_rendered(rendered: Rendered, topology: Topology | None = None) -> str:
    """The check a render deferred (manifest `axolotl_check`), on the rendered config: BadInput
    at the recipe's or the profile's line, as render would have raised. "" when render checked."""
    deferred = rendered.manifest.get("axolotl_check")
    if not deferred:
        return ""
    world_size = fill_topology(rendered.profile.launcher, topology).world_size
    return _check(rendered.config, rendered.loaded, rendered.profile, world_size, set(deferred["toolkit_keys"]), rendered.run_dir)


def _at_sources(problems: list[Problem], lr: LoadedRecipe, profile: Profile, toolkit_set: set) -> list[Problem]:
    """Axolotl's problems with a rendered key moved to where the key was written: the
    recipe's `axolotl:` or `train:` (or `--set`), else the profile's `axolotl:`. Keys the
    strategy, tracking or render itself set (`toolkit_set`, FIXED_KEYS) stay on the rendered file."""
    recipe_at = {**{k: ("train", k) for k in lr.recipe.train}, **{k: ("axolotl", k) for k in lr.recipe.axolotl}}
    locate, profile_lines = RecipeLocator(lr), None
    out = []
    for p in problems:
        top = (p.key or "").replace("[", ".").split(".")[0]
        rest = (p.key or "")[len(top):]
        if p.file != RENDERED or not top or top in FIXED_KEYS:
            out.append(p)
        elif top in recipe_at:
            where = locate.problem(recipe_at[top], p.message)
            out.append(Problem(where.file, p.message, where.line, where.key + rest))
        elif top in profile.axolotl and top not in toolkit_set:
            profile_lines = profile_lines or load_yaml(profile.path)[1]
            out.append(Problem(display(profile.path), p.message, profile_lines.line_for(("axolotl", top)),
                               f"axolotl.{top}{rest}"))
        else:
            out.append(p)
    return out


def resolved_recipe(lr: LoadedRecipe) -> bytes:
    """The recipe as this run used it: the file's data with the `--set` overrides applied
    and the schema's defaults filled in (what evaluation and the gate read back)."""
    header = ["# The recipe as this run used it: recipe.original.yml with the schema's defaults filled in"]
    if lr.overrides:
        keys = ", ".join(pair.partition("=")[0] for pair in lr.overrides)
        header.append(f"# and these --set overrides applied: {keys}")
    return ("\n".join(header) + "\n" + dump_yaml(thaw(lr.raw), sort_keys=False, allow_unicode=True)).encode()


def _write(lr: LoadedRecipe, profile: Profile, mix: Mix, cfg: dict, out_dir: Path, deferred: dict | None,
           training: dict | None, extra: dict) -> Rendered:
    blobs = {
        "axolotl.yml": (_config_header(training) + dump_yaml(cfg, sort_keys=True, allow_unicode=True)).encode(),
        "recipe.yml": resolved_recipe(lr),
        "recipe.original.yml": lr.text.encode(),
        "data/train.jsonl": jsonl_bytes(mix.rows),
        "data/new.jsonl": jsonl_bytes(mix.new_rows),
    }
    outputs = {name: {"sha256": sha256_bytes(b)} for name, b in blobs.items()}
    outputs["data/train.jsonl"]["rows"] = len(mix.rows)
    outputs["data/new.jsonl"]["rows"] = len(mix.new_rows)
    manifest = _manifest(lr, profile, mix, outputs, extra)
    if deferred:
        manifest["axolotl_check"] = deferred
    if training:
        manifest["training"] = training
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
    return Rendered(run_dir=out_dir, config=cfg, profile=profile, manifest=manifest, loaded=lr)
