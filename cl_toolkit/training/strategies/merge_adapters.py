"""merge_adapters: a fresh LoRA trained on the new quarter (plus any rehearsal, through the
normal render and train), then merged with the parent's adapter on their weight deltas
(training/adapter_merge.py: `merge.method`, cat by default). The weight w of the fresh
adapter (the parent's gets 1 - w) is chosen from the grid `merge.weights`: each candidate
is scored on a held-out slice of the new rows (never trained on) and on the parent's suites,
and the best wins (the first of equals, in grid order). The merged adapter is the version.

Nothing of the old training data needs to be replayed: the parent's knowledge comes back
through its adapter's delta."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import (
    atomic_write_bytes,
    atomic_write_json,
    jsonl_bytes,
    publish_dir,
    sha256_file,
)
from cl_toolkit.core.workspace import portable_path, relative_inside, resolve_path
from cl_toolkit.core.yamlio import display
from cl_toolkit.recipe.model import LoadedRecipe, recipe_schema, thaw
from cl_toolkit.registry import RegistryStore
from cl_toolkit.training.adapter_merge import merge_adapter_dirs
from cl_toolkit.training.chat_rows import dedupe, read_chat_jsonl
from cl_toolkit.training.profiles import Profile
from cl_toolkit.training.strategies.interface import (
    CHAT_DATASET,
    Plan,
    ScaffoldDefaults,
    Scorer,
    Strategy,
)

HOLDOUT = "holdout"  # the held-out slice's name among the scored suites
FRESH = "fresh_adapter"  # where the trained adapter goes once the merge takes run_dir/adapter


def settings(lr: LoadedRecipe) -> dict:
    """The recipe's `merge:` block (the schema's defaults filled in by validation)."""
    return thaw(lr.recipe.merge) if lr.recipe.merge is not None else {}


def _canon(row: dict) -> str:
    return json.dumps(row, sort_keys=True, ensure_ascii=False)


def holdout_rows(new_rows: list[dict], share: float, seed: int) -> list[dict]:
    """The held-out slice: round(share · N) of the distinct new rows (at least one), drawn with `seed`."""
    rows = dedupe(new_rows)
    n = min(len(rows) - 1, max(1, round(share * len(rows))))
    if n < 1:
        raise BadInput(f"merge_adapters holds out part of the new data to choose the merge weight: "
                       f"{len(rows)} distinct new row(s) is too few")
    picked = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in picked]


def holdout_cases(rows: list[dict]) -> list[dict]:
    """The held-out rows as suite cases: the last user turn asks, the last answer is expected."""
    def last(row, role):
        return next(m["content"] for m in reversed(row["messages"]) if m["role"] == role)
    return [{"id": f"holdout-{i:03d}", "input": last(r, "user"), "expected": last(r, "assistant"),
             "match": "contains", "criticality": "medium", "domain": HOLDOUT, "tags": [HOLDOUT]}
            for i, r in enumerate(rows, 1)]


def parent_suites(lr: LoadedRecipe) -> dict[str, Path]:
    """The gate suites named in `merge.suites`, or by default every one whose role is not
    `learning` (what the parent knew): {name: path}."""
    gate = thaw(lr.recipe.gate) if lr.recipe.gate else {}
    suites = {name: ({"path": e} if isinstance(e, str) else e) for name, e in (gate.get("suites") or {}).items()}
    if gate.get("suite") and "regression" not in suites:
        suites["regression"] = {"path": gate["suite"]}
    wanted = settings(lr).get("suites")
    if wanted is None:
        wanted = [n for n, e in suites.items() if e.get("role", "regression") != "learning"]
    unknown = [n for n in wanted if n not in suites]
    if unknown:
        raise BadInput([Problem(display(lr.source), f"{', '.join(unknown)} not in gate.suites "
                                f"(known: {', '.join(suites) or 'none'})", key="merge.suites")])
    return {n: resolve_path(suites[n]["path"], lr.root, lr.workspace) for n in wanted}


def _new_rows(lr: LoadedRecipe) -> list[dict]:
    return [r for src in lr.recipe.data.train
            for r in read_chat_jsonl(resolve_path(src["path"], lr.root, lr.workspace), src.get("max_rows"))]


def _parent_adapter(lr: LoadedRecipe, registry: RegistryStore):
    parent = registry.require(lr.recipe.model, lr.recipe.parent)
    if not parent.adapter_dir or not (Path(parent.adapter_dir) / "adapter_config.json").is_file():
        raise BadInput(f"{lr.recipe.model} {parent.version} has no LoRA adapter to merge with")
    return parent


def plan(lr: LoadedRecipe, registry: RegistryStore, profile: Profile, rows: list[dict]) -> Plan:
    """A fresh LoRA on the parent's base (its modules trained whole, too), trained on the mix
    less the held-out slice."""
    parent = _parent_adapter(lr, registry)
    parent_suites(lr)  # a wrong suite name stops the render, not the finish after training
    held = {_canon(r) for r in holdout_rows(_new_rows(lr), settings(lr)["holdout"], lr.recipe.data.seed)}
    keys = {"base_model": parent.base_model}
    adapter_cfg = json.loads((Path(parent.adapter_dir) / "adapter_config.json").read_text())
    if adapter_cfg.get("modules_to_save"):
        keys["lora_modules_to_save"] = list(adapter_cfg["modules_to_save"])
    return Plan(keys, CHAT_DATASET, [r for r in rows if _canon(r) not in held])


def choose(grid: list[dict]) -> dict:
    """The grid entry of the highest score; the first of equals (grid order)."""
    return max(grid, key=lambda g: g["score"])  # max keeps the first of equal keys


def combined_score(scores: dict[str, float]) -> float:
    """The held-out accuracy and the parent suites' mean accuracy, weighted equally."""
    old = [v for k, v in scores.items() if k != HOLDOUT]
    return round((scores[HOLDOUT] + sum(old) / len(old)) / 2 if old else scores[HOLDOUT], 6)


