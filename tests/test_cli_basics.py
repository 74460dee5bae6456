"""The CLI's shape: lazy imports, exact launch argv, tiny model determinism, errors."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

from cl_toolkit.cli import COMMANDS
from cl_toolkit.training.launch import launch_argv, train_env
from cl_toolkit.training.tiny_model import TinySpec, build_tiny_model, bundled_corpus


def test_help_imports_neither_torch_nor_axolotl():
    code = ("import sys; from cl_toolkit.cli import main; rc = main(['--help']); "
            "heavy = sorted(m for m in ('torch', 'axolotl', 'transformers') if m in sys.modules); "
            "verbs = sorted(m for m in sys.modules if m.startswith('cl_toolkit.cli.')); "
            "print('HEAVY', heavy); print('VERB MODULES', verbs); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out and "VERB MODULES []" in out  # --help imports no verb module
    listed = " ".join(out.split())  # the help wraps long descriptions
    for verb, (_, description) in COMMANDS.items():
        assert f"{verb} {description}" in listed, verb


def test_launch_argv_is_exact_for_cpu_profile():
    argv = launch_argv("/ws/runs/ff-1.0.0/axolotl.yml", {"cpu": True, "num_processes": 1, "mixed_precision": "no"},
                       accelerate="accelerate")
    assert argv == ["accelerate", "launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no",
                    "-m", "axolotl.cli.train", "/ws/runs/ff-1.0.0/axolotl.yml"]


def test_launch_argv_is_exact_for_gpu_profile():
    argv = launch_argv("cfg.yml", {"num_processes": 2, "mixed_precision": "bf16", "config_file": "acc.yml"},
                       accelerate="accelerate")
    assert argv == ["accelerate", "launch", "--config_file", "acc.yml", "--num_processes", "2",
                    "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no",
                    "-m", "axolotl.cli.train", "cfg.yml"]


def test_train_env_turns_off_telemetry_and_hub():
    """Written out literally: a process without these hangs after training retrying
    telemetry, or reaches for the hub."""
    env = train_env({"PATH": "/bin", "AXOLOTL_DO_NOT_TRACK": "0", "WANDB_MODE": "online"})
    assert env == {
        "PATH": "/bin",
        "AXOLOTL_DO_NOT_TRACK": "1",
        "DO_NOT_TRACK": "1",
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "PYTHONHASHSEED": "0",  # reproducible runs (training/determinism.py)
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }
    # a recipe that tracks to W&B keeps the caller's WANDB_MODE (its key is in that environment)
    assert train_env({"WANDB_MODE": "online"}, wandb=True)["WANDB_MODE"] == "online"


def test_tiny_model_same_seed_same_files_other_seed_differs(tmp_path):
    corpus = bundled_corpus(REPO)
    a = build_tiny_model(tmp_path / "a", TinySpec(seed=1), corpus)
    b = build_tiny_model(tmp_path / "b", TinySpec(seed=1), corpus)
    c = build_tiny_model(tmp_path / "c", TinySpec(seed=2), corpus)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files)
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a["weights_sha256"] == b["weights_sha256"] != c["weights_sha256"]
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "c" / "tokenizer.json").read_bytes()


def test_tiny_model_is_a_chatml_llama(tmp_path, clt):
    code, out, err = clt("tiny-model", tmp_path / "m", "--seed", "0", "--json")
    assert code == 0, err
    info = json.loads(out)
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert cfg.model_type == "llama" and cfg.hidden_size == 64 and cfg.num_hidden_layers == 2
    assert info["vocab_size"] == len(tok) == cfg.vocab_size
    text = tok.apply_chat_template([{"role": "user", "content": "What is the IDLH for ammonia?"}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nWhat is the IDLH for ammonia?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok("The NIOSH IDLH for ammonia is 300 ppm.")["input_ids"]
    assert tok.decode(ids) == "The NIOSH IDLH for ammonia is 300 ppm."
    assert len(ids) < 20  # the BPE learned the domain's words


def test_unexpected_errors_are_one_line_not_a_traceback(clt, empty_workspace):
    code, out, err = clt("recipe", "validate", "recipes/nope/9.9.9.yml")
    assert code == 2 and "file not found" in err and "Traceback" not in err
    code, out, err = clt("registry", "show", "firefighter", "7.7.7")
    assert code == 2 and "not in the registry" in err
