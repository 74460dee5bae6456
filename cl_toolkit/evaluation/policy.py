"""The gate's policy: the recipe's `gate` section with its defaults (from the recipe schema
only), the rules that apply to one suite, and the verdict on one suite and on all of them.

The counted rules of the one-suite gate (max_critical_regressions, max_regressions,
min_accuracy_delta) keep meaning the suite named `regression` (what a legacy `suite:`
becomes) unless a {suite: number} map names others; the statistical rules apply to every
suite; min_learning to every suite of role `learning` (and to suites it names).

A suite's verdict pairs the two evaluations case by case (by id), computes the paired
statistics (`paired.py`) and applies every rule:

| rule | blocks when |
|---|---|
| max_critical_regressions | (regression suite) more critical cases lost (baseline passed, candidate failed) than allowed |
| max_regressions.<criticality> | (regression suite) more cases of that criticality lost than allowed |
| non_inferiority | the interval's lower bound of candidate - baseline < -non_inferiority_margin |
| significant_drop | the one-sided exact McNemar test finds a drop: p_drop <= alpha |
| min_accuracy_delta | (legacy, only when set; a number: the regression suite only) candidate - baseline < the minimum |
| min_learning | (learning suites, or suites named in it) candidate - parent <= 0 or < delta, or, with significant: true, p_gain > alpha |
"""

from __future__ import annotations

import copy
from functools import cache

from cl_toolkit.core.errors import BadInput
from cl_toolkit.evaluation import paired
from cl_toolkit.evaluation.suite import CRITICALITIES
from cl_toolkit.recipe.model import apply_defaults, recipe_schema

EPS = 1e-9  # accuracies are ratios of small integers: compare with a margin
ROLES = ("regression", "learning", "general")
LEGACY_SUITE = "regression"  # what a legacy `suite:` becomes
CASE_RULES = ("max_critical_regressions", "min_accuracy_delta")  # counted rules, the regression suite's by default
PER_SUITE = ("max_critical_regressions", "non_inferiority_margin", "alpha", "min_accuracy_delta")


@cache

def pt(fraction: float) -> str:
    """An accuracy difference in percentage points, the one unit people read deltas in
    (the rules themselves are written as fractions: 0.1 = 10 pt)."""
    return f"{100 * fraction:+.1f} pt"

def _gate_schema() -> dict:
    return recipe_schema()["properties"]["gate"]


def schema_default(key: str):
    """A gate key's default, as the recipe schema says (None: no default)."""
    return copy.deepcopy(_gate_schema()["properties"][key].get("default"))


def normalise_gate(gate: dict | None) -> dict:
    """The gate section with the schema's defaults filled in, legacy `suite` turned into
    `suites: {regression: PATH}` (a `suites.regression` of its own wins), every suite as
    {"path", "role"}, and `min_accuracy_delta` None when not set."""
    gate = apply_defaults(dict(gate or {}), schema=_gate_schema())
    suites = {}
    legacy = gate.pop("suite", None)
    if legacy is not None and LEGACY_SUITE not in (gate.get("suites") or {}):
        suites[LEGACY_SUITE] = {"path": legacy, "role": "regression"}
    for name, entry in (gate.get("suites") or {}).items():
        entry = {"path": entry} if isinstance(entry, str) else dict(entry)
        entry.setdefault("role", "regression")
        suites[name] = entry
    gate["suites"] = suites
    gate.setdefault("max_regressions", {})
    gate.setdefault("min_accuracy_delta", None)
    return gate


def _pick(policy: dict, key: str, suite: str):
    value = policy.get(key, schema_default(key))
    if key in CASE_RULES:  # today's rules: a number means the one suite there was, the regression suite
        if isinstance(value, dict):
            return value.get(suite, schema_default(key) if suite == LEGACY_SUITE else None)
        return value if suite == LEGACY_SUITE else None
    if isinstance(value, dict):
        return value.get(suite, schema_default(key))
    return value


def _learning(policy: dict, suite: str, role: str) -> dict | None:
    value = policy.get("min_learning", schema_default("min_learning"))
    if isinstance(value, dict):
        entry = value.get(suite, schema_default("min_learning") if role == "learning" else None)
    else:
        entry = value if role == "learning" else None
    if entry is None:
        return None
    if isinstance(entry, dict):
        return {"delta": float(entry["delta"]), "significant": bool(entry.get("significant", False))}
    return {"delta": float(entry), "significant": False}


