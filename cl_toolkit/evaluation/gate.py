"""The gate: the candidate, its baseline (by default its parent) and the current champion
answer every named suite of the candidate recipe's `gate.suites` (the line's regression
suite, each quarter's own test set, general knowledge); every score goes to the registry's
accuracy matrix. Each suite gets its verdict from `policy.suite_verdict` (paired statistics
against the baseline, the per-suite rules), the whole from `policy.gate_verdict`. The
verdict is recorded in the registry (with both versions' weight hashes: promotion checks
that record, never a file) and written to `gate.json` and `gate.md` in the run folder.
A case the baseline passed and the candidate failed is a regression; one both fail is not."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import jsonschema

from cl_toolkit import __version__
from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import atomic_write_json, atomic_write_text
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.core.workspace import project_root, resolve_path
from cl_toolkit.core.yamlio import display, format_key, load_yaml
from cl_toolkit.evaluation import history
from cl_toolkit.evaluation.evaluate import EvalSettings, suite_label
from cl_toolkit.evaluation.gate_report import gate_markdown
from cl_toolkit.evaluation.matrix import NamedSuite, evaluate_suites, line_matrix
from cl_toolkit.evaluation.policy import gate_verdict, normalise_gate, suite_verdict
from cl_toolkit.evaluation.suite import CRITICALITIES, load_suite
from cl_toolkit.recipe.model import apply_defaults, recipe_schema, thaw
from cl_toolkit.registry import VersionRecord, open_registry, record_gate, weights_sha256

REGRESSION = "regression"  # the suite whose results also fill gate.json's single-suite keys


@dataclass(frozen=True)
class GateConfig:
    """The candidate recipe's gate: its named suites (paths resolved) and the policy."""

    suites: dict  # name -> {"path": Path, "role": str}, in the recipe's order
    policy: dict

    @property
    def suite(self) -> Path | None:
        """The regression suite (else the first): what a single-suite reader wants."""
        return self.suites[primary_suite(list(self.suites))]["path"] if self.suites else None


def primary_suite(names: list[str]) -> str:
    return REGRESSION if REGRESSION in names else names[0]


def default_policy(gate: dict | None = None) -> dict:
    """The policy with every default filled in (the schema's, then the policy module's); the
    suites are not part of it (their bytes are inputs of their own)."""
    policy = apply_defaults(dict(gate or {}), schema=recipe_schema()["properties"]["gate"])
    policy = normalise_gate(policy)
    policy.pop("suites", None)
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
        return GateConfig({}, default_policy())
    data, lines = load_yaml(recipe_copy)
    gate = data.get("gate") if isinstance(data, dict) else None
    if gate is None:
        return GateConfig({}, default_policy())
    schema = recipe_schema()["properties"]["gate"]
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(gate))
    if errors:
        raise BadInput([Problem(display(recipe_copy), e.message, lines.line_for(["gate", *e.absolute_path]),
                                format_key(["gate", *e.absolute_path])) for e in errors])
    suites = {}
    for name, spec in normalise_gate(gate)["suites"].items():
        key = ["gate", "suite"] if "suite" in gate and name == REGRESSION and "suites" not in gate else \
            ["gate", "suites", name]
        suites[name] = {"path": _find(spec["path"], rec, workspace, recipe_copy, lines.line_for(key),
                                      format_key(key)), "role": spec["role"]}
    return GateConfig(suites, default_policy(gate))


def _find(raw: str, rec: VersionRecord, workspace: Path, recipe_copy: Path, line, key) -> Path:
    for root in _project_roots(Path(rec.run_dir)):
        candidate = resolve_path(raw, root, workspace)
        if candidate.is_file():
            return candidate
    raise BadInput([Problem(display(recipe_copy), f"suite not found: {raw}", line, key)])


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


def _champion(workspace: Path, model: str, exclude: set[str]) -> VersionRecord | None:
    with open_registry(workspace) as reg:
        rec = reg.lookup(model, "champion")
    return rec if rec is not None and rec.version not in exclude else None


def recipe_suites(lr) -> dict:
    """A recipe's gate suites, {name: {"path": Path, "role": str}} (empty without a gate)."""
    gate = lr.recipe.gate
    if not gate:
        return {}
    return {name: {"path": resolve_path(s["path"], lr.root, lr.workspace), "role": s["role"]}
            for name, s in normalise_gate(thaw(gate))["suites"].items()}


