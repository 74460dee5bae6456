"""Rehearsal that covers the history: `resample: per_epoch` (every epoch written by the toolkit,
each with a fresh draw that cycles through the pool), `split` and `unit: tokens`, and `once`
kept byte for byte. Fast: mixes and renders only (the training test is in
test_rehearsal_train.py)."""

from __future__ import annotations

import copy
import json
import math
import random
import shutil

import pytest
import yaml
from project import BASE_RECIPE, REPO, line_of, write_recipe

from cl_toolkit.core.files import jsonl_bytes, sha256_bytes, sha256_file
from cl_toolkit.recipe.model import source_name
from cl_toolkit.registry import VersionRecord, open_registry
from cl_toolkit.training import pools
from cl_toolkit.training.draw import Cycler, allocate, take_tokens
from cl_toolkit.training.mix import build_mix, read_chat_jsonl
from cl_toolkit.training.strategies import load_recipe
from cl_toolkit.training.token_count import row_key

GENERAL, Q1, Q2 = "data/general/general.jsonl", "data/firefighter/q1.jsonl", "data/firefighter/q2.jsonl"

# The mixes the toolkit made before resample/split/unit existed (sha256 of train.jsonl, by
# the code of commit ace7c6c): `once` and the defaults must keep every byte.
SHIPPED_BEFORE = {
    "1.0.0": "7fb2fc0e199569cc3489fed6352085225590c09eff32dce2672cb9e10c63a827",
    "1.1.0": "efa2f140ae6d60af3f33d0775b36637e76266a03f0e659383cc620c1c5919bed",
    "2.0.0": "9cb65553cdb8a1d4fb49b8319e9fb3ce3669913c69ed31ae19a68591aed9ad40",
    "2.1.0": "e3c4b13b2a1b8e79385ccab52958371e777799a87b060a679b4b2ef11ef33285",
}
OTHERS_BEFORE = {  # BASE_RECIPE with these data blocks
    "two_sources": ({"train": [{"path": Q1}], "seed": 1,
                     "rehearsal": {"ratio": 0.5, "sources": [{"path": GENERAL}, {"path": Q2}]}},
                    "7c7141ce55daee7364968c7f11dc9cde4dc86f3694b8b9cda971c09c04b2aa57"),
    "repeated": ({"train": [{"path": Q1}], "seed": 3,
                  "rehearsal": {"ratio": 0.8, "sources": [{"path": Q2, "max_rows": 10}]}},
                 "40775d8b912a0b82bb310627c8a9df44678ff66718fe09fb245ce61e81129323"),
    "three_odd": ({"train": [{"path": Q1, "max_rows": 31}], "seed": 5,
                   "rehearsal": {"ratio": 0.3, "sources": [{"path": GENERAL}, {"path": Q2}, {"path": Q1}]}},
                  "d119ee2af414dd93b2b11ab4e01d7aa62d168b85cc5344c2c0b9fe220b49de8e"),
}


def recipe(**changes) -> dict:
    data = copy.deepcopy(BASE_RECIPE)
    data.update(changes)
    return data


def continued(reh: dict, epochs: int = 20, train=Q2, **changes) -> dict:
    """A continued_lora recipe on `train` rehearsing file pools (no registry needed)."""
    return recipe(**{"version": "1.1.0", "parent": "1.0.0", "strategy": "continued_lora",
                     "data": {"train": [{"path": train}], "rehearsal": reh, "seed": 7}, "train": {"num_epochs": epochs},
                     **changes})


def mix_of(proj, data: dict, overrides=(), name=None):
    lr = load_recipe(write_recipe(proj, data, name), overrides)
    with open_registry(lr.workspace) as reg:
        return build_mix(lr, reg)


def canon(row: dict) -> str:
    return json.dumps(row, sort_keys=True, ensure_ascii=False)


def epochs_of(mix) -> list[list[dict]]:
    out, at = [], 0
    for n in mix.counts["epoch_rows"]:
        out.append(mix.rows[at:at + n])
        at += n
    assert at == len(mix.rows)
    return out


# -- once: today's mix, byte for byte ---------------------------------------------------------

