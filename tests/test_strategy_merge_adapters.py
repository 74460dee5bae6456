"""merge_adapters without Axolotl: the run folder rendered for real, a real LoRA standing in
for the trained fresh adapter, then the finish step and registration. The scorer is the
injection point the cycle and `clt train` fill with the evaluation layer's: here it scores
each candidate by what its merged delta is, so the weight the scores favour is known."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import numpy as np
import pytest
from merge_support import deltas, real_adapter
from project import BASE_RECIPE, write_recipe
from test_registry_support import make_run, record

from cl_toolkit.core.errors import BadInput
from cl_toolkit.registry import open_registry
from cl_toolkit.training.strategies import load_recipe
from cl_toolkit.training.train import finish_run, prepare, register_run

GATE = {"suites": {"regression": "data/firefighter/regression.jsonl",
                   "q2": {"path": "data/firefighter/regression.jsonl", "role": "learning"}}}


def recipe(**merge) -> dict:
    data = copy.deepcopy(BASE_RECIPE)
    data.update(version="1.1.0", parent="1.0.0", strategy="merge_adapters", gate=GATE,
                data={**data["data"], "train": [{"path": "data/firefighter/q2.jsonl"}]}, merge=merge)
    return data


@pytest.fixture
def line(proj, tiny_model_dir):
    """ff 1.0.0 registered with a real adapter on the tiny base (the profile's)."""
    ws = proj / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    run = make_run(ws, "1.0.0", model="ff")
    shutil.rmtree(run / "adapter")
    real_adapter(ws / "models" / "tiny-llama", run / "adapter", seed=1)
    with open_registry(ws) as reg:
        reg.register(dataclasses.replace(record(run, "1.0.0", model="ff"), base_model=str(ws / "models" / "tiny-llama")))
    return ws


class WeightScorer:
    """Reads the merged lm_head back, recovers the fresh adapter's weight w from it, and
    scores the held-out slice 1 - (w - 0.7)² and the parent's suite 1 - |w - 0.5|: alone
    each favours 0.7 and 0.5; their mean is highest at w = 0.5 on the grid."""

    def __init__(self, base, fresh, parent):
        self.base, self.calls = base, []
        self.df, self.dp = (deltas(a, base) for a in (fresh, parent))

    def __call__(self, base_model, adapter_dir, suites):
        head = next(k for k in self.df if k.startswith("full:"))
        dm = deltas(adapter_dir, self.base)[head]
        d = self.df[head] - self.dp[head]
        w = float(((dm - self.dp[head]) * d).sum() / (d * d).sum())
        self.calls.append((round(w, 6), sorted(suites), {n: p.read_text() for n, p in suites.items()}))
        return {"holdout": 1 - (w - 0.7) ** 2, "regression": 1 - abs(w - 0.5)}


def test_the_weight_the_scores_favour_is_chosen_and_the_merge_is_its_delta_combination(proj, line):
    lr = load_recipe(write_recipe(proj, recipe(weights=[0.3, 0.5, 0.7, 0.9])))
    with open_registry(line) as reg:
        rendered = prepare(lr, reg)
        run = rendered.run_dir
        real_adapter(line / "models" / "tiny-llama", run / "adapter", seed=5)  # stands in for Axolotl's
        fresh_sha = (run / "adapter" / "adapter_model.safetensors").read_bytes()
        scorer = WeightScorer(line / "models" / "tiny-llama", run / "adapter", reg.require("ff", "1.0.0").adapter_dir)
        outcome = finish_run(lr, reg, run, {"losses": [], "train_seconds": 1.0}, scorer)
        rec = register_run(lr, reg, run, outcome)
    assert [c[0] for c in scorer.calls] == pytest.approx([0.3, 0.5, 0.7, 0.9], abs=1e-5)
    assert all(c[1] == ["holdout", "regression"] for c in scorer.calls)  # q2 has role learning: not the parent's
    manifest = json.loads((run / "manifest.json").read_text())
    m = manifest["merge"]
    assert m["weight"] == 0.5 and outcome["finish"]["merge_weight"] == 0.5 and rec.metrics["merge_weight"] == 0.5
    assert [g["weight"] for g in m["grid"]] == [0.3, 0.5, 0.7, 0.9]
    assert [g["score"] for g in m["grid"]] == pytest.approx([0.82, 0.98, 0.9, 0.78], abs=1e-5)
    assert m["method"] == "cat" and m["parent"]["version"] == "1.0.0" and m["fresh"]["path"] == "runs/ff-1.1.0/fresh_adapter"
    assert (run / "fresh_adapter" / "adapter_model.safetensors").read_bytes() == fresh_sha
    assert manifest["outputs"]["adapter/adapter_model.safetensors"]["sha256"] == m["merged_sha256"]
    assert m["selection"]["suites"] == {"holdout": "workspace:runs/ff-1.1.0/data/holdout.jsonl",
                                        "regression": "data/firefighter/regression.jsonl"}  # no machine's path
    # the version's adapter is 0.5 · fresh + 0.5 · parent, delta by delta
    base = line / "models" / "tiny-llama"
    df, dp, dm = (deltas(d, base) for d in (run / "fresh_adapter", reg_adapter(line), rec.adapter_dir))
    assert all(np.abs(dm[k] - (0.5 * df[k] + 0.5 * dp[k])).max() < 1e-5 for k in df)
    # the held-out slice: new rows never trained on, scored as a suite
    held = [json.loads(x) for x in (run / "data" / "holdout.jsonl").read_text().splitlines()]
    assert len(held) == round(0.2 * 48) and scorer.calls[0][2]["holdout"] == (run / "data" / "holdout.jsonl").read_text()
    trained = (run / "data" / "train.jsonl").read_text()
    new_questions = [json.loads(x)["messages"][0]["content"] for x in (run / "data" / "new.jsonl").read_text().splitlines()]
    assert all(h["input"] in new_questions and h["input"] not in trained for h in held)
    assert sum(q in trained for q in new_questions) == 48 - len(held)


def reg_adapter(ws):
    with open_registry(ws) as reg:
        return reg.require("ff", "1.0.0").adapter_dir


def test_merge_adapters_recipes_are_validated(proj, line, clt):
    bad = recipe(weights=[0.5, 1.5], method="linear")
    code, _, err = clt("recipe", "validate", write_recipe(proj, bad))
    assert code == 2 and "[merge.weights[1]]" in err and "[merge.method]" in err
    no_block = recipe()
    del no_block["merge"]
    code, _, err = clt("recipe", "validate", write_recipe(proj, no_block))
    assert code == 2 and "'merge' is a required property" in err
    lr = load_recipe(write_recipe(proj, recipe(suites=["regression", "nope"])))
    with open_registry(line) as reg, pytest.raises(BadInput, match=r"nope not in gate.suites"):
        prepare(lr, reg)
    filled = load_recipe(write_recipe(proj, recipe())).recipe.merge
    assert dict(filled) == {"method": "cat", "weights": (0.3, 0.5, 0.7, 0.9), "holdout": 0.2, "density": 0.5}


def test_finish_needs_a_scorer(proj, line):
    lr = load_recipe(write_recipe(proj, recipe()))
    with open_registry(line) as reg, pytest.raises(BadInput, match="pass a scorer"):
        finish_run(lr, reg, proj / "ws" / "runs" / "ff-1.1.0", {"losses": []}, None)


def test_recipe_new_writes_a_valid_merge_adapters_recipe(shipped_project):
    from cl_toolkit.training.strategies import new_recipe

    root = shipped_project
    path = new_recipe(root / "recipes" / "firefighter", "1.1.0", "merge_adapters", "minor", ["data/firefighter/q3.jsonl"])
    text = path.read_text()
    path.write_text(text.replace("TODO: why 1.2.0 exists", "Q3 as a fresh adapter merged with 1.1.0."))
    r = load_recipe(path).recipe
    assert (r.strategy, r.parent) == ("merge_adapters", "1.1.0")
    assert dict(r.merge) == {"method": "cat", "weights": (0.3, 0.5, 0.7, 0.9), "holdout": 0.2, "density": 0.5}
