"""Parent anchoring without Axolotl (test_anchor_train.py has the real runs): the recipe's
`train.anchor` validated with file, line and key; the penalty against an independent sum
over the parent's safetensors; λ = 0 leaves the loss untouched; the EWC Fisher computed,
cached by the hash of parent and data, reused, invalidated and resumed; the render path's
keys and manifest entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import REPO
from project import line_of, recipe_text, register_untrained_parent, write_recipe

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import sha256_file
from cl_toolkit.training.chat_rows import read_chat_jsonl
from cl_toolkit.training.determinism import PLUGIN as DETERMINISM

RECIPES = REPO / "recipes" / "firefighter"
CONTINUED = {"version": "1.1.0", "parent": "1.0.0", "strategy": "continued_lora"}


# ---- validation -------------------------------------------------------------------------

def problems_of(path, *overrides):
    from cl_toolkit.training.strategies import load_recipe

    with pytest.raises(BadInput) as e:
        load_recipe(path, list(overrides), check_files=False)
    return e.value.problems


def test_anchor_is_refused_for_a_strategy_without_a_parent_adapter(proj):
    text = recipe_text(train={"num_epochs": 1, "anchor": {"method": "l2sp", "strength": 0.1}})
    path = write_recipe(proj, text, "1.0.0")
    (p,) = problems_of(path)
    assert (p.key, p.line) == ("train.anchor", line_of(text, "anchor:"))
    assert "initial_lora" in p.message and "continued_lora" in p.message
    assert p.file.endswith("recipes/ff/1.0.0.yml")


@pytest.mark.parametrize("anchor, key, says", [
    ({"method": "ewk", "strength": 1.0}, "train.anchor.method", "'ewk' is not one of"),
    ({"method": "ewc", "strength": -1}, "train.anchor.strength", "less than the minimum"),
    ({"method": "ewc", "strength": 1, "fisher_samples": 0}, "train.anchor.fisher_samples", "less than the minimum"),
    ({"method": "ewc", "strength": 1, "lambda": 2}, "train.anchor.lambda", "unknown key 'lambda'"),
    ({"method": "l2sp"}, "train.anchor", "'strength' is a required property"),
])
def test_bad_anchor_blocks_name_file_line_and_key(proj, anchor, key, says):
    text = recipe_text(**CONTINUED, train={"num_epochs": 1, "anchor": anchor})
    path = write_recipe(proj, text, "1.1.0")
    (p,) = problems_of(path)
    assert p.key == key and says in p.message, p
    needle = key.rsplit(".", 1)[-1] + ":" if key != "train.anchor" else "anchor:"
    assert p.line == line_of(text, needle)


def test_clt_recipe_validate_exits_2_on_a_bad_anchor(proj, clt):
    text = recipe_text(train={"anchor": {"method": "ewc", "strength": 1}})
    path = write_recipe(proj, text, "1.0.0")
    code, _out, err = clt("recipe", "validate", path)
    assert code == 2
    assert f"1.0.0.yml:{line_of(text, 'anchor:')}: [train.anchor]" in err and "Traceback" not in err


def test_a_continued_recipe_with_an_anchor_loads_with_the_schema_default(proj):
    from cl_toolkit.training.strategies import load_recipe

    path = write_recipe(proj, recipe_text(**CONTINUED, train={"anchor": {"method": "ewc", "strength": 0.5}}), "1.1.0")
    lr = load_recipe(path, check_files=False)
    assert dict(lr.recipe.train["anchor"]) == {"method": "ewc", "strength": 0.5, "fisher_samples": 64}


# ---- the penalty ------------------------------------------------------------------------

def tiny_peft(tmp_path, seed=0):
    """A 1-layer random Llama with a LoRA (all linear layers, lm_head saved), its adapter on disk."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, tie_word_embeddings=False)
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=2, lora_alpha=4, target_modules="all-linear",
                                                            modules_to_save=["lm_head"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    model.save_pretrained(tmp_path / "adapter")
    return model, tmp_path / "adapter"


def test_penalty_is_the_weighted_squared_distance_to_the_saved_adapter(tmp_path):
    from safetensors.torch import load_file

    from cl_toolkit.training.anchor_penalty import load_anchor

    model, adapter = tiny_peft(tmp_path)
    ref = load_file(str(adapter / "adapter_model.safetensors"))
    anchor = load_anchor(model, "l2sp", 2.0, adapter)
    assert len(anchor.terms) == len(ref) and anchor.penalty().item() == 0.0  # starts at the parent
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    state = {k.replace(".modules_to_save.default.", ".").replace(".default.", "."): p.detach()
             for k, p in model.named_parameters() if p.requires_grad}
    expected = sum(float(((state[k] - ref[k]) ** 2).sum()) for k in ref)
    assert anchor.penalty().item() == pytest.approx(expected, rel=1e-5) and expected > 0
    weights = {k: torch.rand_like(v) for k, v in ref.items()}
    from safetensors.torch import save_file

    save_file(weights, str(tmp_path / "fisher.safetensors"))
    ewc = load_anchor(model, "ewc", 2.0, adapter / "adapter_model.safetensors", tmp_path / "fisher.safetensors")
    weighted = sum(float((weights[k] * (state[k] - ref[k]) ** 2).sum()) for k in ref)
    assert ewc.penalty().item() == pytest.approx(weighted, rel=1e-5)
    loss = torch.tensor(1.5, requires_grad=True)
    total, logs = ewc.add_to(loss, scale=0.5)
    assert total.item() == pytest.approx(1.5 + 0.5 * 2.0 * weighted, rel=1e-5)
    assert logs["anchor_loss"] == pytest.approx(2.0 * weighted, rel=1e-5)
    total.backward()  # the penalty's gradient: 2 · scale · λ · w · (θ − θ*)
    name, param = next((n, p) for n, p in model.named_parameters() if "lora_A" in n)
    key = name.replace(".default.", ".")
    assert torch.allclose(param.grad, 2 * 0.5 * 2.0 * weights[key] * (param.detach() - ref[key]), atol=1e-6)


def test_strength_zero_returns_the_plain_loss_and_adds_no_gradient(tmp_path):
    from cl_toolkit.training.anchor_penalty import load_anchor

    model, adapter = tiny_peft(tmp_path)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1)
    anchor = load_anchor(model, "l2sp", 0.0, adapter)
    loss = (next(p for p in model.parameters() if p.requires_grad) * 0).sum() + 3.25
    total, logs = anchor.add_to(loss, scale=1.0)
    assert total is loss and logs["anchor_loss"] == 0.0 and logs["anchor_penalty"] > 0
    total.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_a_reference_that_lacks_a_trainable_parameter_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from cl_toolkit.training.anchor_penalty import load_anchor

    model, adapter = tiny_peft(tmp_path)
    ref = load_file(str(adapter / "adapter_model.safetensors"))
    dropped = sorted(ref)[0]
    save_file({k: v for k, v in ref.items() if k != dropped}, str(tmp_path / "short.safetensors"))
    with pytest.raises(ValueError, match="no reference") as e:
        load_anchor(model, "l2sp", 1.0, tmp_path / "short.safetensors")
    assert dropped in str(e.value)
    with pytest.raises(ValueError, match="anchor_fisher"):
        load_anchor(model, "ewc", 1.0, adapter, tmp_path / "absent.safetensors")


