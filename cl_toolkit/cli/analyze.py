"""`clt analyze MODEL`: the weakest domains of a version, what goes wrong there, what it
forgot, and a plan of next steps (plan.json, plan.md) in the workspace."""

from __future__ import annotations

import click

from cl_toolkit.cli.options import json_option
from cl_toolkit.cli.output import emit
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.core.yamlio import display
from cl_toolkit.pipeline.plan import analysis_lines, write_plan


def _text(result: dict) -> list[str]:
    plan, a = result["plan"], result["plan"]["analysis"]
    fb = a["feedback"]
    lines = [f"{a['model']} {a['version']}" + (f" ({a['alias']})" if a["alias"] else "")
             + f": accuracy {100 * a['accuracy']:.1f}% over {', '.join(a['suites'])}; versions compared "
             + ", ".join(a["versions_compared"]) + "; production feedback: "
             + (f"{fb['quarter']}, {fb['predictions']} predictions of {', '.join(fb['versions'])}" if fb else "none"),
             f"{a['formula']}.", "", "domains by priority:", *analysis_lines(a, top=len(a["domains"])), "",
             "criticalities by priority:"]
    lines += [f"  {c['criticality']}: priority {c['priority']}, accuracy {100 * c['evaluation']['accuracy']:.1f}% "
              f"({c['evaluation']['failed']} of {c['evaluation']['cases']} failed); cases "
              f"{', '.join(c['evidence']['cases']) or 'none'}" for c in a["criticalities"]]
    lines += ["", "forgetting:"] + ([f"  {f['suite']}: {100 * f['best']:.1f}% at {f['best_version']} -> "
                                     f"{100 * f['now']:.1f}% (-{100 * f['drop']:.1f} pt); cases "
                                     f"{', '.join(f['evidence']['cases']) or 'n/a'}" for f in a["forgetting"]]
                                    or ["  no suite fell from its best-ever score"])
    lines += ["", "next steps:"] + [f"  {s['kind']}: {s['command']}" for s in plan["steps"] if s.get("command")]
    return lines + ["", f"wrote {display(result['paths']['plan.json'])} (sha256 {result['sha256'][:12]}) "
                        f"and {display(result['paths']['plan.md'])}"]


@click.command()
@click.argument("model")
@click.option("--version", "version", default=None,
              help="The version (a number or an alias) to analyse; default: the champion.")
@json_option("Print the plan (with its analysis) as JSON.")
def cli(model, version, as_json):
    """Rank MODEL's domains and criticalities by a stated priority score (accuracy, its
    trend over the last versions, critical cases failed, production volume and low ratings),
    classify the failures (wrong number, wrong unit, wrong entity, no answer, format error),
    list the most common production corrections and the suites it forgot, each with its
    case and request ids; then write plan.json and plan.md under
    WORKSPACE/analysis/MODEL/VERSION/ with the next steps as commands (annotation batches and
    synthetic data for the weak domains, rehearsal weights, `clt recipe new --plan`).
    Reads stored evaluations and feedback only; nothing is generated."""
    result = write_plan(workspace_dir(), model, version)
    emit({**result["plan"], "paths": {k: display(v) for k, v in result["paths"].items()},
          "sha256": result["sha256"]}, as_json, _text(result))
