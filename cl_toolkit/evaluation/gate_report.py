"""Readable reports: `gate.md` (every regression with its input, expected value and both
outputs; improvements; per-domain deltas; the trend across versions) and the short text
`clt eval` and `clt gate` print."""

from __future__ import annotations

import re

from cl_toolkit.evaluation.policy import pt as _delta
from cl_toolkit.evaluation.suite import CRITICALITIES


def code(text) -> str:
    """Markdown inline code that survives backticks and newlines in model output."""
    text = " ".join(str(text).split()) if not isinstance(text, list) else " | ".join(map(str, text))
    if not text:
        return "*(empty)*"
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _case_block(row: dict) -> list[str]:
    return [
        f"### `{row['id']}` — {row['criticality']}, {row['domain']}",
        "",
        f"- **Input:** {code(row['input'])}",
        f"- **Expected** ({row['match']}): {code(row['expected'])}",
        f"- **Baseline output:** {code(row['baseline_output'])}",
        f"- **Candidate output:** {code(row['candidate_output'])}",
        "",
    ]


def _ordered(groups: dict) -> list[tuple[str, dict]]:
    """Criticalities most severe first, anything else by name (JSON files sort keys)."""
    rank = {c: i for i, c in enumerate(CRITICALITIES)}
    return sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def _group_table(title: str, groups: dict) -> list[str]:
    lines = [f"| {title} | cases | baseline | candidate | delta | regressions | improvements |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, g in _ordered(groups):
        lines.append(f"| {name} | {g['total']} | {_pct(g['baseline'])} | {_pct(g['candidate'])} | "
                     f"{_delta(g['delta'])} | {g['regressions']} | {g['improvements']} |")
    return [*lines, ""]


def _trend_table(trend: list[dict]) -> list[str]:
    if not trend:
        return []
    domains = sorted({d for e in trend for d in e["per_domain"]})
    lines = ["## Trend across versions (this suite)", "",
             "| version | overall | " + " | ".join(domains) + " |",
             "|---|---:|" + "---:|" * len(domains)]
    for e in trend:
        cells = [_pct(e["per_domain"][d]) if d in e["per_domain"] else "–" for d in domains]
        lines.append(f"| {e['version']} | {_pct(e['accuracy'])} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _p(x) -> str:
    return "–" if x is None else f"{x:.3g}"


def _drop(x) -> str:
    return "none possible" if x is None else f"{100 * x:.1f} pt"


def _suites_table(suites: list[dict]) -> list[str]:
    lines = ["## Suites", "",
             "| suite | role | cases | baseline | candidate | delta | interval | p (drop) | p (two-sided) "
             "| lost / won | detectable drop | verdict |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for v in suites:
        iv, m = v["interval"], v["mcnemar"]
        lines.append(f"| {v['suite']} | {v['role']} | {v['n']} | {_pct(v['baseline'])} | {_pct(v['candidate'])} | "
                     f"{_delta(v['delta'])} | {100 * iv['confidence']:g}%: [{_delta(iv['low'])}, {_delta(iv['high'])}] | "
                     f"{_p(m['p_drop'])} | {_p(m['p_two_sided'])} | {m['b']} / {m['c']} | "
                     f"{_drop(v.get('detectable_drop'))} | {'passed' if v['passed'] else 'BLOCKED'} |")
    lines += ["", "The interval is a paired bootstrap of candidate - baseline accuracy; p (drop) is the one-sided "
              "exact McNemar test on the lost / won cases; the detectable drop is the smallest drop this many "
              "cases can show as significant at the suite's alpha when nothing improved at the same time "
              "(every improvement raises it)."]
    for v in suites:
        notes = []
        if v.get("detectable_drop") is None:
            notes.append(f"{v['suite']}: with {v['n']} cases no drop can be significant at alpha {v.get('alpha', 0.05):g}")
        elif v["mcnemar"]["c"] and v.get("detectable_drop_observed") is None:
            notes.append(f"{v['suite']}: with {v['mcnemar']['c']} case(s) won at the same time, no drop could have "
                         "been significant")
        elif v["mcnemar"]["c"]:
            notes.append(f"{v['suite']}: with {v['mcnemar']['c']} case(s) won at the same time, a drop is significant "
                         f"from {_drop(v['detectable_drop_observed'])}")
        if v.get("samples", 1) > 1:
            notes.append(f"{v['suite']}: pass rates over {v['samples']} samples per case")
        lines += [f"- {n}" for n in notes]
    return [*lines, ""]


def _fmt_number(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _rules_list(suites: list[dict]) -> list[str]:
    lines = ["## Rules", ""]
    for v in suites:
        for r in v["rules"]:
            numbers = ", ".join(f"{k} {_fmt_number(x)}" for k, x in r["numbers"].items())
            lines.append(f"- {'pass' if r['passed'] else '**BLOCK**'} · `{r['rule']}` on {v['suite']}: "
                         f"{r['message']} ({numbers})")
    return [*lines, ""]


def _matrix_table(matrix: dict) -> list[str]:
    versions, suites, scores = matrix.get("versions") or [], matrix.get("suites") or [], matrix.get("scores") or {}
    if not versions or not suites:
        return []
    lines = ["## Accuracy matrix (every version x every suite)", "",
             "| version | " + " | ".join(suites) + " |", "|---|" + "---:|" * len(suites)]
    for ver in versions:
        row = scores.get(ver, {})
        lines.append(f"| {ver} | " + " | ".join("–" if row.get(s) is None else _pct(row[s]) for s in suites) + " |")
    best = matrix.get("best") or {}
    if best:
        lines.append("| best | " + " | ".join(f"{_pct(best[s]['accuracy'])} ({best[s]['version']})" if best.get(s)
                                                 else "–" for s in suites) + " |")
    forgetting = matrix.get("forgetting") or {}
    if forgetting:
        # the benchmark's forgetting: the best earlier score minus the newest one (negative:
        # the newest version is the best yet), as `clt eval matrix` and the report print it
        lines.append("| forgetting | " + " | ".join("–" if forgetting.get(s) is None else _delta(forgetting[s] or 0.0)
                                                     for s in suites) + " |")
    if matrix.get("bwt") is not None:
        lines += ["", f"Backward transfer (BWT): {_delta(matrix['bwt'])}."]
    return [*lines, ""]


def _policy_line(policy: dict) -> str:
    limits = ", ".join(f"{k} ≤ {v}" for k, v in (policy.get("max_regressions") or {}).items()) or "none"
    parts = [f"critical regressions ≤ {policy.get('max_critical_regressions', 0)}"]
    for key, label in (("non_inferiority_margin", "non-inferiority margin"), ("alpha", "alpha"),
                       ("min_learning", "min learning")):
        if policy.get(key) is not None:
            parts.append(f"{label} {policy[key]}")
    if policy.get("min_accuracy_delta") is not None:
        floor = policy["min_accuracy_delta"]
        parts.append(f"accuracy delta ≥ {floor:+g}" if isinstance(floor, int | float) else f"accuracy delta ≥ {floor}")
    return f"Policy: {', '.join(parts)}, per-criticality limits: {limits}."


def gate_markdown(gate: dict, trend: list[dict] | None = None) -> str:
    """The gate report as Markdown: the verdict, every suite's statistics and rules, the
    accuracy matrix when there is one, then the regression suite's cases in full."""
    verdict = "PASSED" if gate["passed"] else "BLOCKED"
    lines = [f"# Gate {verdict}: {gate['model']} {gate['candidate']} vs {gate['baseline']}", ""]
    if "accuracy" in gate:
        acc = gate["accuracy"]
        lines += [f"Suite: `{gate['suite']}` (sha256 `{gate['suite_sha256'][:12]}`), gated {gate['gated_at']}.", "",
                  f"Accuracy: baseline {_pct(acc['baseline'])}, candidate {_pct(acc['candidate'])} "
                  f"({_delta(acc['delta'])}). Regressions: {len(gate['regressions'])}; improvements: "
                  f"{len(gate['improvements'])}; failed by both (not regressions): {len(gate['both_failed'])}.", ""]
    else:
        lines += [f"Gated {gate['gated_at']}.", ""]
    lines += ["## Verdict", ""]
    lines += [f"- {r}" for r in gate["reasons"]] or ["- every rule of the policy holds"]
    lines += ["", _policy_line(gate.get("policy") or {}), ""]
    suites = gate.get("suites") or []
    if suites:
        lines += _suites_table(suites) + _rules_list(suites)
    if gate.get("matrix"):
        lines += _matrix_table(gate["matrix"])
    if "accuracy" in gate:
        lines += [f"## Regressions ({len(gate['regressions'])})", ""]
        for row in gate["regressions"]:
            lines += _case_block(row)
        if not gate["regressions"]:
            lines += ["None.", ""]
        lines += [f"## Improvements ({len(gate['improvements'])})", ""]
        for row in gate["improvements"]:
            lines += _case_block(row)
        if not gate["improvements"]:
            lines += ["None.", ""]
        lines += ["## Per domain", "", *_group_table("domain", gate["per_domain"])]
        lines += ["## Per criticality", "", *_group_table("criticality", gate["per_criticality"])]
    else:
        for v in suites:
            if v["regressions"]:
                lines += [f"## Regressions on {v['suite']} ({len(v['regressions'])})", ""]
                for row in v["regressions"]:
                    lines += _case_block(row)
    lines += _trend_table(trend or [])
    return "\n".join(lines).rstrip() + "\n"


def eval_summary(result: dict) -> list[str]:
    """A few lines for the terminal."""
    perf = result["performance"]
    lines = [f"{result['model']} {result['version']} on {result['suite']}: {_pct(result['accuracy'])} "
             f"({result['passed']}/{result['total']})" + ("  [cached]" if result.get("cached") else "")]
    if (result.get("settings") or {}).get("samples", 1) > 1:
        st = result["settings"]
        lines.append(f"  accuracy is the mean pass rate over {st['samples']} samples per case "
                     f"(temperature {st['temperature']:g}, seed {st['seed']}); passed: rate >= 0.5")
    for name, groups in (("domain", result["per_domain"]), ("criticality", result["per_criticality"])):
        for key, g in _ordered(groups):
            lines.append(f"  {name:<11} {key:<20} {_pct(g['accuracy']):>6}  ({g['passed']}/{g['total']})")
    lines.append(f"  {perf['generated_tokens']} tokens in {perf['seconds']:.2f} s: {perf['tokens_per_second']:.1f} "
                 f"tokens/s, peak memory {perf['peak_memory_mb']:.0f} MiB ({perf['device']}, "
                 f"batch {perf['batch_size']})")
    return lines


def gate_summary(gate: dict, where: str) -> list[str]:
    head = f"gate {'passed' if gate['passed'] else 'BLOCKED'}: {gate['model']} {gate['candidate']} vs {gate['baseline']}"
    if "accuracy" not in gate:
        lines = [head]
    else:
        acc = gate["accuracy"]
        lines = [f"{head}: accuracy {_pct(acc['baseline'])} -> {_pct(acc['candidate'])} "
                 f"({_delta(acc['delta'])}), {len(gate['regressions'])} regression(s), "
                 f"{len(gate['improvements'])} improvement(s)"]
        lines += [f"  regression {r['id']} ({r['criticality']}, {r['domain']})" for r in gate["regressions"]]
    for v in gate.get("suites") or []:
        iv = v["interval"]
        lines.append(f"  suite {v['suite']} ({v['role']}, {v['n']} cases): {_pct(v['baseline'])} -> "
                     f"{_pct(v['candidate'])}, interval [{_delta(iv['low'])}, {_delta(iv['high'])}], "
                     f"p(drop) {_p(v['mcnemar']['p_drop'])}, detectable drop {_drop(v.get('detectable_drop'))}"
                     f"{'' if v['passed'] else ': BLOCKED'}")
    lines += [f"  blocked: {r}" for r in gate["reasons"]]
    lines.append(f"  report: {where}")
    return lines
