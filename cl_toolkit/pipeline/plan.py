"""The improvement plan `clt analyze` writes: `plan.json` (schema in docs/formats.md) and
`plan.md` under `<workspace>/analysis/<model>/<version>/`, with the analysis they come
from, and concrete next steps, each a command to run:

- an expert annotation batch for each weak domain (`clt feedback annotate-export --domain`),
  then its import and extraction (`clt feedback extract --domain`);
- synthetic examples for each weak domain from a scenario written beside the plan, naming
  the facts the version got wrong (`clt synth --domain`);
- rehearsal weights that favour the forgotten suites: every rehearsal source of the version's
  recipe weighs 1, and the training file of each forgotten suite (`<name>.jsonl` beside
  `<name>_asked.jsonl` / `<name>_test.jsonl`) 1 + 10 x its drop, at most 3 (a 10-point drop
  weighs 2, one of 20 points or more 3);
  the ratio rises by 0.1 (to at most 0.7) when anything was forgotten;
- the next recipe: `clt recipe new MODEL --from VERSION ... --plan plan.json`, which writes
  the plan's data sources and rehearsal split (recipe/plan_input.py).

A weak domain is one of the three highest priorities whose score is above zero."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from cl_toolkit import __version__
from cl_toolkit.core import semver
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_write_json, atomic_write_text, sha256_file
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.core.workspace import WORKSPACE_PREFIX, project_root, relative_inside, resolve_path
from cl_toolkit.core.yamlio import display, load_yaml
from cl_toolkit.pipeline.analysis import analyze
from cl_toolkit.recipe.plan_input import PLAN_KIND, PLAN_SCHEMA_VERSION
from cl_toolkit.registry import open_registry

TOP = 3
ANNOTATE_N = 50
SYNTH_N = 40
FORGOTTEN_BOOST, FORGOTTEN_MAX = 10.0, 2.0  # a forgotten suite's data weighs 1 + min(2, 10 x drop)
RATIO_STEP, RATIO_MAX = 0.1, 0.7
SUITE_SUFFIXES = ("_asked", "_test")  # as recipe/scaffold.py pairs a training file with its suite


def analysis_dir(workspace: Path, model: str, version: str) -> Path:
    return Path(workspace) / "analysis" / model / version


def weak_domains(analysis: dict, top: int = TOP) -> list[dict]:
    return [d for d in analysis["domains"][:top] if d["priority"] > 0]


def _recipe_copy(rec) -> dict:
    path = Path(rec.run_dir) / "recipe.yml"
    try:
        data, _ = load_yaml(path) if path.is_file() else ({}, None)
    except BadInput:
        return {}
    return data if isinstance(data, dict) else {}


def _label(source: dict) -> str:
    if "parent_data" in source:
        return "parent_data"
    if "buffer" in source:
        return "buffer"
    if "self_rehearsal" in source:
        return "self_rehearsal"
    return str(source["path"]) if str(source["path"]).startswith(WORKSPACE_PREFIX) else str(Path(source["path"]))


def _training_file(suite_path: str, root: Path, workspace: Path) -> str | None:
    """The training file a suite asks about: `q1.jsonl` for `q1_asked.jsonl` or `q1_test.jsonl`."""
    p = Path(suite_path)
    for suffix in SUITE_SUFFIXES:
        if p.stem.endswith(suffix):
            data = p.with_name(p.stem[: -len(suffix)] + ".jsonl")
            try:
                if resolve_path(data.as_posix(), root, workspace).is_file():
                    return data.as_posix()
            except BadInput:
                return None
    return None


def rehearsal_plan(recipe: dict, forgotten: list[dict], root: Path, workspace: Path) -> dict:
    """{"ratio", "split": {source label: weight}, "why": {label: reason}} (weights sum to 1)."""
    reh = (recipe.get("data") or {}).get("rehearsal") or {}
    weights = {_label(s): 1.0 for s in reh.get("sources", [])}
    why = {label: "a rehearsal source of the version's recipe" for label in weights}
    suites = ((recipe.get("gate") or {}).get("suites")) or {}
    for f in forgotten:
        spec = suites.get(f["suite"])
        path = spec if isinstance(spec, str) else (spec or {}).get("path")
        data = _training_file(path, root, workspace) if path else None
        if data is None:
            continue
        label = _label({"path": data})
        weights[label] = weights.get(label, 0.0) + min(FORGOTTEN_MAX, FORGOTTEN_BOOST * f["drop"])
        weights[label] += 1.0 if label not in why else 0.0
        why[label] = f"suite {f['suite']} fell {100 * f['drop']:.1f} pt from {f['best_version']}"
    total = sum(weights.values())
    split = {k: round(w / total, 4) for k, w in weights.items()} if total else {}
    ratio = float(reh.get("ratio", 0.2))
    if forgotten:
        ratio = min(RATIO_MAX, round(ratio + RATIO_STEP, 4))
    return {"ratio": ratio, "split": split, "why": why}


def _cmd(*args) -> str:
    return shlex.join(str(a) for a in args)


def _scenario(analysis: dict, d: dict) -> str:
    """A scenario for `clt synth`: the domain, the questions the version got wrong, the
    corrections production users gave."""
    lines = [f"# {d['domain']}: facts {analysis['model']} {analysis['version']} gets wrong", "",
             f"Questions and answers about {d['domain'].replace('_', ' ')}, in the style of the cases below. "
             "Cover these facts and facts next to them; answer with the exact value and its unit.", ""]
    cases = {c["id"]: c for doc in [analysis.get("_cases", {})] for c in doc.get(d["domain"], [])}
    for ref in d["evidence"]["cases"]:
        c = cases.get(ref)
        if c:
            lines.append(f"- Q: {c['input']} — A: {c['expected'] if isinstance(c['expected'], str) else c['expected'][0]}")
    for c in d["production"]["common_corrections"][:5]:
        lines.append(f"- A production user's correction ({c['count']}x): {c['correction']}")
    return "\n".join(lines) + "\n"


def _steps(analysis: dict, out: Path, workspace: Path, rehearsal: dict, next_recipe: dict) -> tuple[list, list]:
    """The plan's steps (each a command) and the training files they produce."""
    steps, train = [], []
    rel = lambda p: WORKSPACE_PREFIX + relative_inside(str(p), workspace)  # noqa: E731
    for d in weak_domains(analysis):
        name, why = d["domain"], f"priority {d['priority']} (rank {d['rank']})"
        csv = out / "annotate" / f"{name}.csv"
        steps.append({"kind": "annotate", "domain": name, "why": why, "outputs": [rel(csv)],
                      "command": _cmd("clt", "feedback", "annotate-export", "--domain", name, "-n", ANNOTATE_N,
                                      "-o", display(csv))})
        extracted = out / "data" / f"feedback_{name}.jsonl"
        steps.append({"kind": "extract", "domain": name, "why": "after the experts return the batch",
                      "outputs": [rel(extracted)],
                      "command": _cmd("clt", "feedback", "annotate-import", display(csv)) + " && "
                                 + _cmd("clt", "feedback", "extract", "--domain", name, "-o", display(extracted))})
        scenario, synthetic = out / "scenarios" / f"{name}.md", out / "data" / f"synthetic_{name}.jsonl"
        steps.append({"kind": "synthesize", "domain": name, "why": why, "scenario": rel(scenario),
                      "outputs": [rel(synthetic)],
                      "command": _cmd("clt", "synth", "--scenario", display(scenario), "--domain", name, "-n", SYNTH_N,
                                      "-o", display(synthetic)) + ' --base-url "$CLT_SYNTH_BASE_URL" --model "$CLT_SYNTH_MODEL"'})
        train += [rel(extracted), rel(synthetic)]
    steps.append({"kind": "rehearsal", "why": "weights favour the forgotten suites" if analysis["forgetting"]
                  else "nothing was forgotten: the version's sources, evenly", "split": rehearsal["split"],
                  "ratio": rehearsal["ratio"], "command": None})
    steps.append({"kind": "recipe", "why": "the next version, from this plan", "outputs": [next_recipe["path"]],
                  "command": next_recipe["command"]})
    steps.append({"kind": "validate", "why": "train, evaluate and gate the new version",
                  "command": _cmd("clt", "cycle", next_recipe["path"])})
    return steps, train


