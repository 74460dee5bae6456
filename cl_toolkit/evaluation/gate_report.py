"""Readable reports: `gate.md` (every regression with its input, expected value and both
outputs; improvements; per-domain deltas; the trend across versions) and the short text
`clt eval` and `clt gate` print."""

from __future__ import annotations

import re

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


def _delta(x: float) -> str:
    return f"{100 * x:+.1f} pt"


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


def gate_markdown(gate: dict, trend: list[dict] | None = None) -> str:
    """The gate report as Markdown."""
    verdict = "PASSED" if gate["passed"] else "BLOCKED"
    acc = gate["accuracy"]
    lines = [f"# Gate {verdict}: {gate['model']} {gate['candidate']} vs {gate['baseline']}", "",
             f"Suite: `{gate['suite']}` (sha256 `{gate['suite_sha256'][:12]}`), gated {gate['gated_at']}.", "",
             f"Accuracy: baseline {_pct(acc['baseline'])}, candidate {_pct(acc['candidate'])} "
             f"({_delta(acc['delta'])}). Regressions: {len(gate['regressions'])}; improvements: "
             f"{len(gate['improvements'])}; failed by both (not regressions): {len(gate['both_failed'])}.", ""]
    lines += ["## Verdict", ""]
    lines += [f"- {r}" for r in gate["reasons"]] or ["- every rule of the policy holds"]
    policy = gate["policy"]
    limits = ", ".join(f"{k} ≤ {v}" for k, v in policy.get("max_regressions", {}).items()) or "none"
    lines += ["", f"Policy: critical regressions ≤ {policy['max_critical_regressions']}, accuracy delta ≥ "
              f"{policy['min_accuracy_delta']:+g}, per-criticality limits: {limits}.", ""]
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
    lines += _trend_table(trend or [])
    return "\n".join(lines).rstrip() + "\n"


def eval_summary(result: dict) -> list[str]:
    """A few lines for the terminal."""
    perf = result["performance"]
    lines = [f"{result['model']} {result['version']} on {result['suite']}: {_pct(result['accuracy'])} "
             f"({result['passed']}/{result['total']})" + ("  [cached]" if result.get("cached") else "")]
    for name, groups in (("domain", result["per_domain"]), ("criticality", result["per_criticality"])):
        for key, g in _ordered(groups):
            lines.append(f"  {name:<11} {key:<20} {_pct(g['accuracy']):>6}  ({g['passed']}/{g['total']})")
    lines.append(f"  {perf['generated_tokens']} tokens in {perf['seconds']:.2f} s: {perf['tokens_per_second']:.1f} "
                 f"tokens/s, peak memory {perf['peak_memory_mb']:.0f} MiB ({perf['device']}, "
                 f"batch {perf['batch_size']})")
    return lines


def gate_summary(gate: dict, where: str) -> list[str]:
    acc = gate["accuracy"]
    lines = [f"gate {'passed' if gate['passed'] else 'BLOCKED'}: {gate['model']} {gate['candidate']} vs "
             f"{gate['baseline']}: accuracy {_pct(acc['baseline'])} -> {_pct(acc['candidate'])} "
             f"({_delta(acc['delta'])}), {len(gate['regressions'])} regression(s), "
             f"{len(gate['improvements'])} improvement(s)"]
    lines += [f"  regression {r['id']} ({r['criticality']}, {r['domain']})" for r in gate["regressions"]]
    lines += [f"  blocked: {r}" for r in gate["reasons"]]
    lines.append(f"  report: {where}")
    return lines
