"""`clt trigger check`, `clt drift`, `clt ab analyze`, `clt health`, `clt loop`: thin
commands over the monitoring library. Exit 3 means the decision was "no" (no update due,
no promotion, a critical champion left in place)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from cl_toolkit.cli.options import json_option, who_option
from cl_toolkit.cli.output import emit, say
from cl_toolkit.core.errors import BadInput, CltError, Refused
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.feedback.records import now_timestamp
from cl_toolkit.feedback.store import open_store
from cl_toolkit.monitoring.ab import analyze, arms_of, format_ab, with_overrides
from cl_toolkit.monitoring.config import load_config
from cl_toolkit.monitoring.decisions import format_decision
from cl_toolkit.monitoring.drift import drift_report, format_drift
from cl_toolkit.monitoring.health import format_health
from cl_toolkit.monitoring.observe import ab_rows, gather, registry_model, window_columns
from cl_toolkit.monitoring.triggers import check_triggers, format_report
from cl_toolkit.monitoring.windows import at_or_now, parse_interval, parse_window
from cl_toolkit.pipeline import loop as loop_mod
from cl_toolkit.pipeline.loop import check_health
from cl_toolkit.registry import open_registry

config_option = click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
                             help="Monitoring policy (default: configs/triggers.yml, else built-in defaults).")
at_option = click.option("--at", default=None, metavar="TIME",
                         help="Judge as of this ISO time instead of now (replays history).")
model_argument = click.argument("model", required=False)


@click.group("trigger")
def trigger_cli():
    """Is a model update due? (thresholds: configs/triggers.yml)"""


@trigger_cli.command("check")
@model_argument
@at_option
@config_option
@json_option()
def check_cmd(model, at, config, as_json):
    """Evaluate every trigger rule for MODEL (intervals in days).

    Exit code: 0 an update is due, 3 no update is due (the check ran; not an error),
    2 bad input (the policy file, an unknown or unnamed model line)."""
    cfg = load_config(config)
    with open_store() as store, open_registry() as reg:
        model = registry_model(reg, model)
        report = check_triggers(gather(store.conn, reg, model, at_or_now(at), cfg), cfg)
    emit({**report.as_dict(), "config": cfg.source}, as_json, format_report(report) + [
        "exit 0: an update is due" if report.due else "exit 3: no update is due (not an error)"])
    if not report.due:
        raise Refused(f"no update due for {model}")


@click.command("drift")
@click.option("--reference", required=True, metavar="START..END", help="Reference window (ISO dates or times).")
@click.option("--current", required=True, metavar="START..END", help="Current window (a date END is inclusive).")
@config_option
@json_option()
def drift_cli(reference, current, config, as_json):
    """PSI and Kolmogorov-Smirnov per feature, and concept drift, between two windows."""
    cfg = load_config(config)
    windows = {"reference": parse_window(reference, "--reference"), "current": parse_window(current, "--current")}
    with open_store() as store:
        columns = window_columns(store.conn, windows)
    report = {**{k: w.as_dict() for k, w in windows.items()},
              **drift_report(columns["reference"], columns["current"], cfg.drift), "config": cfg.source}
    emit(report, as_json, format_drift(report))


@click.group("ab")
def ab_cli():
    """Champion against challenger on production feedback."""


@ab_cli.command("analyze")
@model_argument
@click.option("--champion", required=True, metavar="VERSION", help="The version serving most traffic.")
@click.option("--challenger", required=True, metavar="VERSION", help="The version under test.")
@click.option("--window", default=None, metavar="START..END", help="Only predictions in this window.")
@click.option("--min-samples", type=click.IntRange(min=1), default=None,
              help="Rated predictions per arm before a verdict (default: ab.min_samples_per_arm).")
@click.option("--min-improvement", type=click.FloatRange(0, 1), default=None,
              help="Gain in positive rate needed to promote (default: ab.min_improvement).")
@config_option
@json_option()
def analyze_cmd(model, champion, challenger, window, min_samples, min_improvement, config, as_json):
    """z-test, weighted score and verdict for CHAMPION vs CHALLENGER. Exit 0 on promote, else 3."""
    if champion == challenger:
        raise BadInput("--champion and --challenger must be different versions")
    cfg, versions = load_config(config), [champion, challenger]
    with open_store() as store, open_registry() as reg:
        model, rows = ab_rows(store.conn, reg, model, versions, parse_window(window, "--window") if window else None)
    result = analyze(*arms_of(rows, versions), with_overrides(cfg.ab, min_samples, min_improvement), model)
    emit({**result.as_dict(), "config": cfg.source}, as_json, format_ab(result))
    if result.verdict != "promote":
        raise Refused(f"challenger {challenger} is not promoted over champion {champion}: {result.verdict}")


@click.command("health")
@model_argument
@click.option("--auto-rollback", is_flag=True, help="Roll a critical champion back through the registry.")
@who_option()
@at_option
@config_option
@json_option()
def health_cli(model, auto_rollback, who, at, config, as_json):
    """The champion's recent positive rate against its release baseline. Exit 3 when it is
    critical and was not rolled back."""
    cfg = load_config(config)
    with open_store() as store, open_registry() as reg:
        model = registry_model(reg, model)
        report, move = check_health(reg, gather(store.conn, reg, model, at_or_now(at), cfg), cfg,
                                    auto_rollback=auto_rollback, who=who)
    done = f"rolled back: {model} champion {move.previous} -> {move.version}" if move else None
    rolled = {"from": move.previous, "to": move.version} if move else None
    emit({**report.as_dict(), "rolled_back": rolled, "config": cfg.source}, as_json, format_health(report, done))
    if report.status == "critical" and move is None:
        raise Refused(f"{model}'s champion is critical and was not rolled back")


@click.command("loop")
@model_argument
@click.option("--interval", default="1h", show_default=True, help="Time between checks: 30s, 15m, 1h, 1d.")
@click.option("--once", is_flag=True, help="Check once and exit.")
@click.option("--auto-train", "recipe", default=None, metavar="RECIPE",
              help="Run this recipe's cycle (train, evaluate, gate, release) when an update is due (else: say which recipe to write).")
@click.option("--auto-rollback", is_flag=True, help="Roll a critical champion back.")
@who_option()
@click.option("--at", default=None, metavar="TIME", help="With --once: judge as of this ISO time.")
@config_option
@json_option()
def loop_cli(model, interval, once, recipe, auto_rollback, who, at, config, as_json):
    """Run the trigger and health checks on a schedule; every decision is appended to
    WORKSPACE/monitoring/decisions.jsonl."""
    seconds = parse_interval(interval)
    if at and not once:
        raise BadInput("--at needs --once (a schedule runs at the current time)")
    cfg, ws = load_config(config), workspace_dir()
    step = partial(loop_mod.run_step, ws, model, cfg, at=at, auto_train=recipe, auto_rollback=auto_rollback, who=who,
                   say=lambda message: click.echo(message, err=True))
    loop_mod.run_loop(step, seconds, once, on_record=partial(_show_decision, as_json, once),
                      on_error=partial(_log_error, ws, model))


def _show_decision(as_json: bool, once: bool, record: dict) -> None:
    emit(record, as_json, lambda: [format_decision(record)], one_line=True)
    errors = [a["error"] for a in record["actions"] if "error" in a]
    if once and errors:
        raise CltError("; ".join(errors))


def _log_error(ws: Path, model: str | None, error: CltError) -> None:
    loop_mod.append_decision(ws, {"at": now_timestamp(), "model": model, "error": str(error)})
    say(f"error: {error} (will check again)")
