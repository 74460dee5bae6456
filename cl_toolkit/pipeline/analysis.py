"""`clt analyze MODEL`: which domains of a version are weakest and getting worse, what kind
of mistakes it makes there, what production users complained about and corrected, and
which suites it forgot — every finding with the case ids and request ids behind it.

Read from what is stored, nothing is generated: the version's evaluations (the registry's
`scores` rows and the evaluation cache files they point at, one per suite), the line's
accuracy matrix (forgetting) and the feedback store (the newest quarter of production
feedback on the version and its ancestors: a new version has not served yet, its parent's
users have). The plan built from it is in `pipeline/plan.py`."""

from __future__ import annotations

import json
from pathlib import Path

from cl_toolkit.core import semver
from cl_toolkit.core.errors import BadInput
from cl_toolkit.evaluation.failures import DESCRIPTIONS, classify
from cl_toolkit.evaluation.suite import CRITICALITIES
from cl_toolkit.registry import VersionRecord, open_registry

SCHEMA_VERSION = 1
# the priority score: every term in [0, 1], weighted; the sum is in [0, 100]
WEIGHTS = {"inaccuracy": 40, "decline": 20, "critical": 15, "volume": 10, "low_ratings": 15}
DECLINE_FULL = 0.20   # a drop of 20 points since the previous version counts in full
CRITICAL_FULL = 3     # three failed critical cases count in full
FORMULA = ("priority = 40 x (1 - accuracy) + 20 x min(1, decline / 0.20) + 15 x min(1, critical failed / 3) "
           "+ 10 x production share + 15 x low-rating rate; accuracy over the version's suites; decline = "
           "the previous version's accuracy on the same suites minus this one's (0 when it rose); production "
           "share = the domain's share of the quarter's predictions; low-rating rate = rated predictions with "
           "an effective rating <= 2 over rated predictions")
EVIDENCE_LIMIT = 10


def _vkey(version: str):
    return semver.parse(version)


def choose_version(reg, model: str, version: str | None) -> VersionRecord:
    """The version to analyse: the one named (a number or an alias), else the champion."""
    if not reg.versions(model):
        raise BadInput(f"no versions of {model!r} are registered in {reg.workspace}")
    if version is None:
        champion = reg.alias(model, "champion")
        if champion is None:
            raise BadInput(f"{model} has no champion yet: pass --version")
        version = champion
    return reg.resolve(model, version)


def load_evaluations(workspace: Path, rows: list[dict], version: str) -> dict[str, dict]:
    """{suite name: cached evaluation} of one version, from its score rows."""
    out = {}
    for r in rows:
        if r["version"] != version or not r.get("eval_cache"):
            continue
        path = Path(workspace) / r["eval_cache"]
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a missing or damaged cache: the score stays in the matrix, its cases are unknown
        if doc.get("suite_sha256") == r["suite_sha256"] and isinstance(doc.get("cases"), list):
            out[r["suite"]] = doc
    return out


def _cases(evals: dict[str, dict], suites: set[str] | None = None) -> list[tuple[str, dict]]:
    return [(s, c) for s, doc in sorted(evals.items()) if suites is None or s in suites for c in doc["cases"]]


def _accuracy(cases: list[tuple[str, dict]]) -> float | None:
    return round(sum(bool(c["passed"]) for _, c in cases) / len(cases), 6) if cases else None


def _ref(suite: str, case: dict) -> str:
    return f"{suite}:{case['id']}"


def failure_patterns(cases: list[tuple[str, dict]]) -> dict[str, dict]:
    """{pattern: {"count", "description", "cases": [suite:id, ...]}} of the failed cases."""
    out: dict[str, dict] = {}
    for suite, c in cases:
        if c["passed"]:
            continue
        kind = classify(c.get("output") or "", c["expected"], c["match"], c.get("tolerance", 0.0))
        entry = out.setdefault(kind, {"count": 0, "description": DESCRIPTIONS[kind], "cases": []})
        entry["count"] += 1
        entry["cases"].append(_ref(suite, c))
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]["count"], kv[0])))


def priority(accuracy: float | None, decline: float, critical_failed: int, volume_share: float,
             low_rating_rate: float) -> tuple[float, dict]:
    """The stated priority score and its terms (points each term adds)."""
    terms = {"inaccuracy": WEIGHTS["inaccuracy"] * (1 - accuracy if accuracy is not None else 0.0),
             "decline": WEIGHTS["decline"] * min(1.0, max(0.0, decline) / DECLINE_FULL),
             "critical": WEIGHTS["critical"] * min(1.0, critical_failed / CRITICAL_FULL),
             "volume": WEIGHTS["volume"] * volume_share,
             "low_ratings": WEIGHTS["low_ratings"] * low_rating_rate}
    terms = {k: round(v, 2) for k, v in terms.items()}
    return round(sum(terms.values()), 2), terms