def test_penalty_scale_counts_the_penalty_once_per_optimizer_step():
    from cl_toolkit.training.anchor_penalty import penalty_scale

    assert penalty_scale(True, 4) == 1.0  # the Trainer divides by the 4 steps itself
    assert penalty_scale(False, 4) == 0.25  # the loss is normalised by the items: we divide
    assert penalty_scale(False, 1) == 1.0


# ---- the Fisher (EWC) and the render path -----------------------------------------------

@pytest.fixture
def parent(workspace):
    """firefighter 1.0.0 registered in the workspace: a LoRA on the tiny base (lora_B
    random so every parameter has a gradient), its run folder with Q1 as its new data."""
    return register_untrained_parent(workspace, modules_to_save=["lm_head"])


def ewc_recipe(workspace, samples=12, *more):
    from cl_toolkit.training.strategies import load_recipe

    return load_recipe(RECIPES / "1.1.0.yml", ["train.anchor.method=ewc", "train.anchor.strength=1.5",
                                              f"train.anchor.fisher_samples={samples}", *more], workspace)


def fisher_files(workspace):
    folder = workspace / "cache" / "anchor_fisher"
    return sorted(p for p in folder.iterdir() if p.suffix == ".safetensors") if folder.is_dir() else []


def test_render_adds_the_plugin_keys_and_records_the_fisher(workspace, parent, tmp_path):
    from safetensors.torch import load_file

    from cl_toolkit.registry import open_registry
    from cl_toolkit.training.render import render

    with open_registry(workspace) as reg:
        out = render(ewc_recipe(workspace), tmp_path / "r", reg, validate=False)
    cfg = out.config
    # the determinism plugin first (it seeds before the model is built), then the anchor
    assert cfg["plugins"] == [DETERMINISM, "cl_toolkit.training.anchor.AnchorPlugin"] and "anchor" not in cfg
    assert (cfg["anchor_method"], cfg["anchor_strength"]) == ("ewc", 1.5)
    assert cfg["anchor_reference"] == os.path.join(parent.adapter_dir, "adapter_model.safetensors")
    (fisher,) = fisher_files(workspace)
    assert cfg["anchor_fisher"] == str(fisher)
    entry = out.manifest["anchor"]
    assert entry["fisher"] == {"path": f"workspace:cache/anchor_fisher/{fisher.name}", "sha256": sha256_file(fisher),
                               "key": entry["fisher"]["key"], "rows": 12,
                               "sources": ["parent_data:1.0.0", "data/general/general.jsonl"]}
    assert entry["reference"]["sha256"] == sha256_file(cfg["anchor_reference"])
    weights = load_file(str(fisher))
    ref = load_file(cfg["anchor_reference"])
    assert set(weights) == set(ref)  # one weight per trainable tensor, under the adapter's keys
    total = sum(float(w.sum()) for w in weights.values())
    assert total / sum(w.numel() for w in weights.values()) == pytest.approx(1.0, rel=1e-5)
    assert all(float(w.min()) >= 0 for w in weights.values())


