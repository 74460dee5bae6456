"""Rendering: Axolotl config + materialised data + manifest, judged by Axolotl's validator."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import REPO, files_under

from cl_toolkit.core.files import sha256_file

R100 = REPO / "recipes" / "firefighter" / "1.0.0.yml"


def test_render_writes_config_data_and_manifest(clt, workspace, tmp_path):
    out = tmp_path / "r100"
    code, stdout, err = clt("recipe", "render", R100, "-o", out)
    assert code == 0, err
    assert files_under(out) >= {"axolotl.yml", "manifest.json", "recipe.yml", "data", "data/train.jsonl", "data/new.jsonl"}
    cfg = yaml.safe_load((out / "axolotl.yml").read_text())
    assert cfg["base_model"] == str(workspace / "models" / "tiny-llama")
    assert cfg["datasets"][0]["path"] == str(out / "data" / "train.jsonl")
    assert cfg["datasets"][0]["type"] == "chat_template"
    assert cfg["output_dir"] == str(out / "adapter")
    assert cfg["adapter"] == "lora" and cfg["bf16"] is False and cfg["lora_mlp_kernel"] is False
    assert cfg["num_epochs"] == 20  # the recipe's train: key beats the profile's
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["sha256"] == sha256_file(R100)
    assert manifest["seed"] == 42 and manifest["version"] == "1.0.0"
    for name, meta in manifest["outputs"].items():
        assert sha256_file(out / name) == meta["sha256"], name
    by_source = {i["source"]: i for i in manifest["inputs"]}
    assert by_source["data/firefighter/q1.jsonl"]["sha256"] == sha256_file(REPO / "data/firefighter/q1.jsonl")
    assert by_source["data/firefighter/q1.jsonl"]["rows"] == 48
    assert manifest["mix"] == {"new": 48, "total": 60, "ratio_requested": 0.2, "ratio_actual": 0.2,
                               "rehearsal": {"data/general/general.jsonl": {"rows": 12, "pool": 120, "repeated": False}}}
    assert "60 rows (48 new, 12 rehearsal)" in stdout


def test_render_is_reproducible(clt, workspace, tmp_path):
    for name in ("a", "b"):
        assert clt("recipe", "render", R100, "-o", tmp_path / name)[0] == 0
    for rel in ("data/train.jsonl", "data/new.jsonl"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    ma = json.loads((tmp_path / "a" / "manifest.json").read_text())
    mb = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert ma["outputs"]["data/train.jsonl"] == mb["outputs"]["data/train.jsonl"]


@pytest.mark.slow
def test_fresh_workspace_builds_and_pretrains_the_tiny_model_first(clt, empty_workspace, tmp_path):
    assert not (empty_workspace / "models").exists()
    code, _, err = clt("recipe", "render", R100, "-o", tmp_path / "r")
    assert code == 0, err
    assert (empty_workspace / "models" / "tiny-llama" / "model.safetensors").is_file()
    assert (empty_workspace / "models" / "tiny-llama" / "tokenizer.json").is_file()
    spec = json.loads((empty_workspace / "models" / "tiny-llama" / "tiny_spec.json").read_text())
    assert spec["pretrain_epochs"] == 5
    from safetensors.torch import load_file

    from cl_toolkit.training.tiny_model import TinySpec, build_tiny_model, bundled_corpus

    init = build_tiny_model(tmp_path / "init", TinySpec(), bundled_corpus(REPO))
    trained = load_file(empty_workspace / "models" / "tiny-llama" / "model.safetensors")
    fresh = load_file(tmp_path / "init" / "model.safetensors")
    assert init["parameters"] == sum(t.numel() for t in trained.values())
    assert any(not (trained[k] == fresh[k]).all() for k in fresh)  # pretraining changed the weights
    assert not list((empty_workspace / "models").glob(".*"))  # no staging left behind


def test_key_axolotl_would_silently_drop_is_rejected_and_nothing_written(clt, workspace, tmp_path):
    out = tmp_path / "r"
    code, _, err = clt("recipe", "render", R100, "-o", out, "--set", "axolotl.lora_rank=8")
    assert code == 2
    assert "[lora_rank] Axolotl does not know this key" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_axolotl_validator_judges_passthrough_values(clt, workspace, tmp_path):
    out = tmp_path / "r"
    code, _, err = clt("recipe", "render", R100, "-o", out, "--set", "axolotl.micro_batch_size=lots")
    assert code == 2 and "micro_batch_size" in err
    assert not out.exists()


def test_failed_rerender_keeps_the_previous_render(clt, workspace, tmp_path):
    out = tmp_path / "r"
    assert clt("recipe", "render", R100, "-o", out)[0] == 0
    before = (out / "manifest.json").read_bytes()
    assert clt("recipe", "render", R100, "-o", out, "--set", "axolotl.nonsense_key=1")[0] == 2
    assert (out / "manifest.json").read_bytes() == before


def test_gpu_profile_renders_and_passes_axolotl_validation(clt, workspace, tmp_path):
    out = tmp_path / "gpu"
    code, _, err = clt("recipe", "render", R100, "-o", out, "--set", "profile=configs/profiles/llama31-8b-lora.yml")
    assert code == 0, err
    cfg = yaml.safe_load((out / "axolotl.yml").read_text())
    assert cfg["base_model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert cfg["bf16"] is True and cfg["attn_implementation"] == "flash_attention_2"
    assert "base_model_config" not in cfg  # the offline copy is for validation only


@pytest.mark.parametrize("override", ["axolotl.hf_token=abc12345678", "axolotl.wandb_project=hf_" + "a" * 34])
def test_secrets_in_a_recipe_are_refused(clt, workspace, tmp_path, override):
    out = tmp_path / "r"
    code, _, err = clt("recipe", "render", R100, "-o", out, "--set", override)
    assert code == 2 and ("token or key" in err or "credentials do not belong" in err)
    assert "abc12345678" not in err and "a" * 34 not in err
    assert not out.exists()


def test_environment_secrets_never_reach_rendered_files(clt, workspace, tmp_path, monkeypatch):
    secret = "hf_" + "Z" * 36
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("WANDB_API_KEY", "w" * 40)
    out = tmp_path / "r"
    assert clt("recipe", "render", R100, "-o", out)[0] == 0
    for f in out.rglob("*"):
        if f.is_file():
            text = f.read_text(errors="replace")
            assert secret not in text and "w" * 40 not in text, f
    code, _, err = clt("recipe", "render", R100, "-o", tmp_path / "r2", "--set", f"axolotl.hub_model_id={secret}")
    assert code == 2 and secret not in err
