"""Merge several LoRA adapters of one model line into one (PEFT `add_weighted_adapter`:
linear, ties, dare_ties) and register it as a version whose parents are all the sources.

PEFT refuses to combine adapters that keep full copies of a module (`modules_to_save`,
our tiny profile's lm_head). We combine the LoRA layers with PEFT and those full copies
ourselves, as the weighted average of the sources' copies, then save one adapter that
loads like any trained one."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import yaml

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import dump_json, jsonl_bytes, sha256_file
from cl_toolkit.core.progress import Bar
from cl_toolkit.core.yamlio import read_yaml
from cl_toolkit.registry import RegistryStore, VersionRecord, artifact_file
from cl_toolkit.training.mix import dedupe, read_chat_jsonl

METHODS = ("linear", "ties", "dare_ties")


def _strip_full_copies(src: Path, dst: Path) -> dict:
    """Copy an adapter without its modules_to_save; return those tensors by module name."""
    from safetensors.torch import load_file, save_file

    cfg = json.loads((src / "adapter_config.json").read_text())
    tensors = load_file(src / "adapter_model.safetensors")
    saved = tuple(cfg.get("modules_to_save") or ())
    full = {k: v for k, v in tensors.items() if any(f".{m}." in k or k.endswith(f".{m}.weight") for m in saved)}
    dst.mkdir(parents=True)
    save_file({k: v for k, v in tensors.items() if k not in full}, dst / "adapter_model.safetensors")
    (dst / "adapter_config.json").write_text(json.dumps({**cfg, "modules_to_save": None}))
    return full


def merge_adapters(sources: list[VersionRecord], weights: list[float], method: str, out: Path,
                   density: float = 0.5) -> None:
    """Write the combined adapter of `sources` into `out` (which must not exist)."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    if method not in METHODS:
        raise BadInput(f"--method must be one of {', '.join(METHODS)}")
    if len({s.base_model for s in sources}) != 1:
        raise BadInput("adapters can only be merged when they share one base model: "
                       + ", ".join(f"{s.version} on {s.base_model}" for s in sources))
    with tempfile.TemporaryDirectory() as tmp, Bar(f"merging {len(sources)} adapters ({method})",
                                                   len(sources) + 2, unit="steps") as bar:
        bar.update(0, phase="loading the base model")
        fulls = [_strip_full_copies(Path(s.adapter_dir), Path(tmp) / s.version) for s in sources]
        model = AutoModelForCausalLM.from_pretrained(sources[0].base_model, dtype=torch.float32)
        names = [f"v{i}" for i in range(len(sources))]  # PEFT adapter names cannot hold dots
        bar.update(1, phase=f"loading adapter {sources[0].version}")
        model = PeftModel.from_pretrained(model, str(Path(tmp) / sources[0].version), adapter_name=names[0])
        for i, (name, s) in enumerate(zip(names[1:], sources[1:], strict=True), start=2):
            bar.update(i, phase=f"loading adapter {s.version}")
            model.load_adapter(str(Path(tmp) / s.version), adapter_name=name)
        bar.update(len(sources) + 1, phase="combining and saving")
        extra = {} if method == "linear" else {"density": density}
        model.add_weighted_adapter(names, weights, adapter_name="merged", combination_type=method, **extra)
        model.save_pretrained(str(Path(tmp) / "out"), selected_adapters=["merged"])
        saved = Path(tmp) / "out" / "merged"
        tensors = load_file(saved / "adapter_model.safetensors")
        total = sum(weights)
        for key in fulls[0]:  # full module copies: the weighted average
            tensors[key] = sum(w * f[key] for w, f in zip(weights, fulls, strict=True)) / total
        cfg = json.loads((saved / "adapter_config.json").read_text())
        src_cfg = json.loads((Path(sources[0].adapter_dir) / "adapter_config.json").read_text())
        cfg["modules_to_save"] = src_cfg.get("modules_to_save")
        out.mkdir(parents=True)
        save_file(tensors, out / "adapter_model.safetensors")
        (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            if (Path(sources[0].adapter_dir) / name).is_file():
                shutil.copy(Path(sources[0].adapter_dir) / name, out / name)


def merge_and_register(reg: RegistryStore, workspace: Path, model: str, versions: list[str], into: str,
                       method: str, weights: list[float] | None, density: float) -> VersionRecord:
    """Merge the adapters of `versions` into version `into`, with provenance, and register it."""
    if len(versions) < 2:
        raise BadInput("name at least two source versions to merge")
    weights = weights or [1.0 / len(versions)] * len(versions)
    if len(weights) != len(versions):
        raise BadInput(f"{len(weights)} weights for {len(versions)} sources")
    sources = [reg.require(model, v) for v in versions]
    run_dir = workspace / "runs" / f"{model}-{into}"
    if reg.get(model, into):
        raise BadInput(f"{model} {into} is already registered")
    shutil.rmtree(run_dir, ignore_errors=True)
    merge_adapters(sources, weights, method, run_dir / "adapter", density)
    spec = {"model": model, "version": into, "strategy": "adapter_merge", "sources": versions,
            "method": method, "weights": weights, "density": density if method != "linear" else None}
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
