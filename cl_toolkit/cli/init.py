"""`clt init LINE [DIR]`: start a model line in a repository of one's own."""

from __future__ import annotations

from pathlib import Path

import click

from cl_toolkit.core.yamlio import display
from cl_toolkit.recipe.init import DEFAULT_PROFILE
from cl_toolkit.training.strategies import init_line


@click.command("init")
@click.argument("line")
@click.argument("dest", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--profile", default=DEFAULT_PROFILE, show_default=True,
              help="A bundled profile's name (tiny-cpu, llama31-8b-lora, ...) or a profile YAML path.")
def cli(line, dest, profile):
    """Create LINE's first recipe (recipes/LINE/1.0.0.yml, initial_lora with the profile's
    defaults), a regression-suite template (data/LINE/regression.jsonl) and a README saying
    what to add and which commands come next, in DEST (default: the current folder).
    Refuses to overwrite any file."""
    for path in init_line(line, dest, profile):
        click.echo(f"wrote {display(path)}")
    click.echo(f"next: read {display(Path(dest) / 'recipes' / line / 'README.md')}")
