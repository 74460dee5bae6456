"""Rendering: Axolotl config + materialised data + manifest, judged by Axolotl's validator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, files_under
from test_registry_support import record

from cl_toolkit.core.files import sha256_file
from cl_toolkit.core.yamlio import display
from cl_toolkit.evaluation.gate import gate_config
from cl_toolkit.training import axolotl_check

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
    assert spec["pretrain_epochs"] == 3 and spec["pretrain_qa_repeats"] == 6
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
    assert "--set: [axolotl.lora_rank] Axolotl" in err and "does not know this key" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_axolotl_validator_judges_passthrough_values(clt, workspace, tmp_path):
    out = tmp_path / "r"
    code, _, err = clt("recipe", "render", R100, "-o", out, "--set", "axolotl.micro_batch_size=lots")
    assert code == 2 and "micro_batch_size" in err
    assert not out.exists()


def test_train_checks_beside_the_training_process_and_stops_it(clt, workspace):
    """`clt train` defers Axolotl's check to the launch, where it runs while the training
    process starts: a config Axolotl rejects stops that process, the error is the check's
    (at --set), and nothing is trained or registered."""
    code, _, err = clt("train", R100, "--set", "axolotl.micro_batch_size=lots")
    assert code == 2, err
    assert "--set: [axolotl.micro_batch_size]" in err and "Traceback" not in err
    run = workspace / "runs" / "firefighter-1.0.0"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["axolotl_check"]["at"] == "launch" and "datasets" not in manifest["axolotl_check"]["toolkit_keys"]
    assert (run / "logs" / "train.log").is_file()  # the process was started
    assert not (run / "adapter" / "adapter_model.safetensors").exists()
    assert not list((workspace / "cache" / "axolotl_check").glob("*.json"))  # only passes are cached
    code, out, _ = clt("registry", "list", "firefighter", "--json")
    assert code == 0 and json.loads(out) == []


def test_dry_run_checks_at_once(clt, workspace):
    """Nothing is launched on a dry run, so the check cannot wait for a launch."""
    code, _, err = clt("train", R100, "--dry-run", "--set", "axolotl.micro_batch_size=lots")
    assert code == 2 and "--set: [axolotl.micro_batch_size]" in err


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


def test_the_run_folder_keeps_the_recipe_as_it_ran_beside_the_original(clt, workspace, tmp_path):
    out = tmp_path / "r"
    q2 = "data/firefighter/q2_asked.jsonl"
    code, _, err = clt("recipe", "render", R100, "-o", out, "--set", "train.num_epochs=3",
                       "--set", "data.seed=7", "--set", f"gate.suites.q1={q2}")
    assert code == 0, err
    ran = yaml.safe_load((out / "recipe.yml").read_text())
    assert ran["train"]["num_epochs"] == 3 and ran["data"]["seed"] == 7 and ran["gate"]["suites"]["q1"] == q2
    assert "--set overrides applied: train.num_epochs, data.seed, gate.suites.q1" in (out / "recipe.yml").read_text()
    assert (out / "recipe.original.yml").read_text() == R100.read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["overrides"] == ["train.num_epochs=3", "data.seed=7", f"gate.suites.q1={q2}"]
    assert manifest["outputs"]["recipe.original.yml"]["sha256"] == sha256_file(R100)
    suites = gate_config(record(out, "1.0.0", model="firefighter"), workspace).suites
    assert suites["q1"]["path"] == REPO / q2  # the gate reads the suite the run was given


def _stamps(workspace):
    return sorted((workspace / "cache" / "axolotl_check").glob("*.json"))


def test_a_passed_check_is_remembered_until_what_it_depends_on_changes(clt, workspace, tmp_path):
    out = tmp_path / "r"
    assert "Axolotl's check: passed\n" in clt("recipe", "render", R100, "-o", out)[1]
    assert "Axolotl's check: passed before for this exact config (cached)" in clt("recipe", "render", R100, "-o", out)[1]
    assert len(_stamps(workspace)) == 1
    assert "Axolotl's check: passed\n" in clt("recipe", "render", R100, "-o", out, "--set", "train.num_epochs=3")[1]
    model_config = workspace / "models" / "tiny-llama" / "config.json"
    model_config.write_text(json.dumps({**json.loads(model_config.read_text()), "rope_theta": 5000.0}))
    assert "Axolotl's check: passed\n" in clt("recipe", "render", R100, "-o", out)[1]
    assert len(_stamps(workspace)) == 3


def test_the_same_config_rendered_into_another_folder_is_remembered(clt, workspace, tmp_path):
    """The run folder's own paths (data, prepared data, output) do not decide Axolotl's
    verdict: a second run folder of the same recipe passes at once; another value does not."""
    assert "Axolotl's check: passed\n" in clt("recipe", "render", R100, "-o", tmp_path / "a")[1]
    assert "(cached)" in clt("recipe", "render", R100, "-o", tmp_path / "b")[1]
    assert len(_stamps(workspace)) == 1
    base = workspace / "models" / "tiny-llama"
    cfg = {"base_model": str(base), "output_dir": str(tmp_path / "a" / "adapter")}
    at_a = axolotl_check.check_fingerprint(cfg, cpu=True, num_processes=1, run_dir=tmp_path / "a")
    moved = {**cfg, "output_dir": str(tmp_path / "b" / "adapter")}
    assert at_a == axolotl_check.check_fingerprint(moved, cpu=True, num_processes=1, run_dir=tmp_path / "b")
    # a path outside the run folder is the config's own and still counts
    assert at_a != axolotl_check.check_fingerprint(moved, cpu=True, num_processes=1, run_dir=tmp_path / "a")


def test_a_failed_check_is_not_remembered_and_points_at_set(clt, workspace, tmp_path):
    for _ in range(2):
        code, _, err = clt("recipe", "render", R100, "-o", tmp_path / "r", "--set", "axolotl.micro_batch_size=lots")
        assert code == 2 and "--set: [axolotl.micro_batch_size]" in err
    assert _stamps(workspace) == []


def test_a_profile_key_axolotl_rejects_points_at_the_profile_line(clt, workspace, tmp_path):
    text = (REPO / "configs" / "profiles" / "tiny-cpu.yml").read_text().replace("  lora_r: 16\n", "  lora_r: many\n")
    profile = workspace / "bad-profile.yml"
    profile.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "lora_r: many" in t)
    code, _, err = clt("recipe", "render", R100, "-o", tmp_path / "r", "--set", "profile=workspace:bad-profile.yml")
    assert code == 2 and f"{display(profile)}:{line}: [axolotl.lora_r]" in err, err


def test_the_fingerprint_follows_axolotls_version_deepspeed_and_the_model_config(workspace, tmp_path, monkeypatch):
    base = workspace / "models" / "tiny-llama"
    cfg = {"base_model": str(base), "adapter": "lora"}
    first = axolotl_check.check_fingerprint(cfg, cpu=True, num_processes=1)
    assert first == axolotl_check.check_fingerprint(dict(cfg), cpu=True, num_processes=1)
    assert first != axolotl_check.check_fingerprint(cfg, cpu=False, num_processes=1)
    ds = tmp_path / "ds.json"
    ds.write_text('{"zero_optimization": {"stage": 2}}')
    with_ds = axolotl_check.check_fingerprint({**cfg, "deepspeed": str(ds)}, cpu=True, num_processes=1)
    ds.write_text('{"zero_optimization": {"stage": 3}}')
    assert with_ds != axolotl_check.check_fingerprint({**cfg, "deepspeed": str(ds)}, cpu=True, num_processes=1)
    assert axolotl_check.check_fingerprint({**cfg, "base_model": "org/hub-model"}, cpu=True, num_processes=1) is None
    assert axolotl_check.check_fingerprint({**cfg, "trust_remote_code": True}, cpu=True, num_processes=1) is None
    real = axolotl_check._version
    monkeypatch.setattr(axolotl_check, "_version", lambda name: "9.9.9" if name == "axolotl" else real(name))
    assert first != axolotl_check.check_fingerprint(cfg, cpu=True, num_processes=1)


def test_a_repeated_render_imports_no_axolotl(clt, workspace, tmp_path):
    out = tmp_path / "r"
    assert clt("recipe", "render", R100, "-o", out)[0] == 0
    probe = ("import sys\nfrom cl_toolkit.cli import main\n"
             "code = main(['recipe', 'render', sys.argv[1], '-o', sys.argv[2]])\n"
             "print('CODE', code, sorted({m.split('.')[0] for m in sys.modules} & {'axolotl', 'torch', 'transformers'}))")
    env = {**os.environ, "CLT_HOME": str(workspace), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", probe, str(R100), str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "CODE 0 []" in done.stdout, done.stdout + done.stderr
