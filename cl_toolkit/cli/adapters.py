"""`clt adapters merge`: several adapters of one model line become one registered version."""

from __future__ import annotations

import click

from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.registry import open_registry
from cl_toolkit.training.adapter_merge import METHODS, merge_and_register


@click.group("adapters")
def cli():
    """Combine LoRA adapters."""


@cli.command("merge")
@click.argument("model")
@click.argument("versions", nargs=-1, required=True)
@click.option("--into", required=True, help="The version the merged adapter is registered as.")
@click.option("--method", type=click.Choice(METHODS), default="linear", show_default=True,
              help="PEFT add_weighted_adapter combination type.")
@click.option("--weights", default=None, help="Comma-separated weights, one per version (default: equal).")
@click.option("--density", type=float, default=0.5, show_default=True, help="Kept share of weights for ties/dare_ties.")
def merge_cmd(model, versions, into, method, weights, density):
    """Merge the adapters of VERSIONS (same base model) into version --into, whose parents
    are all the sources; its rehearsal data is the union of theirs."""
    ws = workspace_dir()
    try:
        w = [float(x) for x in weights.split(",")] if weights else None
    except ValueError:
        raise click.BadParameter(f"--weights must be numbers separated by commas, not {weights!r}") from None
    with open_registry(ws) as reg:
        rec = merge_and_register(reg, ws, model, list(versions), into, method, w, density)
    click.echo(f"merged {', '.join(versions)} ({method}) -> {rec.model} {rec.version}: {rec.adapter_dir}")
