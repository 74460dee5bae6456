"""`clt train RECIPE`: render a recipe and train it through Axolotl."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from ..recipe.validate import load_recipe
from ..registry import open_registry
from ..train import train
from ..yamlio import display


def _progress(info: dict) -> None:
    if "loss" in info:
        epoch = info.get("epoch")
        click.echo(f"  loss {info['loss']:.4f}" + (f"  epoch {epoch:.2f}" if isinstance(epoch, float) else ""), err=True)


@click.command("train")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Render and print the launch command; train nothing.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key. Repeatable.")
def cli(recipe: Path, dry_run: bool, overrides: tuple[str, ...]):
    """Render RECIPE into workspace/runs/<model>-<version>/ and run
    `accelerate launch -m axolotl.cli.train` on it. The adapter and its provenance (recipe
    copy, rendered config, manifest, logs) stay in the run folder; the version is
    registered only when training finished."""
    lr = load_recipe(recipe, overrides)
    with open_registry(lr.workspace) as reg:
        click.echo(f"training {lr.recipe.run_name} ({lr.recipe.strategy})", err=True)
        result = train(lr, reg, dry_run=dry_run, on_progress=_progress)
    if dry_run:
        click.echo(f"rendered: {display(result.rendered.run_dir)}")
        click.echo(shlex.join(result.argv))
        return
    rec = result.record
    click.echo(f"trained {rec.model} {rec.version} in {rec.train_seconds:.1f} s -> {display(rec.adapter_dir)}")
