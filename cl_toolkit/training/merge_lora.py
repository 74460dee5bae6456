"""Merge a version's LoRA adapter into its base with Axolotl's own merge (`axolotl.cli.merge_lora`),
cached under workspace/models/merged/<hash of base + adapter>/ and reused when present."""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from cl_toolkit.core.errors import BadInput, CltError
from cl_toolkit.core.files import publish_dir, sha256_file
from cl_toolkit.core.yamlio import read_yaml
from cl_toolkit.registry import VersionRecord, artifact_file
from cl_toolkit.training.launch import run_training

_WEIGHT_FILES = ("config.json", "model.safetensors", "adapter_config.json", "adapter_model.safetensors",
                 "tokenizer.json", "tokenizer_config.json")


def _dir_fingerprint(path: str) -> str:
    p = Path(path)
    if not p.is_dir():  # a hub id: its name is all we can hash offline
        return hashlib.sha256(path.encode()).hexdigest()
    files = sorted(f for f in p.rglob("*") if f.is_file() and (f.name in _WEIGHT_FILES or f.suffix == ".safetensors"))
    return hashlib.sha256("".join(f"{f.relative_to(p)}:{sha256_file(f)}\n" for f in files).encode()).hexdigest()


def merge_key(base_model: str, adapter_dir: str) -> str:
    """The cache key of a merge: the hash of the base's and the adapter's files."""
    return hashlib.sha256((_dir_fingerprint(base_model) + _dir_fingerprint(adapter_dir)).encode()).hexdigest()[:24]


def merge_config(parent_config: dict, rec: VersionRecord, out_dir: Path) -> dict:
    """The parent's own rendered config, pointed at its adapter and a scratch output folder."""
    cfg = {k: v for k, v in parent_config.items() if k not in ("plugins",) and not k.startswith(("kd_", "anchor_"))}
    cfg.update({"base_model": rec.base_model, "lora_model_dir": rec.adapter_dir, "output_dir": str(out_dir),
                "dataset_prepared_path": str(out_dir / "prepared")})
    return cfg


def merged_base(rec: VersionRecord, workspace: Path) -> tuple[Path, bool]:
    """The merged model of `rec` (base + adapter). Returns (path, True if it was built now)."""
    if not rec.adapter_dir:
        raise BadInput(f"{rec.model} {rec.version} has no adapter to merge")
    cache = workspace / "models" / "merged" / merge_key(rec.base_model, rec.adapter_dir)
    if (cache / "config.json").is_file() and (cache / "model.safetensors").is_file():
        return cache, False
    parent_cfg = read_yaml(artifact_file(rec, "axolotl.yml"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".merge.", dir=cache.parent))
    try:
        cfg_path = scratch / "merge.yml"
        cfg_path.write_text(yaml.safe_dump(merge_config(parent_cfg, rec, scratch)))
        # the log stays beside the cache (the scratch folder goes): provenance, and the tail on failure
        run_training([sys.executable, "-m", "axolotl.cli.merge_lora", str(cfg_path)], scratch, workspace,
                     lambda info: None, log_dir=cache.parent / "logs", log_name=f"{cache.name}.log",
                     label=f"merging {rec.model} {rec.version} into its base", what=f"axolotl merge-lora of {rec.model} {rec.version}")
        if not (scratch / "merged" / "config.json").is_file():
            raise CltError(f"axolotl merge-lora of {rec.model} {rec.version} exited 0 but wrote no merged model; "
                           f"log: {cache.parent / 'logs' / f'{cache.name}.log'}")
        shutil.copy(cfg_path, scratch / "merged" / "merge.yml")
        publish_dir(scratch / "merged", cache)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return cache, True
