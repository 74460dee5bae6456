"""`clt serve LINE --print-vllm`: the vLLM command line that serves what the registry's
aliases point at now, each version as the LoRA module `LINE-VERSION` the router asks for.
A pure plan: tests assert the exact argument list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.serve.arms import read_targets
from cl_toolkit.serve.protocol import engine_name

# the values vLLM's --max-lora-rank takes; the smallest that holds every adapter is printed
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class VllmPlan:
    argv: list[str]
    notes: list[str]  # what the operator should know (adapters vLLM may refuse)


def _adapter_config(model: str, version: str, adapter_dir: str | None) -> dict:
    if not adapter_dir:
        raise BadInput(f"{model} {version} has no adapter (merged or full weights): vLLM serves it as a "
                       f"model of its own, not as a LoRA module; run one vLLM for it")
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInput(f"{model} {version}: cannot read {path}: {e}") from None


def vllm_plan(workspace: Path | None, model: str, challenger_share: float = 0.1) -> VllmPlan:
    """`vllm serve BASE --enable-lora --lora-modules LINE-VERSION=PATH ... --max-loras N
    --max-lora-rank R` for the champion and (with a share above 0) the challenger."""
    records = [rec for rec in read_targets(workspace, model, challenger_share).values() if rec is not None]
    bases = sorted({rec.base_model for rec in records})
    if len(bases) > 1:
        raise BadInput(f"{model}'s champion and challenger have different base models ({', '.join(bases)}); "
                       f"one vLLM serves one base: run one per base, each with its version")
    configs = {rec.version: _adapter_config(model, rec.version, rec.adapter_dir) for rec in records}
    rank = max(int(c.get("r") or 8) for c in configs.values())
    fits = [r for r in VLLM_LORA_RANKS if r >= rank]
    if not fits:
        raise BadInput(f"{model}: a LoRA rank of {rank} is more than vLLM's largest --max-lora-rank "
                       f"({VLLM_LORA_RANKS[-1]})")
    notes = [f"{model} {v}: its adapter has modules_to_save ({', '.join(c['modules_to_save'])}), which vLLM "
             f"refuses; serve merged weights for it instead (docs/serving.md)"
             for v, c in configs.items() if c.get("modules_to_save")]
    modules = [f"{engine_name(model, rec.version)}={rec.adapter_dir}" for rec in records]
    return VllmPlan(["vllm", "serve", bases[0], "--enable-lora", "--lora-modules", *modules,
                     "--max-loras", str(len(records)), "--max-lora-rank", str(fits[0])], notes)
