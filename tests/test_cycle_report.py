"""The quarter in one command: resume after a stop, rerun from a changed input, and a report
whose plots are real PNGs and whose checklist is computed. Slow: trains through Axolotl."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow
R100 = REPO / "recipes" / "firefighter" / "1.0.0.yml"
R110 = REPO / "recipes" / "firefighter" / "1.1.0.yml"
FAST = ["--set", "train.num_epochs=2"]
PNG = b"\x89PNG\r\n\x1a\n"


def cycle(ws, recipe, *args):
    proc = subprocess.run([*map(str, [sys.executable, "-m", "cl_toolkit", "--workspace", ws, "cycle", recipe, "--json"]),
                           *FAST, *args], cwd=REPO, capture_output=True, text=True)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None, proc.stderr


@pytest.fixture(scope="module")
def stopped_after_training(tmp_path_factory, tiny_model_dir):
    """A workspace whose 1.0.0 cycle stopped after training; with the adapter as it was then."""
    ws = tmp_path_factory.mktemp("cycle") / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    code, out, err = cycle(ws, R100, "--until", "train")
    assert code == 0, err[-3000:]
    assert out["ran"] == ["validate", "data", "render", "train"] and out["status"] is None
    adapter = ws / "runs" / "firefighter-1.0.0" / "adapter" / "adapter_model.safetensors"
    return ws, adapter, (adapter.stat().st_mtime_ns, adapter.read_bytes())


@pytest.fixture(scope="module")
def resumed(stopped_after_training):
    """The same cycle run again to its end: the workspace and what that run printed. Every
    test that needs a released 1.0.0 (its report, a parent for 1.1.0) starts from here, so
    each passes alone."""
    ws = stopped_after_training[0]
    code, out, err = cycle(ws, R100)
    assert code == 0, err[-3000:]
    return ws, out, err


def test_cycle_resumes_at_evaluation_without_training_again(stopped_after_training, resumed):
    _, adapter, before = stopped_after_training
    ws, out, err = resumed
    assert out["ran"] == ["register", "evaluate", "gate", "release", "analyze", "report"]
    assert "= train: done before, inputs unchanged" in err and "loss" not in err
    assert (adapter.stat().st_mtime_ns, adapter.read_bytes()) == before
    assert out["status"] == "champion"  # the line's first version
    code, out, err = cycle(ws, R100)  # nothing left to do
    assert code == 0 and out["ran"] == []


def test_report_has_real_plots_and_a_computed_checklist(resumed):
    ws, _, _ = resumed
    report = ws / "reports" / "firefighter"
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3 and "<table>" in page
    from PIL import Image

    for png in (report / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == PNG
        with Image.open(png) as im:
            im.verify()
            assert im.size[0] > 300
    checklist = {c["item"]: c for c in json.loads((report / "checklist.json").read_text())}
    manifest = json.loads((ws / "runs" / "firefighter-1.0.0" / "manifest.json").read_text())
    assert checklist["at least 200 new training examples"]["ok"] is (manifest["mix"]["new"] >= 200)
    assert checklist["data versioned with SHA-256"]["ok"] is True
    assert checklist["model versioned with lineage"]["ok"] is True
    assert checklist["rollback target exists"]["ok"] is False  # the only version: nothing to roll back to
    assert "48 new examples" in checklist["at least 200 new training examples"]["evidence"]


def test_the_cycles_report_has_its_loss_and_its_release_from_what_axolotl_really_logged(resumed):
    """The fast report tests build their run folders by hand; here the shapes are a real run's."""
    ws, _, _ = resumed
    metrics = json.loads((ws / "runs" / "firefighter-1.0.0" / "metrics.json").read_text())
    logged = [x for x in metrics["losses"] if "loss" in x]
    assert logged and all("epoch" in x for x in logged)
    md = (ws / "reports" / "firefighter" / "report.md").read_text()
    row = next(line for line in md.split("## Training loss")[1].splitlines() if line.startswith("| 1.0.0 |"))
    assert row.split(" | ")[1:4] == [str(len(logged)), f"{logged[0]['loss']:.4f}", f"{logged[-1]['loss']:.4f}"]
    history = md.split("## Alias history")[1].split("\n## ")[0]
    assert "| promote | champion: - → 1.0.0 | clt cycle | clt cycle: first version" in history
    assert "No production feedback on firefighter's versions" in md  # this workspace has no store
    manifest = json.loads((ws / "runs" / "firefighter-1.0.0" / "manifest.json").read_text())
    data = next(line for line in md.split("## Data used")[1].splitlines() if line.startswith("| 1.0.0 |"))
    assert data.split(" | ")[1:3] == [str(manifest["mix"]["new"]), "0"]


def test_changed_input_reruns_from_the_step_it_feeds(resumed):
    ws, _, _ = resumed
    code, out, err = cycle(ws, R110, "--until", "data")
    assert code == 0, err[-3000:]
    assert out["ran"] == ["validate", "data"]
    mix1 = json.loads((ws / "cycles" / "firefighter-1.1.0" / "mix.json").read_text())
    code, out, err = cycle(ws, R110, "--until", "data")
    assert out["ran"] == []
    code, out, err = cycle(ws, R110, "--until", "data", "--set", "data.seed=7")
    assert out["ran"] == ["validate", "data"]
    mix2 = json.loads((ws / "cycles" / "firefighter-1.1.0" / "mix.json").read_text())
    assert mix1["sha256"] != mix2["sha256"] and mix1["rows"] == mix2["rows"]
    code, out, err = cycle(ws, R110, "--until", "data", "--set", "data.seed=7", "--from", "data")
    assert out["ran"] == ["data"]
