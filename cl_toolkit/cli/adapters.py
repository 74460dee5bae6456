"""`clt adapters merge`: several adapters of one model line become one registered version."""

from __future__ import annotations

import click

from cl_toolkit.cli.output import say
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.registry import open_registry
from cl_toolkit.training.adapter_merge import METHODS, delta_method, merge_and_register


@click.group("adapters")
def cli():
    """Combine LoRA adapters."""


@cli.command("merge")
@click.argument("model")
@click.argument("versions", nargs=-1, required=True)
@click.option("--into", required=True, help="The version the merged adapter is registered as.")
@click.option("--method", type=click.Choice(METHODS), default="cat", show_default=True,
              help="How the adapters' deltas (scaling·B·A) combine: cat (the exact weighted sum), ties_svd, "
                   "dare_ties_svd, magnitude_max (the last three: an SVD back to --rank). The old names linear, "
                   "ties, dare_ties mean cat, ties_svd, dare_ties_svd.")
@click.option("--weights", default=None, help="Comma-separated weights, one per version (default: equal).")
@click.option("--density", type=float, default=0.5, show_default=True,
              help="Kept share of each delta for ties_svd / dare_ties_svd.")
@click.option("--rank", type=click.IntRange(min=1), default=None,
              help="Rank of an SVD merge (default: the sum of the sources' ranks; cat always uses that).")
def merge_cmd(model, versions, into, method, weights, density, rank):
    """Merge the adapters of VERSIONS (same base model) on their weight deltas into version
    --into, whose parents are all the sources; its rehearsal data is the union of theirs.
    Modules trained whole (lm_head) combine their deltas against the base the same way."""
    ws = workspace_dir()
    try:
        w = [float(x) for x in weights.split(",")] if weights else None
    except ValueError:
        raise click.BadParameter(f"--weights must be numbers separated by commas, not {weights!r}") from None
    delta, note = delta_method(method)
    if note:
        say(note)
    with open_registry(ws) as reg:
        rec = merge_and_register(reg, ws, model, list(versions), into, method, w, density, rank)
    click.echo(f"merged {', '.join(versions)} ({delta}) -> {rec.model} {rec.version}: {rec.adapter_dir}")
