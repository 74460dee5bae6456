"""`clt tiny-model OUT`: build a tiny Llama and a locally trained BPE tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cl_toolkit.core.workspace import project_root
from cl_toolkit.training.tiny_model import (
    TinySpec,
    build_tiny_model,
    bundled_corpus,
    describe,
    make_tiny_model,
)


@click.command("tiny-model")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=TinySpec.seed, show_default=True, help="Seed of the random init.")
@click.option("--hidden-size", type=int, default=TinySpec.hidden_size, show_default=True)
@click.option("--layers", "num_layers", type=int, default=TinySpec.num_layers, show_default=True)
@click.option("--vocab-size", type=int, default=TinySpec.vocab_size, show_default=True, help="BPE vocabulary size.")
@click.option("--pretrain-epochs", type=int, default=0, show_default=True,
              help="Then full fine-tune it on the bundled general text through Axolotl for this many epochs.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON description.")
def cli(out: Path, seed: int, hidden_size: int, num_layers: int, vocab_size: int, pretrain_epochs: int, as_json: bool):
    """Build a tiny Llama-architecture model plus a byte-level BPE tokenizer (ChatML
    template) into OUT, trained on the bundled text under data/. No network; the same
    seed gives identical files."""
    spec = TinySpec(seed=seed, hidden_size=hidden_size, num_layers=num_layers, vocab_size=vocab_size,
                    pretrain_epochs=pretrain_epochs)
    if pretrain_epochs:
        click.echo(f"building and pretraining ({pretrain_epochs} epochs through Axolotl)...", err=True)
        make_tiny_model(out, spec, project_root())
        info = describe(out)
    else:
        info = build_tiny_model(out, spec, bundled_corpus(project_root()))
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"tiny model: {info['path']} ({info['parameters']:,} parameters, vocab {info['vocab_size']})")