def _next_recipe(analysis: dict, plan_path: Path) -> dict:
    strategy = analysis["strategy"] if analysis["strategy"] not in ("initial_lora",) else "continued_lora"
    version = semver.bump(analysis["version"], "minor")
    path = f"recipes/{analysis['model']}/{version}.yml"
    return {"from": analysis["version"], "version": version, "strategy": strategy, "path": path,
            "command": _cmd("clt", "recipe", "new", analysis["model"], "--from", analysis["version"], "--strategy",
                            strategy, "--bump", "minor", "--plan", display(plan_path))}


def _attach_cases(workspace: Path, analysis: dict) -> None:
    """The failed cases' text, for the scenarios (kept out of plan.json)."""
    from cl_toolkit.pipeline.analysis import load_evaluations

    with open_registry(workspace) as reg:
        rows = reg.scores(analysis["model"])
    by_domain: dict[str, list] = {}
    for suite, doc in load_evaluations(workspace, rows, analysis["version"]).items():
        for c in doc["cases"]:
            by_domain.setdefault(c["domain"], []).append({**c, "id": f"{suite}:{c['id']}"})
    analysis["_cases"] = by_domain


def build_plan(workspace: Path, analysis: dict, root: Path | None = None) -> dict:
    """The plan as data (its scenarios not written yet)."""
    workspace = Path(workspace)
    root = root or project_root(Path.cwd())
    out = analysis_dir(workspace, analysis["model"], analysis["version"])
    with open_registry(workspace) as reg:
        rec = reg.require(analysis["model"], analysis["version"])
    rehearsal = rehearsal_plan(_recipe_copy(rec), analysis["forgetting"], root, workspace)
    next_recipe = _next_recipe(analysis, out / "plan.json")
    steps, train = _steps(analysis, out, workspace, rehearsal, next_recipe)
    return {"kind": PLAN_KIND, "schema_version": PLAN_SCHEMA_VERSION, "model": analysis["model"],
            "version": analysis["version"], "generated_at": utc_now(), "toolkit_version": __version__,
            "weak_domains": [d["domain"] for d in weak_domains(analysis)], "steps": steps,
            "recipe": {**{k: next_recipe[k] for k in ("from", "version", "strategy")},
                       "train": train, "rehearsal": {"ratio": rehearsal["ratio"], "split": rehearsal["split"],
                                                     "why": rehearsal["why"]}},
            "analysis": {k: v for k, v in analysis.items() if not k.startswith("_")}}


