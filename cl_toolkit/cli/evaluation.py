"""`clt eval MODEL@VERSION` and `clt gate MODEL --candidate V`: thin commands over
evaluate.py and gate.py."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cl_toolkit.core.errors import EXIT_NO, BadInput
from cl_toolkit.core.files import atomic_write_json
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.core.yamlio import display
from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version
from cl_toolkit.evaluation.gate import gate_config, run_gate
from cl_toolkit.evaluation.gate_report import eval_summary, gate_summary
from cl_toolkit.evaluation.generate import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS
from cl_toolkit.evaluation.suite import load_suite
from cl_toolkit.registry import open_registry


def generation_options(f):
    """Options shared by eval and gate: how answers are generated and scored."""
    options = [
        click.option("--suite", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Regression suite (JSONL). Default: the recipe's gate.suite."),
        click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
                     help="Prompts generated together (left padding, greedy)."),
        click.option("--max-new-tokens", type=click.IntRange(min=1), default=DEFAULT_MAX_NEW_TOKENS,
                     show_default=True, help="Longest answer, in tokens; generation also stops at eos."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="torch CPU threads while generating (default: torch's)."),
        click.option("--judge", "judge_spec", default=None, metavar="MODEL@VERSION|DIR",
                     help="Local model that scores cases with match: judge."),
        click.option("--fresh", is_flag=True, help="Ignore cached results; evaluate again."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings_and_judge(batch_size, max_new_tokens, device, threads, judge_spec):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a report
    settings = EvalSettings(batch_size=batch_size, max_new_tokens=max_new_tokens, device=device, threads=threads)
    if not judge_spec:
        return settings, None
    from cl_toolkit.evaluation.judge import load_judge

    return settings, load_judge(judge_spec, workspace_dir(), device)


def _recipe_suite(rec, ws):
    path = gate_config(rec, ws).suite
    if path is None:
        raise BadInput(f"{rec.model} {rec.version}'s recipe names no gate suite; pass --suite FILE")
    return load_suite(path)


def parse_model_version(spec: str) -> tuple[str, str]:
    model, sep, version = spec.partition("@")
    if not (sep and model and version):
        raise BadInput(f"expected MODEL@VERSION (e.g. firefighter@1.0.0), got {spec!r}")
    return model, version


@click.command("eval")
@click.argument("target", metavar="MODEL@VERSION")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the full results (every case) to this JSON file.")
@generation_options
def eval_cli(target, out, suite, batch_size, max_new_tokens, device, threads, judge_spec, fresh, as_json):
    """Answer a regression suite with one version and score every case: accuracy overall,
    per domain and per criticality, tokens per second and peak memory. Results are cached
    in workspace/evals/MODEL/VERSION/ and appended to workspace/evals/MODEL/model_evolution.json."""
    model, version = parse_model_version(target)
    loaded = load_suite(suite) if suite else None  # a bad suite is reported before anything loads
    ws = workspace_dir()
    with open_registry(ws) as reg:
        rec = reg.resolve(model, version)
    loaded = loaded or _recipe_suite(rec, ws)
    settings, judge = _settings_and_judge(batch_size, max_new_tokens, device, threads, judge_spec)
    result = evaluate_version(ws, rec, loaded, settings, judge, fresh)
    if out:
        atomic_write_json(out, result)
    click.echo(json.dumps(result, indent=2) if as_json else "\n".join(eval_summary(result)))


@click.command("gate")
@click.argument("model")
@click.option("--candidate", required=True, help="The version that wants to ship.")
@click.option("--baseline", default=None, help="The version it must not regress from (default: its parent).")
@generation_options
@click.pass_context
def gate_cli(ctx, model, candidate, baseline, suite, batch_size, max_new_tokens, device, threads, judge_spec,
             fresh, as_json):
    """Evaluate CANDIDATE and BASELINE on the same suite and apply the recipe's gate policy.
    Versions may be aliases (champion). Writes gate.json and gate.md into the candidate's
    run folder. Exit 0 passed, 3 blocked."""
    ws = workspace_dir()
    settings, judge = _settings_and_judge(batch_size, max_new_tokens, device, threads, judge_spec)
    result = run_gate(ws, model, candidate, baseline, suite, settings, judge, fresh)
    with open_registry(ws) as reg:
        where = display(Path(reg.require(model, result["candidate"]).run_dir) / "gate.md")
    click.echo(json.dumps(result, indent=2) if as_json else "\n".join(gate_summary(result, where)))
    if not result["passed"]:
        ctx.exit(EXIT_NO)
