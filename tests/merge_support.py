"""Deltas of LoRA adapters computed from their files alone (scaling · B·A per module, a
whole-module copy minus the base weight), and TIES and the magnitude max written out from
their definitions: what the merge tests check the merged adapters against."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def real_adapter(base, out, seed, r=4, alpha=8):
    """A LoRA adapter on q_proj and v_proj with a trained-looking lm_head copy, random B."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=["q_proj", "v_proj"],
                                            modules_to_save=["lm_head"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.05)
    peft.save_pretrained(out)


def deltas(adapter_dir, base_dir) -> dict[str, np.ndarray]:
    """{module: ΔW} of an adapter: (lora_alpha / r) · B·A for LoRA modules, copy − base for
    whole copies (keyed `full:<base key>`)."""
    from safetensors.numpy import load_file

    cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    assert not cfg.get("use_rslora") and not cfg.get("rank_pattern")
    scale = cfg["lora_alpha"] / cfg["r"]
    t = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    base = load_file(str(next(Path(base_dir).glob("*.safetensors"))))
    out = {}
    for key, a in t.items():
        if key.endswith(".lora_A.weight"):
            module = key.removesuffix(".lora_A.weight")
            out[module] = scale * (t[module + ".lora_B.weight"].astype(np.float64) @ a.astype(np.float64))
        elif "lora_" not in key:
            base_key = key.removeprefix("base_model.model.")
            out["full:" + base_key] = t[key].astype(np.float64) - base[base_key].astype(np.float64)
    return out


def ties(ds: list[np.ndarray], weights: list[float], density: float) -> np.ndarray:
    """TIES (Yadav et al.): keep each delta's top `density` share by magnitude, elect the sign
    of the summed trimmed deltas, average the weighted entries that agree with it."""
    trimmed = []
    for d in ds:
        k = int(density * d.size)
        keep = np.zeros(d.size, bool)
        keep[np.argsort(-np.abs(d).ravel(), kind="stable")[:k]] = True
        trimmed.append(np.where(keep.reshape(d.shape), d, 0.0))
    stack = np.stack(trimmed)
    sign = np.where(stack.sum(0) >= 0, 1.0, -1.0)
    agree = np.sign(stack) == sign
    weighted = stack * np.array(weights).reshape(-1, *[1] * ds[0].ndim)
    return (weighted * agree).sum(0) / np.maximum(agree.sum(0), 1)


def magnitude_max(ds: list[np.ndarray], weights: list[float]) -> np.ndarray:
    stack = np.stack([w * d for w, d in zip(weights, ds, strict=True)])
    pick = np.abs(stack).argmax(0)
    return np.take_along_axis(stack, pick[None], 0)[0]


def truncation_error(m: np.ndarray, rank: int) -> float:
    """The Frobenius error of the best rank-`rank` approximation of `m` (Eckart-Young):
    the root of the sum of the squared singular values past `rank`."""
    s = np.linalg.svd(m, compute_uv=False)
    return float(np.sqrt((s[rank:] ** 2).sum()))
