"""`clt tiny-model OUT`: build a tiny Llama and a locally trained BPE tokenizer."""

from __future__ import annotations

from pathlib import Path

import click

from cl_toolkit.cli.options import default_of, json_option
from cl_toolkit.cli.output import emit, say
from cl_toolkit.core.workspace import project_root
from cl_toolkit.training.tiny_model import (
    TinySpec,
    describe,
    make_tiny_model,
)


@click.command("tiny-model")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=default_of(TinySpec, "seed"), show_default=True, help="Seed of the random init.")
@click.option("--hidden-size", type=int, default=default_of(TinySpec, "hidden_size"), show_default=True)
@click.option("--layers", "num_layers", type=int, default=default_of(TinySpec, "num_layers"), show_default=True)
@click.option("--vocab-size", type=int, default=default_of(TinySpec, "vocab_size"), show_default=True, help="BPE vocabulary size.")
@click.option("--pretrain-epochs", type=int, default=default_of(TinySpec, "pretrain_epochs"), show_default=True,
              help="Then full fine-tune it on the bundled general text through Axolotl for this many epochs.")
@json_option("Print a JSON description.")
def cli(out: Path, seed: int, hidden_size: int, num_layers: int, vocab_size: int, pretrain_epochs: int, as_json: bool):
    """Build a tiny Llama-architecture model plus a byte-level BPE tokenizer (ChatML
    template) into OUT, trained on the bundled text under data/. No network; the same
    seed gives identical files."""
    spec = TinySpec(seed=seed, hidden_size=hidden_size, num_layers=num_layers, vocab_size=vocab_size,
                    pretrain_epochs=pretrain_epochs)
    if pretrain_epochs:
        say(f"building and pretraining ({pretrain_epochs} epochs through Axolotl)...")
    make_tiny_model(out, spec, project_root())  # pretrains only when the spec says
    info = describe(out)
    emit(info, as_json, [f"tiny model: {info['path']} ({info['parameters']:,} parameters, vocab {info['vocab_size']})"])
