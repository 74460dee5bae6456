"""`clt data build RECIPE -o DIR`: the training mix alone (no Axolotl config)."""

from __future__ import annotations

from pathlib import Path

import click

from cl_toolkit.cli.options import json_option, set_option
from cl_toolkit.cli.output import emit
from cl_toolkit.core.yamlio import display
from cl_toolkit.registry import open_registry
from cl_toolkit.training.mix import build_mix, write_mix
from cl_toolkit.training.strategies import load_recipe


@click.group("data")
def cli():
    """Build the training mix of a recipe (new + rehearsal)."""


@cli.command("build")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@set_option()
@json_option("Print the mix counts as JSON.")
def build_cmd(recipe, out_dir, overrides, as_json):
    """Materialise RECIPE's training mix (exact counts, seeded) as OUT/train.jsonl with
    OUT/mix.json (every input with SHA-256 and rows, the counts, the output hash)."""
    lr = load_recipe(recipe, overrides)
    with open_registry(lr.workspace) as reg:
        summary = write_mix(lr, build_mix(lr, reg), out_dir)
    out = summary["train.jsonl"]
    epochs = f", {summary['mix']['epochs']} epochs" if "epochs" in summary["mix"] else ""
    emit(summary["mix"], as_json, [f"{out['rows']} rows ({summary['mix']['new']} new{epochs}) -> "
                                   f"{display(out_dir / 'train.jsonl')} sha256 {out['sha256'][:12]}"])
