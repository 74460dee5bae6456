"""`clt recipe validate|render|new|schema`: check recipes, turn them into Axolotl runs, write the next."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cl_toolkit.cli.options import json_option, set_option, trust_remote_code_option
from cl_toolkit.cli.output import emit
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_write_text
from cl_toolkit.core.yamlio import display
from cl_toolkit.evaluation.gate import recipe_suites, suite_problems
from cl_toolkit.recipe.model import recipe_schema
from cl_toolkit.registry import open_registry
from cl_toolkit.training.render import render
from cl_toolkit.training.strategies import load_recipe, new_recipe, scaffold_names
from cl_toolkit.training.tiny_model import ensure_base
from cl_toolkit.training.validate_deep import deep_problems

CHECK_WORDS = {"checked": "passed", "cached": "passed before for this exact config (cached)"}


@click.group("recipe")
def cli():
    """Validate, render and scaffold versioned recipes."""


@cli.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@set_option()
@trust_remote_code_option()
@json_option("Print results as JSON.")
def validate_cmd(paths, overrides, trust_remote_code, as_json):
    """Check recipes against the schema, semver rules and the files they name, their
    `axolotl:` keys against Axolotl's schema, and that the parent is in the workspace's
    registry (when it has one) or among the recipes validated with it, and the gate's suites
    (every case, `clt init`'s template cases refused until replaced). Every problem is printed
    (file:line: [key] message); exit 2 if any."""
    problems, ok, loaded = [], [], []
    for path in paths:
        try:
            loaded.append((path, load_recipe(path, overrides, trust_remote_code=trust_remote_code)))
        except BadInput as e:
            problems.extend(e.problems)
    planned = {(lr.recipe.model, lr.recipe.version) for _, lr in loaded}
    for path, lr in loaded:
        found = deep_problems(lr, planned) + suite_problems(recipe_suites(lr))
        problems.extend(found)
        if not found:
            ok.append({"path": display(path), "model": lr.recipe.model, "version": lr.recipe.version})
    emit({"valid": ok, "problems": [p.__dict__ for p in problems]}, as_json,
         [f"ok: {item['path']} ({item['model']} {item['version']})" for item in ok])
    if problems:
        raise BadInput(problems)


@cli.command("render")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write axolotl.yml, data/ and manifest.json into (replaced atomically).")
@set_option()
@trust_remote_code_option()
def render_cmd(recipe, out_dir, overrides, trust_remote_code):
    """Render RECIPE into an Axolotl config, the materialised dataset and a manifest,
    checked by Axolotl's own validators."""
    lr = load_recipe(recipe, overrides, trust_remote_code=trust_remote_code)
    ensure_base(lr)  # Axolotl's validator reads the base model's config
    with open_registry(lr.workspace) as reg:
        result = render(lr, out_dir, reg)
    mix = result.manifest["mix"]
    click.echo(f"rendered {lr.recipe.run_name} -> {display(result.run_dir)}")
    if mix.get("resample") == "per_epoch":
        click.echo(f"  data: {mix['total']} rows, {mix['epochs']} epochs written out (Axolotl makes one pass), "
                   f"each {mix['new']} new + a fresh rehearsal draw")
    else:
        click.echo(f"  data: {mix['total']} rows ({mix['new']} new, {mix['total'] - mix['new']} rehearsal)")
    click.echo(f"  Axolotl's check: {CHECK_WORDS.get(result.check, result.check)}")


@cli.command("new")
@click.argument("model")
@click.option("--from", "from_version", default=None,
              help="The version the new recipe continues from (leave out with initial_lora to start the line at 1.0.0).")
@click.option("--strategy", required=True, type=click.Choice(scaffold_names()), help="How to train it.")
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]), help="Which semver part to raise (with --from).")
@click.option("--data", "data_paths", multiple=True, help="This quarter's training data (repeatable; default: the parent's).")
@click.option("--profile", default=None,
              help="A bundled profile's name or a profile path (default: the parent's; tiny-cpu for a new line).")
@click.option("--recipes-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("recipes"), show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing recipe of that version.")
@click.option("--plan", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="An improvement plan (plan.json from `clt analyze`): its data sources and rehearsal split, "
                   "its hash recorded under plan:; --from and --bump default to its version and minor.")
def new_cmd(model, from_version, strategy, bump, data_paths, profile, recipes_dir, force, plan):
    """Write the next recipe of MODEL from an existing one, with the training defaults its
    profile gives for the strategy (the profile's `defaults:`; a strategy's own where the
    profile has none), or with initial_lora and no --from the first recipe of a new line.
    It is validated before it is written; its TODO description must be replaced before
    `clt recipe validate` passes it."""
    path = new_recipe(recipes_dir / model, from_version, strategy, bump, list(data_paths), force, profile, plan)
    click.echo(f"wrote {display(path)}")


@cli.command("schema")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON Schema here (default: print it).")
def schema_cmd(out):
    """Export the recipe JSON Schema (for editors: recipes/recipe.schema.json)."""
    text = json.dumps(recipe_schema(), indent=2) + "\n"
    if out:
        atomic_write_text(out, text)
        click.echo(f"wrote {display(out)}")
    else:
        click.echo(text, nl=False)
