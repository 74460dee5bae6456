"""The four strategies chained through Axolotl on the tiny model:
1.0.0 initial -> 1.1.0 continued -> 2.0.0 merge_and_retrain -> 2.1.0 distillation.
Test names contain `merge` or `distill` so `-k merge` / `-k distill` select them."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import REPO, clt_proc

pytestmark = pytest.mark.slow
RECIPES = REPO / "recipes" / "firefighter"
FAST = ["--set", "train.num_epochs=2", "--set", "axolotl.logging_steps=1"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_model_dir):
    ws = tmp_path_factory.mktemp("chain") / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    for version in ("1.0.0", "1.1.0", "2.0.0", "2.1.0"):
        proc = clt_proc(ws, "train", RECIPES / f"{version}.yml", *FAST)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return ws


def registry(ws):
    from cl_toolkit.registry import open_registry

    return open_registry(ws)


def test_merge_distill_chain_lineage(chain):
    proc = clt_proc(chain, "registry", "lineage", "firefighter")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if any(v in ln for v in ("1.0.0", "1.1.0", "2.0.0", "2.1.0"))]
    order = [next(v for v in ("1.0.0", "1.1.0", "2.0.0", "2.1.0") if v in ln) for ln in lines]
    assert order == ["1.0.0", "1.1.0", "2.0.0", "2.1.0"]
    indents = [len(ln) - len(ln.lstrip(" │├└─")) for ln in lines]
    assert indents == sorted(indents) and len(set(indents)) == 4  # each a child of the one above
    with registry(chain) as reg:
        strategies = [reg.require("firefighter", v).strategy for v in ("1.0.0", "1.1.0", "2.0.0", "2.1.0")]
    assert strategies == ["initial_lora", "continued_lora", "merge_and_retrain", "distillation"]


def test_merge_and_retrain_base_equals_the_merged_parent(chain):
    """2.0.0's base is 1.1.0 merged by Axolotl: its logits match base + 1.1.0's adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with registry(chain) as reg:
        parent, rec = reg.require("firefighter", "1.1.0"), reg.require("firefighter", "2.0.0")
    assert rec.base_model != parent.base_model and "models/merged/" in rec.base_model
    tok = AutoTokenizer.from_pretrained(rec.base_model)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the NIOSH IDLH for chlorine?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(rec.base_model, dtype=torch.float32).eval()(ids).logits
        base = AutoModelForCausalLM.from_pretrained(parent.base_model, dtype=torch.float32)
        adapted = PeftModel.from_pretrained(base, parent.adapter_dir).eval()(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(parent.base_model, dtype=torch.float32).eval()(ids).logits
    assert (merged - adapted).abs().max().item() < 1e-5
    assert (merged - plain).abs().max().item() > 1e-3  # the adapter really is in there


def test_merge_is_cached_by_hash_and_trains_on_the_complete_data(chain):
    from cl_toolkit.training.merge_lora import merged_base

    with registry(chain) as reg:
        parent, rec = reg.require("firefighter", "1.1.0"), reg.require("firefighter", "2.0.0")
    path, built = merged_base(parent, chain)
    assert str(path) == rec.base_model and built is False
    manifest = json.loads((chain / "runs" / "firefighter-2.0.0" / "manifest.json").read_text())
    mix = manifest["mix"]
    assert mix["new"] == 48 and mix["history"] == 96  # Q1 and Q2, deduplicated, from the manifests
    assert {i["source"] for i in manifest["inputs"] if i["role"] == "history"} == {"parent_data:1.1.0", "parent_data:1.0.0"}
    assert mix["total"] == 144 + mix["rehearsal"]["data/general/general.jsonl"]["rows"]
    q = [line for line in (REPO / "data/firefighter/q1.jsonl").read_text().splitlines()]
    rows = (chain / "runs" / "firefighter-2.0.0" / "data" / "train.jsonl").read_text().splitlines()
    canon = {json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False) for line in q}
    assert sum(r in canon for r in rows) == 48  # every Q1 row once, no duplicates from the history


def test_distill_dataset_has_k_logprobs_per_token_aligned_with_axolotl_tokens(chain):
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    run = chain / "runs" / "firefighter-2.1.0"
    rows = [json.loads(line) for line in (run / "data" / "train.jsonl").read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(chain / "models" / "tiny-llama")
    ours = {}
    for r in rows:
        ids = tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False)
        assert len(r["logprobs"]) == len(r["target_token_ids"]) == len(ids)
        assert all(len(p) == 20 for p in r["logprobs"]) and all(len(t) == 20 for t in r["target_token_ids"])
        assert all(p[0] >= p[-1] and p[0] <= 0 for p in r["logprobs"])  # top-K, sorted, log-probabilities
        ours[tuple(ids)] = r
    prepared = [p for p in (run / "prepared").iterdir() if p.is_dir()]
    ds = load_from_disk(str(prepared[0]))
    assert {"target_logprobs", "target_token_ids", "target_mask"} <= set(ds.column_names)
    for ex in ds:  # Axolotl tokenised every row exactly as the teacher saw it
        assert ours[tuple(ex["input_ids"])]["target_token_ids"] == ex["target_token_ids"]
    assert len(ds) == len(rows)


def test_distill_loss_includes_the_kd_term(chain):
    """Same student, data, seed and teacher; only alpha differs (0 = cross-entropy alone).
    The first logged loss differs, so the KD term is in the loss."""
    proc = clt_proc(chain, "train", RECIPES / "2.1.0.yml", *FAST, "--set", "version=2.1.1",
                    "--set", "distillation.alpha=0.0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with registry(chain) as reg:
        kd, ce = (reg.require("firefighter", v) for v in ("2.1.0", "2.1.1"))
    first = {}
    for rec in (kd, ce):
        losses = json.loads((chain / "runs" / f"firefighter-{rec.version}" / "metrics.json").read_text())["losses"]
        first[rec.version] = next(x["loss"] for x in losses if "loss" in x)
    assert abs(first["2.1.0"] - first["2.1.1"]) > 1e-3, first
    log = (chain / "runs" / "firefighter-2.1.0" / "logs" / "train.log").read_text()
    assert "Plugin loaded successfully: axolotl.integrations.kd.KDPlugin" in log
    cfg = (chain / "runs" / "firefighter-2.1.0" / "axolotl.yml").read_text()
    assert "kd_alpha: 0.3" in cfg and "kd_ce_alpha: 0.7" in cfg and "kd_temperature: 2.0" in cfg