def rules_for(policy: dict, suite: str, role: str | None = None) -> dict:
    """The effective rules for one suite (its role from the policy's suites unless given)."""
    if role is None:
        role = (policy.get("suites") or {}).get(suite, {}).get("role", "regression")
    boot = {**apply_defaults({"bootstrap": {}}, schema=_gate_schema())["bootstrap"], **(policy.get("bootstrap") or {})}
    return {"role": role, **{key: _pick(policy, key, suite) for key in PER_SUITE},
            "max_regressions": dict(policy.get("max_regressions") or {}) if suite == LEGACY_SUITE else {},
            "min_learning": _learning(policy, suite, role), "bootstrap": boot}


def _value(case: dict) -> float:
    return float(case["pass_rate"]) if case.get("pass_rate") is not None else float(bool(case["passed"]))


def pair_cases(name: str, base_eval: dict, cand_eval: dict) -> list[tuple[dict, dict]]:
    """The two evaluations' cases paired by id, in the baseline's order; ids must match."""
    base, cand = base_eval["cases"], cand_eval["cases"]
    for label, rows in (("baseline", base), ("candidate", cand)):
        ids = [r["id"] for r in rows]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise BadInput(f"suite {name}: the {label}'s evaluation repeats case ids ({', '.join(dup[:5])})")
    by_id = {r["id"]: r for r in cand}
    missing = [r["id"] for r in base if r["id"] not in by_id]
    extra = sorted(set(by_id) - {r["id"] for r in base})
    if missing or extra:
        parts = ([f"only the baseline has {', '.join(missing[:5])}"] if missing else []) + \
                ([f"only the candidate has {', '.join(extra[:5])}"] if extra else [])
        raise BadInput(f"suite {name}: the two evaluations are not of the same cases ({'; '.join(parts)})")
    if not base:
        raise BadInput(f"suite {name}: no cases to compare")
    return [(b, by_id[b["id"]]) for b in base]


def _row(b: dict, c: dict) -> dict:
    row = {k: b.get(k) for k in ("id", "criticality", "domain", "match", "input", "expected")}
    row.update(baseline_output=b.get("output"), candidate_output=c.get("output"))
    if b.get("pass_rate") is not None or c.get("pass_rate") is not None:
        row.update(baseline_rate=_value(b), candidate_rate=_value(c))
    return row


def _rule(rule: str, passed: bool, message: str, **numbers) -> dict:
    return {"rule": rule, "passed": bool(passed), "message": message, "numbers": numbers}


