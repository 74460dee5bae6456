"""Train one recipe, in three steps that `clt train` and `clt cycle` both call:

- `prepare`: refuse a version that is already registered (versions are immutable), make
  sure the profile's tiny base exists, render the run folder (Axolotl's check deferred to
  the launch, unless `check_now`);
- `launch`: run the launch command for this node (`accelerate launch -m axolotl.cli.train`),
  with the deferred check beside the training process's start: a config Axolotl rejects
  stops the process and raises the check's error, at the recipe's line, as render would;
- `finish_run`: the strategy's step after training, if it has one (merge_adapters merges);
- `register_run`: register the version, only when the adapter is really there.

A failed or interrupted run records nothing in the registry."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_write_json
from cl_toolkit.core.workspace import resolve_path
from cl_toolkit.core.yamlio import read_yaml
from cl_toolkit.recipe.model import LoadedRecipe
from cl_toolkit.registry import RegistryStore, VersionRecord
from cl_toolkit.training.launch import (
    LaunchPlan,
    Topology,
    TrainingFailed,
    plan_launch,
    run_training,
)
from cl_toolkit.training.profiles import load_profile
from cl_toolkit.training.render import Rendered, check_rendered, render
from cl_toolkit.training.strategies import STRATEGIES
from cl_toolkit.training.strategies.interface import Scorer
from cl_toolkit.training.tiny_model import ensure_base


@dataclass(frozen=True)
class TrainResult:
    record: VersionRecord | None  # None on a dry run and on nodes other than node 0
    rendered: Rendered
    argv: list[str]
    env: dict = field(default_factory=dict)  # variables the command needs on top of train_env()


def run_dir_for(lr: LoadedRecipe) -> Path:
    return lr.workspace / "runs" / lr.recipe.run_name


def _render_for_node(lr: LoadedRecipe, run_dir: Path, registry: RegistryStore, topology: Topology | None,
                     check_now: bool) -> Rendered:
    """Node 0 renders the run folder. Another node renders it only where it is missing (its
    own disk); on a shared file system it uses node 0's, which may already be training in it."""
    manifest_path = run_dir / "manifest.json"
    if topology is None or topology.node_rank == 0 or not manifest_path.is_file():
        return render(lr, run_dir, registry, topology=topology, defer_check=not check_now)
    rendered = load_rendered(lr)
    made_from = rendered.manifest["recipe"]
    if made_from["sha256"] != lr.sha256 or made_from.get("overrides", []) != list(lr.overrides):
        raise BadInput(f"{run_dir} was rendered from another recipe or other --set overrides; "
                       f"start node 0 first, with the same recipe and overrides")
    return rendered


def refuse_registered(lr: LoadedRecipe, registry: RegistryStore) -> None:
    """Versions are immutable: a recipe whose version is registered trains nothing."""
    if registry.get(lr.recipe.model, lr.recipe.version):
        raise BadInput(f"{lr.recipe.model} {lr.recipe.version} is already registered; versions are immutable, "
                       f"write a recipe for the next version")


def prepare(lr: LoadedRecipe, registry: RegistryStore, topology: Topology | None = None, *,
            check_now: bool = False) -> Rendered:
    """Everything before the launch: the immutability check, the base model, the run folder.
    Axolotl's check is left to `launch` unless `check_now` (nothing will be launched)."""
    refuse_registered(lr, registry)
    ensure_base(lr)
    return _render_for_node(lr, run_dir_for(lr), registry, topology, check_now)


def launch_plan(rendered: Rendered, topology: Topology | None = None) -> LaunchPlan:
    """This node's launch command for a rendered run folder (pure)."""
    return plan_launch(rendered.run_dir / "axolotl.yml", rendered.profile.launcher, topology,
                       deepspeed=rendered.config.get("deepspeed"))


