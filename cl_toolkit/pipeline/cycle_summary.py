"""What `clt cycle` tells a person: each step's seconds (the Axolotl training process and the
generation of evaluation answers apart from the toolkit's own overhead) and the closing
summary: version, verdict with the deciding rule, accuracy per suite against the parent, the
alias the registry holds now, where the reports are, where the time went. Pure functions
over what `run_cycle` returns."""

from __future__ import annotations

from collections.abc import Callable

from cl_toolkit.evaluation.policy import pt as points

WAITS = ("axolotl", "generation")  # time the toolkit waits on; the rest is its own


def step_timing(seconds: float, waited: dict) -> dict:
    """A step's seconds: in the Axolotl training process, in generation, and the toolkit's
    own (the rest)."""
    axolotl, generation = waited.get("axolotl", 0.0), waited.get("generation", 0.0)
    return {"seconds": round(seconds, 2), "axolotl": round(axolotl, 2), "generation": round(generation, 2),
            "toolkit": round(max(seconds - axolotl - generation, 0.0), 2)}


def overhead(seconds: float, timings: dict) -> dict:
    """The whole run: its seconds (the input checks of skipped steps included), the time
    waited on Axolotl and on generation, the toolkit's own, and that against the training
    process (None when nothing trained)."""
    axolotl = sum(t["axolotl"] for t in timings.values())
    generation = sum(t["generation"] for t in timings.values())
    toolkit = max(seconds - axolotl - generation, 0.0)
    return {"seconds": round(seconds, 2), "axolotl": round(axolotl, 2), "generation": round(generation, 2),
            "toolkit": round(toolkit, 2), "toolkit_vs_axolotl": round(toolkit / axolotl, 4) if axolotl else None}


def secs(x: float) -> str:
    return f"{x:.1f} s" if x < 10 else f"{x:.0f} s"


def timing_text(step: str, t: dict) -> str:
    """`render 2.1 s`, `train 95 s (axolotl 88 s, toolkit 7 s)`, `evaluate 12 s (generation 9 s, toolkit 3 s)`."""
    parts = [f"{k} {secs(t[k])}" for k in WAITS if t[k]]
    return f"{step} {secs(t['seconds'])}" + (f" ({', '.join(parts)}, toolkit {secs(t['toolkit'])})" if parts else "")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def verdict_line(gate: dict | None) -> str:
    """The gate's verdict and the rule that decided it: the first failed one (and how many
    more failed), or how many held."""
    if not gate:
        return "gate: not run"
    if "skipped" in gate:
        return f"gate: skipped ({gate['skipped']})"
    if gate["passed"]:
        rules = f"all {gate['rules']} rules held" if gate.get("rules") else "every rule held"
        return f"gate: passed, {rules} on {len(gate.get('suites', {}))} suite(s)"
    reasons = gate.get("reasons") or ["no reason recorded"]
    more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return f"gate: BLOCKED by {reasons[0]}{more}"


def accuracy_lines(evaluations: dict | None, version: str, parent: str | None) -> list[str]:
    """Accuracy per suite of the version against its parent, the change in points."""
    if evaluations and "skipped" in evaluations:
        return [f"accuracy: {evaluations['skipped']}"]
    if not evaluations or version not in evaluations:
        return []
    mine, theirs = evaluations[version], evaluations.get(parent or "", {})
    head = ["suite", *([parent] if theirs else []), version, *(["change"] if theirs else [])]
    rows = [head]
    for name, r in mine.items():
        before = theirs.get(name, {}).get("accuracy")
        change = "—" if before is None else points(r['accuracy'] - before)
        rows.append([name, *([_pct(before)] if theirs else []), _pct(r["accuracy"]), *([change] if theirs else [])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                   strict=True)))
            for row in rows]


def alias_line(result: dict, version: str) -> str:
    """The status the registry holds now; when it is not what the release gave, both."""
    now, released, aliases = result["status"], result.get("released_as"), result.get("aliases", {})
    held = ", ".join(f"{a} {v}" for a, v in sorted(aliases.items())) or "no alias set"
    if now in ("champion", "challenger"):
        line = f"alias: {now}"
    elif now == "rejected":
        line = "alias: none (rejected by the gate, archived)"
    elif now == "active":
        line = f"alias: none now ({version} holds no alias)"
    else:
        line = f"alias: none now ({version} is {now})"
    if released and released != now:
        line += f"; released as {released}, moved since"
    return f"{line}  [line now: {held}]"


def time_line(o: dict, ran: list[str]) -> str:
    if not ran:
        return f"time: {secs(o['seconds'])}, nothing to run (every step done before, inputs unchanged)"
    waits = ", ".join(f"{k} {secs(o[k])}" for k in WAITS if o[k])
    share = (f" = {100 * o['toolkit_vs_axolotl']:.0f}% of the training process"
             if o.get("toolkit_vs_axolotl") is not None else "")
    return f"time: {secs(o['seconds'])}" + (f" ({waits})" if waits else "") + f"; toolkit {secs(o['toolkit'])}{share}"


def summary_lines(result: dict, model: str, version: str, parent: str | None, strategy: str,
                  where: Callable[[str], str] = str) -> list[str]:
    """The closing summary of one `clt cycle` run. `where` turns a workspace-relative path
    into what the user should see."""
    out = result["outputs"]
    lineage = f"{strategy} from {parent}" if parent else strategy
    if result["status"] is None:
        done, nxt = list(out), result.get("next_step")
        lines = [f"{model} {version} ({lineage}): stopped after {done[-1] if done else 'no step'}"
                 + (f"; the next run resumes at {nxt}" if nxt else "")]
    else:
        lines = [f"{model} {version} ({lineage})", "  " + verdict_line(out.get("gate"))]
        lines += ["  " + x for x in accuracy_lines(out.get("evaluate"), version, parent)]
        lines.append("  " + alias_line(result, version))
    for label, path in (("report", out.get("report", {}).get("html")), ("gate report", out.get("gate", {}).get("report")),
                        ("plan", out.get("analyze", {}).get("plan_md"))):
        if path:
            lines.append(f"  {label}: {where(path)}")
    lines.append("  " + time_line(result["overhead"], result["ran"]))
    return lines
