"""Click defaults come from the settings dataclasses and library signatures: for every
option that has such a twin, the two defaults are equal (so they cannot drift apart)."""

from __future__ import annotations

import dataclasses
import inspect

import click
import pytest

from cl_toolkit.bench.cl import BenchSettings
from cl_toolkit.cli import cli
from cl_toolkit.evaluation.evaluate import EvalSettings
from cl_toolkit.feedback import annotate, importer
from cl_toolkit.feedback.endpoint import Endpoint
from cl_toolkit.feedback.extract import extract
from cl_toolkit.feedback.scoring import score_store
from cl_toolkit.feedback.synth_remote import generate
from cl_toolkit.serve.server import ServeSettings
from cl_toolkit.training.launch import Topology
from cl_toolkit.training.profiles import TinySpec


def field_default(cls, name):
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


def arg_default(func, name):
    return inspect.signature(func).parameters[name].default


GENERATION = ["batch_size", "max_new_tokens", "device", "threads"]
SERVE = ["host", "port", "challenger_share", "salt", "device", "threads", "max_tokens", "max_body_bytes",
         "max_pending", "reload_interval", "api_key"]
TOPOLOGY = ["nproc", "nnodes", "node_rank", "master_addr", "master_port", "launcher"]
BENCH = ["threads", "train_threads"]  # the rest default to the stream file's own
TINY = ["seed", "hidden_size", "num_layers", "vocab_size", "pretrain_epochs"]

# (command path, click parameter, the default it must equal)
TWINS = (
    [(("eval",), n, field_default(EvalSettings, n)) for n in GENERATION]
    + [(("gate",), n, field_default(EvalSettings, n)) for n in GENERATION]
    + [(("serve",), n, field_default(ServeSettings, n)) for n in SERVE]
    + [((verb,), n, field_default(Topology, n)) for verb in ("train", "cycle") for n in TOPOLOGY]
    + [(("bench", "cl"), n, field_default(BenchSettings, n)) for n in BENCH]
    + [(("tiny-model",), n, field_default(TinySpec, n)) for n in TINY]
    + [(("feedback", "import"), n, arg_default(importer.import_files, n)) for n in ("batch_size", "max_line_bytes")]
    + [(("feedback", "extract"), n, arg_default(extract, n)) for n in ("fmt", "min_rating", "max_bad_rating")]
    + [(("feedback", "annotate-export"), "n", arg_default(annotate.export_batch, "n"))]
    + [(("feedback", "annotate-export"), n, arg_default(annotate.sample, n)) for n in ("confidence_threshold", "seed")]
    + [(("feedback", "score"), "scorer", arg_default(score_store, "scorer")),
       (("feedback", "score"), "api_key_env", field_default(Endpoint, "api_key_env"))]
    + [(("synth",), n, field_default(Endpoint, n)) for n in ("api_key_env", "attempts")]
    + [(("synth",), "backoff", field_default(Endpoint, "backoff_s"))]
    + [(("synth",), n, arg_default(generate, n)) for n in ("per_request", "temperature")]
)


def command(path: tuple[str, ...]) -> click.Command:
    cmd, ctx = cli, click.Context(cli)
    for name in path:
        cmd = cmd.get_command(ctx, name)
    return cmd


@pytest.mark.parametrize(("path", "name", "expected"), TWINS, ids=[f"{' '.join(p)}:{n}" for p, n, _ in TWINS])
def test_click_default_equals_the_settings_default(path, name, expected):
    params = {p.name: p for p in command(path).params}
    assert params[name].default == expected


def test_the_json_flag_is_one_option_everywhere():
    """Every --json in the CLI is the shared flag: a boolean parameter called as_json."""
    found = []

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(click.Context(cmd)):
                walk(cmd.get_command(click.Context(cmd), name), (*path, name))
            return
        found.extend((path, p) for p in cmd.params if "--json" in getattr(p, "opts", ()))

    walk(cli, ())
    assert len(found) >= 20
    for path, p in found:
        assert (p.name, p.is_flag, p.opts) == ("as_json", True, ["--json"]), path
