"""One quarter's update, as resumable steps: validate → data → render → train → register →
evaluate → gate → release → analyze → report.

Each step writes its artifact and then a completion stamp, `workspace/cycles/<run>/<step>.json`,
holding the hashes of its inputs. A rerun skips every step whose stamp matches its current
inputs, and reruns from the first step whose inputs changed (`--from STEP` forces it).
Ctrl-C or a crash leaves the stamps of the finished steps, so the next run resumes.

The version is registered right after training (only a finished run registers) and before
the gate, because evaluation and the gate read versions from the registry; a blocked
version is then archived as rejected, with the gate report, and never gets an alias.
Evaluation and the gate also rerun when the bytes of any of the gate's named suites, the
gate policy or the evaluation settings change, not only the adapter. Paths in the stamps are relative
to the workspace, so a moved workspace resumes where it stopped.

Every step that runs is timed: its seconds split into the Axolotl training process, the
generation of evaluation answers, and the rest, the toolkit's own overhead (printed per step,
kept in the stamp's `timing`). The release status returned is the registry's now, not the
stamp's: a promotion or rollback between runs shows.
This module only sequences; the work lives in render, train, evaluation and registry."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_write_json, jsonl_bytes, sha256_bytes, sha256_file
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.core.workspace import relative_inside, resolve_path
from cl_toolkit.evaluation.candidate import adapter_scorer
from cl_toolkit.evaluation.evaluate import EvalSettings
from cl_toolkit.evaluation.gate import default_policy, recipe_suites, suite_problems
from cl_toolkit.pipeline.cycle_summary import overhead, step_timing, timing_text
from cl_toolkit.recipe.model import LoadedRecipe, thaw
from cl_toolkit.registry import VersionRecord, open_registry
from cl_toolkit.training.launch import Topology
from cl_toolkit.training.mix import Mix, build_mix
from cl_toolkit.training.train import (
    finish_run,
    launch,
    launch_plan,
    load_rendered,
    prepare,
    refuse_registered,
    register_run,
    run_dir_for,
)

STEPS = ("validate", "data", "render", "train", "register", "evaluate", "gate", "release", "analyze", "report")


@dataclass
class Context:
    lr: LoadedRecipe
    say: Callable[[str], None]
    outputs: dict = field(default_factory=dict)  # step -> its outputs (from the stamp or the run)
    mix: Mix | None = None  # built once for the data step's input hash, reused when the step runs
    topology: Topology | None = None  # clt cycle --nproc/--nnodes/...: the same launch as clt train
    eval_settings: EvalSettings = field(default_factory=EvalSettings)  # evaluate and gate alike
    waited: dict = field(default_factory=dict)  # the running step's seconds in axolotl / generation
    until: str | None = None  # the last step this run takes

    @property
    def run_dir(self) -> Path:
        return run_dir_for(self.lr)

    @property
    def stamps(self) -> Path:
        return cycle_dir(self.lr)

    def rel(self, path: str | Path | None) -> str | None:
        """A path as the stamps keep it: relative to the workspace (when inside it)."""
        return None if path is None else relative_inside(str(path), self.lr.workspace)

    def suites(self) -> dict:
        """The gate's named suites, {name: {"path": Path, "role": str}} (empty without a gate)."""
        return recipe_suites(self.lr)

    def record(self) -> VersionRecord | None:
        with open_registry(self.lr.workspace) as reg:
            return reg.get(self.lr.recipe.model, self.lr.recipe.version)


def cycle_dir(lr: LoadedRecipe) -> Path:
    """The folder of the stamps of `lr`'s cycle."""
    return lr.workspace / "cycles" / lr.recipe.run_name


def stamp_path(lr: LoadedRecipe, step: str) -> Path:
    """Where the cycle of `lr` keeps the completion stamp of `step`."""
    return cycle_dir(lr) / f"{step}.json"


def _sha_json(obj) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True).encode())


# ---- inputs of each step: what, if changed, makes it run again -------------------------

def _training_recipe(c: Context) -> str:
    """The recipe as training sees it: every resolved key but `gate:`, whose edits rerun only
    the gate (the version is immutable once trained; its gate policy is not)."""
    return _sha_json({k: v for k, v in thaw(c.lr.raw).items() if k != "gate"})


def _in_validate(c: Context) -> dict:
    return {"recipe": _training_recipe(c)}


def _in_data(c: Context) -> dict:
    return {"recipe": _training_recipe(c), "mix": _data_hash(c)}  # reading the sources again is cheap


def _in_render(c: Context) -> dict:
    profile = resolve_path(c.lr.recipe.profile, c.lr.root, c.lr.workspace)
    return {"mix": c.outputs["data"]["sha256"], "profile": sha256_file(profile), "recipe": _training_recipe(c)}


