"""`clt eval MODEL@VERSION`, `clt eval matrix MODEL` and `clt gate MODEL --candidate V`:
thin commands over evaluate.py, matrix.py and gate.py."""

from __future__ import annotations

from pathlib import Path

import click

from cl_toolkit.cli.options import generation_options, json_option, stack
from cl_toolkit.cli.output import emit
from cl_toolkit.core.errors import BadInput, Refused
from cl_toolkit.core.files import atomic_write_json
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.core.yamlio import display
from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version
from cl_toolkit.evaluation.gate import gate_config, run_gate
from cl_toolkit.evaluation.gate_report import eval_summary, gate_summary
from cl_toolkit.evaluation.matrix import line_matrix, matrix_text
from cl_toolkit.evaluation.suite import load_suite, only_domains
from cl_toolkit.registry import open_registry


def eval_options(f):
    """Options shared by eval and gate: the suite, how answers are generated and scored."""
    return stack(
        click.option("--suite", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="One suite (JSONL) instead of the recipe's gate.suites (gated as `regression`)."),
        generation_options(EvalSettings),
        click.option("--judge", "judge_spec", default=None, metavar="MODEL@VERSION|DIR",
                     help="Local model that scores cases with match: judge."),
        click.option("--fresh", is_flag=True, help="Ignore cached results; evaluate again."),
        json_option(),
    )(f)


def _judge(judge_spec: str | None, device: str):
    """The local judge model, when one is named (and Hugging Face's progress bars off)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a report
    if not judge_spec:
        return None
    from cl_toolkit.evaluation.judge import load_judge

    return load_judge(judge_spec, workspace_dir(), device)


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


@click.command("matrix")
@click.argument("model")
@click.option("--all", "include_archived", is_flag=True, help="Also list archived (rejected) versions.")
@json_option("Print the matrix as JSON.")
def matrix_cli(model, include_archived, as_json):
    """The model line's accuracy matrix: every version on every named suite its gates and
    cycles evaluated (from the registry), each suite's best score, its forgetting (the best
    score before the newest version minus the newest's; negative when the newest is the best
    yet), and the backward transfer (BWT) over learned quarters."""
    m = line_matrix(workspace_dir(), model, include_archived=include_archived)
    emit(m, as_json, matrix_text(m).splitlines())


class EvalCommand(click.Command):
    """`clt eval MODEL@VERSION ...`, and `clt eval matrix MODEL` as its one subcommand
    (a version spec always holds '@', so the two never collide)."""

    def make_context(self, info_name, args, parent=None, **extra):
        if args and args[0] == "matrix":
            return matrix_cli.make_context(f"{info_name} matrix", list(args[1:]), parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@click.command("eval", cls=EvalCommand)
@click.argument("target", metavar="MODEL@VERSION")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the full results (every case) to this JSON file.")
@click.option("--domain", "domains", multiple=True, metavar="DOMAIN",
              help="Only the suite's cases of this domain (repeatable: any of them). Cached apart "
                   "and never recorded as the suite's score; a domain without cases is an error "
                   "naming the suite's domains.")
@eval_options
def eval_cli(target, out, domains, suite, judge_spec, fresh, as_json, **generation):
    """Answer a regression suite with one version and score every case: accuracy overall,
    per domain and per criticality, tokens per second and peak memory. Results are cached
    in workspace/evals/MODEL/VERSION/ and appended to workspace/evals/MODEL/model_evolution.json.

    With --domain only those domains' cases are answered: a part of the suite, cached on
    its own and kept out of the history and the accuracy matrix.

    `clt eval matrix MODEL [--json] [--all]` prints the line's accuracy matrix instead."""
    model, version = parse_model_version(target)
    loaded = only_domains(load_suite(suite), domains) if suite else None  # bad input before anything loads
    ws = workspace_dir()
    with open_registry(ws) as reg:
        rec = reg.resolve(model, version)
    loaded = loaded or only_domains(_recipe_suite(rec, ws), domains)
    settings = EvalSettings(**generation)
    result = evaluate_version(ws, rec, loaded, settings, _judge(judge_spec, settings.device), fresh)
    if out:
        atomic_write_json(out, result)
    emit(result, as_json, eval_summary(result) + _narrowed_line(result))


def _narrowed_line(result: dict) -> list[str]:
    if not result.get("domains"):
        return []
    return [f"  only domains {', '.join(result['domains'])}: {result['total']} of the suite's "
            f"{result['suite_cases']} cases (not recorded as the suite's score)"]


@click.command("gate")
@click.argument("model")
@click.option("--candidate", required=True, help="The version that wants to ship.")
@click.option("--baseline", default=None, help="The version it must not regress from (default: its parent).")
@eval_options
def gate_cli(model, candidate, baseline, suite, judge_spec, fresh, as_json, **generation):
    """Evaluate CANDIDATE, BASELINE and the champion on every suite of the recipe's
    gate.suites (or on --suite alone) and apply the gate policy suite by suite. Versions may
    be aliases (champion). The verdict is recorded in the registry (promotion reads only
    that) and written to gate.json and gate.md in the candidate's run folder. Exit 0 passed,
    3 blocked."""
    ws = workspace_dir()
    settings = EvalSettings(**generation)
    result = run_gate(ws, model, candidate, baseline, suite, settings, _judge(judge_spec, settings.device), fresh)
    with open_registry(ws) as reg:
        where = display(Path(reg.require(model, result["candidate"]).run_dir) / "gate.md")
    emit(result, as_json, gate_summary(result, where))
    if not result["passed"]:
        raise Refused(f"{model} {result['candidate']} was blocked by the gate: see {where}")
