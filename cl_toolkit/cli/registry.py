"""`clt registry ...`: versions, lineage, champion/challenger, rollback, history, check, export."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from cl_toolkit.cli.options import json_option, reason_option, who_option
from cl_toolkit.cli.output import emit
from cl_toolkit.core.errors import Refused
from cl_toolkit.core.files import atomic_write_text
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.core.yamlio import display
from cl_toolkit.registry import (
    ALIASES,
    archive,
    check_registry,
    export_model,
    lineage,
    open_registry,
    promote,
    rollback,
    summary,
)
from cl_toolkit.registry.views import format_event, format_lineage, history, version_detail


def _held(aliases: dict, rec) -> list[str]:
    return [a for a, v in aliases.get(rec.model, {}).items() if v == rec.version]


def _list_line(rec, aliases: dict) -> str:
    tags = " ".join([*_held(aliases, rec), *([rec.status] if rec.status != "active" else [])])
    return f"{rec.model} {rec.version:<8} parent={rec.parent or '-':<8} {rec.strategy:<16} {rec.created_at}  {tags}"


def _show_lines(data: dict) -> list[str]:
    lines = []
    for key, value in data.items():
        if key == "recent_events":
            lines.append("recent events:\n" + "\n".join("  " + format_event(e) for e in value))
        elif key == "artifacts":
            lines.append(f"{key:>14}: {len(value)} files, {sum(f['bytes'] for f in value)} bytes")
        else:
            lines.append(f"{key:>14}: {json.dumps(value) if isinstance(value, dict | list | tuple) else value}")
    return lines


def report_option():
    return click.option("--report/--no-report", default=True, show_default=True,
                        help="Rebuild the line's quarterly report, if it has one; --no-report marks it stale instead.")


def _refresh(model: str, move: str, regenerate: bool) -> None:
    """The line's report after an alias move: rebuilt, or marked stale with the reason."""
    from cl_toolkit.pipeline.quarterly_report import refresh_after_move

    done = refresh_after_move(workspace_dir(), model, move, regenerate=regenerate)
    if done["status"] == "refreshed":
        click.echo(f"report rebuilt: {display(done['paths'].get('html', done['paths']['markdown']))}")
    elif done["status"] == "stale":
        click.echo(f"report marked stale: {done['reason']}", err=True)


@click.group("registry")
def cli():
    """Versions, lineage, champion/challenger, rollback."""


@cli.command("list")
@click.argument("model", required=False)
@json_option()
def list_cmd(model, as_json):
    """List registered versions (of MODEL, or of every model line)."""
    with open_registry() as reg:
        recs, aliases = reg.versions(model), reg.aliases()
    emit([{**asdict(r), "aliases": _held(aliases, r)} for r in recs], as_json,
         lambda: [_list_line(r, aliases) for r in recs] or ["no versions registered"])


@cli.command("show")
@click.argument("model")
@click.argument("version", required=False)
@json_option()
def show_cmd(model, version, as_json):
    """Show a model line (aliases, versions, recent events), or one VERSION in full."""
    with open_registry() as reg:
        data = summary(reg, model) if version is None else version_detail(reg, model, version)
    emit(data, as_json, lambda: _show_lines(data))


@cli.command("lineage")
@click.argument("model")
@click.argument("version", required=False)
@json_option()
def lineage_cmd(model, version, as_json):
    """Print the ancestry of MODEL (or of one VERSION) as a tree, aliases marked."""
    with open_registry() as reg:
        nodes = lineage(reg, model, version)
    emit(nodes, as_json, lambda: format_lineage(model, nodes))


@cli.command("history")
@click.argument("model")
@json_option()
def history_cmd(model, as_json):
    """The append-only event log of MODEL: what, who, when, why."""
    with open_registry() as reg:
        events = history(reg, model)
    emit(events, as_json, lambda: [format_event(e) for e in events])


@cli.command("promote")
@click.argument("model")
@click.argument("version")
@click.option("--to", "alias", type=click.Choice(ALIASES), default="champion", show_default=True)
@reason_option()
@click.option("--force", is_flag=True, help="Promote to champion without a passing gate (recorded as forced).")
@who_option()
@report_option()
def promote_cmd(model, version, alias, reason, force, who, report):
    """Point the champion (or challenger) alias of MODEL at VERSION; rebuild MODEL's report
    when it has one (or, with --no-report, mark it stale)."""
    with open_registry() as reg:
        move = promote(reg, model, version, to=alias, reason=reason, who=who, force=force)
    if not move.changed:
        return click.echo(f"{model} {version} is already the {alias}")
    forced = " (forced)" if move.forced else ""
    click.echo(f"{model} {alias}: {move.previous or '-'} -> {version}{forced}")
    _refresh(model, f"{alias} {move.previous or '-'} -> {version} (promote{forced})", report)


@cli.command("rollback")
@click.argument("model")
@click.option("--to", "version", default=None, help="Version to roll back to (default: the previous champion).")
@reason_option()
@who_option()
@report_option()
def rollback_cmd(model, version, reason, who, report):
    """Move the champion of MODEL back; copies nothing. Rebuilds MODEL's report when it has
    one (or, with --no-report, marks it stale)."""
    with open_registry() as reg:
        move = rollback(reg, model, to=version, reason=reason, who=who)
    click.echo(f"{model} champion: {move.previous} -> {move.version} (rollback)")
    _refresh(model, f"champion {move.previous} -> {move.version} (rollback)", report)


@cli.command("archive")
@click.argument("model")
@click.argument("version")
@reason_option()
@who_option()
def archive_cmd(model, version, reason, who):
    """Retire VERSION: files and history stay; it can no longer be promoted."""
    with open_registry() as reg:
        changed = archive(reg, model, version, reason=reason, who=who)
    click.echo(f"{model} {version} {'archived' if changed else 'was already archived'}")


@cli.command("check")
@json_option()
def check_cmd(as_json):
    """Verify every artifact is present with its recorded SHA-256 and every alias is sound."""
    with open_registry() as reg:
        report = check_registry(reg)
    emit({**asdict(report), "ok": report.ok}, as_json, [
        *(f"problem: {p}" for p in report.problems), *(f"note: {n}" for n in report.notes),
        f"checked {report.versions} versions, {report.files} files: "
        f"{'ok' if report.ok else f'{len(report.problems)} problems'}"])
    if not report.ok:
        raise Refused(f"registry check failed: {len(report.problems)} problems")


@cli.command("export")
@click.argument("model")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write model_registry.json.")
def export_cmd(model, output):
    """Write MODEL's versions, provenance and results to a model_registry.json."""
    with open_registry() as reg:
        data = export_model(reg, model)
    atomic_write_text(output, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    click.echo(f"wrote {output} ({len(data['versions'])} versions)")


@cli.command("sync-mlflow")
@click.argument("model")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", required=True, metavar="URI",
              help="MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI); credentials stay in the environment.")
@click.option("--name", default=None, help="Registered model name in MLflow (default: MODEL).")
@json_option()
def sync_mlflow_cmd(model, tracking_uri, name, as_json):
    """Mirror MODEL's versions and its champion/challenger aliases to an MLflow Model Registry."""
    from cl_toolkit.registry.mlflow_sync import sync_mlflow

    with open_registry() as reg:
        report = sync_mlflow(reg, model, tracking_uri=tracking_uri, name=name)
    aliases = ", ".join(f"{a}={v or '-'}" for a, v in report.aliases.items())
    emit(asdict(report), as_json, [f"{report.registered_model}: {len(report.mlflow_versions)} versions "
                                   f"({len(report.created)} new, {len(report.updated)} updated); {aliases}"])
