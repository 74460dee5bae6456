"""Strategies as plugins: the table in cl_toolkit.training.strategies is the only list of
strategies. A strategy defined here and put into the table (one monkeypatched entry, nothing
else patched) validates, scaffolds, mixes and renders like a built-in."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import yaml
from project import BASE_RECIPE, REPO, write_recipe

from cl_toolkit.core.errors import BadInput
from cl_toolkit.recipe.model import recipe_schema
from cl_toolkit.registry import open_registry
from cl_toolkit.training.chat_rows import read_chat_jsonl
from cl_toolkit.training.mix import build_mix
from cl_toolkit.training.strategies import STRATEGIES, load_recipe, new_recipe, scaffold_names
from cl_toolkit.training.strategies.interface import CHAT_DATASET, Plan, ScaffoldDefaults, Strategy


def _wide_plan(lr, registry, profile, rows) -> Plan:
    return Plan({"base_model": profile.base_model, "lora_r": 32, "lora_alpha": 64, "lora_dropout": 0.05},
                CHAT_DATASET)


# A fresh, wider LoRA on the profile's base every version; what came before is rehearsed.
WIDE_LORA = Strategy(about="a fresh rank-32 LoRA on the profile's base each version", plan=_wide_plan,
                     scaffold=lambda source: ScaffoldDefaults(rehearsal_ratio=0.5, train={"num_epochs": 5}))


def recipe(**changes) -> dict:
    data = copy.deepcopy(BASE_RECIPE)
    data.update(changes)
    return data


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setitem(STRATEGIES, "wide_lora", WIDE_LORA)


def test_the_schema_enum_for_editors_is_the_table():
    fix = ("put the table's names, in its order, in the strategy enum of cl_toolkit/recipe/recipe.schema.json, "
           "then run: clt recipe schema -o recipes/recipe.schema.json")
    assert recipe_schema()["properties"]["strategy"]["enum"] == list(STRATEGIES), fix
    shipped = json.loads((REPO / "recipes" / "recipe.schema.json").read_text())
    assert shipped["properties"]["strategy"]["enum"] == list(STRATEGIES), fix


def test_a_strategy_added_to_the_table_renders_its_axolotl_keys(proj, clt, wide, tiny_model_dir):
    assert "wide_lora" not in recipe_schema()["properties"]["strategy"]["enum"]  # the live table decides
    shutil.copytree(tiny_model_dir, proj / "ws" / "models" / "tiny-llama")
    path = write_recipe(proj, recipe(version="1.1.0", parent="1.0.0", strategy="wide_lora"))
    code, out, err = clt("recipe", "render", path, "-o", proj / "r")
    assert code == 0, err
    cfg = yaml.safe_load((proj / "r" / "axolotl.yml").read_text())
    assert (cfg["lora_r"], cfg["lora_alpha"], cfg["lora_dropout"]) == (32, 64, 0.05)  # the profile says 16, 32, 0.0
    assert cfg["base_model"] == str(proj / "ws" / "models" / "tiny-llama")
    assert cfg["datasets"][0]["type"] == "chat_template"
    assert json.loads((proj / "r" / "manifest.json").read_text())["strategy"] == "wide_lora"


def test_a_table_strategy_gets_the_default_rules_and_unknown_names_are_refused(proj, clt, wide):
    code, _, err = clt("recipe", "validate", write_recipe(proj, recipe(strategy="wide_lora")))
    assert code == 2 and "ff/1.0.0.yml:4: [parent] None is not of type 'string'" in err  # a parent by default
    code, _, err = clt("recipe", "validate", write_recipe(proj, recipe(strategy="nope")))
    assert code == 2 and "[strategy] 'nope' is not one of" in err and "'wide_lora'" in err
    assert "Traceback" not in err


def test_a_table_strategy_scaffolds_with_its_defaults(tmp_path, monkeypatch, wide):
    root = tmp_path / "proj"
    for sub in ("configs", "data", "recipes"):
        shutil.copytree(REPO / sub, root / sub)
    monkeypatch.chdir(root)
    monkeypatch.setenv("CLT_HOME", str(root / "ws"))
    assert scaffold_names() == ["initial_lora", "continued_lora", "merge_and_retrain", "distillation", "merge_adapters",
                              "wide_lora"]
    path = new_recipe(root / "recipes" / "firefighter", "2.1.0", "wide_lora", "minor", ["data/firefighter/q3.jsonl"])
    data = yaml.safe_load(path.read_text())
    assert (data["version"], data["parent"], data["strategy"]) == ("2.2.0", "2.1.0", "wide_lora")
    assert data["train"] == {"num_epochs": 5} and data["data"]["rehearsal"]["ratio"] == 0.5
    assert data["data"]["rehearsal"]["sources"][0] == {"parent_data": True}  # it rehearses the ancestors
    assert "distillation" not in data
    path.write_text(path.read_text().replace(data["description"], "Q3, wider."))  # TODO is refused
    assert load_recipe(path).recipe.strategy == "wide_lora"


def test_only_a_fresh_start_strategy_starts_a_line_without_from(tmp_path):
    with pytest.raises(BadInput, match="continues from a parent: pass --from"):
        new_recipe(tmp_path / "recipes" / "ff", None, "continued_lora", None, ["data/q1.jsonl"])
    assert not (tmp_path / "recipes" / "ff" / "1.0.0.yml").exists()


def test_a_history_hook_adds_data_in_full_and_can_drop_parent_data(proj, monkeypatch):
    """What merge_and_retrain does with the ancestors, through the hook alone: q2 as history."""
    q2 = proj / "data" / "firefighter" / "q2.jsonl"

    def q2_history(lr, registry):
        rows = read_chat_jsonl(q2)
        return rows, [{"role": "rehearsal", "source": "q2", "sha256": "x", "rows": len(rows)}]

    monkeypatch.setitem(STRATEGIES, "replay_q2", Strategy(about="q2 in full", plan=_wide_plan, history=q2_history,
                                                          rehearses_parent_data=False))
    reh = {"ratio": 0.2, "resample": "once", "sources": [{"parent_data": True}, {"path": "data/general/general.jsonl"}]}
    data = recipe(version="1.1.0", parent="1.0.0", strategy="replay_q2")
    data["data"]["rehearsal"] = reh
    lr = load_recipe(write_recipe(proj, data))
    with open_registry(lr.workspace) as reg:  # empty: parent_data would need 1.0.0 registered
        mix = build_mix(lr, reg)
    assert mix.counts["history"] == 48 and mix.counts["new"] == 48
    assert mix.counts["rehearsal"] == {"data/general/general.jsonl": {"rows": 24, "pool": 120, "repeated": False}}
    assert mix.counts["total"] == len(mix.rows) == 48 + 48 + 24
    assert [i for i in mix.inputs if i["role"] == "history"] == [{"role": "history", "source": "q2", "sha256": "x", "rows": 48}]


def test_distillation_without_a_teacher_is_taught_by_its_parent(proj):
    lr = load_recipe(write_recipe(proj, recipe(version="1.1.0", parent="1.0.0", strategy="distillation",
                                               distillation={"alpha": 0.5})))
    assert dict(lr.recipe.distillation) == {"teacher": "1.0.0", "alpha": 0.5, "temperature": 2.0, "top_k": 20}
    other = load_recipe(write_recipe(proj, recipe(version="1.2.0", parent="1.1.0", strategy="distillation",
                                                  distillation={"teacher": "1.0.0"})))
    assert other.recipe.distillation["teacher"] == "1.0.0"  # a named teacher stays
