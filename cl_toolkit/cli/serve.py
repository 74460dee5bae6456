"""`clt serve MODEL`: the champion (and challenger) over an OpenAI-compatible API."""

from __future__ import annotations

import shlex

import click

from cl_toolkit.cli.options import default_of, device_option, threads_option
from cl_toolkit.cli.output import say
from cl_toolkit.serve.server import ChatServer, ServeSettings, is_loopback
from cl_toolkit.serve.vllm import vllm_plan


def _default(name: str):
    return default_of(ServeSettings, name)  # the defaults, declared once in ServeSettings


@click.command("serve")
@click.argument("model")
@click.option("--host", default=_default("host"), show_default=True,
              help="Address to bind. Anything but loopback is reachable by others: set --api-key.")
@click.option("--port", default=_default("port"), show_default=True, type=click.IntRange(0, 65535),
              help="0 picks a free port (the URL is printed).")
@click.option("--challenger-share", default=_default("challenger_share"), show_default=True, type=click.FloatRange(0, 1),
              help="Share of requests routed to the challenger (stable per request id).")
@click.option("--salt", default=_default("salt"), help="Mixed into the routing hash; a new salt reshuffles the arms.")
@device_option(ServeSettings)
@threads_option(ServeSettings, "Torch CPU threads (tiny models: 1 is fastest).")
@click.option("--max-tokens", default=_default("max_tokens"), show_default=True, type=click.IntRange(1),
              help="Most new tokens per answer; requests asking for more get this many.")
@click.option("--max-body-bytes", default=_default("max_body_bytes"), show_default=True, type=click.IntRange(1),
              help="Larger request bodies are refused (413).")
@click.option("--max-pending", default=_default("max_pending"), show_default=True, type=click.IntRange(1),
              help="Requests in flight at once; more are refused (429).")
@click.option("--max-connections", default=_default("max_connections"), show_default=True, type=click.IntRange(1),
              help="Open connections at once; more are answered 503 and closed.")
@click.option("--request-timeout", "request_timeout_s", default=_default("request_timeout_s"), show_default=True,
              type=click.FloatRange(0.1), help="Seconds a request (line, headers and body) has to arrive whole (408).")
@click.option("--idle-timeout", "idle_timeout_s", default=_default("idle_timeout_s"), show_default=True,
              type=click.FloatRange(0.1), help="Seconds a keep-alive connection may wait for its next request.")
@click.option("--reload-interval", default=_default("reload_interval"), show_default=True, type=click.FloatRange(0.05),
              help="Seconds between looks at the registry's aliases (promote/rollback apply live).")
@click.option("--api-key", default=_default("api_key"), envvar="CLT_SERVE_API_KEY", help="Require `Authorization: Bearer KEY` "
              "[env CLT_SERVE_API_KEY].")
@click.option("--upstream", metavar="URL", default=_default("upstream"),
              help="Route and log here, but forward each request to this OpenAI-compatible server "
                   "(vLLM: http://HOST:PORT/v1), asking for MODEL-VERSION; nothing is loaded here.")
@click.option("--upstream-timeout", "upstream_timeout_s", default=_default("upstream_timeout_s"), show_default=True,
              type=click.FloatRange(0.1), help="Seconds the upstream may be silent (connect, first byte, "
              "between stream pieces) before the client gets 504.")
@click.option("--upstream-api-key", default=_default("upstream_api_key"), envvar="CLT_UPSTREAM_API_KEY",
              help="Sent to the upstream as `Authorization: Bearer KEY` [env CLT_UPSTREAM_API_KEY].")
@click.option("--print-vllm", is_flag=True, help="Print the `vllm serve` command line for the champion and "
              "challenger (LoRA modules MODEL-VERSION, paths from the registry), then exit.")
def cli(print_vllm: bool, **options):
    """Serve MODEL's champion and challenger over an OpenAI-compatible API, logging every
    answer into the feedback store. Stop with Ctrl-C or SIGTERM: queued rows are written first.

    With --upstream URL it is a router in front of vLLM: same routing, ids, feedback tokens
    and log; the answers come from the upstream (docs/serving.md)."""
    if print_vllm:
        plan = vllm_plan(None, options["model"], options["challenger_share"])
        for note in plan.notes:
            say(f"note: {note}")
        click.echo(shlex.join(plan.argv))
        return 0
    server = ChatServer(ServeSettings(**options)).start()
    if not is_loopback(server.settings.host):
        say(f"warning: listening on {server.settings.host}, beyond this machine"
            + ("" if server.settings.api_key else ", without an API key"))
    v = server.watcher.current.versions
    split = f"challenger {v['challenger']} gets {options['challenger_share']:.0%}" if v["challenger"] \
        else "no challenger"
    via = f" from {server.upstream.url}" if server.upstream else ""
    click.echo(f"serving {options['model']} on {server.url}{via} (champion {v['champion']}, {split}); "
               f"POST /v1/chat/completions, POST /v1/feedback, GET /health")
    stats = server.serve_until_signal()
    click.echo(f"stopped: {stats.written} predictions logged, {stats.duplicates} duplicate ids, "
               f"{stats.rejected} refused by the store, {stats.failed} lost to store errors")
    return 0
