"""`clt adapters merge` on the adapters' weight deltas: real LoRA adapters (different ranks
and scalings, with an lm_head copy as the tiny profile trains them), the merged delta
checked against the combination of the source deltas computed here from the files alone."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from merge_support import deltas, magnitude_max, real_adapter, ties, truncation_error
from test_registry_support import make_run, record

from cl_toolkit.registry import open_registry

W = (0.75, 0.25)


@pytest.fixture
def two_sources(tmp_path, monkeypatch, tiny_model_dir):
    ws = tmp_path / "ws"
    monkeypatch.setenv("CLT_HOME", str(ws))
    with open_registry(ws) as reg:
        for version, parent, seed, r, alpha in (("1.0.0", None, 1, 4, 8), ("1.0.1", "1.0.0", 2, 2, 6)):
            run = make_run(ws, version, model="ff")
            shutil.rmtree(run / "adapter")
            real_adapter(tiny_model_dir, run / "adapter", seed, r=r, alpha=alpha)
            reg.register(dataclasses.replace(record(run, version, parent, model="ff"), base_model=str(tiny_model_dir)))
    return ws


def merged(ws, clt, method, weights=W, *extra):
    code, out, err = clt("adapters", "merge", "ff", "1.0.0", "1.0.1", "--into", "1.1.0", "--method", method,
                         "--weights", ",".join(map(str, weights)), *extra)
    assert code == 0, err
    with open_registry(ws) as reg:
        rec, a, b = (reg.require("ff", v) for v in ("1.1.0", "1.0.0", "1.0.1"))
    return rec, a, b, err


def test_cat_is_the_exact_weighted_sum_of_the_deltas(two_sources, clt, tiny_model_dir):
    rec, a, b, err = merged(two_sources, clt, "cat")
    assert "now merges" not in err
    da, db, dm = (deltas(x.adapter_dir, tiny_model_dir) for x in (a, b, rec))
    assert set(dm) == set(da) and any(k.startswith("full:") for k in dm)
    for key in da:
        assert np.abs(dm[key] - (W[0] * da[key] + W[1] * db[key])).max() < 1e-5, key
    assert json.loads((two_sources / "runs/ff-1.1.0/adapter/adapter_config.json").read_text())["r"] == 6
    manifest = json.loads((two_sources / "runs" / "ff-1.1.0" / "manifest.json").read_text())
    assert manifest["merge"]["sources"] == ["1.0.0", "1.0.1"] and manifest["merge"]["method"] == "cat"
    assert manifest["merge"]["weights"] == list(W) and manifest["merge"]["peft_combination"] == "cat"
    assert [i["source"] for i in manifest["inputs"]] == ["ff:1.0.0", "ff:1.0.1"]
    assert rec.parents == ("1.0.0", "1.0.1") and rec.strategy == "adapter_merge"
    assert len((two_sources / "runs/ff-1.1.0/data/new.jsonl").read_text().splitlines()) == 6  # both sources'
    assert clt("registry", "check")[0] == 0


@pytest.mark.parametrize(("method", "density", "combine"), [
    ("ties_svd", 0.5, lambda ds: ties(ds, W, 0.5)),
    ("dare_ties_svd", 1.0, lambda ds: ties(ds, W, 1.0)),  # density 1: DARE drops nothing, rescales by 1
    ("magnitude_max", 0.5, lambda ds: magnitude_max(ds, W)),
])
def test_svd_merges_are_the_combination_of_the_deltas_up_to_the_rank_truncation(
        two_sources, clt, tiny_model_dir, method, density, combine):
    rec, a, b, _ = merged(two_sources, clt, method, W, "--density", str(density))
    rank = json.loads((two_sources / "runs/ff-1.1.0/adapter/adapter_config.json").read_text())["r"]
    assert rank == 6  # the sum of the sources' ranks
    da, db, dm = (deltas(x.adapter_dir, tiny_model_dir) for x in (a, b, rec))
    truncated = 0
    for key in da:
        want = combine([da[key], db[key]])
        err = np.linalg.norm(dm[key] - want)
        if key.startswith("full:"):  # a whole module: combined exactly, no SVD
            assert np.abs(dm[key] - want).max() < 1e-5, key
            continue
        bound = truncation_error(want, rank)  # Eckart-Young: the best any rank-6 matrix can do
        assert err <= bound * (1 + 1e-4) + 1e-6, (key, err, bound)
        assert err >= bound * (1 - 1e-3) - 1e-6, (key, err, bound)  # and the SVD reaches it
        truncated += bound > 1e-4
    assert truncated  # the bound was not trivially zero everywhere


@pytest.mark.parametrize(("old", "new"), [("linear", "cat"), ("ties", "ties_svd"), ("dare_ties", "dare_ties_svd")])
def test_old_method_names_say_which_delta_merge_they_mean(two_sources, clt, tiny_model_dir, old, new):
    rec, a, b, err = merged(two_sources, clt, old, W, "--density", "1.0")
    notes = [line for line in err.splitlines() if "now merges on the deltas" in line]
    assert len(notes) == 1 and f"--method {old} now merges on the deltas: {new}," in notes[0]
    manifest = json.loads((two_sources / "runs" / "ff-1.1.0" / "manifest.json").read_text())
    assert manifest["merge"]["method"] == new and manifest["merge"]["requested_method"] == old
    if old == "linear":  # the delta sum, not PEFT's linear on A and B one by one
        da, db, dm = (deltas(x.adapter_dir, tiny_model_dir) for x in (a, b, rec))
        assert all(np.abs(dm[k] - (W[0] * da[k] + W[1] * db[k])).max() < 1e-5 for k in da)


def test_a_linear_merge_with_weights_1_0_reproduces_the_first_sources_logits(two_sources, clt, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    rec, a, b, _ = merged(two_sources, clt, "linear", (1.0, 0.0))
    ids = torch.tensor([[1, 5, 9, 12, 40, 77, 3]])
    logits = {}
    with torch.no_grad():
        for name, adapter in (("merged", rec.adapter_dir), ("first", a.adapter_dir), ("second", b.adapter_dir)):
            base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
            logits[name] = PeftModel.from_pretrained(base, adapter).eval()(ids).logits
    assert (logits["merged"] - logits["first"]).abs().max().item() < 1e-5
    assert (logits["merged"] - logits["second"]).abs().max().item() > 1e-3  # the test can tell them apart


def test_adapters_merge_refuses_bad_input(two_sources, clt):
    code, _, err = clt("adapters", "merge", "ff", "1.0.0", "--into", "1.1.0")
    assert code == 2 and "at least two" in err
    code, _, err = clt("adapters", "merge", "ff", "1.0.0", "1.0.1", "--into", "1.1.0", "--weights", "1,x")
    assert code == 2 and "--weights" in err
    code, _, err = clt("adapters", "merge", "ff", "1.0.0", "1.0.1", "--into", "1.0.0")
    assert code == 2 and "already registered" in err
    code, _, err = clt("adapters", "merge", "ff", "1.0.0", "1.0.1", "--into", "1.1.0", "--weights", "1,2,3")
    assert code == 2 and "3 weights for 2" in err
