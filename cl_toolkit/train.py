"""Train one recipe: render into the run folder, launch Axolotl, keep the provenance, and
register the version only when the adapter is really there. A failed or interrupted run
records nothing in the registry."""

from __future__ import annotations

import ast
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import BadInput, CltError
from .fsutil import atomic_write_json
from .launch import Topology, plan_launch, train_env
from .profile import load_profile
from .recipe.model import LoadedRecipe
from .registry import RegistryStore, VersionRecord
from .render import Rendered, render
from .secrets import redact
from .workspace import resolve_path

_LOSS = re.compile(r"\{'(?:loss|train_runtime)':[^}]*\}")
_STEP = re.compile(r"(\d+)/(\d+) \[")


class TrainingFailed(CltError):
    exit_code = 1


@dataclass(frozen=True)
class TrainResult:
    record: VersionRecord | None  # None on a dry run and on nodes other than node 0
    rendered: Rendered
    argv: list[str]
    env: dict = field(default_factory=dict)  # variables the command needs on top of train_env()


def run_dir_for(lr: LoadedRecipe) -> Path:
    return lr.workspace / "runs" / lr.recipe.run_name


def parse_progress(line: str) -> dict | None:
    """A loss record ({'loss': ..., 'epoch': ...}) or a step counter from Axolotl's output."""
    m = _LOSS.search(line)
    if m:
        try:
            return {k: float(v) if isinstance(v, int | float | str) and _num(v) else v
                    for k, v in ast.literal_eval(m.group(0)).items()}
        except (ValueError, SyntaxError):
            return None
    m = _STEP.search(line)
    return {"step": int(m.group(1)), "steps": int(m.group(2))} if m else None


def _num(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _stream(proc: subprocess.Popen, log_path: Path, on_progress: Callable[[dict], None]) -> list[dict]:
    """Copy the child's output to the log (secrets masked), reporting progress as it comes."""
    losses, buf = [], b""
    with open(log_path, "w", encoding="utf-8") as log:
        while chunk := proc.stdout.read1(65536) if proc.stdout else b"":
            buf += chunk
            *parts, buf = re.split(rb"[\r\n]", buf)
            for raw in parts:
                line = redact(raw.decode("utf-8", "replace"))
                if line.strip():
                    log.write(line + "\n")
                info = parse_progress(line)
                if info:
                    if "loss" in info or "train_loss" in info:
                        losses.append(info)
                    on_progress(info)
        if buf:
            log.write(redact(buf.decode("utf-8", "replace")) + "\n")
    return losses


def run_training(argv: list[str], run_dir: Path, workspace: Path, on_progress: Callable[[dict], None], *,
                 env: dict | None = None, wandb: bool = False, log_name: str = "train.log") -> dict:
    """Run the launch command; raise TrainingFailed (with the log's tail) on failure."""
    log_path = run_dir / "logs" / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=run_dir,
                            env=train_env(workspace=workspace, extra=env, wandb=wandb), start_new_session=True)
    try:
        losses = _stream(proc, log_path, on_progress)
        code = proc.wait()
    except BaseException:  # Ctrl-C or our own crash: stop the whole training process group
        _kill(proc)
        raise
    seconds = time.monotonic() - start
    if code != 0:
        tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise TrainingFailed(f"training failed (exit {code}); log: {log_path}\n{tail}")
    return {"train_seconds": round(seconds, 2), "losses": losses}


def _kill(proc: subprocess.Popen) -> None:
    import os

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _render_for_node(lr: LoadedRecipe, run_dir: Path, registry: RegistryStore, topology: Topology | None) -> Rendered:
    """Node 0 renders the run folder. Another node renders it only where it is missing (its
    own disk); on a shared file system it uses node 0's, which may already be training in it."""
    manifest_path = run_dir / "manifest.json"
    if topology is None or topology.node_rank == 0 or not manifest_path.is_file():
        return render(lr, run_dir, registry, topology=topology)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest["recipe"]["sha256"] != lr.sha256:
        raise BadInput(f"{run_dir} was rendered from another recipe; start node 0 first, with the same recipe")
    profile = load_profile(resolve_path(lr.recipe.profile, lr.root, lr.workspace), lr.root, lr.workspace)
    config = yaml.safe_load((run_dir / "axolotl.yml").read_text(encoding="utf-8"))
    return Rendered(run_dir=run_dir, config=config, profile=profile, manifest=manifest)


def train(lr: LoadedRecipe, registry: RegistryStore, *, dry_run: bool = False,
          on_progress: Callable[[dict], None] = lambda info: None, topology: Topology | None = None) -> TrainResult:
    """Render, launch, and register one version (unless dry_run). With a multi-node
    `topology` every node runs this with its own node_rank; only node 0 registers."""
    recipe = lr.recipe
    if registry.get(recipe.model, recipe.version):
        raise BadInput(f"{recipe.model} {recipe.version} is already registered; versions are immutable, "
                       f"write a recipe for the next version")
    run_dir = run_dir_for(lr)
    rendered = _render_for_node(lr, run_dir, registry, topology)
    plan = plan_launch(run_dir / "axolotl.yml", rendered.profile.launcher, topology,
                       deepspeed=rendered.config.get("deepspeed"))
    rank = topology.node_rank if topology else 0
    if dry_run:
        return TrainResult(None, rendered, plan.argv, plan.env)
    outcome = run_training(plan.argv, run_dir, lr.workspace, on_progress, env=plan.env,
                           wandb=bool(rendered.config.get("use_wandb")),
                           log_name="train.log" if rank == 0 else f"train-node{rank}.log")
    if rank != 0:  # node 0 holds the adapter and registers the version
        return TrainResult(None, rendered, plan.argv, plan.env)
    record = register_run(lr, registry, run_dir, outcome)
    return TrainResult(record, rendered, plan.argv, plan.env)




def register_run(lr: LoadedRecipe, registry: RegistryStore, run_dir: Path, outcome: dict) -> VersionRecord:
    """Register a finished run: only when its adapter is really there."""
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_model.safetensors").is_file():
        raise TrainingFailed(f"training exited 0 but left no adapter in {adapter}")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    config = yaml.safe_load((run_dir / "axolotl.yml").read_text())
    logged = [x for x in outcome["losses"] if "loss" in x]
    summary = next((x for x in outcome["losses"] if "train_loss" in x), {})
    metrics = {"train_loss": summary.get("train_loss"), "train_loss_last": logged[-1]["loss"] if logged else None,
               "train_rows": manifest["mix"]["total"]}
    atomic_write_json(run_dir / "metrics.json", {**metrics, "losses": outcome["losses"],
                                                  "train_seconds": outcome["train_seconds"]})
    recipe = lr.recipe
    return registry.register(VersionRecord(
        model=recipe.model, version=recipe.version, parent=recipe.parent, strategy=recipe.strategy,
        base_model=config["base_model"], recipe_sha256=lr.sha256,
        data_sha256=manifest["outputs"]["data/train.jsonl"]["sha256"], run_dir=str(run_dir),
        adapter_dir=str(adapter), metrics=metrics, train_seconds=outcome["train_seconds"],
    ))