def _history(group: str, key: str, evals_by_version: dict[str, dict], suites: set[str]) -> list[dict]:
    out = []
    for v, evals in evals_by_version.items():
        acc = _accuracy([(s, c) for s, c in _cases(evals, suites) if c[group] == key])
        if acc is not None:
            out.append({"version": v, "accuracy": acc})
    return out


def _eval_numbers(group: str, key: str, version: str, evals_by_version: dict[str, dict]) -> dict:
    """Accuracy, its history over the last versions on this version's suites, failures."""
    now = evals_by_version[version]
    cases = [(s, c) for s, c in _cases(now) if c[group] == key]
    history = _history(group, key, evals_by_version, set(now))
    previous = history[-2]["accuracy"] if len(history) > 1 and history[-1]["version"] == version else None
    acc = _accuracy(cases)
    failed = [(s, c) for s, c in cases if not c["passed"]]
    critical = [(s, c) for s, c in failed if c["criticality"] == "critical"]
    return {"accuracy": acc, "previous_accuracy": previous, "compared_with": history[-2]["version"] if previous is not None else None,
            "trend": round(acc - previous, 6) if acc is not None and previous is not None else None,
            "history": history, "cases": len(cases), "failed": len(failed), "critical_failed": len(critical),
            "failed_cases": [_ref(s, c) for s, c in failed], "critical_cases": [_ref(s, c) for s, c in critical],
            "patterns": failure_patterns(cases)}


def _line_versions(reg, model: str, rec: VersionRecord) -> list[str]:
    """The version and its ancestors, newest first (whose production feedback counts)."""
    out, seen = [], rec
    while seen is not None and seen.version not in out:
        out.append(seen.version)
        seen = reg.get(model, seen.parent) if seen.parent else None
    return out


def production(workspace: Path, model: str, versions: list[str]) -> dict | None:
    """The newest quarter of feedback on these versions, per domain (None: no store or none)."""
    from cl_toolkit.feedback.store import DB_NAME, FeedbackStore
    from cl_toolkit.feedback.summary import (
        NO_DOMAIN,
        domain_evidence,
        newest_quarter,
        quarter_feedback,
    )

    if not (Path(workspace) / DB_NAME).is_file():
        return None
    with FeedbackStore(Path(workspace) / DB_NAME) as store:
        quarter = newest_quarter(store, model, versions)
        if quarter is None:
            return None
        fb = quarter_feedback(store, model, versions, quarter)
        domains = {}
        for d in fb["complaints_by_domain"]:
            if d["domain"] == NO_DOMAIN:
                continue
            found = domain_evidence(store, model, versions, quarter, d["domain"], EVIDENCE_LIMIT)
            domains[d["domain"]] = {**{k: d[k] for k in ("predictions", "rated", "complaints", "corrections",
                                                         "mean_rating")},
                                    "complaint_requests": found["complaints"], "common_corrections": found["corrections"]}
    return {"quarter": fb["quarter"], "versions": versions, "predictions": fb["predictions"], "domains": domains}


def _feedback_numbers(fb: dict | None, domain: str) -> dict:
    """The domain's production numbers, its complaints' and corrections' request ids."""
    d = (fb or {}).get("domains", {}).get(domain)
    total = (fb or {}).get("predictions") or 0
    if d is None:
        return {"predictions": 0, "volume_share": 0.0, "rated": 0, "low_rated": 0, "low_rating_rate": 0.0,
                "corrections": 0, "mean_rating": None, "complaint_requests": [], "common_corrections": []}
    return {"predictions": d["predictions"], "volume_share": round(d["predictions"] / total, 4) if total else 0.0,
            "rated": d["rated"], "low_rated": d["complaints"],
            "low_rating_rate": round(d["complaints"] / d["rated"], 4) if d["rated"] else 0.0,
            "corrections": d["corrections"], "mean_rating": d["mean_rating"],
            "complaint_requests": d["complaint_requests"], "common_corrections": d["common_corrections"]}


def _domain_entry(domain: str, version: str, evals_by_version: dict, fb: dict | None) -> dict:
    has_cases = _has(evals_by_version[version], "domain", domain)  # a domain seen only in production has none
    ev = _eval_numbers("domain", domain, version, evals_by_version) if has_cases else None
    feedback = _feedback_numbers(fb, domain)
    decline = -(ev["trend"]) if ev and ev["trend"] is not None else 0.0
    score, terms = priority(ev["accuracy"] if ev else None, decline, ev["critical_failed"] if ev else 0,
                            feedback["volume_share"], feedback["low_rating_rate"])
    evidence = {"cases": (ev["failed_cases"][:EVIDENCE_LIMIT] if ev else []),
                "requests": list(dict.fromkeys(feedback["complaint_requests"]
                                               + [r for c in feedback["common_corrections"] for r in c["request_ids"]]))
                [:EVIDENCE_LIMIT]}
    return {"domain": domain, "priority": score, "terms": terms, "evaluation": ev, "production": feedback,
            "evidence": evidence}