def finish(lr: LoadedRecipe, registry: RegistryStore, run_dir: Path, scorer: Scorer) -> dict:
    """Move the trained adapter to run_dir/fresh_adapter, score a merge per grid weight, keep
    the best as run_dir/adapter and record everything in the manifest's `merge`."""
    m, parent, seed = settings(lr), _parent_adapter(lr, registry), lr.recipe.data.seed
    fresh = run_dir / FRESH
    if (run_dir / "adapter" / "adapter_model.safetensors").is_file():
        publish_dir(run_dir / "adapter", fresh)  # right after training: the new fresh adapter
    held = holdout_rows(read_chat_jsonl(run_dir / "data" / "new.jsonl"), m["holdout"], seed)
    atomic_write_bytes(run_dir / "data" / "holdout.jsonl", jsonl_bytes(holdout_cases(held)))
    suites = {HOLDOUT: run_dir / "data" / "holdout.jsonl", **parent_suites(lr)}
    scratch = Path(tempfile.mkdtemp(prefix=".merge-grid.", dir=run_dir))
    try:
        grid = []
        for i, w in enumerate(m["weights"]):
            out = scratch / f"w{i}"
            info = merge_adapter_dirs([fresh, Path(parent.adapter_dir)], parent.base_model, [w, round(1 - w, 12)],
                                      m["method"], out, m["density"], seed=seed)
            scores = scorer(parent.base_model, out, suites)
            grid.append({"weight": w, "scores": scores, "score": combined_score(scores), "dir": out})
        best = choose(grid)
        publish_dir(best["dir"], run_dir / "adapter")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    block = _manifest_block(lr, run_dir, parent, info, grid, best, len(held), suites)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["merge"] = block
    manifest["outputs"]["data/holdout.jsonl"] = {"sha256": sha256_file(suites[HOLDOUT]), "rows": len(held)}
    manifest["outputs"][f"{FRESH}/adapter_model.safetensors"] = {"sha256": block["fresh"]["sha256"]}
    manifest["outputs"]["adapter/adapter_model.safetensors"] = {"sha256": block["merged_sha256"]}
    atomic_write_json(run_dir / "manifest.json", manifest)
    return {"merge_method": block["method"], "merge_weight": best["weight"], "merge_score": best["score"]}


def _manifest_block(lr, run_dir, parent, info, grid, best, n_held, suites) -> dict:
    def rel(p):
        return relative_inside(str(p), lr.workspace)
    return {
        "fresh": {"path": rel(run_dir / FRESH), "sha256": sha256_file(run_dir / FRESH / "adapter_model.safetensors")},
        "parent": {"version": parent.version, "path": rel(parent.adapter_dir),
                   "sha256": sha256_file(Path(parent.adapter_dir) / "adapter_model.safetensors")},
        "method": info["method"], "rank": info["rank"], **({"density": info["density"]} if "density" in info else {}),
        "weight": best["weight"], "parent_weight": round(1 - best["weight"], 12), "score": best["score"],
        "grid": [{k: g[k] for k in ("weight", "scores", "score")} for g in grid],
        "selection": {"holdout_rows": n_held,
                      "suites": {n: portable_path(p, lr.root, lr.workspace) for n, p in suites.items()},
                      "score": "mean of the held-out accuracy and the parent suites' mean accuracy; "
                               "the first of equal scores in grid order"},
        "merged_sha256": sha256_file(run_dir / "adapter" / "adapter_model.safetensors"),
    }


def scaffold(source: dict) -> ScaffoldDefaults:
    """A fresh adapter learns the quarter from scratch (a LoRA-sized rate, a few epochs), with a
    small rehearsal; the merge block with the schema's defaults."""
    props = recipe_schema()["properties"]["merge"]["properties"]
    block = {k: v["default"] for k, v in props.items() if "default" in v}
    return ScaffoldDefaults(rehearsal_ratio=0.1, train={"learning_rate": 2.0e-4, "num_epochs": 3},
                            blocks={"merge": block})


STRATEGY = Strategy(about="a fresh LoRA on the new data merged with the parent's adapter on their deltas, "
                          "the weight chosen on held-out new data and the parent's suites",
                    plan=plan, scaffold=scaffold, finish=finish,
                    rules={"properties": {"parent": {"type": "string"}}, "required": ["merge"]})
