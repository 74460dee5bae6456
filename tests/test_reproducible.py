"""Reproducible CPU training: the same recipe, inputs and seed give the same adapter bytes.
The rendered config carries the determinism plugin (it seeds before the model is built,
where PEFT draws the LoRA init), the training process the variables that pin the rest; the
slow test trains twice through Axolotl and compares the adapters' SHA-256."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO

from cl_toolkit.core.files import sha256_file
from cl_toolkit.training.determinism import PLUGIN, with_plugin
from cl_toolkit.training.launch import train_env

KD = "axolotl.integrations.kd.KDPlugin"


def test_the_plugin_comes_first_and_only_once():
    assert with_plugin(None) == [PLUGIN]
    assert with_plugin([KD]) == [PLUGIN, KD]
    assert with_plugin([KD, PLUGIN]) == [PLUGIN, KD]


def test_every_training_process_gets_the_determinism_variables():
    env = train_env({"PATH": "/bin", "PYTHONHASHSEED": "random"})
    assert env["PYTHONHASHSEED"] == "0" and env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_the_rendered_config_names_the_plugin_and_the_seed(workspace, clt):
    code, _, err = clt("recipe", "render", REPO / "recipes/firefighter/1.0.0.yml", "--set", "data.seed=7",
                       "--out", workspace / "r")
    assert code == 0, err
    import yaml

    cfg = yaml.safe_load((workspace / "r" / "axolotl.yml").read_text())
    assert cfg["plugins"] == [PLUGIN] and cfg["seed"] == 7


def test_the_plugin_seeds_before_the_model_is_built():
    """What Axolotl calls before building the model: afterwards the global generator is the
    seed's and deterministic algorithms are on (a fresh process: the switch is global)."""
    script = (
        "import torch\n"
        "from axolotl.utils.dict import DictDefault\n"
        "from cl_toolkit.training.axolotl_plugin import DeterminismPlugin\n"
        "torch.manual_seed(999); DeterminismPlugin().pre_model_load(DictDefault({'seed': 3}))\n"
        "a = torch.rand(4)\n"
        "torch.manual_seed(3)\n"
        "print(torch.equal(a, torch.rand(4)), torch.are_deterministic_algorithms_enabled())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True"]


@pytest.mark.slow
def test_the_same_recipe_and_seed_give_the_same_adapter_bytes(tmp_path, tiny_model_dir):
    """Two workspaces, the same tiny recipe (16 rows, 1 epoch, LoRA dropout 0.1 so the
    dropout masks count too): identical adapter files (without the plugin they differed)."""
    def run(name: str, seed: int) -> str:
        ws = tmp_path / name
        shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
        proc = subprocess.run(
            [sys.executable, "-m", "cl_toolkit", "--workspace", str(ws), "train",
             str(REPO / "recipes/firefighter/1.0.0.yml"), "--set", "train.num_epochs=1",
             "--set", "train.lora_dropout=0.1", "--set", f"data.seed={seed}",
             "--set", "data.train=[{path: data/firefighter/q1.jsonl, max_rows: 16}]"],
            cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return sha256_file(ws / "runs" / "firefighter-1.0.0" / "adapter" / "adapter_model.safetensors")

    assert run("a", 42) == run("b", 42)