def _in_train(c: Context) -> dict:
    return {"config": c.outputs["render"]["axolotl.yml"], "data": c.outputs["render"]["train.jsonl"]}


def _in_after_train(c: Context) -> dict:
    return {"adapter": c.outputs["train"]["adapter"]}


def _in_evaluate(c: Context) -> dict:
    """The adapter, every suite's bytes (and role) and how answers are produced: each
    changes a score or what it is compared with."""
    return {"adapter": c.outputs["train"]["adapter"],
            "suites": {name: {"sha256": sha256_file(s["path"]), "role": s["role"]} for name, s in c.suites().items()},
            "settings": c.eval_settings.key(None)}


def _in_gate(c: Context) -> dict:
    """What evaluate saw, its results, and the policy with its defaults resolved (a new
    default in the toolkit reruns the gate as surely as an edited recipe)."""
    gate = c.lr.recipe.gate
    return {**_in_evaluate(c), "evaluations": c.outputs["evaluate"],
            "policy": default_policy(thaw(gate)) if gate else None}


def _in_release(c: Context) -> dict:
    return {"gate": c.outputs["gate"]}


def _in_analyze(c: Context) -> dict:
    """What was released and the evaluations the analysis reads (feedback that arrives later:
    `--from analyze`, or `clt analyze`)."""
    return {"release": c.outputs["release"], "evaluations": c.outputs["evaluate"]}


def _in_report(c: Context) -> dict:
    return {"release": c.outputs["release"], "analyze": c.outputs["analyze"]}


# ---- the steps --------------------------------------------------------------------------

def _validate(c: Context) -> dict:
    problems = suite_problems(c.suites())  # a bad suite is refused before any training, not after
    if problems:
        raise BadInput(problems)
    return {"model": c.lr.recipe.model, "version": c.lr.recipe.version, "strategy": c.lr.recipe.strategy}


def _data(c: Context) -> dict:
    mix = c.mix or _build_mix(c)
    summary = {"sha256": sha256_bytes(jsonl_bytes(mix.rows)), "rows": len(mix.rows), "counts": mix.counts,
               "inputs": mix.inputs}
    atomic_write_json(c.stamps / "mix.json", summary)
    epochs = mix.counts.get("epochs", 1)  # resample: per_epoch writes every epoch
    c.say(f"  {summary['rows']} rows: {mix.counts['new']} new, {summary['rows'] - epochs * mix.counts['new']} other"
          + (f", {epochs} epochs written out" if "epochs" in mix.counts else ""))
    return {"sha256": summary["sha256"], "rows": summary["rows"]}


def _render(c: Context) -> dict:
    with open_registry(c.lr.workspace) as reg:
        # Axolotl's check runs beside the training process's start, unless nothing trains next
        rendered = prepare(c.lr, reg, c.topology, check_now=c.until == "render")
    if rendered.check == "deferred":
        c.say("  Axolotl's check: beside the training process's start (train step)")
    out = rendered.manifest["outputs"]
    return {"axolotl.yml": out["axolotl.yml"]["sha256"], "train.jsonl": out["data/train.jsonl"]["sha256"]}


def _train(c: Context) -> dict:
    with open_registry(c.lr.workspace) as reg:
        refuse_registered(c.lr, reg)
    rendered = load_rendered(c.lr)
    outcome = launch(rendered, launch_plan(rendered, c.topology), c.lr.workspace, c.topology)  # draws its bar
    c.waited["axolotl"] = outcome["train_seconds"]  # the whole training process, imports included
    if c.topology is not None and c.topology.node_rank != 0:  # node 0 holds the adapter
        return {"node_rank": c.topology.node_rank, "seconds": outcome["train_seconds"]}
    with open_registry(c.lr.workspace) as reg:  # the strategy's step after training (merge_adapters merges)
        outcome = finish_run(c.lr, reg, c.run_dir, outcome, adapter_scorer(c.eval_settings))
    atomic_write_json(c.stamps / "train_outcome.json", outcome)
    return {"adapter": sha256_file(c.run_dir / "adapter" / "adapter_model.safetensors"),
            "seconds": outcome["train_seconds"]}


def _register(c: Context) -> dict:
    rec = c.record()
    if rec is None:
        outcome = json.loads((c.stamps / "train_outcome.json").read_text())
        with open_registry(c.lr.workspace) as reg:
            rec = register_run(c.lr, reg, c.run_dir, outcome)
    return {"version": rec.version, "adapter_dir": c.rel(rec.adapter_dir)}