def test_fisher_is_reused_then_invalidated_by_the_parent_and_the_data(workspace, parent, tmp_path):
    from safetensors.torch import load_file, save_file

    from cl_toolkit.registry import open_registry
    from cl_toolkit.training.render import render

    with open_registry(workspace) as reg:
        first = render(ewc_recipe(workspace), tmp_path / "a", reg, validate=False).config["anchor_fisher"]
        stamp = os.stat(first).st_mtime_ns
        again = render(ewc_recipe(workspace), tmp_path / "b", reg, validate=False).config["anchor_fisher"]
        assert again == first and os.stat(first).st_mtime_ns == stamp  # reused, not recomputed
        other_data = render(ewc_recipe(workspace, 20), tmp_path / "c", reg, validate=False).config["anchor_fisher"]
        assert other_data != first and len(fisher_files(workspace)) == 2
        adapter = os.path.join(parent.adapter_dir, "adapter_model.safetensors")
        weights = load_file(adapter)
        save_file({k: v * 1.01 for k, v in weights.items()}, adapter)  # the parent's weights changed
        changed = render(ewc_recipe(workspace), tmp_path / "d", reg, validate=False).config["anchor_fisher"]
    assert changed not in (first, other_data) and len(fisher_files(workspace)) == 3
    assert not torch.equal(load_file(changed)[sorted(weights)[0]], load_file(first)[sorted(weights)[0]])


def test_fisher_resumes_after_an_interruption_and_matches_an_uninterrupted_run(workspace, parent, tmp_path):
    from safetensors.torch import load_file

    from cl_toolkit.registry import open_registry
    from cl_toolkit.training.fisher import diagonal_fisher, fisher_rows

    with open_registry(workspace) as reg:
        rows, _ = fisher_rows(ewc_recipe(workspace), reg, 10)
    out = tmp_path / "f.safetensors"

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        diagonal_fisher(parent, rows, out, batch_size=4, max_len=128, on_progress=stop)
    partial = tmp_path / "f.safetensors.partial"
    assert partial.is_file() and not out.exists()
    seen = []
    assert diagonal_fisher(parent, rows, out, batch_size=4, max_len=128,
                           on_progress=lambda done, total: seen.append(done)) is True
    assert seen == [8, 10] and not partial.exists()  # resumed after the first batch of 4
    whole = tmp_path / "whole.safetensors"
    diagonal_fisher(parent, rows, whole, batch_size=4, max_len=128)
    a, b = load_file(str(out)), load_file(str(whole))
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in a)
    assert diagonal_fisher(parent, rows, out, batch_size=4, max_len=128) is False  # complete: reused


def test_fisher_rows_are_a_seeded_sample_of_the_parent_and_rehearsal_data(workspace, parent):
    from cl_toolkit.registry import open_registry
    from cl_toolkit.training.fisher import fisher_rows

    q1 = read_chat_jsonl(REPO / "data" / "firefighter" / "q1.jsonl")
    general = read_chat_jsonl(REPO / "data" / "general" / "general.jsonl")
    with open_registry(workspace) as reg:
        rows, sources = fisher_rows(ewc_recipe(workspace), reg, 30)
        same, _ = fisher_rows(ewc_recipe(workspace), reg, 30)
        other_seed, _ = fisher_rows(ewc_recipe(workspace, 30, "data.seed=5"), reg, 30)
        everything, _ = fisher_rows(ewc_recipe(workspace), reg, 10_000)
    assert rows == same and rows != other_seed and len(rows) == 30
    assert all(r in q1 or r in general for r in rows) and any(r in q1 for r in rows)
    assert len(everything) == len({json.dumps(r, sort_keys=True) for r in q1 + general})
    assert sources == ["parent_data:1.0.0", "data/general/general.jsonl"]


def test_merge_lora_config_drops_the_anchor_keys():
    from cl_toolkit.registry import VersionRecord
    from cl_toolkit.training.merge_lora import merge_config

    rec = VersionRecord(model="m", version="1.1.0", parent="1.0.0", strategy="continued_lora", base_model="b",
                        recipe_sha256="", data_sha256="", run_dir="r", adapter_dir="a")
    cfg = merge_config({"plugins": ["cl_toolkit.training.anchor.AnchorPlugin"], "anchor_method": "ewc",
                        "anchor_strength": 1.0, "anchor_fisher": "f", "lora_r": 4}, rec, Path("/tmp/o"))
    assert not any(k.startswith("anchor_") for k in cfg) and "plugins" not in cfg and cfg["lora_r"] == 4
