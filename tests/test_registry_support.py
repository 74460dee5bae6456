"""Helpers shared by the registry tests (no tests here): hand-made run folders and
subprocesses that stop at a named point so a test can SIGKILL them there.

The registry only copies and hashes files, so a run folder is a few small files and a
real (tiny) safetensors adapter; no training is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from cl_toolkit.core.files import sha256_file
from cl_toolkit.registry import VersionRecord

__test__ = False
REPO = Path(__file__).resolve().parent.parent
MODEL = "ff"


def make_run(ws: Path, version: str, *, model: str = MODEL, gate: dict | None = None, rows: int = 3) -> Path:
    """workspace/runs/<model>-<version>/ as a finished training run leaves it."""
    run = ws / "runs" / f"{model}-{version}"
    adapter = run / "adapter"
    (adapter / "checkpoint-2").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8, "peft_type": "LORA"}))
    seed = sum(int(x) for x in version.split("."))
    save_file({"lora_A": np.full((2, 4), seed, dtype=np.float32)}, str(adapter / "adapter_model.safetensors"))
    (adapter / "checkpoint-2" / "optimizer.pt").write_bytes(b"\0" * 64)  # trainer state: not kept
    (run / "data").mkdir()
    new = "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i} {version}"},
                                           {"role": "assistant", "content": f"a{i}"}]}) + "\n" for i in range(rows))
    (run / "data" / "new.jsonl").write_text(new)
    (run / "data" / "train.jsonl").write_text(new * 2)
    (run / "axolotl.yml").write_text(f"base_model: tiny\noutput_dir: {adapter}\n")
    (run / "recipe.yml").write_text(f"model: {model}\nversion: {version}\n")
    manifest = {"inputs": [{"role": "train", "source": f"data/{model}/{version}.jsonl", "rows": rows, "sha256": "x"},
                           {"role": "rehearsal", "source": "data/general/general.jsonl", "rows": 10, "sha256": "y"}],
                "outputs": {"data/train.jsonl": {"rows": 2 * rows, "sha256": sha256_file(run / "data" / "train.jsonl")},
                            "data/new.jsonl": {"rows": rows, "sha256": sha256_file(run / "data" / "new.jsonl")}}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "metrics.json").write_text(json.dumps({"train_loss": 1.5}))
    (run / "logs").mkdir()
    (run / "logs" / "train.log").write_text("trained\n")
    if gate is not None:
        write_gate(run, gate)
    return run


def write_gate(run: Path, gate: dict) -> None:
    (run / "gate.json").write_text(json.dumps(gate))


def record(run: Path, version: str, parent: str | None = None, *, model: str = MODEL, **extra) -> VersionRecord:
    return VersionRecord(
        model=model, version=version, parent=parent, strategy="continued_lora" if parent else "initial_lora",
        base_model="tiny", recipe_sha256=sha256_file(run / "recipe.yml"),
        data_sha256=sha256_file(run / "data" / "train.jsonl"), run_dir=str(run),
        adapter_dir=str(run / "adapter"), metrics={"train_loss": 1.5}, train_seconds=7200.0, **extra)


def add_version(reg, ws: Path, version: str, parent: str | None = None, **kw) -> VersionRecord:
    """Make a run folder and register it."""
    model = kw.pop("model", MODEL)
    run = make_run(ws, version, model=model, gate=kw.pop("gate", None))
    return reg.register(record(run, version, parent, model=model, **kw))


def env_for(ws: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CLT_TEST_PAUSE_AT", "CLT_REGISTRY_ARTIFACTS")}
    return {**env, "CLT_HOME": str(ws), "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", **extra}


def python(code: str, ws: Path, *args: str, **env: str) -> subprocess.Popen:
    """`python -c code args...` in its own process, output piped (pause points announce on stderr)."""
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env_for(ws, **env), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def clt_process(ws: Path, *args: str, **env: str) -> subprocess.Popen:
    """The real `clt` started in its own process, output piped."""
    return subprocess.Popen([sys.executable, "-m", "cl_toolkit", *args], env=env_for(ws, **env), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def clt(ws: Path, *args: str) -> subprocess.CompletedProcess:
    """The real `clt` in a separate process."""
    return subprocess.run([sys.executable, "-m", "cl_toolkit", *args], env=env_for(ws), cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def wait_for_pause(proc: subprocess.Popen, point: str) -> None:
    """Block until the child announces it is paused at `point` (fail if it ends first)."""
    for line in proc.stderr:
        if line.strip() == f"paused at {point}":
            return
    proc.wait(timeout=10)
    raise AssertionError(f"child ended (exit {proc.returncode}) without pausing at {point}")
