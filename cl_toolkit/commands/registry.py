"""`clt registry list|show`: what has been trained, and where its files are."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ..registry import open_registry


@click.group("registry")
def cli():
    """Versions, lineage, champion/challenger, rollback."""


@cli.command("list")
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(model, as_json):
    """List registered versions (of MODEL, or of every model line)."""
    with open_registry() as reg:
        recs = reg.versions(model)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in recs], indent=2))
        return
    if not recs:
        click.echo("no versions registered")
    for r in recs:
        click.echo(f"{r.model} {r.version:<8} parent={r.parent or '-':<8} {r.strategy:<16} {r.created_at}  {r.run_dir}")


@cli.command("show")
@click.argument("model")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show_cmd(model, version, as_json):
    """Show one version: parent, strategy, hashes, metrics and paths."""
    with open_registry() as reg:
        rec = reg.require(model, version)
    data = asdict(rec)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key:>14}: {json.dumps(value) if isinstance(value, dict) else value}")
