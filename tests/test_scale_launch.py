"""One node's launch command for every topology, asserted exactly: accelerate (CPU, one GPU,
one node of 8, DeepSpeed, several nodes) and torchrun. Pure data: nothing runs."""

from __future__ import annotations

import pytest
from conftest import REPO

from cl_toolkit.core.errors import BadInput
from cl_toolkit.training.launch import Topology, plan_launch, thread_pin, train_env
from cl_toolkit.training.profiles import load_profile

CFG = "/ws/runs/ff-1.0.0/axolotl.yml"
TRAIN = ["-m", "axolotl.cli.train", CFG]
Z2 = str(REPO / "configs" / "deepspeed" / "zero2.json")
Z3 = str(REPO / "configs" / "deepspeed" / "zero3.json")
PIN1 = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # tiny-cpu: launcher.threads 1


@pytest.fixture(autouse=True)
def no_thread_override(monkeypatch):
    monkeypatch.delenv("CLT_TRAIN_THREADS", raising=False)


def launcher_of(name: str, tmp_path) -> dict:
    return load_profile(REPO / "configs" / "profiles" / f"{name}.yml", REPO, tmp_path).launcher


def plan(name, tmp_path, topology=None, deepspeed=None):
    return plan_launch(CFG, launcher_of(name, tmp_path), topology, deepspeed=deepspeed,
                       exe="torchrun" if topology and topology.launcher == "torchrun" else "accelerate")


def test_tiny_cpu_one_process_is_unchanged(tmp_path):
    p = plan("tiny-cpu", tmp_path)
    assert p.argv == ["accelerate", "launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
                      "--mixed_precision", "no", "--dynamo_backend", "no", *TRAIN]
    assert p.env == PIN1


def test_tiny_cpu_two_processes_start_two_gloo_ranks(tmp_path):
    """accelerate's --cpu starts one process whatever --num_processes says; the distributed
    launcher plus ACCELERATE_USE_CPU starts N ranks that transformers puts on gloo."""
    p = plan("tiny-cpu", tmp_path, Topology(nproc=2))
    assert p.argv == ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                      "--mixed_precision", "no", "--dynamo_backend", "no", *TRAIN]
    assert p.env == {"ACCELERATE_USE_CPU": "true", **PIN1}


