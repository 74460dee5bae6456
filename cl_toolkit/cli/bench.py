"""`clt bench ...`: benchmarks that train through the real toolkit path."""

from __future__ import annotations

from pathlib import Path

import click

from cl_toolkit.bench.cl import BenchSettings, narrow, plan_steps, run_benchmark
from cl_toolkit.bench.output import summary_table, write_results
from cl_toolkit.bench.stream import load_stream
from cl_toolkit.cli.options import json_option, threads_option
from cl_toolkit.cli.output import emit, say
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.workspace import project_root, workspace_dir
from cl_toolkit.core.yamlio import display

DEFAULTS = BenchSettings()
DEFAULT_STREAM = "benchmarks/streams/firefighter-3q.yml"


def _csv(value: str | None, kind=str) -> tuple | None:
    if not value:
        return None
    try:
        return tuple(kind(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise BadInput(f"cannot read {value!r} as a comma-separated list of {kind.__name__}s") from None


@click.group()
def cli():
    """Benchmarks: continual learning across strategies."""


@cli.command("cl")
@click.option("--stream", "stream_path", type=click.Path(dir_okay=False, path_type=Path), default=Path(DEFAULT_STREAM),
              show_default=True, help="The stream file: experiences, strategies (recipes plus overrides), profile, seeds.")
@click.option("--strategies", help="Comma-separated subset of the stream's strategies, in this order (default: all).")
@click.option("--seeds", help="Comma-separated seeds instead of the stream's (default 42,43,44).")
@click.option("--experiences", type=click.IntRange(min=1), help="Only the first N experiences of the stream.")
@click.option("--max-rows", type=click.IntRange(min=1), help="Only the first N rows of each training file and cases of each test suite.")
@click.option("--epochs", type=click.IntRange(min=1), help="train.num_epochs of every training (over the stream's budget).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), help="train.learning_rate of every training.")
@click.option("--pretrain-epochs", type=click.IntRange(min=0), help="Pretraining epochs of a tiny base (default: the profile's).")
@threads_option(BenchSettings, "Torch threads while evaluating.")
@click.option("--train-threads", type=click.IntRange(min=1), default=DEFAULTS.train_threads, show_default=True,
              help="OMP/MKL threads of each training process.")
@click.option("--jobs", type=click.IntRange(min=1), default=DEFAULTS.jobs, show_default=True,
              help="Lines (strategy, seed) trained at once, each in its own worker process; on 2 cores, 2 jobs of "
                   "1 training thread each take about half the time of one.")
@click.option("--fresh", is_flag=True,
              help="Train every step again. By default a first experience or a whole line that an earlier run "
                   "in the same work folder trained from the same inputs (recipes, overrides, data, base, toolkit "
                   "version) is reused: training is deterministic, so it would give the same numbers.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the base and each (strategy, seed)'s workspace go (default: WORKSPACE/bench-cl/STREAM).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/results"),
              show_default=True, help="Folder for STREAM.json, STREAM.md and STREAM.png (STREAM: the stream's name).")
@click.option("--check", is_flag=True, help="Validate the stream and every step's recipe, print the plan, train nothing.")
@json_option("Print the result document (with --check: the plan) instead of the table.")
def cl_cli(stream_path: Path, strategies: str | None, seeds: str | None, experiences: int | None, max_rows: int | None,
           epochs: int | None, learning_rate: float | None, pretrain_epochs: int | None, threads: int,
           train_threads: int, jobs: int, fresh: bool, work_dir: Path | None, out: Path, check: bool, as_json: bool):
    """Learn a stream of experiences with each of its strategies and seeds on the stream's
    profile (the tiny base is pretrained once) and report, mean ± std over the seeds, the
    accuracy matrix R[i][j], ACC, BWT, forgetting, plasticity, general knowledge kept and
    compute (optimizer steps, training tokens, seconds) per experience, with every
    difference from naive labelled within or beyond noise. The stream format:
    docs/continual_learning.md."""
    root = project_root()
    settings = BenchSettings(strategies=_csv(strategies), seeds=_csv(seeds, int), experiences=experiences,
                             max_rows=max_rows, epochs=epochs, learning_rate=learning_rate,
                             pretrain_epochs=pretrain_epochs, threads=threads, train_threads=train_threads, jobs=jobs, fresh=fresh)
    stream = load_stream(stream_path, root)
    work = (work_dir or workspace_dir() / "bench-cl" / stream.name).resolve()
    if check:
        plan = plan_steps(narrow(stream, settings), settings, root, work / "strategies" / "_plan")
        return emit(plan, as_json, [f"{name}: " + " -> ".join(f"{s['experience']} ({s['recipe']})" for s in p["steps"])
                                    for name, p in plan.items()] + [f"{display(stream_path)}: valid"])
    doc = run_benchmark(stream, root, work, workspace_dir().resolve(), settings, say=say)
    paths = write_results(doc, out, stream.name)
    emit(doc, as_json, [summary_table(doc)])
    say("wrote " + ", ".join(display(p) for p in paths.values()))
