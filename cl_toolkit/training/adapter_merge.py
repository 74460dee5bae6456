"""Merge LoRA adapters on their weight deltas (ΔW = scaling · B·A per module), never on A
and B one by one: PEFT's `linear`, `ties` and `dare_ties` combine the A and the B matrices
separately, so the product of the merged pair is not the combination of the deltas.

The delta methods (`DELTA_METHODS`), each through PEFT's `add_weighted_adapter` where PEFT
has it:

- `cat`: PEFT's concatenation. The weighted sum Σ wᵢ·ΔWᵢ, exactly; the merged rank is the
  sum of the sources' ranks.
- `ties_svd`, `dare_ties_svd`: PEFT's TIES / DARE-TIES on the deltas, then an SVD back to
  `rank` (default: the sum of the sources' ranks).
- `magnitude_max`: ours (PEFT has none): per module and per element, the weighted delta of
  larger magnitude (its sign kept), then an SVD back to `rank` like the others.

Each source's scaling (lora_alpha / r, rank and alpha patterns, rsLoRA) is folded into its B
before PEFT combines, so every method sees the true deltas (PEFT's SVD variants otherwise
apply the scaling twice) and the merged adapter has scaling 1 (lora_alpha = r, no rsLoRA).

Modules kept whole (`modules_to_save`, the tiny profile's lm_head) cannot go through PEFT's
merge; their deltas against the base (copy − base weight) go through the same combination
(PEFT's `task_arithmetic`, `ties`, `dare_ties` from `peft.utils.merge_utils`, or the
magnitude max), exactly, at full rank.

The old method names keep working: `linear` means `cat`, `ties` means `ties_svd`,
`dare_ties` means `dare_ties_svd` (`OLD_NAMES`; the command says so on stderr)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import dump_json, jsonl_bytes, sha256_file
from cl_toolkit.core.progress import Bar
from cl_toolkit.core.yamlio import read_yaml
from cl_toolkit.registry import RegistryStore, VersionRecord, artifact_file
from cl_toolkit.training.chat_rows import dedupe, read_chat_jsonl

DELTA_METHODS = ("cat", "ties_svd", "dare_ties_svd", "magnitude_max")
OLD_NAMES = {"linear": "cat", "ties": "ties_svd", "dare_ties": "dare_ties_svd"}
METHODS = (*DELTA_METHODS, *OLD_NAMES)
ABOUT = {
    "cat": "the exact weighted sum of the adapters' deltas (PEFT cat; rank = the sum of the ranks)",
    "ties_svd": "TIES on the adapters' deltas, then an SVD to the merged rank (PEFT ties_svd)",
    "dare_ties_svd": "DARE-TIES on the adapters' deltas, then an SVD to the merged rank (PEFT dare_ties_svd)",
    "magnitude_max": "per element the weighted delta of larger magnitude, then an SVD to the merged rank",
}
FULL_PREFIX = "base_model.model."  # a modules_to_save copy's key, less this, is the base weight's key


def delta_method(method: str) -> tuple[str, str | None]:
    """The delta method `method` names, and for an old name the line that says what it means now."""
    if method in OLD_NAMES:
        new = OLD_NAMES[method]
        return new, f"--method {method} now merges on the deltas: {new}, {ABOUT[new]}"
    if method not in DELTA_METHODS:
        raise BadInput(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    return method, None


def _strip_full_copies(src: Path, dst: Path) -> dict:
    """Copy an adapter without its modules_to_save; return those tensors by key."""
    from safetensors.torch import load_file, save_file

    cfg = json.loads((src / "adapter_config.json").read_text())
    tensors = load_file(src / "adapter_model.safetensors")
    saved = tuple(cfg.get("modules_to_save") or ())
    full = {k: v for k, v in tensors.items() if any(f".{m}." in k or k.endswith(f".{m}.weight") for m in saved)}
    dst.mkdir(parents=True)
    save_file({k: v for k, v in tensors.items() if k not in full}, dst / "adapter_model.safetensors")
    (dst / "adapter_config.json").write_text(json.dumps({**cfg, "modules_to_save": None}))
    return full


def _lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def _fold_scaling(model, names: list[str]) -> None:
    """Multiply each source's B by its scaling and set the scaling to 1: B·A is then ΔW."""
    for layer in _lora_layers(model):
        for name in names:
            if name in layer.lora_B:
                layer.lora_B[name].weight.data *= layer.scaling[name]
            elif name in layer.lora_embedding_B:
                layer.lora_embedding_B[name].data *= layer.scaling[name]
            else:
                continue
            layer.scaling[name] = 1.0


