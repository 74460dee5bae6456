"""`clt train RECIPE`: render a recipe and train it through Axolotl."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from cl_toolkit.core.yamlio import display
from cl_toolkit.registry import open_registry
from cl_toolkit.training.launch import LAUNCHERS, Topology
from cl_toolkit.training.strategies import load_recipe
from cl_toolkit.training.train import train


def _progress(info: dict) -> None:
    if "loss" in info:
        epoch = info.get("epoch")
        click.echo(f"  loss {info['loss']:.4f}" + (f"  epoch {epoch:.2f}" if isinstance(epoch, float) else ""), err=True)


def topology_options(f):
    """--nproc/--nnodes/--node-rank/--master-addr/--master-port/--launcher, unset = the profile's."""
    for option in reversed([
        click.option("--nproc", type=click.IntRange(min=1), help="Processes on this node, one per GPU (default: the profile's)."),
        click.option("--nnodes", type=click.IntRange(min=1), help="Machines in the job (default: the profile's, else 1)."),
        click.option("--node-rank", type=click.IntRange(min=0), default=0, show_default=True, help="This machine's rank; 0 registers the version."),
        click.option("--master-addr", metavar="HOST", help="Host of node 0 (required with several nodes)."),
        click.option("--master-port", type=click.IntRange(1, 65535), help="Rendezvous port on node 0 (default 29500 with several nodes)."),
        click.option("--launcher", type=click.Choice(LAUNCHERS), default=LAUNCHERS[0], show_default=True, help="What starts the processes."),
    ]):
        f = option(f)
    return f


@click.command("train")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Render and print this node's launch command; train nothing.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key. Repeatable.")
@topology_options
def cli(recipe: Path, dry_run: bool, overrides: tuple[str, ...], **topology):
    """Render RECIPE into workspace/runs/<model>-<version>/ and run
    `accelerate launch -m axolotl.cli.train` (or torchrun) on it. The adapter and its
    provenance (recipe copy, rendered config, manifest, logs) stay in the run folder; the
    version is registered only when training finished. On a cluster run the same command on
    every node, each with its --node-rank; node 0 registers."""
    lr = load_recipe(recipe, overrides)
    with open_registry(lr.workspace) as reg:
        click.echo(f"training {lr.recipe.run_name} ({lr.recipe.strategy})", err=True)
        result = train(lr, reg, dry_run=dry_run, on_progress=_progress, topology=Topology(**topology))
    if dry_run:
        click.echo(f"rendered: {display(result.rendered.run_dir)}")
        return click.echo(shlex.join([f"{k}={v}" for k, v in result.env.items()] + result.argv))
    if (rec := result.record) is None:
        return click.echo(f"node {topology['node_rank']} finished; node 0 registers {lr.recipe.run_name}")
    click.echo(f"trained {rec.model} {rec.version} in {rec.train_seconds:.1f} s -> {display(rec.adapter_dir)}")