def _has(evals: dict, group: str, key: str) -> bool:
    return any(c[group] == key for _, c in _cases(evals))


def _criticality_entry(crit: str, version: str, evals_by_version: dict) -> dict:
    ev = _eval_numbers("criticality", crit, version, evals_by_version)
    decline = -(ev["trend"]) if ev["trend"] is not None else 0.0
    score, terms = priority(ev["accuracy"], decline, ev["critical_failed"], 0.0, 0.0)
    return {"criticality": crit, "priority": score, "terms": terms, "evaluation": ev,
            "evidence": {"cases": ev["failed_cases"][:EVIDENCE_LIMIT], "requests": []}}


def forgetting(workspace: Path, model: str, version: str, rows: list[dict],
               evals_by_version: dict[str, dict]) -> list[dict]:
    """Suites whose score at `version` fell from their best-ever earlier score (the accuracy
    matrix's cells, versions up to this one), biggest drop first, with the cases that passed
    at the best version and fail now."""
    from cl_toolkit.evaluation.matrix import line_matrix

    m = line_matrix(workspace, model, final=version)
    earlier = [v for v in m["versions"] if v != version and _vkey(v) < _vkey(version)]
    out = []
    for suite in m["suites"]:
        now = m["scores"][version][suite]
        got = [(m["scores"][v][suite], v) for v in earlier if m["scores"][v][suite] is not None]
        if now is None or not got:
            continue
        best, best_version = max(got, key=lambda x: (x[0], _vkey(x[1])))
        if best - now <= 0:
            continue
        before = evals_by_version.get(best_version) or load_evaluations(workspace, rows, best_version)
        was = {c["id"] for c in before.get(suite, {}).get("cases", []) if c["passed"]}
        lost = [_ref(suite, c) for c in evals_by_version[version].get(suite, {}).get("cases", [])
                if c["id"] in was and not c["passed"]]
        out.append({"suite": suite, "best_version": best_version, "best": best, "now": now,
                    "drop": round(best - now, 6), "evidence": {"cases": lost[:EVIDENCE_LIMIT], "requests": []}})
    return sorted(out, key=lambda f: (-f["drop"], f["suite"]))


def analyze(workspace: Path, model: str, version: str | None = None, history: int = 3) -> dict:
    """Every finding on one version (default: the champion): domains and criticalities by
    priority, failure patterns, production corrections, forgetting; each with evidence."""
    workspace = Path(workspace)
    with open_registry(workspace) as reg:
        rec = choose_version(reg, model, version)
        line = _line_versions(reg, model, rec)
        rows = reg.scores(model)
        alias = next((a for a, v in sorted(reg.aliases(model).items()) if v == rec.version), None)
    scored = sorted({r["version"] for r in rows if _vkey(r["version"]) <= _vkey(rec.version)}, key=_vkey)
    if rec.version not in scored:
        raise BadInput(f"{model} {rec.version} has no stored evaluation: run `clt gate {model} --candidate "
                       f"{rec.version}` (it scores every suite of the recipe's gate) or `clt cycle` first")
    evals_by_version = {v: load_evaluations(workspace, rows, v) for v in scored[-history:]}
    if not evals_by_version[rec.version]:
        raise BadInput(f"{model} {rec.version}: its scores are recorded but no evaluation file with its answers "
                       f"is in {workspace / 'evals'} (run `clt gate {model} --candidate {rec.version} --fresh`)")
    fb = production(workspace, model, line)
    now_cases = _cases(evals_by_version[rec.version])
    domains = sorted({c["domain"] for _, c in now_cases} | set((fb or {}).get("domains", {})))
    ranked = sorted((_domain_entry(d, rec.version, evals_by_version, fb) for d in domains),
                    key=lambda e: (-e["priority"], e["domain"]))
    crits = [c for c in CRITICALITIES if any(x["criticality"] == c for _, x in now_cases)]
    crit_ranked = sorted((_criticality_entry(c, rec.version, evals_by_version) for c in crits),
                         key=lambda e: (-e["priority"], CRITICALITIES.index(e["criticality"])))
    for i, e in enumerate(ranked, start=1):
        e["rank"] = i
    return {"schema_version": SCHEMA_VERSION, "model": model, "version": rec.version, "alias": alias,
            "strategy": rec.strategy, "formula": FORMULA, "weights": WEIGHTS,
            "versions_compared": list(evals_by_version), "suites": sorted(evals_by_version[rec.version]),
            "accuracy": _accuracy(now_cases), "feedback": None if fb is None else
            {"quarter": fb["quarter"], "versions": fb["versions"], "predictions": fb["predictions"]},
            "domains": ranked, "criticalities": crit_ranked,
            "forgetting": forgetting(workspace, model, rec.version, rows, evals_by_version)}