def _register(ws, lr, mix) -> None:
    """A run folder with what descendants read (data/new.jsonl and its hash), registered."""
    run = ws / "runs" / f"{lr.recipe.model}-{lr.recipe.version}"
    (run / "data").mkdir(parents=True)
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "data" / "new.jsonl").write_bytes(jsonl_bytes(mix.new_rows))
    (run / "data" / "train.jsonl").write_bytes(jsonl_bytes(mix.rows))
    (run / "recipe.yml").write_text(lr.text)
    (run / "axolotl.yml").write_text("base_model: tiny\n")
    (run / "manifest.json").write_text(json.dumps({"outputs": {"data/new.jsonl": {"sha256": sha256_file(run / "data" / "new.jsonl")}}}))
    with open_registry(ws) as reg:
        reg.register(VersionRecord(model=lr.recipe.model, version=lr.recipe.version, parent=lr.recipe.parent,
                                   strategy=lr.recipe.strategy, base_model="tiny", recipe_sha256=lr.sha256,
                                   data_sha256=sha256_file(run / "data" / "train.jsonl"), run_dir=str(run),
                                   adapter_dir=str(run / "adapter")))


@pytest.fixture
def shipped(shipped_project):
    return shipped_project


def test_the_shipped_recipes_keep_their_mix_byte_for_byte(shipped):
    """1.0.0 -> 1.1.0 -> 2.0.0 -> 2.1.0, each mixed from its registered ancestors' data."""
    for version, before in SHIPPED_BEFORE.items():
        lr = load_recipe(shipped / "recipes" / "firefighter" / f"{version}.yml")
        assert lr.recipe.data.rehearsal.resample == "once"  # explicit with a parent, the default without
        with open_registry(lr.workspace) as reg:
            mix = build_mix(lr, reg)
        assert sha256_bytes(jsonl_bytes(mix.rows)) == before, version
        assert "resample" not in mix.counts and "split" not in mix.counts  # the manifest reads as before
        _register(shipped / "ws", lr, mix)


@pytest.mark.parametrize("name", sorted(OTHERS_BEFORE))
def test_once_keeps_other_mixes_byte_for_byte(proj, name):
    data, before = OTHERS_BEFORE[name]
    mix = mix_of(proj, recipe(data=copy.deepcopy(data)), name=name)
    assert sha256_bytes(jsonl_bytes(mix.rows)) == before
    explicit = copy.deepcopy(data)
    explicit["rehearsal"].update(resample="once", split="even", unit="rows")
    assert jsonl_bytes(mix_of(proj, recipe(data=explicit), name=name).rows) == jsonl_bytes(mix.rows)


# -- per_epoch: coverage ------------------------------------------------------------------------

def test_the_default_is_per_epoch_with_a_parent_and_once_without(proj):
    reh = {"ratio": 0.2, "sources": [{"path": Q1}]}
    lr = load_recipe(write_recipe(proj, continued(reh)))
    assert lr.recipe.data.rehearsal.resample == "per_epoch"
    assert lr.raw["data"]["rehearsal"]["resample"] == "per_epoch"  # recipe.yml shows it filled in
    assert load_recipe(write_recipe(proj, recipe())).recipe.data.rehearsal.resample == "once"
    assert (lr.recipe.data.rehearsal.split, lr.recipe.data.rehearsal.unit) == ("even", "rows")


def test_with_nothing_to_rehearse_per_epoch_is_the_mix_of_once(proj):
    """Naive continuation (ratio 0, no sources): no draw to refresh, so no stream either."""
    for reh in ({"ratio": 0.0, "sources": []}, {"ratio": 0.0, "sources": [{"path": Q1}]}):
        mix = mix_of(proj, continued(dict(reh)))
        once = mix_of(proj, continued({**reh, "resample": "once"}))
        assert jsonl_bytes(mix.rows) == jsonl_bytes(once.rows) and mix.counts == once.counts
        assert len(mix.rows) == 48 and "resample" not in mix.counts


def test_every_pool_row_is_replayed_before_any_repeats(proj):
    """48 new Q2 rows, 20% rehearsal of the 48 Q1 facts: 12 a epoch, so epochs 1-4 are
    disjoint and cover Q1 exactly, and over 20 epochs each fact is seen exactly 5 times."""
    mix = mix_of(proj, continued({"ratio": 0.2, "sources": [{"path": Q1}]}))
    q1 = {canon(r) for r in read_chat_jsonl(proj / Q1)}
    q2 = [canon(r) for r in read_chat_jsonl(proj / Q2)]
    epochs = epochs_of(mix)
    assert len(epochs) == 20 and all(len(e) == 60 for e in epochs)
    for e in epochs:
        assert sorted(canon(r) for r in e if canon(r) not in q1) == sorted(q2)  # every new row, every epoch
    drawn = [[canon(r) for r in e if canon(r) in q1] for e in epochs]
    assert all(len(d) == 12 for d in drawn)
    for cycle in range(5):
        block = sum(drawn[4 * cycle:4 * cycle + 4], [])
        assert sorted(block) == sorted(q1)  # one whole pass over the pool before the next
    counts = mix.counts["rehearsal"][Q1]
    assert counts == {"rows": 240, "pool": 48, "per_epoch": [12] * 20,
                      "seen": {"distinct": 48, "min": 5, "max": 5, "histogram": {"5": 48}}}
    assert mix.counts["total"] == len(mix.rows) == 1200 and mix.counts["ratio_actual"] == 0.2
    assert (mix.counts["resample"], mix.counts["epochs"]) == ("per_epoch", 20)