def max_magnitude(stacked):
    """Per element, the entry of `stacked` (sources along dim 0) of the largest magnitude."""
    return stacked.gather(0, stacked.abs().argmax(dim=0, keepdim=True)).squeeze(0)


def _magnitude_max_layers(model, names: list[str], weights: list[float], rank: int) -> None:
    """Replace the merged adapter's A and B by the rank-`rank` SVD of the magnitude max."""
    import torch

    for layer in _lora_layers(model):
        if any(n in layer.lora_embedding_A for n in names):
            raise BadInput("magnitude_max merges linear LoRA layers only, not LoRA on embeddings")
        if "merged" not in layer.lora_A:
            continue
        deltas = torch.stack([w * layer.get_delta_weight(n) for n, w in zip(names, weights, strict=True)
                              if n in layer.lora_A])
        u, s, vh = torch.linalg.svd(max_magnitude(deltas), full_matrices=False)
        layer.lora_B["merged"].weight.data = (u[:, :rank] * s[:rank]).contiguous()
        layer.lora_A["merged"].weight.data = vh[:rank].contiguous()


def _combine_full(method: str, deltas: list, weights: list[float], density: float):
    """A whole module's deltas combined as the method combines LoRA deltas (no SVD: exact)."""
    import torch
    from peft.utils import merge_utils

    w = torch.tensor(weights, dtype=deltas[0].dtype)
    if method == "cat":
        return merge_utils.task_arithmetic(deltas, w)
    if method == "ties_svd":
        return merge_utils.ties(deltas, w, density)
    if method == "dare_ties_svd":
        return merge_utils.dare_ties(deltas, w, density)
    return max_magnitude(torch.stack([wi * d for wi, d in zip(weights, deltas, strict=True)]))


def _merged_rank(dirs: list[Path], model, rank: int | None) -> int:
    """`rank`, or the sum of the sources' ranks; never above the smallest adapted matrix side
    (there the SVD keeps everything: the merge is exact)."""
    ranks = []
    for d in dirs:
        cfg = json.loads((d / "adapter_config.json").read_text())
        ranks.append(max([cfg["r"], *(cfg.get("rank_pattern") or {}).values()]))
    side = min(min(layer.get_base_layer().weight.shape) for layer in _lora_layers(model))
    return min(rank or sum(ranks), side)


def merge_adapter_dirs(dirs: list[Path], base_model: str, weights: list[float], method: str, out: Path,
                       density: float = 0.5, rank: int | None = None, seed: int = 0) -> dict:
    """Write the delta merge of the adapters in `dirs` (all on `base_model`) into `out`, which
    must not exist (it appears whole or not at all). Returns what was done: method, PEFT's
    combination type, merged rank, density and seed where they matter."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    method, _ = delta_method(method)
    if len(weights) != len(dirs):
        raise BadInput(f"{len(weights)} weights for {len(dirs)} adapters")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.merge.", dir=out.parent))
    try:
        torch.manual_seed(seed)  # DARE drops at random
        fulls = [_strip_full_copies(Path(d), tmp / f"src{i}") for i, d in enumerate(dirs)]
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
        base = {k: v.detach().clone() for k, v in model.state_dict().items()}
        names = [f"v{i}" for i in range(len(dirs))]  # PEFT adapter names cannot hold dots
        model = PeftModel.from_pretrained(model, str(tmp / "src0"), adapter_name=names[0])
        for i, name in enumerate(names[1:], start=1):
            model.load_adapter(str(tmp / f"src{i}"), adapter_name=name)
        _fold_scaling(model, names)
        merged_rank = _merged_rank([Path(d) for d in dirs], model, rank)
        if method == "cat":
            model.add_weighted_adapter(names, weights, adapter_name="merged", combination_type="cat")
        else:
            model.add_weighted_adapter(names, weights, adapter_name="merged", density=density,
                                       combination_type="svd" if method == "magnitude_max" else method,
                                       svd_rank=merged_rank)
            if method == "magnitude_max":
                _magnitude_max_layers(model, names, weights, merged_rank)
        model.save_pretrained(str(tmp / "peft"), selected_adapters=["merged"])
        saved = tmp / "peft" / "merged"
        tensors = load_file(saved / "adapter_model.safetensors")
        for key in fulls[0]:  # whole module copies: base + the combination of their deltas
            ref = base[key.removeprefix(FULL_PREFIX)]
            deltas = [f[key].to(torch.float32) - ref for f in fulls]
            tensors[key] = (ref + _combine_full(method, deltas, weights, density)).to(fulls[0][key].dtype)
        cfg = json.loads((saved / "adapter_config.json").read_text())
        src_cfg = json.loads((Path(dirs[0]) / "adapter_config.json").read_text())
        cfg.update(modules_to_save=src_cfg.get("modules_to_save"), use_rslora=False, lora_alpha=cfg["r"])
        final = tmp / "final"
        final.mkdir()
        save_file(tensors, final / "adapter_model.safetensors")
        (final / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
            if (Path(dirs[0]) / name).is_file():
                shutil.copy(Path(dirs[0]) / name, final / name)
        os.replace(final, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info = {"method": method, "peft_combination": None if method == "magnitude_max" else method,
            "rank": cfg["r"], "weights": list(weights)}
    if method != "cat":
        info["density"] = density
    if method == "dare_ties_svd":
        info["seed"] = seed
    return info


def merge_adapters(sources: list[VersionRecord], weights: list[float], method: str, out: Path,
                   density: float = 0.5, rank: int | None = None) -> dict:
    """The delta merge of registered versions' adapters (one base model) into `out`."""
    if len({s.base_model for s in sources}) != 1:
        raise BadInput("adapters can only be merged when they share one base model: "
                       + ", ".join(f"{s.version} on {s.base_model}" for s in sources))
    method, _ = delta_method(method)
    with Bar(f"merging {len(sources)} adapters ({method})", 1, unit="merges") as bar:
        info = merge_adapter_dirs([Path(s.adapter_dir) for s in sources], sources[0].base_model, weights,
                                  method, out, density, rank)
        bar.update(1)
    return info


