"""The loop's decisions, without side effects: what to do about one check (roll back, train,
or the recipe to write) and the decision log's text line. The actions that carry a decision
out (move an alias, run a cycle) live in `cl_toolkit.pipeline.loop`."""

from __future__ import annotations

from cl_toolkit.core.semver import bump
from cl_toolkit.monitoring.health import HealthReport
from cl_toolkit.monitoring.observe import LineFacts
from cl_toolkit.monitoring.triggers import TriggerReport


def suggested_recipe(line: LineFacts, urgency: str | None) -> dict:
    """The next recipe to write: a patch after an immediate trigger, else a minor bump,
    continued from the champion (from the newest version if that number is taken)."""
    part = "patch" if urgency == "immediate" else "minor"
    base = line.champion or line.newest_version
    if bump(base, part) in line.versions:
        base = line.newest_version
    version = bump(base, part)
    return {"recipe": f"recipes/{line.model}/{version}.yml", "version": version,
            "command": f"clt recipe new {line.model} --from {base} --strategy continued_lora "
                       f"--bump {part} --data NEW_DATA.jsonl"}


def decide(trigger: TriggerReport, health: HealthReport, line: LineFacts, *,
           auto_train: str | None, auto_rollback: bool) -> list[dict]:
    """What to do about one check: rollback (or its recommendation), train (or the recipe
    to write), or nothing."""
    actions = []
    if health.status == "critical":
        do = auto_rollback and health.rollback_to is not None
        actions.append({"action": "rollback" if do else "recommend_rollback", "to": health.rollback_to})
    if trigger.due:
        if auto_train:
            actions.append({"action": "train", "recipe": str(auto_train)})
        else:
            actions.append({"action": "write_recipe", **suggested_recipe(line, trigger.urgency)})
    return actions or [{"action": "none"}]


def _cycle_text(cycle: dict) -> str:
    """A trained version's fate in words: its release status and the gate's verdict."""
    gate = cycle.get("gate") or {}
    if "skipped" in gate:
        verdict = f"gate skipped ({gate['skipped']})"
    elif gate.get("passed"):
        verdict = "gate passed"
    else:
        verdict = "gate BLOCKED: " + ("; ".join(gate.get("reasons") or []) or "see the gate report")
    text = f" -> {cycle['version']} {cycle['status'] or 'not released'} ({verdict})"
    return text + (f", report {cycle['report']}" if cycle.get("report") else "")


def _action_text(a: dict) -> str:
    text = a["action"]
    if a.get("to"):
        text += f" to {a['to']}"
    if a.get("recipe"):
        text += f" {a['recipe']}"
    if a.get("command"):
        text += f" ({a['command']})"
    if "rolled_back" in a:
        text += f" -> rolled back {a['rolled_back']['from']} -> {a['rolled_back']['to']}"
    if "cycle" in a:
        text += _cycle_text(a["cycle"])
    for key in ("skipped", "error"):
        if key in a:
            text += f" -> {key}: {a[key]}"
    return text


def format_decision(record: dict) -> str:
    """One logged decision as one line of text: the trigger, the health, what was done."""
    trig, health = record["trigger"], record["health"]
    due = f"update due ({trig['urgency']}: {', '.join(trig['fired'])})" if trig["due"] else "no update due"
    return (f"{record['at']} {record['model']} champion {record['champion'] or '-'}: {due}; "
            f"health {health['status']}; {'; '.join(_action_text(a) for a in record['actions'])}")