def test_a_draw_that_does_not_divide_the_pool_runs_on_into_the_next_cycle(proj):
    """36 a epoch from 48: epoch 2 takes the last 12 of the first pass and 24 of the second."""
    mix = mix_of(proj, continued({"ratio": 0.6, "sources": [{"path": Q1}, {"path": GENERAL}]}, epochs=3))
    q1 = {canon(r) for r in read_chat_jsonl(proj / Q1)}
    drawn = [[canon(r) for r in e if canon(r) in q1] for e in epochs_of(mix)]
    assert [len(d) for d in drawn] == [36, 36, 36]
    assert len(set(drawn[0])) == 36 and set(drawn[0]) | set(drawn[1]) == q1  # all 48 by epoch 2
    seen = mix.counts["rehearsal"][Q1]["seen"]
    assert seen == {"distinct": 48, "min": 2, "max": 3, "histogram": {"2": 36, "3": 12}}
    general = mix.counts["rehearsal"][GENERAL]["seen"]  # 108 of 120 drawn, none twice
    assert general == {"distinct": 108, "min": 0, "max": 1, "histogram": {"0": 12, "1": 108}}


def test_the_cycler_draws_a_fresh_permutation_each_pass():
    draw = Cycler(7, random.Random(3))
    passes = [draw.take_n(7) for _ in range(4)]
    assert all(sorted(p) == list(range(7)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # reshuffled, not the same order again
    peeked = draw.peek()
    assert draw.peek() == peeked and draw.take() == peeked  # peek takes nothing


def test_per_epoch_is_byte_identical_for_a_seed_and_differs_for_another(proj):
    data = continued({"ratio": 0.5, "sources": [{"path": Q1}, {"path": GENERAL}]}, epochs=4)
    a, b = mix_of(proj, data), mix_of(proj, data)
    assert jsonl_bytes(a.rows) == jsonl_bytes(b.rows) and a.counts == b.counts
    c = mix_of(proj, data, ["data.seed=8"])
    assert jsonl_bytes(c.rows) != jsonl_bytes(a.rows) and len(c.rows) == len(a.rows)
    q1 = {canon(r) for r in read_chat_jsonl(proj / Q1)}
    first_a, first_c = epochs_of(a)[0], epochs_of(c)[0]
    assert {canon(r) for r in first_a if canon(r) in q1} != {canon(r) for r in first_c if canon(r) in q1}  # other draws
    q2 = {canon(r) for r in read_chat_jsonl(proj / Q2)}
    assert [canon(r) for r in first_a if canon(r) in q2] != [canon(r) for r in first_c if canon(r) in q2]  # other order
    once = mix_of(proj, data, ["data.rehearsal.resample=once"])
    assert len(once.rows) == len(a.rows) // 4  # once: one epoch's rows, Axolotl repeats them


# -- split and unit -----------------------------------------------------------------------------

@pytest.mark.parametrize("split, general, q1", [
    ("even", 24, 24),
    ("proportional", 34, 14),  # 48 x 120/168 = 34.3, 48 x 48/168 = 13.7: largest remainder
    ({GENERAL: 1, Q1: 3}, 12, 36),
    ({"./" + GENERAL: 0.5, Q1: 0.5}, 24, 24),  # a path as written names its source
])
def test_split_shares_the_budget(proj, split, general, q1):
    reh = {"ratio": 0.5, "split": split, "sources": [{"path": GENERAL}, {"path": Q1}]}
    for resample in ("once", "per_epoch"):
        mix = mix_of(proj, continued({**reh, "resample": resample}, epochs=2))
        per = mix.counts["rehearsal"]
        rows = general if resample == "once" else 2 * general
        assert (per[GENERAL]["rows"], per[Q1]["rows"]) == (rows, rows * q1 // general), resample
    assert mix.counts.get("split", "even") == split


def test_a_token_budget_takes_a_row_only_when_it_gets_closer():
    tokens = [10, 10, 10, 30, 5]

    def take_from(budget):
        order = list(range(5))  # a fixed draw order
        return take_tokens(lambda: order[0], lambda: order.pop(0), tokens.__getitem__, budget)

    assert take_from(35) == [0, 1, 2]  # 30 + 30 would overshoot by 25, more than the 5 it falls short
    assert take_from(45) == [0, 1, 2, 3]  # 60 overshoots by 15, as much as 30 falls short: taken
    assert take_from(4) == [0] and take_from(0) == []  # the first row while there is a budget at all


def test_allocate_matches_the_old_even_split():
    for total in range(0, 40):
        for k in range(1, 5):
            assert allocate(total, [1] * k) == [total // k + (1 if i < total % k else 0) for i in range(k)]
    assert allocate(10, [3, 1]) == [8, 2] and sum(allocate(7, [0.2, 0.3, 0.5])) == 7


@pytest.fixture
def with_tokenizer(proj, tiny_model_dir):
    shutil.copytree(tiny_model_dir, proj / "ws" / "models" / "tiny-llama")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return lambda row: len(tok(tok.apply_chat_template(row["messages"], tokenize=False), add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("resample", ["once", "per_epoch"])
def test_token_unit_counts_the_ratio_in_the_profiles_tokens(proj, with_tokenizer, resample):
    """Q1 facts rehearsed by tokens: the rehearsal's tokens are 1/3 of the mix (ratio 0.25 of
    each epoch) within one row; counted here again with the tokenizer itself."""
    n_tokens = with_tokenizer
    reh = {"ratio": 0.25, "unit": "tokens", "resample": resample, "sources": [{"path": GENERAL}]}
    mix = mix_of(proj, continued(reh, epochs=3, train=Q1))
    general = {canon(r) for r in read_chat_jsonl(proj / GENERAL)}
    reh_rows = [r for r in mix.rows if canon(r) in general]
    new_rows = [r for r in mix.rows if canon(r) not in general]
    reh_tokens, new_tokens = sum(map(n_tokens, reh_rows)), sum(map(n_tokens, new_rows))
    assert mix.counts["tokens"] == {"base": new_tokens, "rehearsal": reh_tokens,
                                    "ratio_actual": round(reh_tokens / (reh_tokens + new_tokens), 6)}
    assert mix.counts["unit"] == "tokens" and mix.counts["rehearsal"][GENERAL]["tokens"] == reh_tokens
    longest = max(map(n_tokens, reh_rows))
    epochs = 3 if resample == "per_epoch" else 1
    assert abs(reh_tokens - new_tokens / 3) <= epochs * longest / 2  # the budget, to half a row an epoch
    by_rows = mix_of(proj, continued({**reh, "unit": "rows"}, epochs=3, train=Q1))
    assert mix.counts["rehearsal"][GENERAL]["rows"] != by_rows.counts["rehearsal"][GENERAL]["rows"]


# -- a pool larger than memory is streamed -------------------------------------------------------

@pytest.mark.parametrize("resample", ["once", "per_epoch"])
def test_a_streamed_pool_gives_the_same_mix_as_one_read_whole(proj, monkeypatch, resample):
    reh = {"ratio": 0.5, "resample": resample, "sources": [{"path": GENERAL, "max_rows": 100}, {"path": Q1}]}
    whole = mix_of(proj, continued(reh, epochs=3))
    monkeypatch.setattr(pools, "STREAM_BYTES", 0)  # every file pool streamed
    streamed = mix_of(proj, continued(reh, epochs=3))
    assert jsonl_bytes(streamed.rows) == jsonl_bytes(whole.rows)
    assert streamed.inputs == whole.inputs and streamed.counts == whole.counts


def test_a_streamed_pool_indexes_lines_and_names_a_bad_drawn_row(proj, monkeypatch):
    good = (proj / Q1).read_text().splitlines()
    pool = proj / "data" / "pool.jsonl"
    pool.write_text("\n".join([good[0], "", "   ", good[1], "{broken"]))  # blank lines, no final newline
    monkeypatch.setattr(pools, "STREAM_BYTES", 0)
    p = pools.file_pool("data/pool.jsonl", pool)
    assert p.size == 3 and p.streamed and p.inputs[0]["sha256"] == sha256_file(pool)
    assert p.rows([1, 0]) == [json.loads(good[1]), json.loads(good[0])]
    with pytest.raises(pools.BadInput, match=r"pool.jsonl:5.*invalid JSON"):
        p.rows([2])


# -- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("reh_extra, train, key, at, needle", [
    ({"split": {GENERAL: 1, "data/nope.jsonl": 1}}, None, "data.rehearsal.split.data/nope.jsonl", "data/nope.jsonl:",
     "unknown rehearsal source 'data/nope.jsonl'"),
    ({"split": {GENERAL: 1}}, None, "data.rehearsal.split", "split:", f"give every rehearsal source a weight; missing: {Q1}"),
    ({"split": {GENERAL: 0, Q1: 1}}, None, f"data.rehearsal.split.{GENERAL}", f"{GENERAL}: 0",
     "less than or equal to the minimum of 0"),
    ({"split": {GENERAL: 1, Q1: -1}}, None, f"data.rehearsal.split.{Q1}", f"{Q1}: -1", "less than or equal to the minimum of 0"),
    ({"split": "evenly"}, None, "data.rehearsal.split", "split:", "'evenly' is not one of ['even', 'proportional']"),
    ({"unit": "bytes"}, None, "data.rehearsal.unit", "unit:", "'bytes' is not one of ['rows', 'tokens']"),
    ({"resample": "each"}, None, "data.rehearsal.resample", "resample:", "'each' is not one of ['per_epoch', 'once']"),
    ({}, {"max_steps": 50}, "train.max_steps", "max_steps:",
     "resample is per_epoch (the default for a recipe with a parent): max_steps 50 does not go with it"),
    ({"resample": "per_epoch"}, {"num_epochs": 2.5}, "train.num_epochs", "num_epochs:", "num_epochs must be a whole number"),
])
def test_bad_rehearsal_settings_name_file_line_and_key(proj, clt, reh_extra, train, key, at, needle):
    reh = {"ratio": 0.5, "sources": [{"path": GENERAL}, {"path": Q1}], **reh_extra}
    data = continued(reh)
    if train:
        data["train"] = train
    path = write_recipe(proj, data)
    code, out, err = clt("recipe", "validate", path)
    assert code == 2, out
    assert f"1.1.0.yml:{line_of(path.read_text(), at)}: [{key}]" in err and needle in err, err
    assert "Traceback" not in err


def test_a_profile_key_that_undoes_the_replay_is_named_in_the_profile(proj, clt):
    prof = proj / "configs" / "profiles" / "tiny-cpu.yml"
    prof.write_text(prof.read_text().replace("val_set_size: 0.0", "val_set_size: 0.1"))
    code, _, err = clt("recipe", "validate", write_recipe(proj, continued({"ratio": 0.2, "sources": [{"path": Q1}]})))
    line = line_of(prof.read_text(), "val_set_size:")
    assert code == 2 and f"tiny-cpu.yml:{line}: [axolotl.val_set_size]" in err and "test_datasets" in err
    once = continued({"ratio": 0.2, "resample": "once", "sources": [{"path": Q1}]})
    assert clt("recipe", "validate", write_recipe(proj, once))[0] == 0  # once: the split is fine


def test_source_names_are_the_manifests():
    assert source_name({"path": "./data/x.jsonl"}) == "data/x.jsonl"
    assert source_name({"path": "workspace:extracted/fb.jsonl"}) == "workspace:extracted/fb.jsonl"
    assert (source_name({"parent_data": True}), source_name({"buffer": True})) == ("parent_data", "buffer")


# -- render: one pass, the same optimizer steps ----------------------------------------------------

def test_render_makes_one_pass_over_every_epoch_with_the_same_steps(clt, workspace, tmp_path):
    """initial_lora may ask for per_epoch too (no parent needed to render it)."""
    src = REPO / "recipes" / "firefighter" / "1.0.0.yml"
    out_once, out_pe = tmp_path / "once", tmp_path / "pe"
    assert clt("recipe", "render", src, "-o", out_once, "--set", "train.num_epochs=5")[0] == 0
    code, stdout, err = clt("recipe", "render", src, "-o", out_pe, "--set", "train.num_epochs=5",
                            "--set", "data.rehearsal.resample=per_epoch", "--set", "axolotl.evals_per_epoch=2")
    assert code == 0, err
    once_cfg = yaml.safe_load((out_once / "axolotl.yml").read_text())
    text = (out_pe / "axolotl.yml").read_text()
    cfg = yaml.safe_load(text)
    assert once_cfg["num_epochs"] == 5 and cfg["num_epochs"] == 1 and cfg["evals_per_epoch"] == 10
    manifest = json.loads((out_pe / "manifest.json").read_text())
    once_rows = json.loads((out_once / "manifest.json").read_text())["outputs"]["data/train.jsonl"]["rows"]
    batch = once_cfg["micro_batch_size"] * once_cfg["gradient_accumulation_steps"]
    assert manifest["training"] == {"resample": "per_epoch", "epochs": 5, "num_epochs": 1, "rows": 5 * once_rows,
                                    "batch": batch, "optimizer_steps": math.ceil(5 * once_rows / batch)}
    assert manifest["outputs"]["data/train.jsonl"]["rows"] == 300 and manifest["mix"]["epoch_rows"] == [60] * 5
    assert "holds all 5 epochs (300 rows" in text and f"{math.ceil(300 / batch)} optimizer steps" in text
    assert "Traceback" not in err


def test_distillation_asks_the_teacher_once_per_distinct_row_of_a_per_epoch_stream(proj, tiny_model_dir):
    """The tiny base registered as the teacher: 3 epochs of 4 new + 4 drawn rows are 24 KD
    rows, but the teacher answered only the 4 new rows and the 12 distinct draws."""
    from cl_toolkit.training.profiles import load_profile
    from cl_toolkit.training.strategies import STRATEGIES

    ws = proj / "ws"
    run = ws / "runs" / "ff-1.0.0"
    shutil.copytree(tiny_model_dir, run / "merged")
    (run / "axolotl.yml").write_text("base_model: tiny\n")
    (run / "recipe.yml").write_text("model: ff\n")
    (run / "manifest.json").write_text("{}")
    (run / "data").mkdir()
    (run / "data" / "new.jsonl").write_text((proj / Q1).read_text())
    with open_registry(ws) as reg:
        reg.register(VersionRecord(model="ff", version="1.0.0", parent=None, strategy="initial_lora",
                                   base_model=str(tiny_model_dir), recipe_sha256="x", data_sha256="y",
                                   run_dir=str(run), adapter_dir=None))
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    data = continued({"ratio": 0.5, "sources": [{"path": GENERAL}]}, epochs=3, strategy="distillation",
                     distillation={"top_k": 4})
    data["data"]["train"] = [{"path": Q2, "max_rows": 4}]
    lr = load_recipe(write_recipe(proj, data))
    profile = load_profile(proj / "configs" / "profiles" / "tiny-cpu.yml", proj, ws)
    with open_registry(ws) as reg:
        mix = build_mix(lr, reg, profile)
        plan = STRATEGIES["distillation"].plan(lr, reg, profile, mix.rows)
    assert len(mix.rows) == 24 and len(plan.rows) == 24
    assert [r["messages"] for r in plan.rows] == [r["messages"] for r in mix.rows]  # in the stream's order
    (cached,) = (ws / "cache" / "teacher_logprobs").glob("*.jsonl")
    assert len(cached.read_text().splitlines()) == 16  # 4 new + 12 distinct draws
    first_new = read_chat_jsonl(proj / Q2)[0]["messages"]
    same = [r for r in plan.rows if r["messages"] == first_new]
    assert len(same) == 3 and all(r == same[0] for r in same)  # a new row in each epoch: the teacher's one answer


def test_token_counts_are_cached_by_row_and_tokenizer_and_read_back(proj, with_tokenizer):
    """The cache is what the counts come from: doubled in the file, the budget halves."""
    reh = {"ratio": 0.25, "unit": "tokens", "resample": "once", "sources": [{"path": GENERAL}]}
    data = continued(reh, epochs=1, train=Q1)
    first = mix_of(proj, data)
    (cache,) = (proj / "ws" / "cache" / "token_counts").glob("*.json")
    counts = json.loads(cache.read_text())
    rows = read_chat_jsonl(proj / Q1) + first.rows
    assert all(counts[row_key(r)] == with_tokenizer(r) for r in rows)  # every counted row, counted right
    again = mix_of(proj, data)
    assert jsonl_bytes(again.rows) == jsonl_bytes(first.rows)
    cache.write_text(json.dumps({k: (2 * v if k in {row_key(r) for r in read_chat_jsonl(proj / GENERAL)} else v)
                                 for k, v in counts.items()}))  # every general row counted twice as long
    halved = mix_of(proj, data)
    assert halved.counts["rehearsal"][GENERAL]["rows"] < first.counts["rehearsal"][GENERAL]["rows"]
