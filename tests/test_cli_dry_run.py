"""`clt cycle` takes the launch topology of `clt train`: `--dry-run` of both prints the same
two lines (the run folder, this node's launch command), asserted literally, and a real
cycle renders for the topology it was given. Fast: nothing trains."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

R100 = REPO / "recipes" / "firefighter" / "1.0.0.yml"
ZERO2 = "profile=configs/profiles/llama31-8b-lora-8gpu-zero2.yml"
NODE_1_OF_2 = ["--nproc", "8", "--nnodes", "2", "--node-rank", "1", "--master-addr", "H"]


def expected_output(workspace: Path) -> str:
    run_dir = workspace / "runs" / "firefighter-1.0.0"
    accelerate = str(Path(sys.executable).parent / "accelerate")  # the venv's, as the toolkit picks it
    argv = [accelerate, "launch", "--use_deepspeed",
            "--deepspeed_config_file", str(REPO / "configs" / "deepspeed" / "zero2.json"),
            "--deepspeed_multinode_launcher", "standard",
            "--num_processes", "16", "--num_machines", "2", "--machine_rank", "1",
            "--main_process_ip", "H", "--main_process_port", "29500",
            "--mixed_precision", "bf16", "--dynamo_backend", "no",
            "-m", "axolotl.cli.train", str(run_dir / "axolotl.yml")]
    return f"rendered: {run_dir}\n{shlex.join(argv)}\n"  # a GPU launch needs no extra variables


@pytest.mark.parametrize("verb", ["train", "cycle"])
def test_dry_run_prints_node_1_of_2_of_a_deepspeed_job(verb, clt, workspace):
    code, out, err = clt(verb, R100, "--set", ZERO2, *NODE_1_OF_2, "--dry-run")
    assert code == 0, err
    assert out == expected_output(workspace)
    assert not (workspace / "cycles").exists()  # a dry run runs no cycle step
    code, out, _ = clt("registry", "list", "--json")
    assert (code, out.strip()) == (0, "[]")


def test_cycle_dry_run_takes_no_step_options(clt, workspace):
    code, out, err = clt("cycle", R100, "--dry-run", "--until", "render")
    assert (code, out) == (2, "")
    assert err.strip() == "error: --dry-run runs no step: drop --from and --until"


def test_cycle_renders_for_the_topology_it_is_given(clt, workspace):
    """Two CPU processes need max_memory (else Axolotl puts rank 1 on a GPU): it is only
    there when the cycle hands --nproc to render."""
    code, out, err = clt("cycle", R100, "--nproc", "2", "--until", "render")
    assert code == 0, err
    cfg = yaml.safe_load((workspace / "runs" / "firefighter-1.0.0" / "axolotl.yml").read_text())
    assert cfg["max_memory"] == {"cpu": "256GiB"}
