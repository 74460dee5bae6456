"""The benchmark's numbers over seeds: each line's metrics (one strategy, one seed), each
strategy's mean and standard deviation over its seeds, and every strategy set against a
reference with the difference labelled "within noise" when it is no larger than the
combined standard deviation. Pure functions over the result document's dicts."""

from __future__ import annotations

import math

import numpy as np

from cl_toolkit.bench.stream import Stream
from cl_toolkit.evaluation.cl_metrics import summarize

METRICS = ("acc", "bwt", "forgetting", "plasticity_mean")
COMPUTE = ("optimizer_steps", "training_tokens", "trainer_seconds", "train_seconds", "step_seconds")
GENERAL = "general"
WITHIN, BEYOND, UNKNOWN = "within noise", "beyond noise", "noise unknown (one seed)"


def mean_std(values: list[float | None]) -> dict:
    """Mean and sample standard deviation (ddof 1; None with fewer than two values) of the
    values that are not None; n says how many."""
    xs = np.array([v for v in values if v is not None], dtype=float)
    if not xs.size:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(xs, ddof=1)) if xs.size > 1 else None
    return {"mean": round(float(np.mean(xs)), 6), "std": None if std is None else round(std, 6), "n": int(xs.size)}


def noise_label(a: dict, b: dict) -> dict:
    """b minus a (two mean_std results) and whether the difference is noise: |delta| at most
    the combined standard deviation sqrt(sd_a^2 + sd_b^2)."""
    if a["mean"] is None or b["mean"] is None:
        return {"delta": None, "noise": None, "label": UNKNOWN}
    delta = round(b["mean"] - a["mean"], 6)
    if a["std"] is None or b["std"] is None:
        return {"delta": delta, "noise": None, "label": UNKNOWN}
    noise = round(math.hypot(a["std"], b["std"]), 6)
    return {"delta": delta, "noise": noise, "label": WITHIN if abs(delta) <= noise else BEYOND}


def line_metrics(steps: list[dict], stream: Stream) -> dict:
    """One line's metrics: per test suite those of its accuracy matrix, the general
    accuracy after each experience, and its compute per experience and in total."""
    general = [name for name, _ in stream.general]
    return {
        "metrics": {s: summarize([step[s] for step in steps]) for s in stream.suites},
        GENERAL: {g: [step[GENERAL][g] for step in steps] for g in general},
        "compute": {k: [step.get(k) for step in steps] for k in COMPUTE},
        "totals": {k: round(sum(step.get(k) or 0 for step in steps), 2) for k in COMPUTE},
    }


def summarize_runs(runs: list[dict], base: dict, stream: Stream) -> dict:
    """A strategy over its seeds: mean +- std of every metric per suite, the mean accuracy
    matrix, the general accuracy after the last experience and its drop from the base's,
    and compute per experience (mean over seeds) and in total."""
    out: dict = {"seeds": [r["seed"] for r in runs], "metrics": {}, GENERAL: {}, "compute": {}, "totals": {}}
    for s in stream.suites:
        ms = [r["metrics"][s] for r in runs]
        out["metrics"][s] = {m: mean_std([x[m] for x in ms]) for m in METRICS}
        out["metrics"][s]["R"] = np.round(np.mean([x["R"] for x in ms], axis=0), 6).tolist()
    for g, before in base.get("accuracy", {}).get(GENERAL, {}).items():
        finals = [r[GENERAL][g][-1] for r in runs]
        out[GENERAL][g] = {"final": mean_std(finals), "drop": mean_std([before - f for f in finals]), "base": before}
    for k in COMPUTE:
        per = [r["compute"][k] for r in runs]
        out["compute"][k] = [mean_std([p[i] for p in per])["mean"] for i in range(len(stream.experiences))]
        out["totals"][k] = mean_std([r["totals"][k] for r in runs])
    return out


def reference_of(names: list[str]) -> str:
    """What the others are compared with: naive when it runs, else the first strategy."""
    return "naive" if "naive" in names else names[0]


def compare_all(runs: dict[str, list[dict]], base: dict, stream: Stream) -> dict:
    """Every strategy against the reference: the differences of the headline suite's
    metrics and of the general accuracy, each labelled, and the cost-matched view: training
    tokens per experience as a multiple of the reference's."""
    summaries = {n: summarize_runs(r, base, stream) for n, r in runs.items()}
    ref = reference_of(list(runs))
    head = stream.suites[0]
    general = [name for name, _ in stream.general][:1]
    ref_tokens = summaries[ref]["compute"]["training_tokens"]
    out = {"reference": ref, "suite": head, "strategies": {}}
    for name, summ in summaries.items():
        deltas = {m: noise_label(summaries[ref]["metrics"][head][m], summ["metrics"][head][m]) for m in METRICS}
        for g in general:
            if g in summ[GENERAL]:
                deltas[f"general:{g}"] = noise_label(summaries[ref][GENERAL][g]["final"], summ[GENERAL][g]["final"])
        ratios = [round(t / r, 3) if t is not None and r else None
                  for t, r in zip(summ["compute"]["training_tokens"], ref_tokens, strict=True)]
        known = [x for x in ratios if x is not None]
        out["strategies"][name] = {"deltas": deltas, "tokens_vs_reference": ratios,
                                   "max_tokens_vs_reference": max(known) if known else None}
    return out
