"""`clt data build RECIPE -o DIR`: the training mix alone (no Axolotl config)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cl_toolkit.core.files import atomic_write_bytes, atomic_write_json, jsonl_bytes, sha256_bytes
from cl_toolkit.core.yamlio import display
from cl_toolkit.registry import open_registry
from cl_toolkit.training.mix import build_mix
from cl_toolkit.training.strategies import load_recipe


@click.group("data")
def cli():
    """Build the training mix of a recipe (new + rehearsal)."""


@cli.command("build")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the mix counts as JSON.")
def build_cmd(recipe, out_dir, overrides, as_json):
    """Materialise RECIPE's training mix (exact counts, seeded) as OUT/train.jsonl with
    OUT/mix.json (every input with SHA-256 and rows, the counts, the output hash)."""
    lr = load_recipe(recipe, overrides)
    with open_registry(lr.workspace) as reg:
        mix = build_mix(lr, reg)
    data = jsonl_bytes(mix.rows)
    atomic_write_bytes(out_dir / "train.jsonl", data)
    summary = {"recipe": display(lr.source), "recipe_sha256": lr.sha256, "seed": lr.recipe.data.seed,
               "inputs": mix.inputs, "mix": mix.counts, "train.jsonl": {"sha256": sha256_bytes(data), "rows": len(mix.rows)}}
    atomic_write_json(out_dir / "mix.json", summary)
    if as_json:
        click.echo(json.dumps(summary["mix"], indent=2))
    else:
        click.echo(f"{len(mix.rows)} rows ({mix.counts['new']} new) -> {display(out_dir / 'train.jsonl')} "
                   f"sha256 {summary['train.jsonl']['sha256'][:12]}")