def test_cpu_threads_come_from_the_profile_and_the_variable_overrides(tmp_path, monkeypatch):
    """CPU training is pinned (an unpinned run next to another job is ~10x slower); GPU
    launches are left alone; a bad CLT_TRAIN_THREADS is bad input, not a crash."""
    monkeypatch.setenv("CLT_TRAIN_THREADS", "2")
    assert plan("tiny-cpu", tmp_path).env == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    assert plan("llama31-8b-lora", tmp_path).env == {}
    assert thread_pin({"cpu": True}, {}) == {} and thread_pin({"cpu": True, "threads": 3}, {}) == {
        "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    monkeypatch.setenv("CLT_TRAIN_THREADS", "zero")
    with pytest.raises(BadInput, match="CLT_TRAIN_THREADS"):
        plan("tiny-cpu", tmp_path)


@pytest.mark.parametrize("profile", ["llama31-8b-lora", "llama31-8b-qlora-24gb"])
def test_one_gpu(profile, tmp_path):
    assert plan(profile, tmp_path).argv == [
        "accelerate", "launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "bf16", "--dynamo_backend", "no", *TRAIN]


def test_one_node_of_eight_gpus_plain_ddp(tmp_path):
    assert plan("llama31-8b-lora", tmp_path, Topology(nproc=8)).argv == [
        "accelerate", "launch", "--multi_gpu", "--num_processes", "8", "--num_machines", "1",
        "--mixed_precision", "bf16", "--dynamo_backend", "no", *TRAIN]


def test_one_node_of_eight_gpus_deepspeed_zero2(tmp_path):
    assert plan("llama31-8b-lora-8gpu-zero2", tmp_path, deepspeed=Z2).argv == [
        "accelerate", "launch", "--use_deepspeed", "--deepspeed_config_file", Z2,
        "--num_processes", "8", "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no", *TRAIN]


@pytest.mark.parametrize("rank", [0, 1])
def test_two_nodes_deepspeed_zero3_per_node(rank, tmp_path):
    topology = Topology(node_rank=rank, master_addr="10.0.0.1")  # 8 a node x 2 nodes from the profile
    assert plan("llama31-70b-lora-zero3", tmp_path, topology, deepspeed=Z3).argv == [
        "accelerate", "launch", "--use_deepspeed", "--deepspeed_config_file", Z3,
        "--deepspeed_multinode_launcher", "standard",
        "--num_processes", "16", "--num_machines", "2", "--machine_rank", str(rank),
        "--main_process_ip", "10.0.0.1", "--main_process_port", "29500",
        "--mixed_precision", "bf16", "--dynamo_backend", "no", *TRAIN]


def test_four_nodes_fsdp_with_a_chosen_port(tmp_path):
    topology = Topology(nproc=8, nnodes=4, node_rank=3, master_addr="node0", master_port=6000)
    assert plan("llama31-70b-lora-fsdp", tmp_path, topology).argv == [
        "accelerate", "launch", "--multi_gpu", "--num_processes", "32", "--num_machines", "4",
        "--machine_rank", "3", "--main_process_ip", "node0", "--main_process_port", "6000",
        "--mixed_precision", "bf16", "--dynamo_backend", "no", *TRAIN]


def test_torchrun_one_node_and_several(tmp_path):
    assert plan("llama31-8b-lora", tmp_path, Topology(nproc=4, launcher="torchrun")).argv == [
        "torchrun", "--nnodes", "1", "--nproc_per_node", "4", *TRAIN]
    topology = Topology(nnodes=2, node_rank=1, master_addr="node0", launcher="torchrun")
    p = plan("llama31-70b-lora-zero3", tmp_path, topology, deepspeed=Z3)
    assert p.argv == ["torchrun", "--nnodes", "2", "--nproc_per_node", "8", "--node_rank", "1",
                      "--master_addr", "node0", "--master_port", "29500", *TRAIN]
    assert p.env == {}  # Axolotl applies `deepspeed:` from the config itself
    assert plan("tiny-cpu", tmp_path, Topology(nproc=2, launcher="torchrun")).env == {"ACCELERATE_USE_CPU": "true",
                                                                                      **PIN1}


def test_an_accelerate_config_file_sets_the_distributed_type(tmp_path):
    acc = tmp_path / "acc.yml"
    acc.write_text("distributed_type: MULTI_GPU\n")
    argv = plan_launch(CFG, {"num_processes": 8, "mixed_precision": "bf16", "config_file": str(acc)},
                       Topology(nnodes=2, node_rank=1, master_addr="h"), deepspeed=Z2, exe="accelerate").argv
    assert argv == ["accelerate", "launch", "--config_file", str(acc), "--num_processes", "16", "--num_machines", "2",
                    "--machine_rank", "1", "--main_process_ip", "h", "--main_process_port", "29500",
                    "--mixed_precision", "bf16", "--dynamo_backend", "no", *TRAIN]


@pytest.mark.parametrize("topology, deepspeed, message", [
    (Topology(nnodes=2), None, "--master-addr (the host of node 0) is required with --nnodes 2"),
    (Topology(nnodes=2, node_rank=2, master_addr="h"), None, "--node-rank 2 must be between 0 and 1"),
    (Topology(master_port=70000), None, "--master-port 70000 is not a port"),
    (Topology(launcher="mpirun"), None, "--launcher must be one of accelerate, torchrun"),
    (Topology(), Z2, "a CPU profile cannot train with DeepSpeed"),
])
def test_impossible_topologies_are_bad_input(topology, deepspeed, message, tmp_path):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan("tiny-cpu", tmp_path, topology, deepspeed=deepspeed)


def test_train_env_leaves_wandb_to_the_caller_only_when_a_recipe_tracks_to_it():
    base = {"WANDB_MODE": "offline", "WANDB_API_KEY": "k" * 40}
    assert train_env(base)["WANDB_MODE"] == "disabled"
    env = train_env(base, wandb=True, extra={"ACCELERATE_USE_CPU": "true"})
    assert env["WANDB_MODE"] == "offline" and env["WANDB_API_KEY"] == "k" * 40
    assert env["ACCELERATE_USE_CPU"] == "true" and env["AXOLOTL_DO_NOT_TRACK"] == "1"
    assert "WANDB_MODE" not in train_env({}, wandb=True)


def test_profile_config_file_is_resolved_and_must_exist(tmp_path):
    prof = tmp_path / "p.yml"
    prof.write_text("name: p\nbase_model: x/y\nlauncher: {config_file: configs/accelerate/none.yml}\naxolotl: {}\n")
    with pytest.raises(BadInput, match="launcher.config_file not found"):
        load_profile(prof, REPO, tmp_path)