def _evaluate(c: Context) -> dict:
    """The parent and the new version (and the champion, when another) on every named suite;
    each score goes to the registry's accuracy matrix."""
    from cl_toolkit.evaluation.gate import load_named
    from cl_toolkit.evaluation.matrix import evaluate_suites

    if not c.lr.recipe.gate:
        return {"skipped": "the recipe names no gate suite"}
    suites = load_named(c.suites())
    out = {}
    with open_registry(c.lr.workspace) as reg:
        champion = reg.alias(c.lr.recipe.model, "champion")
        versions = list(dict.fromkeys(v for v in (champion, c.lr.recipe.parent, c.lr.recipe.version) if v))
        recs = [reg.require(c.lr.recipe.model, v) for v in versions]
    for rec in recs:
        results = evaluate_suites(c.lr.workspace, rec, suites, c.eval_settings)
        c.waited["generation"] = c.waited.get("generation", 0.0) + sum(
            r["performance"]["seconds"] for r in results.values() if not r["cached"])
        c.say(f"  {rec.version}: " + ", ".join(f"{name} {r['accuracy']:.1%} ({r['total']})"
                                               for name, r in results.items()))
        out[rec.version] = {name: {"accuracy": r["accuracy"], "cache": c.rel(r["cache_path"])}
                            for name, r in results.items()}
    return out


def _gate(c: Context) -> dict:
    from cl_toolkit.evaluation.gate import run_gate

    if not c.lr.recipe.parent or not c.lr.recipe.gate:
        return {"passed": True, "skipped": "no parent to compare with" if not c.lr.recipe.parent else "no suite"}
    started = time.time()
    result = run_gate(c.lr.workspace, c.lr.recipe.model, c.lr.recipe.version, c.lr.recipe.parent,
                      settings=c.eval_settings, policy=default_policy(thaw(c.lr.recipe.gate)), suites=c.suites())
    c.waited["generation"] = _generated_since(c, result["evaluations"]["suites"], started)
    c.say(f"  gate {'passed' if result['passed'] else 'BLOCKED'}: "
          + ("; ".join(result["reasons"]) if result["reasons"] else "no blocking regression"))
    return {"passed": result["passed"], "reasons": result["reasons"], "report": c.rel(c.run_dir / "gate.md"),
            "suites": {v["suite"]: v["passed"] for v in result["suites"]},
            "rules": sum(len(v["rules"]) for v in result["suites"])}


def _generated_since(c: Context, caches: dict, started: float) -> float:
    """Seconds of generation behind the evaluations written since `started` (the gate answers
    anew only what evaluate did not cache, such as k samples a case)."""
    seconds = 0.0
    for path in {p for by_version in caches.values() for p in by_version.values() if p}:
        full = c.lr.workspace / path
        if full.is_file() and full.stat().st_mtime >= started:
            seconds += json.loads(full.read_text(encoding="utf-8"))["performance"]["seconds"]
    return seconds


def _release(c: Context) -> dict:
    from cl_toolkit.registry.lifecycle import archive, promote

    model, version, gate = c.lr.recipe.model, c.lr.recipe.version, c.outputs["gate"]
    with open_registry(c.lr.workspace) as reg:
        if not gate["passed"]:
            archive(reg, model, version, reason="rejected by the gate: " + "; ".join(gate.get("reasons", [])),
                    who="clt cycle")
            return {"status": "rejected"}
        held = [alias for alias, v in reg.aliases(model).items() if v == version]
        if held:  # a rerun (say, after a suite edit) that passed again: the version keeps its alias
            return {"status": held[0]}
        to = "champion" if not reg.aliases(model).get("champion") else "challenger"
        promote(reg, model, version, to=to, reason="clt cycle: gate passed" if "skipped" not in gate
                else f"clt cycle: first version ({gate['skipped']})", who="clt cycle")
    return {"status": to}


def _analyze(c: Context) -> dict:
    """`clt analyze` of the version just released (of the champion when the gate rejected
    it): plan.json and plan.md in the workspace. Advisory: what cannot be analysed is said,
    and the cycle goes on to the report."""
    from cl_toolkit.pipeline.plan import write_plan

    model = c.lr.recipe.model
    released = c.outputs["release"].get("status") in ("champion", "challenger")
    with open_registry(c.lr.workspace) as reg:
        version = c.lr.recipe.version if released else reg.alias(model, "champion")
    if version is None:
        return {"skipped": "no released version to analyse"}
    try:
        result = write_plan(c.lr.workspace, model, version, root=c.lr.root)
    except BadInput as e:
        c.say(f"  analysis skipped: {e}")
        return {"skipped": str(e)}
    top = result["plan"]["analysis"]["domains"][:3]
    c.say(f"  analysis of {version}: " + (", ".join(f"{d['domain']} (priority {d['priority']})" for d in top)
                                          or "no domain") + f"; plan {c.rel(result['paths']['plan.md'])}")
    return {"version": version, "plan": c.rel(result["paths"]["plan.json"]), "sha256": result["sha256"],
            "plan_md": c.rel(result["paths"]["plan.md"]), "weak_domains": result["plan"]["weak_domains"]}


