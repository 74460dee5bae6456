"""The regression gate: the candidate and its baseline answer the same suite; a case the
baseline passed and the candidate failed is a regression. The candidate recipe's `gate`
section is the policy (max critical regressions, minimum accuracy delta, optional limits
per criticality). The verdict goes to `gate.json` and `gate.md` in the candidate's run
folder; a case both versions fail is not a regression."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from cl_toolkit import __version__
from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import atomic_write_json, atomic_write_text
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.core.workspace import project_root, resolve_path
from cl_toolkit.core.yamlio import display, format_key, load_yaml
from cl_toolkit.evaluation import history
from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version, suite_label
from cl_toolkit.evaluation.gate_report import gate_markdown
from cl_toolkit.evaluation.suite import CRITICALITIES, load_suite
from cl_toolkit.recipe.model import apply_defaults, recipe_schema
from cl_toolkit.registry import VersionRecord, open_registry, record_gate

_EPS = 1e-9  # accuracy deltas are ratios of small integers; compare them with a margin


@dataclass(frozen=True)
class GateConfig:
    """The candidate recipe's gate: the suite it names (resolved) and the policy."""

    suite: Path | None
    policy: dict


def default_policy(gate: dict | None = None) -> dict:
    """The policy with the recipe schema's defaults filled in (defaults live there only)."""
    policy = apply_defaults(dict(gate or {}), schema=recipe_schema()["properties"]["gate"])
    policy.pop("suite", None)
    policy.setdefault("max_regressions", {})
    return policy


def _project_roots(run_dir: Path) -> list[Path]:
    """Where the recipe's relative paths may start: the original recipe's project (from the
    run manifest), else the project around the current folder."""
    roots = []
    manifest = run_dir / "manifest.json"
    if manifest.is_file():
        recipe_path = Path(json.loads(manifest.read_text(encoding="utf-8")).get("recipe", {}).get("path", ""))
        if recipe_path.name and recipe_path.is_file():
            roots.append(project_root(recipe_path))
    roots.append(project_root())
    return roots


def gate_config(rec: VersionRecord, workspace: Path) -> GateConfig:
    """Read the `gate` section of the recipe copy in the version's run folder."""
    recipe_copy = Path(rec.run_dir) / "recipe.yml"
    if not recipe_copy.is_file():
        return GateConfig(None, default_policy())
    data, lines = load_yaml(recipe_copy)
    gate = data.get("gate") if isinstance(data, dict) else None
    if gate is None:
        return GateConfig(None, default_policy())
    schema = recipe_schema()["properties"]["gate"]
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(gate))
    if errors:
        raise BadInput([Problem(display(recipe_copy), e.message, lines.line_for(["gate", *e.absolute_path]),
                                format_key(["gate", *e.absolute_path])) for e in errors])
    suite = None
    for root in _project_roots(Path(rec.run_dir)):
        candidate = resolve_path(gate["suite"], root, workspace)
        if candidate.is_file():
            suite = candidate
            break
    if suite is None:
        raise BadInput([Problem(display(recipe_copy), f"suite not found: {gate['suite']}",
                                lines.line_for(["gate", "suite"]), "gate.suite")])
    return GateConfig(suite, default_policy(gate))


def _case_view(case: dict) -> dict:
    return {k: case[k] for k in ("id", "criticality", "domain", "match", "input", "expected")}


def _by_group(base: list[dict], cand: list[dict], key: str, order: list[str]) -> dict:
    out = {}
    for group in order:
        b = [r for r in base if r[key] == group]
        c = [r for r in cand if r[key] == group]
        acc_b, acc_c = sum(r["passed"] for r in b) / len(b), sum(r["passed"] for r in c) / len(c)
        out[group] = {"total": len(b), "baseline": round(acc_b, 6), "candidate": round(acc_c, 6),
                      "delta": round(acc_c - acc_b, 6),
                      "regressions": sum(x["passed"] and not y["passed"] for x, y in zip(b, c, strict=True)),
                      "improvements": sum(y["passed"] and not x["passed"] for x, y in zip(b, c, strict=True))}
    return out