def merge_and_register(reg: RegistryStore, workspace: Path, model: str, versions: list[str], into: str,
                       method: str, weights: list[float] | None, density: float,
                       rank: int | None = None) -> VersionRecord:
    """Merge the adapters of `versions` into version `into`, with provenance, and register it."""
    if len(versions) < 2:
        raise BadInput("name at least two source versions to merge")
    weights = weights or [1.0 / len(versions)] * len(versions)
    if len(weights) != len(versions):
        raise BadInput(f"{len(weights)} weights for {len(versions)} sources")
    requested, (method, _) = method, delta_method(method)
    sources = [reg.require(model, v) for v in versions]
    run_dir = workspace / "runs" / f"{model}-{into}"
    if reg.get(model, into):
        raise BadInput(f"{model} {into} is already registered")
    shutil.rmtree(run_dir, ignore_errors=True)
    info = merge_adapters(sources, weights, method, run_dir / "adapter", density, rank)
    spec = {"model": model, "version": into, "strategy": "adapter_merge", "sources": versions, **info}
    if requested != method:
        spec["requested_method"] = requested
    rows = dedupe([r for s in sources for r in read_chat_jsonl(artifact_file(s, "data/new.jsonl"))])
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    (run_dir / "data" / "new.jsonl").write_bytes(jsonl_bytes(rows))
    (run_dir / "recipe.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    cfg = read_yaml(artifact_file(sources[0], "axolotl.yml"))
    cfg.update({"lora_model_dir": str(run_dir / "adapter"), "output_dir": str(run_dir / "adapter")})
    (run_dir / "axolotl.yml").write_text(yaml.safe_dump(cfg, sort_keys=True))
    manifest = {"model": model, "version": into, "strategy": "adapter_merge", "merge": spec,
                "inputs": [{"role": "adapter", "source": f"{model}:{s.version}",
                            "sha256": sha256_file(Path(s.adapter_dir) / "adapter_model.safetensors")} for s in sources],
                "outputs": {"data/new.jsonl": {"sha256": sha256_file(run_dir / "data" / "new.jsonl"), "rows": len(rows)},
                            "adapter/adapter_model.safetensors": {"sha256": sha256_file(run_dir / "adapter" / "adapter_model.safetensors")}}}
    (run_dir / "manifest.json").write_text(dump_json(manifest))
    return reg.register(VersionRecord(
        model=model, version=into, parent=versions[0], parents=tuple(versions), strategy="adapter_merge",
        base_model=sources[0].base_model, recipe_sha256=sha256_file(run_dir / "recipe.yml"),
        data_sha256=manifest["outputs"]["data/new.jsonl"]["sha256"], run_dir=str(run_dir),
        adapter_dir=str(run_dir / "adapter"), metrics={"merge_method": method}, train_seconds=0.0))
