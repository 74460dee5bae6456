"""Self-synthesised rehearsal (`{self_rehearsal: {prompts, n}}`): the rows are the parent's
own greedy answers (checked against an independent transformers + PEFT generation), drawn
and regenerated deterministically, cached by the parent's weights and the prompts, filtered
by extraction's rules, and recorded in the mix's manifest; bad recipes exit 2 with file,
line and key. The parent is a LoRA on the tiny base registered without training."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import REPO
from project import line_of, recipe_text, register_untrained_parent, write_recipe

from cl_toolkit.core.files import jsonl_bytes, sha256_bytes
from cl_toolkit.training.chat_rows import read_chat_jsonl

RECIPE = REPO / "recipes" / "firefighter" / "1.1.0.yml"
FROM_PARENT = "{self_rehearsal: {prompts: {parent_data: true}, n: 12}}"


@pytest.fixture
def parent(workspace):
    """firefighter 1.0.0 registered in the workspace: a LoRA on the tiny base (lora_B
    small and random, so it changes the answers a little), Q1 as its new data."""
    return register_untrained_parent(workspace)


def loaded(workspace, *overrides):
    from cl_toolkit.training.strategies import load_recipe

    return load_recipe(RECIPE, [f"data.rehearsal.sources=[{FROM_PARENT}]", *overrides], workspace)


def rows_of(workspace, *overrides):
    from cl_toolkit.registry import open_registry
    from cl_toolkit.training.self_rehearsal import self_rehearsal_rows

    lr = loaded(workspace, *overrides)
    with open_registry(workspace) as reg:
        return self_rehearsal_rows(lr, reg, lr.recipe.data.rehearsal.sources[0]["self_rehearsal"])


def cache_files(workspace):
    folder = workspace / "cache" / "self_rehearsal"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def independent_answers(rec, prompts, max_new_tokens=64):
    """The parent's greedy answers, one prompt at a time (no padding), straight from transformers + PEFT."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(rec.adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(rec.base_model, dtype=torch.float32),
                                      rec.adapter_dir).eval()
    out = {}
    for p in prompts:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        out[p] = tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    return out


def test_rows_are_the_parents_own_answers_to_prompts_of_its_training_data(workspace, parent):
    rows, block = rows_of(workspace)
    q1_prompts = [r["messages"][0]["content"] for r in read_chat_jsonl(REPO / "data" / "firefighter" / "q1.jsonl")]
    assert block["pool"] == 48 and block["drawn"] == 12
    assert block["kept"] + sum(block["dropped"].values()) == 12 and block["kept"] == len(rows) >= 6
    expected = independent_answers(parent, q1_prompts)
    for row in rows:
        prompt, answer = row["messages"][0]["content"], row["messages"][1]["content"]
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert prompt in q1_prompts and answer == expected[prompt]
    trained = {r["messages"][0]["content"]: r["messages"][1]["content"]
               for r in read_chat_jsonl(REPO / "data" / "firefighter" / "q1.jsonl")}
    assert any(row["messages"][1]["content"] != trained[row["messages"][0]["content"]] for row in rows)  # not the old answers


def test_same_seed_same_rows_other_seed_other_prompts_and_the_cache(workspace, parent, monkeypatch):
    import cl_toolkit.training.self_rehearsal as sr

    first, block = rows_of(workspace)
    (cache,) = cache_files(workspace)
    assert block["cache"] == f"workspace:cache/self_rehearsal/{cache.name}"
    stamp = os.stat(cache).st_mtime_ns

    def no_model(*_a, **_k):
        raise AssertionError("the parent was loaded although the cache holds its answers")

    with monkeypatch.context() as m:
        m.setattr(sr, "load_version_model", no_model)
        again, block_again = rows_of(workspace)
    assert again == first and block_again == block and os.stat(cache).st_mtime_ns == stamp
    cache.unlink()
    regenerated, _ = rows_of(workspace)
    assert jsonl_bytes(regenerated) == jsonl_bytes(first)  # regenerated, byte for byte
    other_seed, _ = rows_of(workspace, "data.seed=43")
    prompts = {r["messages"][0]["content"] for r in first}
    assert {r["messages"][0]["content"] for r in other_seed} != prompts and len(cache_files(workspace)) == 2
    more, _ = rows_of(workspace, f"data.rehearsal.sources=[{FROM_PARENT.replace('n: 12', 'n: 13')}]")
    assert len(cache_files(workspace)) == 3  # other prompts drawn: another cache entry
    weights = parent.adapter_dir + "/adapter_model.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(weights)
    save_file({k: v * 1.5 if "lora_B" in k else v for k, v in state.items()}, weights)
    changed, changed_block = rows_of(workspace)
    assert len(cache_files(workspace)) == 4 and changed_block["parent_weights_sha256"] != block["parent_weights_sha256"]