def _report(c: Context) -> dict:
    from cl_toolkit.pipeline.quarterly_report import write_report

    paths = write_report(c.lr.workspace, c.lr.recipe.model, html=True)
    return {k: c.rel(v) for k, v in paths.items()}


STEP_FUNCS = {
    "validate": (_in_validate, _validate), "data": (_in_data, _data), "render": (_in_render, _render),
    "train": (_in_train, _train), "register": (_in_after_train, _register),
    "evaluate": (_in_evaluate, _evaluate), "gate": (_in_gate, _gate), "release": (_in_release, _release),
    "analyze": (_in_analyze, _analyze), "report": (_in_report, _report),
}


def _stamp(c: Context, step: str) -> dict | None:
    path = c.stamps / f"{step}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def last_step(until: str | None, topology: Topology | None) -> str | None:
    """Where this node's cycle ends: nodes other than 0 only train (node 0 holds the adapter
    and registers, evaluates, gates and releases it)."""
    if topology is None or topology.node_rank == 0:
        return until
    if until is None or STEPS.index(until) > STEPS.index("train"):
        return "train"
    return until


def run_cycle(lr: LoadedRecipe, *, from_step: str | None = None, until: str | None = None,
              say: Callable[[str], None] = print, topology: Topology | None = None,
              eval_settings: EvalSettings | None = None) -> dict:
    """Run (or resume) the cycle of one recipe, up to `until` (default: all); returns every
    step's outputs (paths relative to the workspace), what ran, each ran step's timing, the
    whole run's (`overhead`), the release status the registry holds now (None when stopped
    before release) and the one the release gave (`released_as`)."""
    for name, value in (("--from", from_step), ("--until", until)):
        if value and value not in STEPS:
            raise BadInput(f"{name} must be one of {', '.join(STEPS)}")
    until = last_step(until, topology)
    c = Context(lr, say, topology=topology, eval_settings=eval_settings or EvalSettings(), until=until)
    ran, dirty = [], False
    c.stamps.mkdir(parents=True, exist_ok=True)
    begun, timings = time.monotonic(), {}
    for step in STEPS:
        inputs_of, run = STEP_FUNCS[step]
        inputs = inputs_of(c)
        stamp = _stamp(c, step)
        dirty = dirty or step == from_step or stamp is None or stamp["inputs"] != inputs
        if not dirty:
            c.outputs[step] = stamp["outputs"]
            say(f"= {step}: done before, inputs unchanged" + (_now_holds(c) if step == "release" else ""))
            if step == until:
                break
            continue
        say(f"> {step}")
        (c.stamps / f"{step}.json").unlink(missing_ok=True)
        c.waited, start = {}, time.monotonic()
        c.outputs[step] = run(c)
        timings[step] = step_timing(time.monotonic() - start, c.waited)
        say("  " + timing_text(step, timings[step]))
        atomic_write_json(c.stamps / f"{step}.json", {"step": step, "inputs": inputs, "outputs": c.outputs[step],
                                                       "seconds": timings[step]["seconds"],
                                                       "timing": timings[step], "finished_at": utc_now()})
        ran.append(step)
        if step == until:
            break
    released = c.outputs.get("release", {}).get("status")
    status, aliases = registry_now(c) if released else (None, {})
    return {"ran": ran, "outputs": c.outputs, "status": status, "released_as": released, "aliases": aliases,
            "next_step": next((s for s in STEPS if s not in c.outputs), None),
            "timings": timings, "overhead": overhead(time.monotonic() - begun, timings)}


# ---- what the registry holds now --------------------------------------------------------

def registry_now(c: Context) -> tuple[str, dict]:
    """The version's release status as the registry holds it now, and the line's aliases.
    The status is the alias the version holds; `rejected` or `archived` when archived;
    `active` when it holds none (a promotion or rollback since its release moved it)."""
    model, version = c.lr.recipe.model, c.lr.recipe.version
    with open_registry(c.lr.workspace) as reg:
        rec, aliases = reg.get(model, version), reg.aliases(model)
    held = [alias for alias, v in sorted(aliases.items()) if v == version]
    if held:
        return held[0], aliases
    if rec is None or rec.status == "archived":
        return ("rejected" if c.outputs.get("release", {}).get("status") == "rejected" else "archived"), aliases
    return "active", aliases


def _now_holds(c: Context) -> str:
    released, now, version = c.outputs["release"].get("status"), registry_now(c)[0], c.lr.recipe.version
    holds = f"{version} holds no alias now" if now == "active" else f"{version} is {now} now"
    return f" ({holds}" + (f", released as {released})" if now != released else ")")


def _build_mix(c: Context) -> Mix:
    with open_registry(c.lr.workspace) as reg:
        c.mix = build_mix(c.lr, reg)
    return c.mix


def _data_hash(c: Context) -> str:
    return sha256_bytes(jsonl_bytes(_build_mix(c).rows))
