"""`clt drift`: data and concept drift between a reference and a current window.

Numeric features (prompt and response length in characters, latency_ms, confidence,
quality score): PSI over quantile bins of the reference window and the two-sample
Kolmogorov-Smirnov statistic and p-value. Categorical features (domain, missing as
"(none)"): PSI with one bin per category.

PSI binning: B bins (drift.bins, default 10) whose inner edges are the reference
window's quantiles at 1/B .. (B-1)/B (linear interpolation); equal edges (ties) merge, so
a feature with few distinct values gets fewer bins. Bins are right-closed, the outer
ones open-ended, so current values outside the reference range still count. A bin with
no values gets the share drift.epsilon (1e-4) instead of 0. See stats.py.

Severity bands: PSI < 0.10 none, 0.10 to 0.25 moderate, >= 0.25 significant
(drift.psi_moderate, drift.psi_significant). Concept drift: the drop in positive-feedback
rate between the windows (effective rating >= 4 among rated predictions), flagged at
>= drift.concept_drop, with its two-proportion z-test.
"""

from __future__ import annotations

import numpy as np

from cl_toolkit.feedback.ratings import is_positive
from cl_toolkit.monitoring.config import Drift
from cl_toolkit.monitoring.observe import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from cl_toolkit.monitoring.stat_tests import (
    category_shares,
    ks_2samp,
    psi_categorical,
    psi_numeric,
    two_proportion_ztest,
)

SEVERITIES = ("none", "moderate", "significant")


def severity(psi: float, cfg: Drift) -> str:
    if psi >= cfg.psi_significant:
        return "significant"
    return "moderate" if psi >= cfg.psi_moderate else "none"


def _mean(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


def numeric_drift(reference: list, current: list, cfg: Drift) -> dict:
    """PSI and KS of one numeric feature."""
    out = {"n_reference": len(reference), "n_current": len(current),
           "mean_reference": _mean(reference), "mean_current": _mean(current)}
    if not reference or not current:
        return {**out, "psi": None, "severity": "no data", "ks_statistic": None, "ks_p_value": None,
                "ks_method": None, "ks_differs": None}
    psi = psi_numeric(reference, current, cfg.bins, cfg.epsilon)
    ks = ks_2samp(reference, current)
    return {**out, "psi": psi, "severity": severity(psi, cfg), "ks_statistic": ks.statistic,
            "ks_p_value": ks.p_value, "ks_method": ks.method, "ks_differs": ks.p_value < cfg.ks_alpha}


def categorical_drift(reference: list, current: list, cfg: Drift) -> dict:
    """PSI of one categorical feature and the share of each category."""
    out = {"n_reference": len(reference), "n_current": len(current)}
    if not reference or not current:
        return {**out, "psi": None, "severity": "no data", "shares": {}}
    cats, r, c = category_shares(reference, current)
    psi = psi_categorical(reference, current, cfg.epsilon)
    return {**out, "psi": psi, "severity": severity(psi, cfg),
            "shares": {str(k): {"reference": float(a), "current": float(b)} for k, a, b in zip(cats, r, c, strict=True)}}


def concept_drift(reference_ratings: list, current_ratings: list, cfg: Drift) -> dict:
    """The drop in positive rate between the windows."""
    n1, n2 = len(reference_ratings), len(current_ratings)
    x1 = sum(1 for r in reference_ratings if is_positive(r))
    x2 = sum(1 for r in current_ratings if is_positive(r))
    out = {"rated_reference": n1, "rated_current": n2}
    if not n1 or not n2:
        return {**out, "positive_rate_reference": None, "positive_rate_current": None, "drop": None,
                "p_value": None, "drift": None}
    test = two_proportion_ztest(x1, n1, x2, n2)
    drop = round(-test.diff, 9)
    return {**out, "positive_rate_reference": test.rate1, "positive_rate_current": test.rate2,
            "drop": drop, "p_value": test.p_value, "drift": drop >= cfg.concept_drop}


def drift_report(reference: dict[str, list], current: dict[str, list], cfg: Drift) -> dict:
    """Every feature's drift and the concept drift, from two windows' columns."""
    numeric = {f: numeric_drift(reference[f], current[f], cfg) for f in NUMERIC_FEATURES}
    categorical = {f: categorical_drift(reference[f], current[f], cfg) for f in CATEGORICAL_FEATURES}
    concept = concept_drift(reference["rating"], current["rating"], cfg)
    worst = max((SEVERITIES.index(d["severity"]) for d in [*numeric.values(), *categorical.values()]
                 if d["severity"] in SEVERITIES), default=0)
    return {"numeric": numeric, "categorical": categorical, "concept": concept,
            "severity": SEVERITIES[worst], "drifted": [f for f, d in {**numeric, **categorical}.items()
                                                       if d["severity"] in SEVERITIES[1:]]}


def _fmt(x, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def format_drift(report: dict) -> list[str]:
    lines = [f"drift {report['reference']['start']}..{report['reference']['end']} -> "
             f"{report['current']['start']}..{report['current']['end']}: {report['severity']}",
             f"  {'feature':<16} {'n ref':>7} {'n cur':>7} {'PSI':>7}  {'severity':<12} {'KS D':>6} {'KS p':>9}"]
    for name, d in report["numeric"].items():
        lines.append(f"  {name:<16} {d['n_reference']:>7} {d['n_current']:>7} {_fmt(d['psi']):>7}  "
                     f"{d['severity']:<12} {_fmt(d['ks_statistic']):>6} {_fmt(d['ks_p_value'], '.2g'):>9}")
    for name, d in report["categorical"].items():
        lines.append(f"  {name:<16} {d['n_reference']:>7} {d['n_current']:>7} {_fmt(d['psi']):>7}  {d['severity']:<12}")
    c = report["concept"]
    lines.append(f"  concept drift: positive rate {_fmt(c['positive_rate_reference'], '.1%')} -> "
                 f"{_fmt(c['positive_rate_current'], '.1%')} (drop {_fmt(c['drop'], '.1%')}, "
                 f"p={_fmt(c['p_value'], '.2g')}){'  DRIFT' if c['drift'] else ''}")
    return lines