def test_prompts_from_a_suite_a_chat_file_and_prompt_rows(tmp_path, workspace, parent):
    from cl_toolkit.core.errors import BadInput
    from cl_toolkit.training.self_rehearsal import read_prompts

    (tmp_path / "p.jsonl").write_text('{"prompt": "What is the LEL of methane?"}\n\n'
                                      '{"messages": [{"role": "system", "content": "Be brief."}, '
                                      '{"role": "user", "content": "What is the IDLH of ammonia?"}, '
                                      '{"role": "assistant", "content": "ignored"}]}\n')
    assert read_prompts(tmp_path / "p.jsonl") == ["What is the LEL of methane?", "What is the IDLH of ammonia?"]
    suite = [json.loads(x)["input"] for x in (REPO / "data/firefighter/regression.jsonl").read_text().splitlines()]
    assert read_prompts(REPO / "data/firefighter/regression.jsonl") == suite
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok?"}\n{"answer": "no prompt"}\n')
    with pytest.raises(BadInput) as e:
        read_prompts(tmp_path / "bad.jsonl")
    (p,) = e.value.problems
    assert p.line == 2 and p.file.endswith("bad.jsonl") and "no prompt" in p.message
    rows, block = rows_of(workspace, "data.rehearsal.sources=[{self_rehearsal: {prompts: "
                          "[{path: data/firefighter/regression.jsonl}, {parent_data: true}], n: 500}}]")
    assert [s["source"] for s in block["prompts"]] == ["data/firefighter/regression.jsonl", "parent_data"]
    assert block["drawn"] == block["pool"] < len(suite) + 48  # all, once: the suite asks Q1's questions again


def test_the_extraction_rules_drop_redact_and_dedupe():
    from cl_toolkit.training.self_rehearsal import keep_rows

    prompts = ["Who runs station 7?", "What is the LEL of methane?", "what is the  LEL of methane?",
               "Tell me about ammonia", "Say it", "Name a gas"]
    answers = ["Write to chief.miller@station7.example.org for the roster.", "The LEL of methane is 5.0 %.",
               "The LEL of methane is 5.0 %.", "I'm sorry, I can't help with that.", "ammonia ammonia and",
               "Methane."]
    rows, stats = keep_rows(prompts, answers, 0.5)
    assert [r["messages"][1]["content"] for r in rows] == ["Write to [EMAIL] for the roster.",
                                                           "The LEL of methane is 5.0 %.", "Methane."]
    assert stats["dropped"] == {"below_quality": 2, "duplicates": 1} and stats["kept"] == 3
    assert stats["flags"] == {"refusal": 1, "truncated": 1} and stats["redactions"]["email"] == 1
    everything, loose = keep_rows(prompts, answers, 0.0)
    assert loose["dropped"]["below_quality"] == 0 and len(everything) == 5  # min_quality 0: only the duplicate goes


def test_clt_data_build_records_the_source_in_mix_json(workspace, parent, clt, tmp_path):
    sources = f"data.rehearsal.sources=[{FROM_PARENT}, {{path: data/general/general.jsonl}}]"
    code, out, err = clt("data", "build", RECIPE, "-o", tmp_path / "mix", "--set", sources,
                         "--set", "data.rehearsal.split={self_rehearsal: 1, data/general/general.jsonl: 3}", "--json")
    assert code == 0, err
    mix = json.loads((tmp_path / "mix" / "mix.json").read_text())
    (entry,) = [i for i in mix["inputs"] if i["source"] == "self_rehearsal"]
    rows, block = rows_of(workspace)  # from the cache the build wrote
    assert entry == {"role": "rehearsal", "source": "self_rehearsal", "sha256": sha256_bytes(jsonl_bytes(rows)),
                     "rows": len(rows), "self_rehearsal": block}
    assert block["parent"] == "1.0.0" and block["prompts"][0]["source"] == "parent_data"
    counts = mix["mix"]["rehearsal"]
    assert counts["self_rehearsal"]["pool"] == len(rows) and counts["data/general/general.jsonl"]["rows"] > 0
    total = counts["self_rehearsal"]["rows"] + counts["data/general/general.jsonl"]["rows"]
    assert counts["self_rehearsal"]["rows"] == round(total / 4)  # the split by name
    train = {json.dumps(r, sort_keys=True) for r in read_chat_jsonl(tmp_path / "mix" / "train.jsonl")}
    assert {json.dumps(r, sort_keys=True) for r in rows} & train  # its rows are in the mix
    code, _, err = clt("data", "build", RECIPE, "-o", tmp_path / "epochs", "--set", sources,
                       "--set", "data.rehearsal.resample=per_epoch", "--set", "train.num_epochs=3")
    assert code == 0, err
    per_epoch = json.loads((tmp_path / "epochs" / "mix.json").read_text())["mix"]["rehearsal"]["self_rehearsal"]
    assert len(per_epoch["per_epoch"]) == 3 and per_epoch["seen"]["distinct"] == min(len(rows), per_epoch["rows"])


