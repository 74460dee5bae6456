"""Scaling profiles and tracking: every shipped profile renders and passes Axolotl's validator,
the DeepSpeed JSONs load with DeepSpeed's own config class, `clt train --dry-run` prints the
per-node command, and tracking renders Axolotl's W&B / MLflow keys without a credential."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

R100 = REPO / "recipes" / "firefighter" / "1.0.0.yml"
PROFILES = sorted(p.name for p in (REPO / "configs" / "profiles").glob("*.yml"))
DEEPSPEED = REPO / "configs" / "deepspeed"


def render(clt, out, *sets):
    code, _, err = clt("recipe", "render", R100, "-o", out, *[a for s in sets for a in ("--set", s)])
    assert code == 0, err
    return yaml.safe_load((out / "axolotl.yml").read_text())


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_renders_and_passes_axolotl_validation(profile, clt, workspace, tmp_path):
    cfg = render(clt, tmp_path / "r", f"profile=configs/profiles/{profile}")
    assert "base_model_config" not in cfg  # the offline config.json copy is for validation only
    if "deepspeed" in cfg:  # made absolute: training runs in the run folder
        assert cfg["deepspeed"].startswith(str(DEEPSPEED)) and json.loads(open(cfg["deepspeed"]).read())


def test_scale_profiles_say_what_they_are(clt, workspace, tmp_path):
    qlora = render(clt, tmp_path / "q", "profile=configs/profiles/llama31-8b-qlora-24gb.yml")
    assert (qlora["adapter"], qlora["load_in_4bit"], qlora["bf16"]) == ("qlora", True, True)
    z2 = render(clt, tmp_path / "z2", "profile=configs/profiles/llama31-8b-lora-8gpu-zero2.yml")
    assert z2["deepspeed"] == str(DEEPSPEED / "zero2.json")
    z3 = render(clt, tmp_path / "z3", "profile=configs/profiles/llama31-70b-lora-zero3.yml")
    assert z3["deepspeed"] == str(DEEPSPEED / "zero3.json")
    assert z3["base_model"] == "meta-llama/Llama-3.1-70B-Instruct"
    fsdp = render(clt, tmp_path / "f", "profile=configs/profiles/llama31-70b-lora-fsdp.yml")
    assert fsdp["fsdp_version"] == 2 and "deepspeed" not in fsdp
    assert fsdp["fsdp_config"]["transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    offload = render(clt, tmp_path / "o", "profile=configs/profiles/llama31-70b-lora-zero3.yml",
                     "axolotl.deepspeed=configs/deepspeed/zero3_offload.json")
    assert offload["deepspeed"] == str(DEEPSPEED / "zero3_offload.json")
    code, _, err = clt("recipe", "render", R100, "-o", tmp_path / "x", "--set", "axolotl.deepspeed=configs/deepspeed/no.json")
    assert code == 2 and "DeepSpeed config not found: configs/deepspeed/no.json" in err


DS_CHECK = r"""
import json, sys, tempfile, types
from transformers import TrainingArguments
from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig
from deepspeed.runtime.config import DeepSpeedConfig
out = {}
for path, mbs, gas, hidden in json.loads(sys.argv[1]):
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=mbs,
                             gradient_accumulation_steps=gas, bf16=True, use_cpu=True, report_to=[])
    hf = HfTrainerDeepSpeedConfig(path)  # "auto" values filled exactly as the HF Trainer does
    hf.trainer_config_process(args)
    hf.trainer_config_finalize(args, types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=hidden)), 100)
    c = DeepSpeedConfig(hf.config)
    z = c.zero_config
    out[path] = {"stage": c.zero_optimization_stage, "bf16": c.bfloat16_config.enabled,
                 "batch": c.train_batch_size, "offload_param": str(z.offload_param.device) if z.offload_param else None,
                 "offload_optimizer": str(z.offload_optimizer.device) if z.offload_optimizer else None,
                 "gather_on_save": z.gather_16bit_weights_on_model_save}