def suite_problems(suites: dict) -> list[Problem]:
    """Every problem of every suite in {name: {"path", "role"}}, none loaded for use."""
    problems = []
    for spec in suites.values():
        try:
            load_suite(spec["path"])
        except BadInput as e:
            problems.extend(e.problems)
    return problems


def load_named(suites: dict) -> list[NamedSuite]:
    """{name: {"path", "role"}} -> the loaded suites (every bad file reported before any model loads)."""
    return [NamedSuite(name, spec["role"], load_suite(spec["path"])) for name, spec in suites.items()]


def run_gate(workspace: Path, model: str, candidate: str, baseline: str | None = None,
             suite: Path | None = None, settings: EvalSettings | None = None,
             judge: Callable[[str, str, str], float] | None = None, fresh: bool = False,
             policy: dict | None = None, suites: dict | None = None) -> dict:
    """Evaluate candidate, baseline and champion on every suite (from the cache when
    possible), record the scores, apply the policy (`policy`, else the one in the candidate's
    recipe copy) suite by suite, record the verdict in the registry, write gate.json and
    gate.md into the candidate's run folder, and return the verdict. `suite` (--suite) gates
    on that one file alone, as the regression suite; `suites` ({name: {path, role}}) replaces
    the recipe copy's."""
    settings = settings or EvalSettings()
    cand, base = _resolve_versions(workspace, model, candidate, baseline)
    candidate = cand.version
    config = gate_config(cand, workspace)
    named = ({REGRESSION: {"path": Path(suite), "role": "regression"}} if suite else suites or config.suites)
    if not named:
        raise BadInput(f"{model} {candidate}'s recipe names no gate suite; pass --suite FILE")
    loaded = load_named(named)
    policy = policy if policy is not None else config.policy
    if policy.get("samples", 1) > 1 and settings.samples == 1:  # gate.samples: k answers per case
        settings = replace(settings, samples=policy["samples"], temperature=policy.get("temperature", 0.7))
    adapters = {"candidate": weights_sha256(cand), "baseline": weights_sha256(base)}
    champion = _champion(workspace, model, {cand.version, base.version})
    evals = {v.version: evaluate_suites(workspace, v, loaded, settings, judge, fresh)
             for v in (base, cand, *([champion] if champion else []))}
    base_res, cand_res = evals[base.version], evals[cand.version]
    verdicts = []
    for s in loaded:
        v = suite_verdict(s.name, s.role, base_res[s.name], cand_res[s.name], policy)
        verdicts.append({**v, "suite_sha256": s.suite.sha256, "path": suite_label(s.suite, workspace)})
    verdict = gate_verdict(verdicts)
    main = next(s for s in loaded if s.name == primary_suite([x.name for x in loaded]))
    diff = compare(base_res[main.name], cand_res[main.name])
    result = {
        "model": model, "candidate": candidate, "baseline": base.version,
        "champion": champion.version if champion else None,
        "suite": suite_label(main.suite, workspace), "suite_sha256": main.suite.sha256,
        "suite_cases": len(main.suite.cases), "passed": verdict["passed"], "reasons": verdict["reasons"],
        "policy": policy, **diff, "settings": cand_res[main.name]["settings"],
        "suites": verdicts,
        "matrix": line_matrix(workspace, model, final=candidate, suite_order=[s.name for s in loaded]),
        "adapters": adapters,
        "evaluations": {"baseline": base_res[main.name]["cache_path"],
                        "candidate": cand_res[main.name]["cache_path"],
                        "suites": {s.name: {v: evals[v][s.name]["cache_path"] for v in evals} for s in loaded}},
        "gated_at": utc_now(), "toolkit_version": __version__,
    }
    _record_in_registry(workspace, model, candidate, result)  # first: the record is what counts
    write_reports(workspace, cand, result)
    return result


def write_reports(workspace: Path, cand: VersionRecord, result: dict) -> tuple[Path, Path]:
    run_dir = Path(cand.run_dir)
    trend = history.trend(history.load_evolution(workspace, cand.model), result["suite_sha256"])
    md = atomic_write_text(run_dir / "gate.md", gate_markdown(result, trend))
    return atomic_write_json(run_dir / "gate.json", result), md


def _record_in_registry(workspace: Path, model: str, candidate: str, result: dict) -> None:
    """Hand the verdict to the registry, which hashes both versions' weights itself and
    refuses a verdict on weights other than those evaluated (promotion reads only this)."""
    record_gate(workspace, model, candidate, result)
