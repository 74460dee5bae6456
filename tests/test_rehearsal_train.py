"""A per_epoch continued LoRA through Axolotl on the tiny model: 1.0.0, then 1.1.0 with a fresh
rehearsal draw each of its 3 epochs, trained as one pass over the written-out epochs with the
optimizer steps that 3 epochs over one epoch's rows take. Slow: two real trainings."""

from __future__ import annotations

import json
import math
import re

import pytest
from conftest import REPO, trained_workspace

pytestmark = pytest.mark.slow
RECIPES = REPO / "recipes" / "firefighter"


@pytest.fixture(scope="module")
def per_epoch_run(tmp_path_factory, tiny_model_dir):
    ws = trained_workspace(tmp_path_factory.mktemp("per-epoch") / "ws", tiny_model_dir,
                           (RECIPES / "1.0.0.yml", "--set", "train.num_epochs=2"),
                           (RECIPES / "1.1.0.yml", "--set", "data.rehearsal.resample=per_epoch",
                            "--set", "data.rehearsal.ratio=0.5", "--set", "train.num_epochs=3",
                            "--set", "axolotl.logging_steps=1"))
    return ws / "runs" / "firefighter-1.1.0"


def test_a_per_epoch_recipe_trains_one_pass_with_the_steps_of_its_epochs(per_epoch_run):
    run = per_epoch_run
    manifest = json.loads((run / "manifest.json").read_text())
    mix, training = manifest["mix"], manifest["training"]
    assert (mix["resample"], mix["epochs"], mix["epoch_rows"]) == ("per_epoch", 3, [96, 96, 96])
    assert mix["rehearsal"]["parent_data"]["seen"] == {"distinct": 48, "min": 1, "max": 2, "histogram": {"1": 24, "2": 24}}
    assert "num_epochs: 1\n" in (run / "axolotl.yml").read_text()
    log = (run / "logs" / "train.log").read_text()
    steps = int(re.search(r"Maximum number of steps set at (\d+)", log).group(1))  # Axolotl's own count
    assert steps == training["optimizer_steps"] == math.ceil(3 * 96 / training["batch"])  # what 3 epochs of 96 take
    metrics = json.loads((run / "metrics.json").read_text())
    epochs_logged = [x["epoch"] for x in metrics["losses"] if "loss" in x]
    assert len(epochs_logged) == steps and max(epochs_logged) == pytest.approx(1.0)  # one pass, every step logged
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
