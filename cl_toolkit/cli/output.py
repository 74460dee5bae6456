"""How every command prints: one emitter for JSON-or-text and one dry-run printer.

A "no" (gate blocked, no update due, verdict keep...) is `raise Refused(message)` from
core.errors: main() prints the message and exits 3. There is no other way to exit 3.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable

import click

from cl_toolkit.core.progress import note
from cl_toolkit.core.yamlio import display


def emit(data, as_json: bool, lines: Iterable[str] | Callable[[], Iterable[str]] = (), *,
         one_line: bool = False) -> None:
    """Print `data` as JSON (indented; on one line with `one_line`, for a stream of
    records), or else the text `lines` (or what a function returns: called only for text).
    No lines print nothing."""
    if as_json:
        return click.echo(json.dumps(data, indent=None if one_line else 2, ensure_ascii=False))
    text = list(lines() if callable(lines) else lines)
    if text:  # nothing to say prints nothing, not an empty line
        click.echo("\n".join(text))


def say(message: str) -> None:
    """Progress for a person, on stderr (stdout stays the result); a live bar stays whole."""
    note(message)


def print_dry_run(result) -> None:
    """What `clt train --dry-run` and `clt cycle --dry-run` print for a TrainResult: the
    rendered run folder and this node's launch command with the variables it needs."""
    click.echo(f"rendered: {display(result.rendered.run_dir)}")
    click.echo(shlex.join([f"{k}={v}" for k, v in result.env.items()] + result.argv))
