"""`clt adapters merge`: PEFT's add_weighted_adapter over real LoRA adapters (with an lm_head
copy, as the tiny profile trains them), registered with every source as a parent."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from test_registry_support import make_run, record

from cl_toolkit.registry import open_registry


def real_adapter(base, out, seed):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            modules_to_save=["lm_head"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.05)
    peft.save_pretrained(out)


@pytest.fixture
def two_sources(tmp_path, monkeypatch, tiny_model_dir):
    ws = tmp_path / "ws"
    monkeypatch.setenv("CLT_HOME", str(ws))
    with open_registry(ws) as reg:
        for version, parent, seed in (("1.0.0", None, 1), ("1.0.1", "1.0.0", 2)):
            run = make_run(ws, version, model="ff")
            shutil.rmtree(run / "adapter")
            real_adapter(tiny_model_dir, run / "adapter", seed)
            reg.register(dataclasses.replace(record(run, version, parent, model="ff"), base_model=str(tiny_model_dir)))
    return ws


@pytest.mark.parametrize("method", ["linear", "ties", "dare_ties"])
def test_adapters_merge_registers_a_loadable_adapter_with_all_parents(two_sources, clt, tiny_model_dir, method):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    code, out, err = clt("adapters", "merge", "ff", "1.0.0", "1.0.1", "--into", "1.1.0", "--method", method,
                         "--weights", "0.75,0.25")
    assert code == 0, err
    with open_registry(two_sources) as reg:
        rec = reg.require("ff", "1.1.0")
        a, b = reg.require("ff", "1.0.0"), reg.require("ff", "1.0.1")
    assert rec.parents == ("1.0.0", "1.0.1") and rec.strategy == "adapter_merge"
    merged = load_file(f"{rec.adapter_dir}/adapter_model.safetensors")
    ta, tb = load_file(f"{a.adapter_dir}/adapter_model.safetensors"), load_file(f"{b.adapter_dir}/adapter_model.safetensors")
    head = next(k for k in merged if "lm_head" in k)
    assert torch.allclose(merged[head], 0.75 * ta[head] + 0.25 * tb[head], atol=1e-6)
    lora_keys = [k for k in merged if "lora_" in k]
    assert lora_keys and any(not torch.equal(merged[k], ta[k]) for k in lora_keys if k in ta)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, rec.adapter_dir).eval()
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()
    new_rows = (two_sources / "runs" / "ff-1.1.0" / "data" / "new.jsonl").read_text().splitlines()
    assert len(new_rows) == 6  # both sources' data, for descendants' rehearsal
    manifest = json.loads((two_sources / "runs" / "ff-1.1.0" / "manifest.json").read_text())
    assert [i["source"] for i in manifest["inputs"]] == ["ff:1.0.0", "ff:1.0.1"]
    assert clt("registry", "check")[0] == 0


def test_adapters_merge_refuses_bad_input(two_sources, clt):
    code, _, err = clt("adapters", "merge", "ff", "1.0.0", "--into", "1.1.0")
    assert code == 2 and "at least two" in err
    code, _, err = clt("adapters", "merge", "ff", "1.0.0", "1.0.1", "--into", "1.1.0", "--weights", "1,x")
    assert code == 2 and "--weights" in err
    code, _, err = clt("adapters", "merge", "ff", "1.0.0", "1.0.1", "--into", "1.0.0")
    assert code == 2 and "already registered" in err
