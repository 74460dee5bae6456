"""The accuracy matrix of a model line: every version on every named suite of its gate.

Each evaluation a gate (or the cycle's evaluate step) makes is recorded in the registry's
`scores` table, keyed by model, version, suite name and suite SHA-256, so the whole matrix
is one query (`RegistryStore.scores`). `line_matrix` turns those rows into the matrix that
gate.json, gate.md, `clt eval matrix` and the quarterly report show: the scores, each
suite's best-ever score, its forgetting (the best score before the newest version minus the
newest's; negative when the newest is the best yet) and
the backward transfer over the quarters the line has learned — the benchmark's definitions
(`cl_metrics`), on a matrix that is versions × suites rather than square."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.core import semver
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.yamlio import load_yaml
from cl_toolkit.evaluation import cl_metrics
from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version
from cl_toolkit.evaluation.policy import normalise_gate, pt
from cl_toolkit.evaluation.suite import Suite
from cl_toolkit.registry import VersionRecord, open_registry


@dataclass(frozen=True)
class NamedSuite:
    """One suite of a gate: its name in the recipe, its role, the loaded cases."""

    name: str
    role: str  # regression | learning | general
    suite: Suite


def evaluate_suites(workspace: Path, rec: VersionRecord, suites: list[NamedSuite],
                    settings: EvalSettings | None = None, judge: Callable | None = None,
                    fresh: bool = False) -> dict[str, dict]:
    """Evaluate one version on every suite (each from evaluate_version's cache when it can)
    and record every score in the registry. Returns {suite name: evaluation result}.
    A suite narrowed to some domains is refused: its score is not the suite's."""
    narrowed = [s.name for s in suites if s.suite.domains]
    if narrowed:
        raise BadInput(f"suite {narrowed[0]} is narrowed to some domains; the accuracy matrix records whole suites only")
    results = {s.name: evaluate_version(workspace, rec, s.suite, settings, judge, fresh) for s in suites}
    with open_registry(workspace) as reg, reg.transaction():
        for s in suites:
            r = results[s.name]
            reg.record_score(rec.model, rec.version, s.name, s.suite.sha256, r["accuracy"], r["total"],
                             r["evaluated_at"], r.get("cache_path"))
    return results


def recipe_roles(rec: VersionRecord) -> dict[str, str]:
    """{suite name: role} of the gate in the version's recipe copy ({} when it has none or
    cannot be read: roles only decide which column counts as learned where)."""
    path = Path(rec.run_dir) / "recipe.yml"
    try:
        data, _ = load_yaml(path) if path.is_file() else ({}, None)
    except BadInput:
        return {}
    gate = data.get("gate") if isinstance(data, dict) else None
    if not isinstance(gate, dict):
        return {}
    try:
        return {name: s["role"] for name, s in normalise_gate(gate)["suites"].items()}
    except (BadInput, KeyError, TypeError, AttributeError):
        return {}


def _order(recs: list[VersionRecord]) -> list[VersionRecord]:
    return sorted(recs, key=lambda r: semver.parse(r.version))


def line_matrix(workspace: Path, model: str, *, final: str | None = None, include_archived: bool = False,
                suite_order: list[str] | None = None) -> dict:
    """The matrix of a model line from the registry's scores: versions in semver order (the
    active ones, plus `final` wherever it is, and archived ones when asked), `final` (default:
    the newest listed) last. Suites in `suite_order`, then any other scored suite by name.

    Returns {"versions", "suites", "scores": {version: {suite: accuracy | None}},
    "n": {suite: cases}, "best": {suite: {"version", "accuracy"}}, "forgetting": {suite: drop},
    "learned_at": {suite: version}, "bwt": float | None}."""
    with open_registry(workspace) as reg:
        recs = reg.versions(model)
        rows = reg.scores(model)
    if not recs:
        raise BadInput(f"no versions of {model!r} are registered in {workspace}")
    scored = {r["version"] for r in rows}
    keep = [r for r in _order(recs) if r.version in scored or r.version == final]
    keep = [r for r in keep if include_archived or r.status == "active" or r.version == final]
    if final is not None:
        keep = [r for r in keep if r.version != final] + [r for r in keep if r.version == final]
    versions = [r.version for r in keep]
    names = sorted({r["suite"] for r in rows})
    suites = [s for s in (suite_order or []) if s in names] + [s for s in names if s not in (suite_order or [])]
    cell = {(r["version"], r["suite"]): r for r in rows}
    scores = {v: {s: (cell[v, s]["accuracy"] if (v, s) in cell else None) for s in suites} for v in versions}
    n = {s: next((cell[v, s]["n"] for v in versions if (v, s) in cell), None) for s in suites}
    learned_at: dict[str, str] = {}
    for rec in keep:  # a suite is learned where a recipe first names it `learning`
        for s, role in recipe_roles(rec).items():
            if role == "learning" and s in suites and s not in learned_at:
                learned_at[s] = rec.version
    matrix = [[scores[v][s] for s in suites] for v in versions]
    best = {}
    for s in suites:
        got = [(scores[v][s], v) for v in versions if scores[v][s] is not None]
        if got:
            acc, v = max(got, key=lambda x: x[0])
            best[s] = {"version": v, "accuracy": acc}
    if matrix:
        start = [versions.index(learned_at[s]) if s in learned_at else None for s in suites]
        drops = cl_metrics.line_forgetting(matrix, start)
        bwt = cl_metrics.line_backward_transfer(matrix, start)
    else:
        drops, bwt = [None] * len(suites), None
    return {"model": model, "versions": versions, "suites": suites, "scores": scores, "n": n, "best": best,
            "forgetting": dict(zip(suites, drops, strict=True)), "learned_at": learned_at, "bwt": bwt}


def matrix_text(m: dict) -> str:
    """The matrix as a plain-text table (what `clt eval matrix` prints)."""
    if not m["versions"] or not m["suites"]:
        return f"{m['model']}: no scores recorded yet (run a gate or the cycle)"
    head = ["version", *m["suites"]]
    body = [[v, *(_pct(m["scores"][v][s]) for s in m["suites"])] for v in m["versions"]]
    body.append(["best", *(f"{_pct(m['best'][s]['accuracy'])} ({m['best'][s]['version']})" if s in m["best"]
                           else "-" for s in m["suites"])])
    body.append(["forgetting", *(_pt(m["forgetting"][s]) for s in m["suites"])])
    body.append(["learned at", *(m["learned_at"].get(s, "-") for s in m["suites"])])
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    bwt = "n/a (no quarter learned before the newest version)" if m["bwt"] is None else _pt(m["bwt"])
    return "\n".join([f"{m['model']}: accuracy matrix (versions x suites)", *lines, f"BWT: {bwt}"])


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _pt(x: float | None) -> str:
    return "-" if x is None else pt(x)
