"""Parent anchoring through a real Axolotl run on the tiny model: 1.0.0 (initial_lora), then
1.1.0 continued from it without the anchor, with the anchor at λ = 0, with L2-SP and with
EWC at λ > 0, all with the same seed, data and steps (one thread: the profile pins it).
Each continued run saves one checkpoint at its last step so the Trainer's own log history
(full precision, not the printed 4 digits) can be compared step by step."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, trained_workspace

pytestmark = pytest.mark.slow
RECIPES = REPO / "recipes" / "firefighter"
STEPS = 6
CONTINUE = ["--set", f"train.max_steps={STEPS}", "--set", "axolotl.logging_steps=1",
            "--set", "axolotl.save_strategy=steps", "--set", f"axolotl.save_steps={STEPS}"]
RUNS = {  # version -> extra overrides
    "1.1.0": [],
    "1.1.1": ["--set", "train.anchor.method=l2sp", "--set", "train.anchor.strength=0"],
    "1.1.2": ["--set", "train.anchor.method=l2sp", "--set", "train.anchor.strength=30"],
    # EWC's weights are the Fisher (mean 1, mostly on lm_head here): a far larger strength
    "1.1.3": ["--set", "train.anchor.method=ewc", "--set", "train.anchor.strength=3000",
              "--set", "train.anchor.fisher_samples=16"],
}


@pytest.fixture(scope="module")
def line(tmp_path_factory, tiny_model_dir):
    return trained_workspace(tmp_path_factory.mktemp("anchor") / "ws", tiny_model_dir,
                             (RECIPES / "1.0.0.yml", "--set", "train.num_epochs=2"),
                             *((RECIPES / "1.1.0.yml", "--set", f"version={version}", *CONTINUE, *extra)
                               for version, extra in RUNS.items()))


def run(ws, version):
    return ws / "runs" / f"firefighter-{version}"


def history(ws, version) -> list[dict]:
    state = run(ws, version) / "adapter" / f"checkpoint-{STEPS}" / "trainer_state.json"
    return [x for x in json.loads(state.read_text())["log_history"] if "loss" in x]


def distance_to(ws, version, parent="1.0.0", weights=None) -> float:
    """Σ w ||θ − θ*||² over the adapter's tensors (LoRA matrices and lm_head), in float64;
    w = 1 unless `weights` (a Fisher) is given."""
    from safetensors.torch import load_file

    mine = load_file(str(run(ws, version) / "adapter" / "adapter_model.safetensors"))
    ref = load_file(str(run(ws, parent) / "adapter" / "adapter_model.safetensors"))
    assert set(mine) == set(ref)
    w = weights or {}
    return sum(float((w.get(k, 1.0) * (mine[k].double() - ref[k].double()).pow(2)).sum()) for k in ref)


def fisher_of(ws, version) -> dict:
    from safetensors.torch import load_file

    manifest = json.loads((run(ws, version) / "manifest.json").read_text())
    return {k: v.double() for k, v in load_file(str(ws / manifest["anchor"]["fisher"]["path"].removeprefix("workspace:"))).items()}


def test_the_plugin_is_loaded_by_the_training_run(line):
    log = (run(line, "1.1.2") / "logs" / "train.log").read_text()
    assert "Plugin loaded successfully: cl_toolkit.training.anchor.AnchorPlugin" in log
    cfg = (run(line, "1.1.2") / "axolotl.yml").read_text()
    assert "cl_toolkit.training.anchor.AnchorPlugin" in cfg and "anchor_strength: 30" in cfg
    assert "AnchorPlugin" not in (run(line, "1.1.0") / "axolotl.yml").read_text()


def test_strength_zero_trains_exactly_as_without_the_plugin(line):
    plain, zero = history(line, "1.1.0"), history(line, "1.1.1")
    assert [x["step"] for x in plain] == [x["step"] for x in zero] == list(range(1, STEPS + 1))
    for a, b in zip(plain, zero, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-6, (a, b)
    assert all("anchor_loss" not in x for x in plain)
    assert all(x["anchor_loss"] == 0.0 for x in zero)  # logged, never added
    assert zero[-1]["anchor_penalty"] > 0  # the weights did move away from the parent
    assert distance_to(line, "1.1.1") == distance_to(line, "1.1.0")


def test_a_positive_strength_logs_the_penalty_and_stays_closer_to_the_parent(line):
    for version, strength in (("1.1.2", 30), ("1.1.3", 3000)):
        logged = history(line, version)
        assert all("anchor_loss" in x and "anchor_penalty" in x for x in logged)
        assert logged[0]["anchor_penalty"] < 1e-9  # the first step starts at the parent's weights
        assert logged[-1]["anchor_loss"] > 0
        for x in logged:  # the Trainer rounds stored metrics to 5 decimals
            assert abs(x["anchor_loss"] - strength * x["anchor_penalty"]) <= strength * 1e-5 + 1e-5, x
        printed = json.loads((run(line, version) / "metrics.json").read_text())["losses"]
        assert any("anchor_loss" in x for x in printed)  # in the Trainer's printed logs as well
    free = distance_to(line, "1.1.0")
    assert distance_to(line, "1.1.2") < 0.8 * free, (distance_to(line, "1.1.2"), free)
    fisher = fisher_of(line, "1.1.3")  # what EWC holds: the Fisher-weighted distance
    assert distance_to(line, "1.1.3", weights=fisher) < 0.8 * distance_to(line, "1.1.0", weights=fisher)


def test_ewc_run_records_its_fisher_in_the_manifest(line):
    manifest = json.loads((run(line, "1.1.3") / "manifest.json").read_text())
    fisher = manifest["anchor"]["fisher"]
    assert fisher["path"].startswith("workspace:cache/anchor_fisher/") and fisher["rows"] == 16
    from cl_toolkit.core.files import sha256_file

    assert sha256_file(line / fisher["path"].removeprefix("workspace:")) == fisher["sha256"]
    assert manifest["anchor"]["reference"]["version"] == "1.0.0"
    assert "anchor" not in json.loads((run(line, "1.1.0") / "manifest.json").read_text())
