"""End to end through Axolotl on the tiny model: 1.0.0 (initial LoRA) then 1.1.0 (continued
LoRA from 1.0.0's adapter). Slow: each run is a real `accelerate launch` (~40 s here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

RECIPES = REPO / "recipes" / "firefighter"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A workspace in which the shipped 1.0.0 and 1.1.0 were trained with the real CLI."""
    ws = tmp_path_factory.mktemp("e2e") / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    logs = {}
    for version in ("1.0.0", "1.1.0"):
        proc = subprocess.run([sys.executable, "-m", "cl_toolkit", "--workspace", str(ws), "train",
                               str(RECIPES / f"{version}.yml")], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        logs[version] = proc
    return ws, logs


def test_both_versions_registered_with_provenance(trained, clt):
    ws, logs = trained
    code, out, _ = clt("--workspace", ws, "registry", "list", "firefighter", "--json")
    assert code == 0
    recs = {r["version"]: r for r in json.loads(out)}
    assert set(recs) == {"1.0.0", "1.1.0"}
    assert recs["1.1.0"]["parent"] == "1.0.0" and recs["1.1.0"]["strategy"] == "continued_lora"
    for version, rec in recs.items():
        run = ws / "runs" / f"firefighter-{version}"
        for rel in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json", "axolotl.yml",
                    "manifest.json", "recipe.yml", "logs/train.log", "metrics.json", "data/train.jsonl"):
            assert (run / rel).is_file(), rel
        assert (run / "recipe.original.yml").read_text() == (RECIPES / f"{version}.yml").read_text()
        manifest = json.loads((run / "manifest.json").read_text())
        assert rec["data_sha256"] == manifest["outputs"]["data/train.jsonl"]["sha256"]
        assert rec["train_seconds"] > 0 and rec["metrics"]["train_loss"] is not None
        assert f"trained firefighter {version}" in logs[version].stdout
        assert "loss" in logs[version].stderr  # progress was shown
        assert manifest["axolotl_check"]["at"] == "launch"  # checked beside the training process
    # and each check that passed there is cached: a render of the same config imports no Axolotl
    assert len(list((ws / "cache" / "axolotl_check").glob("*.json"))) == 2


def test_continued_lora_rehearses_the_parent_data(trained):
    ws, _ = trained
    manifest = json.loads((ws / "runs" / "firefighter-1.1.0" / "manifest.json").read_text())
    # 1.1.0 rehearses 60%: 48 new rows and 72 old, split evenly between its two sources
    assert manifest["mix"]["new"] == 48 and manifest["mix"]["total"] == 120
    assert manifest["mix"]["rehearsal"]["parent_data"]["rows"] == 36
    assert manifest["mix"]["rehearsal"]["data/general/general.jsonl"]["rows"] == 36
    parent_new = ws / "runs" / "firefighter-1.0.0" / "data" / "new.jsonl"
    q1 = {line for line in parent_new.read_text().splitlines()}
    mixed = (ws / "runs" / "firefighter-1.1.0" / "data" / "train.jsonl").read_text().splitlines()
    assert sum(line in q1 for line in mixed) == 36


def test_continued_lora_starts_from_the_parent_weights(trained):
    """Load the model exactly as Axolotl does for 1.1.0's training: the adapter it starts
    from equals 1.0.0's, is trainable, and 1.1.0's trained adapter differs from it."""
    ws, _ = trained
    script = r"""
import json, sys, torch
from safetensors.torch import load_file
from axolotl.cli.config import load_cfg
from axolotl.loaders import ModelLoader, load_tokenizer
from peft import get_peft_model_state_dict
cfg = load_cfg(sys.argv[1])
model, _ = ModelLoader(cfg, load_tokenizer(cfg)).load()
loaded = get_peft_model_state_dict(model)
parent, child = load_file(sys.argv[2]), load_file(sys.argv[3])
print(json.dumps({
  "same_keys": sorted(loaded) == sorted(parent),
  "equal_to_parent": all(torch.equal(loaded[k].float(), parent[k].float()) for k in parent),
  "lora_B_nonzero": any(k.endswith("lora_B.weight") and parent[k].abs().sum().item() > 0 for k in parent),
  "trainable_lora": sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n),
  "child_differs": sum(not torch.equal(child[k], parent[k]) for k in parent),
  "n": len(parent)}))
"""
    run = ws / "runs"
    proc = subprocess.run([sys.executable, "-c", script, str(run / "firefighter-1.1.0" / "axolotl.yml"),
                           str(run / "firefighter-1.0.0" / "adapter" / "adapter_model.safetensors"),
                           str(run / "firefighter-1.1.0" / "adapter" / "adapter_model.safetensors")],
                          capture_output=True, text=True, cwd=run / "firefighter-1.1.0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["same_keys"] and facts["equal_to_parent"]
    assert facts["lora_B_nonzero"]  # the parent really learned something (not a fresh init)
    assert facts["trainable_lora"] > 0
    assert facts["child_differs"] == facts["n"]


def test_a_registered_version_is_not_trained_again(trained, clt):
    ws, _ = trained
    code, _, err = clt("--workspace", ws, "train", RECIPES / "1.0.0.yml")
    assert code == 2 and "already registered" in err


def test_dry_run_prints_the_launch_command_and_registers_nothing(trained, clt):
    ws, _ = trained
    code, out, err = clt("--workspace", ws, "train", RECIPES / "1.1.0.yml", "--set", "version=1.2.0", "--dry-run")
    assert code == 0, err
    assert "launch --cpu --num_processes 1" in out and "-m axolotl.cli.train" in out
    assert str(ws / "runs" / "firefighter-1.2.0" / "axolotl.yml") in out
    code, out, _ = clt("--workspace", ws, "registry", "list", "firefighter", "--json")
    assert "1.2.0" not in {r["version"] for r in json.loads(out)}


def test_failed_training_registers_nothing(tmp_path, tiny_model_dir, clt):
    ws = tmp_path / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    weights = ws / "models" / "tiny-llama" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a corrupt base model: Axolotl fails to load it
    code, _, err = clt("--workspace", ws, "train", RECIPES / "1.0.0.yml", "--set", "train.num_epochs=1")
    assert code == 1
    assert "training failed" in err and "train.log" in err
    code, out, _ = clt("--workspace", ws, "registry", "list", "--json")
    assert json.loads(out) == []