def compare(baseline: dict, candidate: dict) -> dict:
    """Case-by-case differences between two evaluations of the same suite."""
    base, cand = baseline["cases"], candidate["cases"]
    if [r["id"] for r in base] != [r["id"] for r in cand]:
        raise BadInput("the two evaluations are not of the same suite (case ids differ)")
    rank = {c: i for i, c in enumerate(CRITICALITIES)}
    regressions, improvements, both_failed = [], [], []
    for b, c in zip(base, cand, strict=True):
        row = {**_case_view(b), "baseline_output": b["output"], "candidate_output": c["output"]}
        if b["passed"] and not c["passed"]:
            regressions.append(row)
        elif c["passed"] and not b["passed"]:
            improvements.append(row)
        elif not b["passed"]:
            both_failed.append(b["id"])
    regressions.sort(key=lambda r: (rank[r["criticality"]], r["id"]))
    improvements.sort(key=lambda r: (rank[r["criticality"]], r["id"]))
    acc_b, acc_c = baseline["accuracy"], candidate["accuracy"]
    return {
        "regressions": regressions, "improvements": improvements, "both_failed": both_failed,
        "accuracy": {"baseline": acc_b, "candidate": acc_c, "delta": round(acc_c - acc_b, 6)},
        "per_domain": _by_group(base, cand, "domain", sorted({r["domain"] for r in base})),
        "per_criticality": _by_group(base, cand, "criticality",
                                     [k for k in CRITICALITIES if any(r["criticality"] == k for r in base)]),
    }


def decide(diff: dict, policy: dict) -> list[str]:
    """Why the candidate is blocked (empty: it passes)."""
    reasons = []
    counts = {k: [r["id"] for r in diff["regressions"] if r["criticality"] == k] for k in CRITICALITIES}
    if len(counts["critical"]) > policy["max_critical_regressions"]:
        reasons.append(f"{len(counts['critical'])} critical regression(s), at most "
                       f"{policy['max_critical_regressions']} allowed: {', '.join(counts['critical'])}")
    for crit, limit in sorted(policy.get("max_regressions", {}).items(), key=lambda kv: CRITICALITIES.index(kv[0])):
        if len(counts[crit]) > limit:
            reasons.append(f"{len(counts[crit])} {crit} regression(s), at most {limit} allowed: "
                           f"{', '.join(counts[crit])}")
    delta = diff["accuracy"]["delta"]
    if delta < policy["min_accuracy_delta"] - _EPS:
        reasons.append(f"accuracy delta {delta:+.4f} is below the minimum {policy['min_accuracy_delta']:+.4f}")
    return reasons


def _resolve_versions(workspace: Path, model: str, candidate: str, baseline: str | None):
    with open_registry(workspace) as reg:
        cand = reg.resolve(model, candidate)
        base = reg.resolve(model, baseline) if baseline else None
        if base is None and cand.parent is None:
            raise BadInput(f"{model} {cand.version} has no parent to compare with; pass --baseline VERSION")
        base = base or reg.require(model, cand.parent)
        if base.version == cand.version:
            raise BadInput(f"the candidate and the baseline are the same version ({cand.version})")
        return cand, base


def run_gate(workspace: Path, model: str, candidate: str, baseline: str | None = None,
             suite: Path | None = None, settings: EvalSettings | None = None,
             judge: Callable[[str, str, str], float] | None = None, fresh: bool = False,
             policy: dict | None = None) -> dict:
    """Evaluate baseline and candidate (from the cache when possible), apply the policy
    (`policy`, else the one in the candidate's recipe copy), write gate.json and gate.md
    into the candidate's run folder, and return the verdict."""
    settings = settings or EvalSettings()
    cand, base = _resolve_versions(workspace, model, candidate, baseline)
    candidate = cand.version
    config = gate_config(cand, workspace)
    suite_path = suite or config.suite
    if suite_path is None:
        raise BadInput(f"{model} {candidate}'s recipe names no gate suite; pass --suite FILE")
    loaded = load_suite(suite_path)
    base_result = evaluate_version(workspace, base, loaded, settings, judge, fresh)
    cand_result = evaluate_version(workspace, cand, loaded, settings, judge, fresh)
    diff = compare(base_result, cand_result)
    policy = policy if policy is not None else config.policy
    reasons = decide(diff, policy)
    result = {
        "model": model, "candidate": candidate, "baseline": base.version, "suite": suite_label(loaded, workspace),
        "suite_sha256": loaded.sha256, "suite_cases": len(loaded.cases), "passed": not reasons, "reasons": reasons,
        "policy": policy,
        **diff, "settings": cand_result["settings"],
        "evaluations": {"baseline": base_result["cache_path"], "candidate": cand_result["cache_path"]},
        "gated_at": utc_now(), "toolkit_version": __version__,
    }
    write_reports(workspace, cand, result)
    _record_in_registry(workspace, model, candidate, result)
    return result


def write_reports(workspace: Path, cand: VersionRecord, result: dict) -> tuple[Path, Path]:
    run_dir = Path(cand.run_dir)
    trend = history.trend(history.load_evolution(workspace, cand.model), result["suite_sha256"])
    md = atomic_write_text(run_dir / "gate.md", gate_markdown(result, trend))
    return atomic_write_json(run_dir / "gate.json", result), md


def _record_in_registry(workspace: Path, model: str, candidate: str, result: dict) -> None:
    """Hand the verdict to the registry (promotion to champion reads `passed` and
    `baseline` there first, then gate.json)."""
    record_gate(workspace, model, candidate, result)
