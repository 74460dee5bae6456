"""The tiny base knows things: pretraining repeats the general Q&A so the base answers the
general questions before any domain training (the benchmark measures their forgetting).
The slow test pretrains a reduced base (100 corpus lines and 24 of the questions,
its own tokenizer) through Axolotl and asks it those questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

from cl_toolkit.training.profiles import TinySpec, load_profile
from cl_toolkit.training.tiny_model import make_tiny_model, pretraining_rows


def test_pretraining_repeats_each_general_question_in_every_training_wording():
    text, qa = pretraining_rows(REPO, 3)
    general = [json.loads(line) for name in ("general.jsonl", "general_phrasings.jsonl")
               for line in (REPO / "data/general" / name).read_text().splitlines()]
    assert qa == general * 3 and len(general) == 360 and len(text) > 1000 and all(set(r) == {"text"} for r in text)
    held = [json.loads(line)["messages"][0]["content"] for line in (REPO / "data/general/general_heldout.jsonl").read_text().splitlines()]
    assert len(held) == 120 and not set(held) & {r["messages"][0]["content"] for r in qa}  # never trained on


def test_the_phrasings_are_what_their_script_writes(tmp_path, monkeypatch):
    import runpy
    import shutil

    (tmp_path / "data/general").mkdir(parents=True)
    shutil.copy(REPO / "data/general/general.jsonl", tmp_path / "data/general")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(REPO / "data/_source/phrasings.py"), run_name="__main__")
    for name in ("general_phrasings.jsonl", "general_heldout.jsonl"):
        assert (tmp_path / "data/general" / name).read_bytes() == (REPO / "data/general" / name).read_bytes()


def test_the_tiny_profile_pretrains_with_repeated_questions(tmp_path):
    spec = load_profile(REPO / "configs/profiles/tiny-cpu.yml", REPO, tmp_path).tiny_model
    assert (spec.pretrain_epochs, spec.pretrain_qa_repeats) == (3, 6)


def reduced_project(root: Path, questions: int = 24, sentences: int = 100) -> list[dict]:
    """A project holding only general data: the first `sentences` corpus lines and every
    fifth general question (capitals, arithmetic, science...), up to `questions`."""
    (root / "data" / "general").mkdir(parents=True)
    corpus = (REPO / "data/general/corpus.txt").read_text().splitlines()[:sentences]
    (root / "data/general/corpus.txt").write_text("\n".join(corpus) + "\n")
    rows = (REPO / "data/general/general.jsonl").read_text().splitlines()[::5][:questions]
    (root / "data/general/general.jsonl").write_text("\n".join(rows) + "\n")
    return [json.loads(r) for r in rows]


@pytest.mark.slow
def test_a_reduced_base_answers_the_general_questions_it_was_given(tmp_path):
    from cl_toolkit.evaluation.generate import generate, load_model
    from cl_toolkit.evaluation.matchers import MATCHERS

    rows = reduced_project(tmp_path / "proj")
    # fewer rows an epoch than the full base, so more epochs and repeats for a similar number
    # of steps (~360); measured: 24/24 (300 corpus lines, 3 epochs x 16 repeats: 2/24)
    spec = TinySpec(pretrain_epochs=6, pretrain_qa_repeats=32)
    make_tiny_model(tmp_path / "base", spec, tmp_path / "proj")
    answers = generate(load_model(str(tmp_path / "base")), [r["messages"][0]["content"] for r in rows]).outputs
    right = [MATCHERS["exact"](a, r["messages"][-1]["content"], 0.0) for a, r in zip(answers, rows, strict=True)]
    assert sum(right) / len(right) >= 0.9, list(zip(answers, right, strict=True))
