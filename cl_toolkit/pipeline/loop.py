"""`clt loop`: the trigger and health checks on a schedule, and the actions they decide.

Each step reads the facts once, judges triggers and health, decides (the pure part lives in
`monitoring.decisions`), acts, and appends the decision to
`workspace/monitoring/decisions.jsonl` (one JSON object a line). It rolls back only with
--auto-rollback and updates only when --auto-train names a recipe, by running that
recipe's whole cycle (train, evaluate, gate, release, report), so an automatic update is
gated like a manual one; otherwise the decision says which rollback to run or which
recipe to write.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from cl_toolkit.core.errors import BadInput, CltError, Refused
from cl_toolkit.feedback.store import open_store
from cl_toolkit.monitoring.config import MonitorConfig
from cl_toolkit.monitoring.decisions import decide
from cl_toolkit.monitoring.health import HealthReport, assess_health
from cl_toolkit.monitoring.observe import Facts, gather, registry_model
from cl_toolkit.monitoring.triggers import check_triggers
from cl_toolkit.monitoring.windows import at_or_now
from cl_toolkit.registry import AliasMove, RegistryStore, open_registry, rollback
from cl_toolkit.registry.db import current_user

DECISIONS = Path("monitoring") / "decisions.jsonl"


def rollback_reason(report: HealthReport) -> str:
    return f"auto-rollback: {report.champion} is critical ({report.detail})"


def perform_rollback(reg: RegistryStore, report: HealthReport, who: str | None = None,
                     via: str = "clt health --auto-rollback"):
    """Roll a critical champion back through the registry (logged with who and why)."""
    if report.status != "critical":
        raise ValueError("only a critical champion is rolled back")
    if reg.alias(report.model, "champion") != report.champion:
        raise Refused(f"{report.model}'s champion changed since the check; run it again")
    if report.rollback_to is None:
        raise Refused(f"{report.model} {report.champion} is critical but has no earlier champion to roll "
                      f"back to; pick one: clt registry rollback {report.model} --to VERSION --reason ...")
    return rollback(reg, report.model, to=report.rollback_to, reason=rollback_reason(report),
                    who=who or f"{current_user()} ({via})")


def check_health(reg: RegistryStore, facts: Facts, cfg: MonitorConfig, *, auto_rollback: bool = False,
                 who: str | None = None) -> tuple[HealthReport, AliasMove | None]:
    """`clt health`: assess the champion and, with `auto_rollback`, roll a critical one back
    when it has an earlier champion; the report and the move made, if any."""
    report = assess_health(facts, cfg)
    if auto_rollback and report.status == "critical" and report.rollback_to:
        return report, perform_rollback(reg, report, who)
    return report, None


def cycle_outcome(result: dict, version: str) -> dict:
    """What the decision log keeps of a cycle: the version, its release status, the gate's
    verdict and reasons, and the reports (paths relative to the workspace)."""
    outputs = result["outputs"]
    gate = outputs.get("gate", {})
    return {"version": version, "status": result["status"], "ran": result["ran"],
            "gate": {k: gate[k] for k in ("passed", "reasons", "skipped") if k in gate},
            "gate_report": gate.get("report"), "report": outputs.get("report", {}).get("html")}


def _train(recipe: str, model: str, workspace: Path, say: Callable[[str], None]) -> dict:
    """Run (or resume) the recipe's cycle. A version registered outside a cycle (`clt train`)
    or whose cycle finished already is skipped: the next update needs the next recipe."""
    from cl_toolkit.pipeline.cycle import run_cycle, stamp_path  # training imports are heavy
    from cl_toolkit.training.strategies import load_recipe

    lr = load_recipe(recipe, workspace=workspace)
    version = lr.recipe.version
    if lr.recipe.model != model:
        raise BadInput(f"{recipe} trains {lr.recipe.model}, not {model}")
    with open_registry(workspace) as reg:
        registered = reg.get(model, version) is not None
    if registered and (not stamp_path(lr, "register").is_file() or stamp_path(lr, "release").is_file()):
        return {"skipped": f"{model} {version} is already registered; write the next recipe"}
    return {"cycle": cycle_outcome(run_cycle(lr, say=say), version)}


def execute(action: dict, health: HealthReport, workspace: Path, who: str | None,
            say: Callable[[str], None] = lambda message: None) -> dict:
    """Carry out one action; the outcome, or the error that stopped it (recorded, not raised)."""
    try:
        if action["action"] == "rollback":
            with open_registry(workspace) as reg:
                move = perform_rollback(reg, health, who, via="clt loop --auto-rollback")
            return {"rolled_back": {"from": move.previous, "to": move.version}}
        if action["action"] == "train":
            return _train(action["recipe"], health.model, workspace, say)
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
             auto_train: str | None = None, auto_rollback: bool = False, who: str | None = None,
             say: Callable[[str], None] = lambda message: None) -> dict:
    """One check: gather, judge, decide, act, log. Returns the logged decision. The store
    and registry are closed before acting: a cycle opens its own connections, for minutes."""
    with open_store(workspace) as store, open_registry(workspace) as reg:
        model = registry_model(reg, model)
        facts = gather(store.conn, reg, model, at_or_now(at), cfg)
    trigger, health = check_triggers(facts, cfg), assess_health(facts, cfg)
    actions = decide(trigger, health, facts.line, auto_train=auto_train, auto_rollback=auto_rollback)
    for action in actions:
        action.update(execute(action, health, workspace, who, say))
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
