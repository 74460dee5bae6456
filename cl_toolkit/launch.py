"""The training launch command, built as pure data (asserted exactly in tests), and the
environment it runs in."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Settings every Axolotl process needs here (DESIGN.md): telemetry off (else the process
# hangs after training retrying it), no W&B, no hub.
TRAIN_ENV = {
    "AXOLOTL_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def accelerate_bin() -> str:
    """The `accelerate` next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "accelerate"
    return str(here) if here.exists() else "accelerate"


def launch_argv(config: Path | str, launcher: dict, *, accelerate: str | None = None) -> list[str]:
    """`accelerate launch ... -m axolotl.cli.train CONFIG` for a profile's launcher settings."""
    argv = [accelerate or accelerate_bin(), "launch"]
    if launcher.get("cpu"):
        argv.append("--cpu")
    if launcher.get("config_file"):
        argv += ["--config_file", str(launcher["config_file"])]
    argv += [
        "--num_processes", str(launcher.get("num_processes", 1)),
        "--num_machines", "1",
        "--mixed_precision", launcher.get("mixed_precision", "no"),
        "--dynamo_backend", "no",
        "-m", "axolotl.cli.train", str(config),
    ]
    return argv


def train_env(base: dict | None = None, workspace: Path | None = None) -> dict:
    """The environment of a training process: ours on top of the caller's."""
    env = dict(os.environ if base is None else base)
    env.update(TRAIN_ENV)
    if workspace is not None:  # keep Hugging Face caches inside the workspace
        env.setdefault("HF_HOME", str(Path(workspace) / ".hf"))
    return env
