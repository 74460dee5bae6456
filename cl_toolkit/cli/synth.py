"""`clt synth`: synthetic Q&A for a new scenario from an OpenAI-compatible endpoint."""

from __future__ import annotations

import click

from cl_toolkit.cli.options import default_of, domain_option, json_option
from cl_toolkit.cli.output import emit, say
from cl_toolkit.feedback.endpoint import Endpoint
from cl_toolkit.feedback.extract import manifest_path
from cl_toolkit.feedback.store import open_store
from cl_toolkit.feedback.synth_remote import generate, generate_each, load_scenarios


def _say_progress(requests: int, pairs: int) -> None:
    say(f"... request {requests}: {pairs} pairs so far")


@click.command()
@click.option("--scenario", required=True, type=click.Path(exists=True),
              help="A Markdown file describing the scenario, or a folder of them (*.md).")
@domain_option("Only the scenarios whose front matter names this domain (repeatable: any of "
               "them); a domain no scenario declares is an error naming those they do.")
@click.option("-n", "n", default=50, show_default=True, type=click.IntRange(1), help="Pairs wanted per scenario.")
@click.option("--base-url", required=True,
              help="OpenAI-compatible base URL: https://HOST/v1 (plain http only on loopback).")
@click.option("--model", required=True, help="The model name the endpoint serves.")
@click.option("--api-key-env", default=default_of(Endpoint, "api_key_env"), show_default=True,
              help="Environment variable holding the API key (read, never stored).")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False),
              help="Chat JSONL to write, for one scenario (default WORKSPACE/synthetic/SCENARIO-HASH.jsonl).")
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
def cli(scenario, domains, base_url, model, api_key_env, out, attempts, backoff, timeout, as_json, against, **job):
    """Ask an endpoint for question/answer pairs about a new scenario (or each scenario of a
    folder, of --domain D only); write chat JSONL and OUT.manifest.json beside each
    (synthetic, with the scenario's SHA-256 and domain, and the domain filter)."""
    endpoint = Endpoint(base_url, model, api_key_env=api_key_env, timeout_s=timeout,
                        attempts=attempts, backoff_s=backoff)
    scenarios = load_scenarios(scenario, domains)
    with open_store() as store:
        done = generate_each(store, scenarios, endpoint, out, against=against, domains=domains,
                             progress=_say_progress, **job)
    emit(done[0][1] if len(done) == 1 else [m for _, m in done], as_json,
         [line for path, m in done for line in _lines(m, path, job["n"])])


def _lines(m: dict, out, n: int) -> list[str]:
    c, s = m["counts"], m["scenario"]
    return [
        f"wrote {c['written']} synthetic pairs to {out} (scenario {s['sha256'][:12]}"
        + (f", domain {s['domain']}" if s["domain"] else "") + ")",
        f"requests {c['requests']}, malformed replies {c['malformed_replies']}, received "
        f"{c['pairs_received']}, invalid {c['invalid']}, duplicates {c['duplicates']}",
        *(f"warning: {p}" for p in m["problems"]),
        *([f"warning: {c['short_by']} short of {n}"] if c["short_by"] else []),
        f"manifest {manifest_path(out)}"]
