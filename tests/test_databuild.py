"""Rehearsal mixing: exact counts, seeded, byte-identical for the same inputs."""

from __future__ import annotations

import copy
import json
import random

import pytest
from project import BASE_RECIPE, write_recipe

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import jsonl_bytes, sha256_bytes
from cl_toolkit.registry import open_registry
from cl_toolkit.training.mix import build_mix, read_chat_jsonl, rehearsal_count, sample_exact
from cl_toolkit.training.strategies import load_recipe


def mix_for(proj, overrides=(), **changes):
    data = copy.deepcopy(BASE_RECIPE)
    data.update(changes)
    lr = load_recipe(write_recipe(proj, data), overrides)
    with open_registry(lr.workspace) as reg:
        return build_mix(lr, reg)


@pytest.mark.parametrize("n_new, ratio, expected", [(48, 0.2, 12), (48, 0.4, 32), (48, 0.5, 48), (10, 0.0, 0), (3, 0.1, 0)])
def test_rehearsal_count_is_exact(n_new, ratio, expected):
    assert rehearsal_count(n_new, ratio) == expected


def test_mix_has_exact_counts_and_real_rows(proj):
    mix = mix_for(proj)
    assert mix.counts["new"] == 48
    assert mix.counts["rehearsal"]["data/general/general.jsonl"]["rows"] == 12
    assert mix.counts["total"] == len(mix.rows) == 60
    assert mix.counts["ratio_actual"] == pytest.approx(0.2)
    general = {json.dumps(r, sort_keys=True) for r in read_chat_jsonl(proj / "data/general/general.jsonl")}
    picked = [r for r in mix.rows if json.dumps(r, sort_keys=True) in general]
    assert len(picked) == 12
    assert len({json.dumps(r, sort_keys=True) for r in picked}) == 12  # without replacement


def test_split_evenly_between_sources(proj):
    sources = [{"path": "data/general/general.jsonl"}, {"path": "data/firefighter/q2.jsonl"}]
    mix = mix_for(proj, data={"train": [{"path": "data/firefighter/q1.jsonl"}], "seed": 1,
                              "rehearsal": {"ratio": 0.5, "sources": sources}})
    reh = mix.counts["rehearsal"]
    assert reh["data/general/general.jsonl"]["rows"] == 24 and reh["data/firefighter/q2.jsonl"]["rows"] == 24
    assert [i["role"] for i in mix.inputs] == ["train", "rehearsal", "rehearsal"]
    assert all(len(i["sha256"]) == 64 for i in mix.inputs)


def test_same_inputs_and_seed_give_identical_bytes_other_seed_differs(proj):
    a, b = mix_for(proj), mix_for(proj)
    assert jsonl_bytes(a.rows) == jsonl_bytes(b.rows)
    assert sha256_bytes(jsonl_bytes(a.rows)) == sha256_bytes(jsonl_bytes(b.rows))
    c = mix_for(proj, ["data.seed=8"])
    assert jsonl_bytes(c.rows) != jsonl_bytes(a.rows)
    assert len(c.rows) == len(a.rows)


def test_short_pool_is_repeated_in_reshuffled_passes():
    rows = [{"i": i} for i in range(5)]
    out = sample_exact(rows, 12, random.Random(0))
    assert len(out) == 12
    assert sorted(r["i"] for r in out[:5]) == list(range(5))  # each pass uses every row once
    assert sorted(r["i"] for r in out[5:10]) == list(range(5))


def test_bad_training_rows_are_reported_by_file_and_line(proj):
    bad = proj / "data" / "firefighter" / "bad.jsonl"
    good = (proj / "data/firefighter/q1.jsonl").read_text().splitlines()
    bad.write_text("\n".join([good[0], "{not json", json.dumps({"messages": [{"role": "user", "content": "q"}]}), good[1]]) + "\n")
    with pytest.raises(BadInput) as e:
        read_chat_jsonl(bad)
    text = str(e.value)
    assert "bad.jsonl:2" in text and "invalid JSON" in text
    assert "bad.jsonl:3" in text and "last message must be the assistant" in text


def test_clt_data_build_writes_the_mix_and_its_hashes(proj, clt):
    path = write_recipe(proj, copy.deepcopy(BASE_RECIPE))
    outs = []
    for name in ("a", "b"):
        code, out, err = clt("data", "build", path, "-o", proj / name)
        assert code == 0, err
        outs.append(json.loads((proj / name / "mix.json").read_text()))
    assert (proj / "a" / "train.jsonl").read_bytes() == (proj / "b" / "train.jsonl").read_bytes()
    assert outs[0]["train.jsonl"]["sha256"] == sha256_bytes((proj / "a" / "train.jsonl").read_bytes())
    assert outs[0]["mix"]["total"] == outs[0]["train.jsonl"]["rows"] == 60