def launch(rendered: Rendered, plan: LaunchPlan, workspace: Path, topology: Topology | None = None,
           on_progress: Callable[[dict], None] = lambda info: None) -> dict:
    """Run the launch command in the run folder, the check render deferred beside it; the
    outcome (seconds, losses)."""
    rank = topology.node_rank if topology else 0
    return run_training(plan.argv, rendered.run_dir, workspace, on_progress, env=plan.env,
                        wandb=bool(rendered.config.get("use_wandb")),
                        preflight=partial(check_rendered, rendered, topology),
                        log_name="train.log" if rank == 0 else f"train-node{rank}.log")


def load_rendered(lr: LoadedRecipe) -> Rendered:
    """A run folder rendered before (a resumed cycle, another node): config, profile, manifest."""
    run_dir = run_dir_for(lr)
    profile = load_profile(resolve_path(lr.recipe.profile, lr.root, lr.workspace), lr.root, lr.workspace)
    config = read_yaml(run_dir / "axolotl.yml")
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return Rendered(run_dir=run_dir, config=config, profile=profile, manifest=manifest, loaded=lr)


def train(lr: LoadedRecipe, registry: RegistryStore, *, dry_run: bool = False,
          on_progress: Callable[[dict], None] = lambda info: None, topology: Topology | None = None,
          scorer: Scorer | None = None) -> TrainResult:
    """prepare → launch → finish → register (unless dry_run). With a multi-node `topology`
    every node runs this with its own node_rank; only node 0 finishes and registers.
    `scorer` (the evaluation layer's) is what a strategy's finish step scores adapters with."""
    rendered = prepare(lr, registry, topology, check_now=dry_run)
    plan = launch_plan(rendered, topology)
    if dry_run:
        return TrainResult(None, rendered, plan.argv, plan.env)
    outcome = launch(rendered, plan, lr.workspace, topology, on_progress)
    if topology is not None and topology.node_rank != 0:  # node 0 holds the adapter and registers
        return TrainResult(None, rendered, plan.argv, plan.env)
    outcome = finish_run(lr, registry, rendered.run_dir, outcome, scorer)
    record = register_run(lr, registry, rendered.run_dir, outcome)
    return TrainResult(record, rendered, plan.argv, plan.env)


def finish_run(lr: LoadedRecipe, registry: RegistryStore, run_dir: Path, outcome: dict,
               scorer: Scorer | None) -> dict:
    """The strategy's step after training (`Strategy.finish`), if it has one: the outcome
    with what the step reports under `finish` (register_run adds it to the metrics)."""
    hook = STRATEGIES[lr.recipe.strategy].finish
    if hook is None:
        return outcome
    if scorer is None:
        raise BadInput(f"strategy {lr.recipe.strategy} scores adapters after training: pass a scorer "
                       f"(clt train and clt cycle do)")
    return {**outcome, "finish": hook(lr, registry, run_dir, scorer)}


def register_run(lr: LoadedRecipe, registry: RegistryStore, run_dir: Path, outcome: dict) -> VersionRecord:
    """Register a finished run: only when its adapter is really there."""
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_model.safetensors").is_file():
        raise TrainingFailed(f"training exited 0 but left no adapter in {adapter}")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    config = read_yaml(run_dir / "axolotl.yml")
    logged = [x for x in outcome["losses"] if "loss" in x]
    summary = next((x for x in outcome["losses"] if "train_loss" in x), {})
    metrics = {"train_loss": summary.get("train_loss"), "train_loss_last": logged[-1]["loss"] if logged else None,
               "train_rows": manifest["mix"]["total"], **outcome.get("finish", {})}
    atomic_write_json(run_dir / "metrics.json", {**metrics, "losses": outcome["losses"],
                                                  "train_seconds": outcome["train_seconds"]})
    recipe = lr.recipe
    return registry.register(VersionRecord(
        model=recipe.model, version=recipe.version, parent=recipe.parent, strategy=recipe.strategy,
        base_model=config["base_model"], recipe_sha256=lr.sha256,
        data_sha256=manifest["outputs"]["data/train.jsonl"]["sha256"], run_dir=str(run_dir),
        adapter_dir=str(adapter), metrics=metrics, train_seconds=outcome["train_seconds"],
    ))
