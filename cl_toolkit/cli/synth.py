"""`clt synth`: synthetic Q&A for a new scenario from an OpenAI-compatible endpoint."""

from __future__ import annotations

import click

from cl_toolkit.cli.options import default_of, json_option
from cl_toolkit.cli.output import emit, say
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.feedback.endpoint import Endpoint
from cl_toolkit.feedback.extract import manifest_path
from cl_toolkit.feedback.store import open_store
from cl_toolkit.feedback.synth_remote import generate, load_scenario


def _say_progress(requests: int, pairs: int) -> None:
    say(f"... request {requests}: {pairs} pairs so far")


@click.command()
@click.option("--scenario", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A Markdown file describing the scenario.")
@click.option("-n", "n", default=50, show_default=True, type=click.IntRange(1), help="Pairs wanted.")
@click.option("--base-url", required=True,
              help="OpenAI-compatible base URL: https://HOST/v1 (plain http only on loopback).")
@click.option("--model", required=True, help="The model name the endpoint serves.")
@click.option("--api-key-env", default=default_of(Endpoint, "api_key_env"), show_default=True,
              help="Environment variable holding the API key (read, never stored).")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False),
              help="Chat JSONL to write (default WORKSPACE/synthetic/SCENARIO-HASH.jsonl).")
@click.option("--against", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Existing JSONL data to dedupe against, besides the store (repeatable).")
@click.option("--per-request", default=default_of(generate, "per_request"), show_default=True, type=click.IntRange(1))
@click.option("--max-requests", type=click.IntRange(1), help="Default: 3x what n needs.")
@click.option("--temperature", default=default_of(generate, "temperature"), show_default=True, type=click.FloatRange(0, 2))
@click.option("--seed", type=int, help="Sent to the endpoint (request i gets seed + i).")
@click.option("--attempts", default=default_of(Endpoint, "attempts"), show_default=True, type=click.IntRange(1),
              help="Tries per request on transient errors.")
@click.option("--backoff", default=default_of(Endpoint, "backoff_s"), show_default=True, type=click.FloatRange(0),
              help="First retry delay in seconds; doubles each retry.")
@click.option("--timeout", default=default_of(Endpoint, "timeout_s"), show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds to wait for each request.")
@click.option("--system", "system_prompt", help="A system message for every example.")
@click.option("--redact/--no-redact", "redact_pii", default=True, show_default=True)
@json_option()
def cli(scenario, base_url, model, api_key_env, out, attempts, backoff, timeout, as_json, **job):
    """Ask an endpoint for question/answer pairs about a new scenario; write chat JSONL
    and OUT.manifest.json (synthetic, with the scenario's SHA-256)."""
    endpoint = Endpoint(base_url, model, api_key_env=api_key_env, timeout_s=timeout,
                        attempts=attempts, backoff_s=backoff)
    scenario = load_scenario(scenario)
    out = out or workspace_dir() / "synthetic" / f"{scenario.path.stem}-{scenario.sha256[:12]}.jsonl"
    with open_store() as store:
        m = generate(store, scenario, endpoint, out_path=out, progress=_say_progress, **job)
    c = m["counts"]
    emit(m, as_json, [
        f"wrote {c['written']} synthetic pairs to {out} (scenario {scenario.sha256[:12]})",
        f"requests {c['requests']}, malformed replies {c['malformed_replies']}, received "
        f"{c['pairs_received']}, invalid {c['invalid']}, duplicates {c['duplicates']}",
        *(f"warning: {p}" for p in m["problems"]),
        *([f"warning: {c['short_by']} short of {job['n']}"] if c["short_by"] else []),
        f"manifest {manifest_path(out)}"])
