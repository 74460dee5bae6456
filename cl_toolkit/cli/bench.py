"""`clt bench ...`: benchmarks that train through the real toolkit path."""

from __future__ import annotations

from pathlib import Path

import click

from cl_toolkit.bench.cl import STRATEGIES, BenchSettings, run_benchmark
from cl_toolkit.bench.output import summary_table, write_results
from cl_toolkit.cli.options import json_option, threads_option
from cl_toolkit.cli.output import emit, say
from cl_toolkit.core.workspace import project_root, workspace_dir
from cl_toolkit.core.yamlio import display

DEFAULTS = BenchSettings()


@click.group()
def cli():
    """Benchmarks: continual learning across strategies."""


@cli.command("cl")
@click.option("--strategies", default=",".join(DEFAULTS.strategies), show_default=True,
              help=f"Comma-separated, from: {', '.join(STRATEGIES)}.")
@click.option("--experiences", type=click.IntRange(1, DEFAULTS.experiences), default=DEFAULTS.experiences,
              show_default=True, help="Quarters of the stream (q1, q2, q3).")
@click.option("--max-rows", type=click.IntRange(min=1), help="Facts per experience (default: all 48).")
@click.option("--epochs", type=click.IntRange(min=1), default=DEFAULTS.epochs, show_default=True,
              help="Epochs of every training: one budget for all strategies.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.learning_rate,
              show_default=True, help="Learning rate of every training.")
@click.option("--pretrain-epochs", type=click.IntRange(min=0), help="Pretraining epochs of the tiny base (default: the profile's).")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="data.seed of every recipe.")
@threads_option(BenchSettings, "Torch threads while evaluating.")
@click.option("--train-threads", type=click.IntRange(min=1), default=DEFAULTS.train_threads, show_default=True,
              help="OMP/MKL threads of each training process.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the base and each strategy's workspace go (default: WORKSPACE/bench-cl).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/results"),
              show_default=True, help="Folder for cl.json, cl.md and cl.png.")
@json_option("Print the result document instead of the table.")
def cl_cli(strategies: str, experiences: int, max_rows: int | None, epochs: int, learning_rate: float,
           pretrain_epochs: int | None, seed: int, threads: int, train_threads: int, work_dir: Path | None, out: Path,
           as_json: bool):
    """Learn a stream of quarterly experiences with each strategy (naive, continued LoRA with
    rehearsal 0.1/0.2/0.5, merge_and_retrain, distillation) on the pretrained tiny model and
    report the accuracy matrix R[i][j], ACC, BWT, forgetting, plasticity and training time."""
    settings = BenchSettings(strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
                             experiences=experiences, max_rows=max_rows, epochs=epochs, learning_rate=learning_rate,
                             pretrain_epochs=pretrain_epochs,
                             seed=seed, threads=threads, train_threads=train_threads)
    doc = run_benchmark(project_root(), (work_dir or workspace_dir() / "bench-cl").resolve(), settings,
                        say=say)
    paths = write_results(doc, out)
    emit(doc, as_json, [summary_table(doc)])
    say("wrote " + ", ".join(display(p) for p in paths.values()))