def _rules(name: str, r: dict, regressions: list[dict], delta: float, m: dict, interval: dict) -> list[dict]:
    out = []
    lost = {k: [x["id"] for x in regressions if x["criticality"] == k] for k in CRITICALITIES}
    limit = r["max_critical_regressions"]
    n_crit = len(lost["critical"])
    if limit is not None:
        out.append(_rule("max_critical_regressions", n_crit <= limit,
                         f"{name}: {n_crit} critical regression(s), at most {limit} allowed"
                         + (f": {', '.join(lost['critical'])}" if lost["critical"] else ""),
                         critical_regressions=n_crit, limit=limit))
    for crit in sorted(r["max_regressions"], key=CRITICALITIES.index):
        cap, got = r["max_regressions"][crit], len(lost[crit])
        out.append(_rule(f"max_regressions.{crit}", got <= cap,
                         f"{name}: {got} {crit} regression(s), at most {cap} allowed"
                         + (f": {', '.join(lost[crit])}" if lost[crit] else ""), regressions=got, limit=cap))
    margin = r["non_inferiority_margin"]
    ok = interval["low"] >= -margin - EPS
    out.append(_rule("non_inferiority", ok,
                     f"{name}: the {100 * interval['confidence']:g}% interval of candidate - baseline is "
                     f"[{pt(interval['low'])}, {pt(interval['high'])}]; its lower bound is "
                     f"{'within' if ok else 'below'} {pt(-margin)} (non_inferiority_margin {margin:g})",
                     low=interval["low"], high=interval["high"], margin=margin))
    alpha = r["alpha"]
    drop = m["p_drop"] <= alpha
    out.append(_rule("significant_drop", not drop,
                     f"{name}: exact McNemar (lost {m['b']}, won {m['c']}): one-sided p = {m['p_drop']:.4g} "
                     f"{'<=' if drop else '>'} alpha {alpha:g}" + (": a significant drop" if drop else ""),
                     b=m["b"], c=m["c"], p_drop=m["p_drop"], alpha=alpha))
    if r["min_accuracy_delta"] is not None:
        floor = r["min_accuracy_delta"]
        out.append(_rule("min_accuracy_delta", delta >= floor - EPS,
                         f"{name}: accuracy delta {pt(delta)} is {'at or above' if delta >= floor - EPS else 'below'} "
                         f"the minimum {pt(floor)} (min_accuracy_delta {floor:g})", delta=delta, minimum=floor))
    learn = r["min_learning"]
    if learn is not None:
        enough = delta >= learn["delta"] - EPS and delta > EPS  # learning nothing never passes
        sig = (not learn["significant"]) or m["p_gain"] <= alpha
        why = "" if enough else (" (it learned nothing of this suite)" if delta <= EPS else "")
        msg = (f"{name}: candidate - parent = {pt(delta)}, "
               f"{'at least' if enough else 'below'} the required {pt(learn['delta'])} "
               f"(min_learning {learn['delta']:g}){why}")
        if learn["significant"]:
            msg += f"; the gain's one-sided p = {m['p_gain']:.4g} {'<=' if sig else '>'} alpha {alpha:g}"
        out.append(_rule("min_learning", enough and sig, msg, delta=delta, minimum=learn["delta"],
                         significant=learn["significant"], p_gain=m["p_gain"], alpha=alpha))
    return out


def suite_verdict(name: str, role: str, base_eval: dict, cand_eval: dict, policy: dict) -> dict:
    """Compare two evaluations of suite `name` under `policy` (normalised or raw gate section)."""
    if role not in ROLES:
        raise BadInput(f"suite {name}: unknown role {role!r} (known: {', '.join(ROLES)})")
    pairs = pair_cases(name, base_eval, cand_eval)
    r = rules_for(policy, name, role)
    base_v = [_value(b) for b, _ in pairs]
    cand_v = [_value(c) for _, c in pairs]
    m = paired.mcnemar(base_v, cand_v)
    boot = r["bootstrap"]
    interval = paired.paired_bootstrap(base_v, cand_v, resamples=boot["resamples"], confidence=boot["confidence"],
                                       seed=boot["seed"])
    n = len(pairs)
    acc_b, acc_c = sum(base_v) / n, sum(cand_v) / n
    delta = round(acc_c - acc_b, 6)
    rank = {c: i for i, c in enumerate(CRITICALITIES)}
    order = lambda row: (rank.get(row["criticality"], len(rank)), str(row["id"]))  # noqa: E731
    regressions = sorted((_row(b, c) for b, c in pairs if b["passed"] and not c["passed"]), key=order)
    improvements = sorted((_row(b, c) for b, c in pairs if c["passed"] and not b["passed"]), key=order)
    rules = _rules(name, r, regressions, delta, m, interval)
    return {"suite": name, "role": role, "n": n, "baseline": round(acc_b, 6), "candidate": round(acc_c, 6),
            "delta": delta, "mcnemar": m, "interval": interval,
            "detectable_drop": paired.detectable_drop(n, r["alpha"]),
            "detectable_drop_observed": paired.detectable_drop(n, r["alpha"], m["c"]),
            "alpha": r["alpha"],
            "samples": max(int(base_eval.get("settings", {}).get("samples", 1) or 1),
                           int(cand_eval.get("settings", {}).get("samples", 1) or 1)),
            "regressions": regressions, "improvements": improvements, "rules": rules,
            "passed": all(x["passed"] for x in rules)}


def gate_verdict(suite_verdicts: list[dict]) -> dict:
    """Every suite's rules together: passed when all hold; reasons are the failed rules' messages."""
    reasons = [f"{x['rule']}: {x['message']}" for v in suite_verdicts for x in v["rules"] if not x["passed"]]
    return {"passed": not reasons and bool(suite_verdicts), "reasons": reasons or
            ([] if suite_verdicts else ["no suite to gate on"])}