@pytest.mark.parametrize("source, key, needle, says", [
    ("{self_rehearsal: {prompts: {parent_data: true}, n: 4}}", "data.rehearsal.sources[0].self_rehearsal",
     "self_rehearsal:", "needs a parent"),
    ("{self_rehearsal: {prompts: {parent_data: true}, n: 0}}", "data.rehearsal.sources[0].self_rehearsal.n",
     "n: 0", "less than the minimum"),
    ("{self_rehearsal: {prompts: {parent_data: true}, n: 3, temperature: 1}}",
     "data.rehearsal.sources[0].self_rehearsal.temperature", "temperature:", "unknown key 'temperature'"),
    ("{self_rehearsal: {prompts: {path: data/nope.jsonl}, n: 3}}",
     "data.rehearsal.sources[0].self_rehearsal.prompts.path", "path: data/nope", "file not found"),
    ("{self_rehearsal: {prompts: {file: x}, n: 3}}", "data.rehearsal.sources[0].self_rehearsal.prompts",
     "prompts:", "{path: FILE}, {parent_data: true}, {store: true} or a list"),
])
def test_a_bad_self_rehearsal_source_exits_2_with_file_line_and_key(proj, clt, source, key, needle, says):
    import yaml

    text = recipe_text(data={"train": [{"path": "data/firefighter/q1.jsonl"}],
                             "rehearsal": {"ratio": 0.2, "sources": [yaml.safe_load(source)]}, "seed": 7})
    path = write_recipe(proj, text, "1.0.0")
    code, _out, err = clt("recipe", "validate", path)
    assert code == 2 and "Traceback" not in err
    assert f"1.0.0.yml:{line_of(text, needle)}: [{key}]" in err and says in err, err


def test_the_documented_example_loads_and_the_schema_gives_the_defaults(workspace, parent):
    import yaml
    from test_docs import blocks

    from cl_toolkit.training.self_rehearsal import settings

    (text,) = blocks("formats.md", "Self-synthesised rehearsal", "yaml")
    reh = yaml.safe_load(text)["rehearsal"]
    lr = loaded(workspace, f"data.rehearsal={json.dumps(reh)}")
    (source,) = lr.recipe.data.rehearsal.sources
    assert settings(source["self_rehearsal"]) == {"prompts": {"parent_data": True}, "n": 200, "max_new_tokens": 64,
                                                  "min_quality": 0.5}
    assert settings({"prompts": {"path": "x.jsonl"}, "n": 3}) == {"prompts": {"path": "x.jsonl"}, "n": 3,
                                                                  "max_new_tokens": 64, "min_quality": 0.5}


def test_prompts_from_the_feedback_store_are_the_lines_own(workspace, parent):
    from cl_toolkit.core.errors import BadInput
    from cl_toolkit.feedback.store import open_store

    store_prompts = "data.rehearsal.sources=[{self_rehearsal: {prompts: {store: true}, n: 10}}]"
    with pytest.raises(BadInput, match="store.*hold no prompts"):
        rows_of(workspace, store_prompts)  # no store yet: nothing to answer
    assert not (workspace / "feedback.db").exists()  # and none was created
    with open_store(workspace) as store:
        store.log_prediction("r1", "What is the LEL of methane?", "5 %", "1.0.0", timestamp="2025-04-01T00:00:00Z")
        store.log_prediction("r2", "What is the IDLH of ammonia?", "300 ppm", "1.0.0",
                             timestamp="2025-04-02T00:00:00Z", metadata={"model": "firefighter"})
        store.log_prediction("r3", "Another line's question?", "x", "1.0.0", timestamp="2025-04-03T00:00:00Z",
                             metadata={"model": "hazmat"})
        store.log_prediction("r4", "An unregistered version's question?", "x", "9.9.9",
                             timestamp="2025-04-04T00:00:00Z")
    rows, block = rows_of(workspace, store_prompts)
    assert block["prompts"][0]["source"] == "store" and block["prompts"][0]["prompts"] == 2 and block["drawn"] == 2
    assert len(rows) + sum(block["dropped"].values()) == 2
    assert {r["messages"][0]["content"] for r in rows} <= {"What is the LEL of methane?", "What is the IDLH of ammonia?"}


def test_a_second_self_rehearsal_source_is_refused_at_its_line(proj, clt):
    one = {"self_rehearsal": {"prompts": {"parent_data": True}, "n": 4}}
    two = {"self_rehearsal": {"prompts": {"path": "data/firefighter/regression.jsonl"}, "n": 4}}
    text = recipe_text(version="1.1.0", parent="1.0.0", strategy="continued_lora",
                       data={"train": [{"path": "data/firefighter/q2.jsonl"}],
                             "rehearsal": {"ratio": 0.2, "sources": [one, two]}, "seed": 7})
    path = write_recipe(proj, text, "1.1.0")
    code, _out, err = clt("recipe", "validate", path)
    second = [i for i, line in enumerate(text.splitlines(), 1) if "self_rehearsal:" in line][1]
    assert code == 2 and f"1.1.0.yml:{second}: [data.rehearsal.sources[1].self_rehearsal] only one" in err, err
    assert "sources[0].self_rehearsal] only one" not in err
