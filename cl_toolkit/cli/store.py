"""`clt store migrate`: move a feedback store or a registry between SQLite and PostgreSQL."""

from __future__ import annotations

import click

from cl_toolkit.cli.options import json_option
from cl_toolkit.cli.output import emit


@click.group("store")
def cli():
    """Where the feedback store and the registry live (SQLite file or PostgreSQL)."""


@cli.command("migrate")
@click.option("--from", "source", required=True, metavar="URL",
              help="The store to copy: a SQLite path or postgresql://USER@HOST/DB.")
@click.option("--to", "dest", required=True, metavar="URL",
              help="An empty database to copy it into (created when it is a new SQLite path).")
@click.option("--kind", type=click.Choice(["feedback", "registry"]), default=None,
              help="Which store --from holds (default: read from its tables).")
@json_option()
def migrate_cmd(source, dest, kind, as_json):
    """Copy a feedback store or a registry to another database, table by table in one
    transaction, committed only when every table's row count and content hash match.
    Registry artifacts stay where they are. Passwords come from $PGPASSWORD or ~/.pgpass.

    \b
    clt store migrate --from workspace/feedback.db --to postgresql://clt@db/clt
    clt store migrate --from workspace/registry/registry.db --to postgresql://clt@db/clt
    """
    from cl_toolkit.pipeline.store_migrate import migrate_store

    done = migrate_store(source, dest, kind=kind)
    emit(done, as_json, [f"{done['kind']}: {done['from']} -> {done['to']}"] + [
        f"  {t:<20} {s['rows']:>10,} rows  sha256 {s['sha256'][:16]}  verified" for t, s in done["tables"].items()])
