"""Every option that more than one command takes, declared once, as decorators.

Each is a function returning the decorator (`@json_option()`), so a command can say in its
own words what an option means for it (`@json_option("Print the mix counts as JSON.")`)
while name, type and default stay the same everywhere. Defaults that a settings dataclass
or a library function already holds are read from there (`default_of`), never repeated.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import click

from cl_toolkit.training.launch import LAUNCHERS, Topology

Decorator = Callable[[Callable], Callable]


def default_of(source, name: str):
    """The default of `name` in a dataclass's fields or a function's signature: the one
    place a click default comes from, so the two cannot drift apart."""
    if dataclasses.is_dataclass(source):
        field = {f.name: f for f in dataclasses.fields(source)}[name]
        if field.default is not dataclasses.MISSING:
            return field.default
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        raise TypeError(f"{source.__name__}.{name} has no default")
    parameter = inspect.signature(source).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise TypeError(f"{source.__name__}({name}) has no default")
    return parameter.default


def stack(*decorators: Decorator) -> Decorator:
    """Apply several option decorators so that --help lists them in the order given."""

    def apply(f):
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def json_option(help: str = "Machine-readable output (JSON).") -> Decorator:
    """--json: print the result as JSON instead of text (parameter `as_json`)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def set_option() -> Decorator:
    """--set KEY=VALUE, repeatable: recipe overrides (parameter `overrides`). The values
    are scanned for credentials like the recipe itself (errors name the key, not the value)."""
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override a recipe key (dotted path, YAML value). Repeatable.")


def trust_remote_code_option() -> Decorator:
    """--trust-remote-code: allow `trust_remote_code` in the recipe's or profile's `axolotl:`
    (parameter `trust_remote_code`); without it such a recipe is refused (exit 2)."""
    return click.option("--trust-remote-code", "trust_remote_code", is_flag=True,
                        help="Allow trust_remote_code in the recipe or its profile: it runs code "
                             "from the model's or dataset's repository.")


def who_option() -> Decorator:
    """--who: the person recorded in the registry history."""
    return click.option("--who", default=None,
                        help="Who is doing this, recorded in the registry history (default: $USER).")


def reason_option() -> Decorator:
    """--reason (required): why an alias moves or a version retires."""
    return click.option("--reason", required=True, help="Why: recorded in the history.")


def domain_option(help: str = "Only predictions of this domain (repeatable: any of them); "
                                "a domain the store lacks is an error naming those it holds.") -> Decorator:
    """--domain D, repeatable (parameter `domains`): keep only D's data."""
    return click.option("--domain", "domains", multiple=True, metavar="DOMAIN", help=help)


def window_options(what: str = "Only predictions") -> Decorator:
    """--since/--until: a time window over stored predictions (until is exclusive)."""
    return stack(
        click.option("--since", metavar="TIME", help=f"{what} at or after this ISO 8601 time."),
        click.option("--until", metavar="TIME", help=f"{what} before this ISO 8601 time."),
    )


def topology_options() -> Decorator:
    """--nproc/--nnodes/--node-rank/--master-addr/--master-port/--launcher, unset = the
    profile's; the parameters are Topology's fields (`Topology(**those)`)."""
    return stack(
        click.option("--nproc", type=click.IntRange(min=1), default=default_of(Topology, "nproc"),
                     help="Processes on this node, one per GPU (default: the profile's)."),
        click.option("--nnodes", type=click.IntRange(min=1), default=default_of(Topology, "nnodes"),
                     help="Machines in the job (default: the profile's, else 1)."),
        click.option("--node-rank", type=click.IntRange(min=0), default=default_of(Topology, "node_rank"),
                     show_default=True, help="This machine's rank; 0 registers the version."),
        click.option("--master-addr", metavar="HOST", default=default_of(Topology, "master_addr"),
                     help="Host of node 0 (required with several nodes)."),
        click.option("--master-port", type=click.IntRange(1, 65535), default=default_of(Topology, "master_port"),
                     help="Rendezvous port on node 0 (default 29500 with several nodes)."),
        click.option("--launcher", type=click.Choice(LAUNCHERS), default=default_of(Topology, "launcher"),
                     show_default=True, help="What starts the processes."),
    )


def topology_of(options: dict) -> Topology:
    """The Topology that topology_options() parsed, taken out of a command's keywords."""
    return Topology(**{f.name: options.pop(f.name) for f in dataclasses.fields(Topology)})


def device_option(settings) -> Decorator:
    """--device, default from `settings` (a dataclass with a `device` field)."""
    return click.option("--device", default=default_of(settings, "device"), show_default=True,
                        help="auto, cpu, cuda or cuda:N.")


def threads_option(settings, help: str = "Torch CPU threads (default: torch's).") -> Decorator:
    """--threads, default from `settings` (a dataclass with a `threads` field)."""
    return click.option("--threads", type=click.IntRange(min=1), default=default_of(settings, "threads"),
                        show_default=default_of(settings, "threads") is not None, help=help)


def generation_options(settings) -> Decorator:
    """--batch-size/--max-new-tokens/--device/--threads: how answers are generated, with
    the defaults of `settings` (EvalSettings)."""
    return stack(
        click.option("--batch-size", type=click.IntRange(min=1), default=default_of(settings, "batch_size"),
                     show_default=True, help="Prompts generated together (left padding, greedy)."),
        click.option("--max-new-tokens", type=click.IntRange(min=1), default=default_of(settings, "max_new_tokens"),
                     show_default=True, help="Longest answer, in tokens; generation also stops at eos."),
        device_option(settings),
        threads_option(settings, "torch CPU threads while generating (default: torch's)."),
    )
