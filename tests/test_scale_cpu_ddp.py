"""The distributed path for real: `clt train --nproc 2` on CPU starts two gloo ranks through
`accelerate launch`, Axolotl trains the tiny model data-parallel, and node 0 registers the
version. Slow: one real two-process training run (~1-2 min on 2 cores)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


def test_two_cpu_processes_train_the_tiny_model(tmp_path, tiny_model_dir, clt):
    ws = tmp_path / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    proc = subprocess.run([sys.executable, "-m", "cl_toolkit", "--workspace", str(ws), "train",
                           str(REPO / "recipes" / "firefighter" / "1.0.0.yml"), "--nproc", "2",
                           "--set", "train.num_epochs=1"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained firefighter 1.0.0" in proc.stdout
    run = ws / "runs" / "firefighter-1.0.0"
    log = (run / "logs" / "train.log").read_text()
    assert '"world_size": 2' in log
    # 60 rows, micro batch 8: one process takes 8 steps an epoch, two data-parallel ranks take 4
    assert "Maximum number of steps set at 4" in log and "Maximum number of steps set at 8" not in log
    assert "4/4 [" in log  # the Trainer's bar reaches the log, though this test process ran `clt` in-process
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    code, out, _ = clt("--workspace", ws, "registry", "list", "firefighter", "--json")
    assert code == 0 and [r["version"] for r in json.loads(out)] == ["1.0.0"]
