"""`clt loop`: the trigger and health checks on a schedule.

Each step reads the facts once, judges triggers and health, decides, acts, and appends
the decision to `workspace/monitoring/decisions.jsonl` (one JSON object a line). It rolls
back only with --auto-rollback and trains only when --auto-train names a recipe;
otherwise the decision says which rollback to run or which recipe to write.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from cl_toolkit.core.errors import BadInput, CltError
from cl_toolkit.core.semver import bump
from cl_toolkit.feedback.store import open_store
from cl_toolkit.monitoring.config import MonitorConfig
from cl_toolkit.monitoring.health import HealthReport, assess_health, perform_rollback
from cl_toolkit.monitoring.observe import LineFacts, gather, registry_model
from cl_toolkit.monitoring.triggers import TriggerReport, check_triggers
from cl_toolkit.monitoring.windows import at_or_now
from cl_toolkit.registry import RegistryStore, open_registry

DECISIONS = Path("monitoring") / "decisions.jsonl"


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


def _train(recipe: str, reg: RegistryStore, model: str, workspace: Path) -> dict:
    from cl_toolkit.training.strategies import (
        load_recipe,  # training imports are heavy: only when asked
    )
    from cl_toolkit.training.train import train

    lr = load_recipe(recipe, workspace=workspace)
    if lr.recipe.model != model:
        raise BadInput(f"{recipe} trains {lr.recipe.model}, not {model}")
    if reg.get(model, lr.recipe.version):
        return {"skipped": f"{model} {lr.recipe.version} is already registered; write the next recipe"}
    result = train(lr, reg)
    return {"registered": result.record.version}


def execute(action: dict, reg: RegistryStore, health: HealthReport, workspace: Path, who: str | None) -> dict:
    """Carry out one action; the outcome, or the error that stopped it."""
    try:
        if action["action"] == "rollback":
            move = perform_rollback(reg, health, who, via="clt loop --auto-rollback")
            return {"rolled_back": {"from": move.previous, "to": move.version}}
        if action["action"] == "train":
            return _train(action["recipe"], reg, health.model, workspace)
    except CltError as e:
        return {"error": str(e)}
    return {}


def append_decision(workspace: Path, record: dict) -> Path:
    """Append one decision as a JSON line (one write, flushed to disk)."""
    path = workspace / DECISIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def run_step(workspace: Path, model: str | None, cfg: MonitorConfig, *, at: str | None = None,
             auto_train: str | None = None, auto_rollback: bool = False, who: str | None = None) -> dict:
    """One check: gather, judge, decide, act, log. Returns the logged decision."""
    with open_store(workspace) as store, open_registry(workspace) as reg:
        model = registry_model(reg, model)
        facts = gather(store.conn, reg, model, at_or_now(at), cfg)
        trigger, health = check_triggers(facts, cfg), assess_health(facts, cfg)
        actions = decide(trigger, health, facts.line, auto_train=auto_train, auto_rollback=auto_rollback)
        for action in actions:
            action.update(execute(action, reg, health, workspace, who))
    record = {"at": facts.at, "model": model, "champion": facts.line.champion,
              "trigger": {"due": trigger.due, "urgency": trigger.urgency,
                          "fired": [r.name for r in trigger.rules if r.fired],
                          "cooldown_active": trigger.cooldown_active},
              "health": {"status": health.status, "drop": health.drop, "p_value": health.p_value,
                         "detail": health.detail},
              "actions": actions, "config": cfg.source}
    append_decision(workspace, record)
    return record


def run_loop(step: Callable[[], dict], interval_s: float, once: bool, *, on_record: Callable[[dict], None],
             on_error: Callable[[CltError], None], sleep: Callable[[float], None] = time.sleep) -> None:
    """Run `step` now and then every interval; with `once`, one step and its errors raised."""
    while True:
        try:
            on_record(step())
        except CltError as e:
            if once:
                raise
            on_error(e)
        if once:
            return
        sleep(interval_s)


def format_decision(record: dict) -> str:
    trig, health = record["trigger"], record["health"]
    due = f"update due ({trig['urgency']}: {', '.join(trig['fired'])})" if trig["due"] else "no update due"
    acts = []
    for a in record["actions"]:
        text = a["action"]
        if a.get("to"):
            text += f" to {a['to']}"
        if a.get("recipe"):
            text += f" {a['recipe']}"
        if a.get("command"):
            text += f" ({a['command']})"
        if "rolled_back" in a:
            text += f" -> rolled back {a['rolled_back']['from']} -> {a['rolled_back']['to']}"
        for key in ("registered", "skipped", "error"):
            if key in a:
                text += f" -> {key}: {a[key]}"
        acts.append(text)
    return (f"{record['at']} {record['model']} champion {record['champion'] or '-'}: {due}; "
            f"health {health['status']}; {'; '.join(acts)}")