print("RESULT " + json.dumps(out))
"""


def test_deepspeed_jsons_load_with_deepspeeds_own_config_class():
    """Each JSON, its "auto" values filled as the HF Trainer fills them for the profile that
    uses it (zero3_offload: for the 70B profile), is accepted by deepspeed's DeepSpeedConfig."""
    pytest.importorskip("deepspeed")
    uses = {"zero3_offload.json": "llama31-70b-lora-zero3.yml"}
    for name in PROFILES:
        prof = yaml.safe_load((REPO / "configs" / "profiles" / name).read_text())
        if "deepspeed" in prof["axolotl"]:
            uses[prof["axolotl"]["deepspeed"].rsplit("/", 1)[-1]] = name
    assert sorted(uses) == sorted(p.name for p in DEEPSPEED.glob("*.json"))
    jobs = []
    for json_name, prof_name in sorted(uses.items()):
        prof = yaml.safe_load((REPO / "configs" / "profiles" / prof_name).read_text())
        hidden = json.loads((REPO / prof["offline_model_config"] / "config.json").read_text())["hidden_size"]
        ax = prof["axolotl"]
        jobs.append([str(DEEPSPEED / json_name), ax["micro_batch_size"], ax["gradient_accumulation_steps"], hidden])
    proc = subprocess.run([sys.executable, "-c", DS_CHECK, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    by_name = {k.rsplit("/", 1)[-1]: v for k, v in got.items()}
    assert by_name["zero2.json"] == {"stage": 2, "bf16": True, "batch": 2, "offload_param": None,
                                     "offload_optimizer": None, "gather_on_save": False}
    assert by_name["zero3.json"] == {"stage": 3, "bf16": True, "batch": 2, "offload_param": None,
                                     "offload_optimizer": None, "gather_on_save": True}
    assert by_name["zero3_offload.json"] == {"stage": 3, "bf16": True, "batch": 2, "offload_param": "cpu",
                                             "offload_optimizer": "cpu", "gather_on_save": True}


def test_dry_run_prints_each_nodes_command(clt, workspace):
    code, out, err = clt("train", R100, "--dry-run", "--set", "profile=configs/profiles/llama31-70b-lora-zero3.yml",
                         "--node-rank", "1", "--master-addr", "node0.cluster", "--master-port", "6000")
    assert code == 0, err
    z3 = str(DEEPSPEED / "zero3.json")
    assert (f"launch --use_deepspeed --deepspeed_config_file {z3} --deepspeed_multinode_launcher standard "
            "--num_processes 16 --num_machines 2 --machine_rank 1 --main_process_ip node0.cluster "
            "--main_process_port 6000 --mixed_precision bf16 --dynamo_backend no -m axolotl.cli.train "
            f"{workspace / 'runs' / 'firefighter-1.0.0' / 'axolotl.yml'}") in out
    code, _, err = clt("train", R100, "--dry-run", "--set", "profile=configs/profiles/llama31-70b-lora-zero3.yml")
    assert code == 2 and "--master-addr (the host of node 0) is required with --nnodes 2" in err


def test_dry_run_of_two_cpu_processes(clt, workspace):
    code, out, err = clt("train", R100, "--dry-run", "--nproc", "2")
    assert code == 0, err
    assert "ACCELERATE_USE_CPU=true " in out and "launch --multi_gpu --num_processes 2 --num_machines 1" in out
    cfg = yaml.safe_load((workspace / "runs" / "firefighter-1.0.0" / "axolotl.yml").read_text())
    assert cfg["max_memory"] == {"cpu": "256GiB"}  # else Axolotl puts rank 1 on "device 1", a GPU


def test_tracking_renders_axolotls_own_keys(clt, workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "w" * 40)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "m" * 40)
    out = tmp_path / "t"
    cfg = render(clt, out, "tracking.wandb.project=firefighter", "tracking.wandb.entity=hazmat-team",
                 "tracking.mlflow.tracking_uri=https://mlflow.example.com", "tracking.mlflow.experiment=ff-quarterly")
    assert {k: cfg[k] for k in cfg if k.startswith(("wandb_", "use_", "mlflow_"))} == {
        "use_wandb": True, "wandb_project": "firefighter", "wandb_entity": "hazmat-team", "wandb_name": "firefighter-1.0.0",
        "use_mlflow": True, "mlflow_tracking_uri": "https://mlflow.example.com",
        "mlflow_experiment_name": "ff-quarterly", "mlflow_run_name": "firefighter-1.0.0"}
    for f in out.rglob("*"):
        if f.is_file():
            assert "w" * 40 not in f.read_text(errors="replace") and "m" * 40 not in f.read_text(errors="replace")
    assert "use_wandb" not in render(clt, tmp_path / "plain")  # no tracking: no tracking keys


@pytest.mark.parametrize("override, message", [
    ("tracking.mlflow.tracking_uri=https://ana:s3cret@mlflow.example.com", "must not carry a password"),
    ("tracking.wandb.api_key=abc", "[tracking.wandb.api_key] credentials do not belong"),
])
def test_tracking_credentials_are_refused(override, message, clt, workspace, tmp_path):
    sets = ["--set", override, "--set", "tracking.mlflow.experiment=e"] if "mlflow" in override else ["--set", override,
                                                                                                     "--set", "tracking.wandb.project=p"]
    code, _, err = clt("recipe", "render", R100, "-o", tmp_path / "r", *sets)
    assert code == 2 and message in err and "s3cret" not in err
    assert not (tmp_path / "r").exists()
