"""`clt cycle RECIPE` and `clt report MODEL`: the quarter in one command, and its report."""

from __future__ import annotations

from pathlib import Path

import click

from cl_toolkit.cli.options import (
    json_option,
    set_option,
    topology_of,
    topology_options,
    trust_remote_code_option,
)
from cl_toolkit.cli.output import emit, say
from cl_toolkit.cli.train import dry_run
from cl_toolkit.core.errors import BadInput, Refused
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.core.yamlio import display
from cl_toolkit.pipeline.cycle import STEPS, run_cycle
from cl_toolkit.pipeline.cycle_summary import summary_lines
from cl_toolkit.training.strategies import load_recipe


@click.command("cycle")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--from", "from_step", type=click.Choice(STEPS), default=None,
              help="Run again from this step, even if its inputs did not change.")
@click.option("--until", "until_step", type=click.Choice(STEPS), default=None,
              help="Stop after this step (a later run resumes from the next one).")
@click.option("--dry-run", "dry", is_flag=True,
              help="Render and print this node's launch command, as `clt train --dry-run` does; run no step.")
@set_option()
@trust_remote_code_option()
@topology_options()
@json_option("Print what ran, the status, every step's outputs and timing as JSON instead of the summary.")
def cycle_cli(recipe, from_step, until_step, dry, overrides, trust_remote_code, as_json, **options):
    """validate → data → render → train → register → evaluate → gate → release → analyze → report.

    Each finished step leaves a stamp with its input hashes under
    workspace/cycles/<model>-<version>/; a rerun resumes after the last finished step and
    reruns from the first step whose inputs changed. A version that passes the gate becomes
    the challenger (the champion, if the line has none); one that is blocked is archived as
    rejected and the command exits 3. On a cluster run the same command on every node, each
    with its --node-rank (the launch options are those of `clt train`). It ends with a short
    summary: verdict, accuracy against the parent, the alias the registry holds now, the
    report, and where the time went (the toolkit's own against Axolotl's)."""
    lr, topology = load_recipe(recipe, overrides, trust_remote_code=trust_remote_code), topology_of(options)
    if dry:
        if from_step or until_step:
            raise BadInput("--dry-run runs no step: drop --from and --until")
        return dry_run(lr, topology)
    result = run_cycle(lr, from_step=from_step, until=until_step, say=say, topology=topology)

    def where(rel: str) -> str:  # the stamps' paths are workspace-relative
        return display(lr.workspace / rel)

    report = result["outputs"].get("report", {}).get("html")
    r = lr.recipe
    emit({**result, "report": where(report) if report else None}, as_json,
         lambda: summary_lines(result, r.model, r.version, r.parent, r.strategy, where))
    if result["status"] == "rejected":
        gate_report = display(lr.workspace / result["outputs"]["gate"]["report"])
        raise Refused(f"{lr.recipe.run_name} was blocked by the gate: see {gate_report}")


@click.command("report")
@click.argument("model")
@click.option("--html/--no-html", default=True, show_default=True, help="Also write the self-contained HTML page.")
@click.option("--quarter", default=None, metavar="YYYYQN",
              help="The quarter of production feedback to show (e.g. 2026Q2); default: that of the newest prediction.")
def report_cli(model, html, quarter):
    """Write workspace/reports/MODEL/report.md (and report.html): the accuracy matrix, the
    quarter's production feedback, the alias history, the data used, every version's training
    loss, accuracy per domain, the latest gate's regressions, lineage and the checklist.
    `clt registry promote` and `rollback` rebuild it (or mark it stale)."""
    from cl_toolkit.pipeline.quarterly_report import write_report

    paths = write_report(workspace_dir(), model, html=html, quarter=quarter)
    for kind, path in paths.items():
        click.echo(f"{kind}: {display(path)}")