def plan_markdown(plan: dict) -> str:
    """plan.md: the top priorities with their numbers and evidence, forgetting, the steps."""
    a = plan["analysis"]
    lines = [f"# Improvement plan: {plan['model']} {plan['version']}", "",
             f"Generated {plan['generated_at'][:16].replace('T', ' ')} UTC from the stored evaluations of "
             f"{', '.join(a['versions_compared'])} and " + (f"the production feedback of {a['feedback']['quarter']}."
                                                          if a["feedback"] else "no production feedback."),
             "", f"Ranked by {a['formula']}.", "", "## Priorities", ""]
    lines += analysis_lines(a, top=TOP)
    lines += ["", "## Forgetting", ""]
    lines += [f"- {f['suite']}: {100 * f['best']:.1f}% at {f['best_version']} → {100 * f['now']:.1f}% "
              f"(−{100 * f['drop']:.1f} pt); cases lost: {', '.join(f['evidence']['cases']) or 'n/a'}"
              for f in a["forgetting"]] or ["No suite fell from its best-ever score."]
    lines += ["", "## Next steps", ""]
    for i, s in enumerate(plan["steps"], start=1):
        head = f"{i}. **{s['kind']}**" + (f" ({s['domain']})" if s.get("domain") else "") + f": {s['why']}"
        lines.append(head)
        if s["kind"] == "rehearsal":
            lines.append("   " + ", ".join(f"{src} {w:.0%}" for src, w in s["split"].items()) + f"; ratio {s['ratio']}")
        if s.get("command"):
            lines += ["", "   ```", f"   {s['command']}", "   ```"]
    return "\n".join(lines) + "\n"


def analysis_lines(a: dict, top: int = TOP) -> list[str]:
    """The top priorities as Markdown bullets, each with its numbers and evidence ids
    (plan.md and the quarterly report's Analysis section)."""
    out = []
    for d in a["domains"][:top]:
        ev, fb = d["evaluation"], d["production"]
        acc = "no suite case" if ev is None else (
            f"accuracy {100 * ev['accuracy']:.1f}% ({ev['cases'] - ev['failed']}/{ev['cases']})"
            + (f", {100 * ev['trend']:+.1f} pt since {ev['compared_with']}" if ev["trend"] is not None else "")
            + f", {ev['critical_failed']} critical failed")
        patterns = "" if ev is None or not ev["patterns"] else "; mistakes: " + ", ".join(
            f"{p['description']} ×{p['count']}" for p in ev["patterns"].values())
        prod = (f"; production: {fb['predictions']} predictions ({100 * fb['volume_share']:.0f}%), "
                f"{fb['low_rated']}/{fb['rated']} rated low") if fb["predictions"] else "; no production feedback"
        out.append(f"{d['rank']}. **{d['domain']}** — priority {d['priority']}: {acc}{patterns}{prod}.")
        if fb["common_corrections"]:
            out.append("   Most common corrections: " + "; ".join(
                f"“{c['correction']}” ×{c['count']} ({', '.join(c['request_ids'][:3])})" for c in fb["common_corrections"][:3]))
        out.append(f"   Evidence: cases {', '.join(d['evidence']['cases']) or 'none'}; "
                   f"requests {', '.join(d['evidence']['requests']) or 'none'}.")
    return out or ["Nothing to rank: the version has no evaluated case."]


def write_plan(workspace: Path, model: str, version: str | None = None, root: Path | None = None) -> dict:
    """Analyse, build the plan, write plan.json, plan.md and the scenarios (each atomically).
    Returns {"plan", "paths"} (paths as written)."""
    analysis = analyze(workspace, model, version)
    _attach_cases(Path(workspace), analysis)
    plan = build_plan(workspace, analysis, root)
    out = analysis_dir(workspace, model, plan["version"])
    paths = {}
    for d in weak_domains(analysis):
        paths[f"scenario:{d['domain']}"] = atomic_write_text(out / "scenarios" / f"{d['domain']}.md",
                                                             _scenario(analysis, d))
    paths["plan.json"] = atomic_write_json(out / "plan.json", plan)
    paths["plan.md"] = atomic_write_text(out / "plan.md", plan_markdown(plan))
    return {"plan": plan, "paths": paths, "sha256": sha256_file(paths["plan.json"])}


def read_plan(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
