"""`clt train RECIPE`: render a recipe and train it through Axolotl."""

from __future__ import annotations

from pathlib import Path

import click

from cl_toolkit.cli.options import (
    set_option,
    topology_of,
    topology_options,
    trust_remote_code_option,
)
from cl_toolkit.cli.output import print_dry_run, say
from cl_toolkit.core.yamlio import display
from cl_toolkit.evaluation.candidate import adapter_scorer
from cl_toolkit.registry import open_registry
from cl_toolkit.training.launch import Topology
from cl_toolkit.training.strategies import load_recipe
from cl_toolkit.training.train import train


def dry_run(lr, topology: Topology) -> None:
    """Render and print this node's launch command, training nothing: what both
    `clt train --dry-run` and `clt cycle --dry-run` do, through the same library path."""
    with open_registry(lr.workspace) as reg:
        print_dry_run(train(lr, reg, dry_run=True, topology=topology))


@click.command("train")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--dry-run", "dry", is_flag=True, help="Render and print this node's launch command; train nothing.")
@set_option()
@trust_remote_code_option()
@topology_options()
def cli(recipe: Path, dry: bool, overrides: tuple[str, ...], trust_remote_code: bool, **options):
    """Render RECIPE into workspace/runs/<model>-<version>/ and run
    `accelerate launch -m axolotl.cli.train` (or torchrun) on it. The adapter and its
    provenance (recipe copy, rendered config, manifest, logs) stay in the run folder; the
    version is registered only when training finished. On a cluster run the same command on
    every node, each with its --node-rank; node 0 registers."""
    lr, topology = load_recipe(recipe, overrides, trust_remote_code=trust_remote_code), topology_of(options)
    say(f"training {lr.recipe.run_name} ({lr.recipe.strategy})")
    if dry:
        return dry_run(lr, topology)
    with open_registry(lr.workspace) as reg:
        rec = train(lr, reg, topology=topology, scorer=adapter_scorer()).record  # the launch draws the bar
    if rec is None:
        return click.echo(f"node {topology.node_rank} finished; node 0 registers {lr.recipe.run_name}")
    click.echo(f"trained {rec.model} {rec.version} in {rec.train_seconds:.1f} s -> {display(rec.adapter_dir)}")
