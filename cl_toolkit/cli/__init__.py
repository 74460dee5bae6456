"""The `clt` command: one click group whose subcommands are imported only when used,
so `clt --help` answers fast (torch and Axolotl load lazily)."""

from __future__ import annotations

import importlib
import os
import sys

import click

from cl_toolkit import __version__
from cl_toolkit.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, BadInput, CltError
from cl_toolkit.core.progress import quiet_third_party

# name -> "module:attribute" of a click command or group. Adding a verb is one line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("cl_toolkit.cli.init:cli", "Start a model line in a repository of one's own."),
    "tiny-model": ("cl_toolkit.cli.tiny_model:cli", "Build a tiny Llama and its tokenizer locally."),
    "recipe": ("cl_toolkit.cli.recipe:cli", "Validate, render and scaffold versioned recipes."),
    "data": ("cl_toolkit.cli.data:cli", "Build the training mix of a recipe (new + rehearsal)."),
    "train": ("cl_toolkit.cli.train:cli", "Render a recipe and train it through Axolotl."),
    "adapters": ("cl_toolkit.cli.adapters:cli", "Merge several LoRA adapters into one version."),
    "cycle": ("cl_toolkit.cli.cycle:cycle_cli", "One quarter in one command: resumable, gated, reported."),
    "report": ("cl_toolkit.cli.cycle:report_cli", "The quarterly report: Markdown + HTML with plots."),
    "registry": ("cl_toolkit.cli.registry:cli", "Versions, lineage, champion/challenger, rollback."),
    "feedback": ("cl_toolkit.cli.feedback:cli", "Production feedback in, training examples out."),
    "synth": ("cl_toolkit.cli.synth:cli", "Synthetic Q&A for a new scenario from an OpenAI-compatible endpoint."),
    "analyze": ("cl_toolkit.cli.analyze:cli", "Weakest domains, failure patterns, forgetting: a plan for next quarter."),
    "eval": ("cl_toolkit.cli.evaluation:eval_cli", "Run a regression suite against a version."),
    "gate": ("cl_toolkit.cli.evaluation:gate_cli", "Compare a candidate with its baseline; block regressions."),
    "trigger": ("cl_toolkit.cli.monitoring:trigger_cli", "Is a model update due? Check the trigger rules."),
    "drift": ("cl_toolkit.cli.monitoring:drift_cli", "Data and concept drift between two windows (PSI, KS)."),
    "ab": ("cl_toolkit.cli.monitoring:ab_cli", "Champion vs challenger: z-test, weighted score, verdict."),
    "health": ("cl_toolkit.cli.monitoring:health_cli", "The champion against its release baseline; auto-rollback."),
    "loop": ("cl_toolkit.cli.monitoring:loop_cli", "Trigger and health checks on a schedule, each decision logged."),
    "serve": ("cl_toolkit.cli.serve:cli", "Serve the champion (and challenger) over an OpenAI-compatible API."),
    "bench": ("cl_toolkit.cli.bench:cli", "Benchmarks: continual learning across strategies."),
    "store": ("cl_toolkit.cli.store:cli", "Move the feedback store or the registry between SQLite and PostgreSQL."),
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, attr = self.lazy[name][0].split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            # a verb in the table whose own code is missing is a broken install, not an
            # unknown verb: say which verb and which module (a missing third-party
            # package stays an unexpected failure with its own name)
            if os.environ.get("CLT_DEBUG") or not (e.name or "").startswith("cl_toolkit"):
                raise
            raise CltError(f"verb {name!r} is unavailable: its module {e.name} is missing "
                           f"(from {module}:{attr})") from None
        except AttributeError:
            if os.environ.get("CLT_DEBUG"):
                raise
            raise CltError(f"verb {name!r} is unavailable: {module} has no {attr}") from None

    def format_commands(self, ctx, formatter):
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="clt")
@click.option(
    "--workspace",
    type=click.Path(file_okay=False),
    default=None,
    help="Workspace folder for generated things (default: $CLT_HOME, else ./workspace).",
)
@click.option("--store-url", metavar="URL", default=None,
              help="The feedback store: a SQLite path or postgresql://USER@HOST/DB (default: "
                   "$CLT_FEEDBACK_URL, else the workspace's clt.yml, else WORKSPACE/feedback.db). "
                   "Passwords come from $PGPASSWORD or ~/.pgpass, never the URL.")
@click.option("--registry-url", metavar="URL", default=None,
              help="The registry: a SQLite path or postgresql://... (default: $CLT_REGISTRY_URL, "
                   "else the workspace's clt.yml, else WORKSPACE/registry/registry.db).")
def cli(workspace, store_url, registry_url):
    """cl_toolkit: keep a domain LLM current, quarter after quarter, on Axolotl.

    Exit codes: 0 ok, 1 unexpected failure, 2 bad input, 3 gate blocked or decision "no".
    """
    if workspace:
        os.environ["CLT_HOME"] = os.path.abspath(workspace)
    for name, url in (("CLT_FEEDBACK_URL", store_url), ("CLT_REGISTRY_URL", registry_url)):
        if url:  # as the environment: every store opened below (and each child process) uses it
            os.environ[name] = url


def _print_error(text: str) -> None:
    for line in str(text).splitlines() or [""]:
        click.echo(f"error: {line}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every error into a message and an exit code."""
    quiet_third_party()  # before any library loads: their bars and warnings (CLT_DEBUG keeps them)
    try:
        rv = cli.main(args=argv, prog_name="clt", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return EXIT_BAD_INPUT
    except click.Abort:
        click.echo("interrupted", err=True)
        return 130
    except CltError as e:
        _print_error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as e:  # the last line of defence: a message, not a traceback
        if os.environ.get("CLT_DEBUG"):
            raise
        _print_error(f"unexpected failure: {type(e).__name__}: {e} (set CLT_DEBUG=1 for a traceback)")
        return EXIT_FAILURE


def run() -> None:
    sys.exit(main())


__all__ = ["cli", "main", "run", "BadInput"]
