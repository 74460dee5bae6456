"""STAND-IN (gatematrix's branch): the smallest version of the gate policy under the names of
the interface between the two gate engineers, so run_gate can be built and tested before
gatestats' policy.py lands. On merge the lead keeps gatestats' module; nothing here is
meant to survive it.

normalise_gate(gate) -> the gate section with defaults, suites as {name: {path, role}};
rules_for(policy, suite) -> the effective rules of one suite;
suite_verdict(name, role, base_eval, cand_eval, policy) -> one suite's verdict;
gate_verdict(suite_verdicts) -> {"passed", "reasons"}."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from cl_toolkit.core.errors import BadInput
from cl_toolkit.evaluation.suite import CRITICALITIES

ROLES = ("regression", "learning", "general")
_DEFAULTS = {"max_critical_regressions": 0, "max_regressions": {}, "non_inferiority_margin": 0.1,
             "alpha": 0.05, "min_learning": {}, "samples": 1, "temperature": 0.7,
             "bootstrap": {"resamples": 10000, "confidence": 0.95, "seed": 0}}
_PER_SUITE = ("max_critical_regressions", "non_inferiority_margin", "alpha")
_EPS = 1e-9


def normalise_gate(gate: dict | None) -> dict:
    gate = dict(gate or {})
    suites = dict(gate.pop("suites", None) or {})
    legacy = gate.pop("suite", None)
    if legacy and "regression" not in suites:
        suites = {"regression": legacy, **suites}
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _DEFAULTS.items()}
    out.update(gate)
    out["bootstrap"] = {**_DEFAULTS["bootstrap"], **dict(gate.get("bootstrap") or {})}
    out["suites"] = {name: ({"path": s, "role": "regression"} if isinstance(s, str)
                            else {"path": s["path"], "role": s.get("role", "regression")})
                     for name, s in suites.items()}
    return out


def rules_for(policy: dict, suite: str) -> dict:
    rules = {}
    for key in _PER_SUITE:
        value = policy.get(key)
        rules[key] = value.get(suite) if isinstance(value, dict) else value
    learning = (policy.get("min_learning") or {}).get(suite)
    rules["min_learning"] = ({"delta": learning, "significant": False} if isinstance(learning, int | float)
                             else dict(learning) if learning else None)
    rules["max_regressions"] = dict(policy.get("max_regressions") or {})
    if "min_accuracy_delta" in policy and suite == "regression":
        rules["min_accuracy_delta"] = policy["min_accuracy_delta"]
    return rules


def _vector(cases: list[dict]) -> np.ndarray:
    return np.array([float(c.get("pass_rate", c["passed"])) for c in cases])


def _bootstrap(base: np.ndarray, cand: np.ndarray, settings: dict) -> dict:
    rng = np.random.default_rng(settings["seed"])
    idx = rng.integers(0, len(base), size=(settings["resamples"], len(base)))
    deltas = (cand[idx] - base[idx]).mean(axis=1)
    tail = (1 - settings["confidence"]) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    return {"delta": round(float(cand.mean() - base.mean()), 6), "low": round(float(low), 6),
            "high": round(float(high), 6), "confidence": settings["confidence"]}


def _mcnemar(base: np.ndarray, cand: np.ndarray) -> dict:
    b = int(np.sum((base >= 0.5) & (cand < 0.5)))
    c = int(np.sum((base < 0.5) & (cand >= 0.5)))
    n = b + c
    two = binomtest(b, n, 0.5).pvalue if n else 1.0
    drop = binomtest(b, n, 0.5, alternative="greater").pvalue if n else 1.0
    return {"n": n, "b": b, "c": c, "p_two_sided": round(float(two), 6), "p_drop": round(float(drop), 6)}


def _rule(rule: str, passed: bool, message: str, **numbers) -> dict:
    return {"rule": rule, "passed": bool(passed), "message": message, "numbers": numbers}


def suite_verdict(name: str, role: str, base_eval: dict, cand_eval: dict, policy: dict) -> dict:
    base_cases, cand_cases = base_eval["cases"], cand_eval["cases"]
    if [c["id"] for c in base_cases] != [c["id"] for c in cand_cases]:
        raise BadInput(f"suite {name}: the two evaluations are not of the same cases (case ids differ)")
    rules = rules_for(policy, name)
    base, cand = _vector(base_cases), _vector(cand_cases)
    interval = _bootstrap(base, cand, policy["bootstrap"])
    mcn = _mcnemar(base, cand)
    regressions = [c["id"] for b, c in zip(base_cases, cand_cases, strict=True) if b["passed"] and not c["passed"]]
    improvements = [c["id"] for b, c in zip(base_cases, cand_cases, strict=True) if c["passed"] and not b["passed"]]
    crit = {k: [c["id"] for b, c in zip(base_cases, cand_cases, strict=True)
                if b["passed"] and not c["passed"] and c["criticality"] == k] for k in CRITICALITIES}
    out_rules = []
    limit = rules["max_critical_regressions"]
    if limit is not None:
        out_rules.append(_rule("max_critical_regressions", len(crit["critical"]) <= limit,
                               f"{name}: {len(crit['critical'])} critical regression(s), at most {limit} allowed",
                               count=len(crit["critical"]), limit=limit))
    for level, lim in rules["max_regressions"].items():
        out_rules.append(_rule(f"max_regressions.{level}", len(crit[level]) <= lim,
                               f"{name}: {len(crit[level])} {level} regression(s), at most {lim} allowed",
                               count=len(crit[level]), limit=lim))
    margin = rules["non_inferiority_margin"]
    if margin is not None:
        out_rules.append(_rule("non_inferiority_margin", interval["low"] >= -margin - _EPS,
                               f"{name}: accuracy change {interval['delta']:+.3f}, {interval['confidence']:.0%} "
                               f"interval [{interval['low']:+.3f}, {interval['high']:+.3f}], lower bound vs "
                               f"margin -{margin}", low=interval["low"], margin=margin))
    alpha = rules["alpha"]
    if alpha is not None:
        out_rules.append(_rule("alpha", mcn["p_drop"] >= alpha,
                               f"{name}: McNemar p(drop) = {mcn['p_drop']:.4f} against alpha {alpha}",
                               p_drop=mcn["p_drop"], alpha=alpha))
    if rules["min_learning"] is not None:
        need = rules["min_learning"]["delta"]
        out_rules.append(_rule("min_learning", interval["delta"] >= need - _EPS,
                               f"{name}: learned {interval['delta']:+.3f} over the parent, at least {need} needed",
                               delta=interval["delta"], min=need))
    if "min_accuracy_delta" in rules:
        need = rules["min_accuracy_delta"]
        out_rules.append(_rule("min_accuracy_delta", interval["delta"] >= need - _EPS,
                               f"{name}: accuracy delta {interval['delta']:+.4f}, minimum {need:+.4f}",
                               delta=interval["delta"], min=need))
    return {"suite": name, "role": role, "n": len(base_cases), "baseline": round(float(base.mean()), 6),
            "candidate": round(float(cand.mean()), 6), "delta": interval["delta"], "mcnemar": mcn,
            "interval": interval, "detectable_drop": None, "regressions": regressions,
            "improvements": improvements, "rules": out_rules, "passed": all(r["passed"] for r in out_rules)}


def gate_verdict(suite_verdicts: list[dict]) -> dict:
    reasons = [r["message"] for v in suite_verdicts for r in v["rules"] if not r["passed"]]
    return {"passed": not reasons, "reasons": reasons}
