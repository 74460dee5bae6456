"""The rehearsal buffer: seeded reservoir samples per version, loaded oldest first."""

from __future__ import annotations

import json
import random

import pytest

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback.rehearsal import add_to_buffer, load_buffer, reservoir_sample


def _examples(tag: str, n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"{tag} q{i}"},
                          {"role": "assistant", "content": f"{tag} a{i}"}]} for i in range(n)]


def test_keeps_at_most_capacity_per_version_seeded(tmp_path):
    add_to_buffer(tmp_path, "ff", "1.0.0", _examples("v1", 500), capacity=50, seed=3)
    first = load_buffer(tmp_path, "ff")
    assert len(first) == 50 and len({json.dumps(e) for e in first}) == 50
    assert all(e["messages"][0]["content"].startswith("v1 ") for e in first)
    add_to_buffer(tmp_path, "ff", "1.0.0", _examples("v1", 500), capacity=50, seed=3)
    assert load_buffer(tmp_path, "ff") == first  # same examples and seed: same sample
    add_to_buffer(tmp_path, "ff", "1.0.0", _examples("v1", 500), capacity=50, seed=4)
    assert load_buffer(tmp_path, "ff") != first


def test_versions_accumulate_oldest_first_and_models_are_separate(tmp_path):
    add_to_buffer(tmp_path, "ff", "1.10.0", _examples("v110", 3))
    add_to_buffer(tmp_path, "ff", "1.9.0", _examples("v19", 3))
    add_to_buffer(tmp_path, "ems", "1.0.0", _examples("ems", 3))
    tags = [e["messages"][0]["content"].split()[0] for e in load_buffer(tmp_path, "ff")]
    assert tags == ["v19"] * 3 + ["v110"] * 3
    assert len(load_buffer(tmp_path, "ems")) == 3
    assert load_buffer(tmp_path, "nothing-yet") == []
    index = json.loads((tmp_path / "rehearsal" / "ff" / "index.json").read_text())
    assert index["versions"]["1.9.0"]["seen"] == 3 and len(index["versions"]["1.9.0"]["sha256"]) == 64


def test_reservoir_is_uniform_enough():
    hits = [0] * 20
    for trial in range(2000):
        kept, seen = reservoir_sample(range(20), 5, random.Random(trial))
        assert seen == 20 and len(kept) == 5
        for item in kept:
            hits[item] += 1
    assert min(hits) > 350 and max(hits) < 650  # expected 500 each


@pytest.mark.parametrize("bad", [{"text": "x"}, {"messages": []},
                                 {"messages": [{"role": "bot", "content": "x"}]},
                                 {"messages": [{"role": "user", "content": 3}]}])
def test_rejects_examples_that_are_not_chat(tmp_path, bad):
    with pytest.raises(BadInput, match="example 2"):
        add_to_buffer(tmp_path, "ff", "1.0.0", [_examples("ok", 1)[0], bad])
    assert not (tmp_path / "rehearsal" / "ff" / "1.0.0.jsonl").exists()


def test_rejects_names_that_could_escape_the_workspace(tmp_path):
    with pytest.raises(BadInput):
        add_to_buffer(tmp_path, "../evil", "1.0.0", _examples("x", 1))
    with pytest.raises(BadInput):
        add_to_buffer(tmp_path, "ff", "../../1.0.0", _examples("x", 1))
