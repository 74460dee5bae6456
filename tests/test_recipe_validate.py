"""Recipe validation: every error at once, with file, line and key; exit 2; nothing written."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from conftest import files_under
from project import BASE_RECIPE, REPO, write_recipe

from cl_toolkit.core.errors import BadInput
from cl_toolkit.recipe.model import Recipe, apply_defaults, recipe_schema
from cl_toolkit.training.strategies import load_recipe


def recipe(**changes):
    data = copy.deepcopy(BASE_RECIPE)
    data.update(changes)
    return data


def test_every_shipped_recipe_validates(clt, empty_workspace):
    shipped = sorted(REPO.glob("recipes/**/*.yml"))
    assert shipped, "no recipes shipped"
    code, out, err = clt("recipe", "validate", *shipped)
    assert code == 0, err
    assert out.count("ok: ") == len(shipped)


def test_valid_recipe_becomes_frozen_typed_object(proj):
    lr = load_recipe(write_recipe(proj, recipe()))
    r = lr.recipe
    assert (r.model, r.version, r.parent, r.strategy) == ("ff", "1.0.0", None, "initial_lora")
    assert r.data.seed == 7 and r.data.rehearsal.ratio == 0.2
    assert r.gate["max_critical_regressions"] == 0  # default from the schema
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.version = "9.9.9"
    with pytest.raises(TypeError):
        r.train["num_epochs"] = 5
    assert len(lr.sha256) == 64 and lr.root == proj


def test_set_overrides_apply_before_validation(proj):
    path = write_recipe(proj, recipe())
    lr = load_recipe(path, ["train.learning_rate=0.5", "data.seed=3", "data.train.0.max_rows=4"])
    assert lr.recipe.train["learning_rate"] == 0.5
    assert lr.recipe.data.seed == 3 and lr.recipe.data.train[0]["max_rows"] == 4
    with pytest.raises(BadInput) as e:
        load_recipe(path, ["train.learning_rate=-1"])
    assert "train.learning_rate" in str(e.value)


BROKEN = {
    "bad_yaml": ("model: ff\nversion: [1.0.0\n", ["invalid YAML"]),
    "python_tag": ("schema_version: 1\nmodel: !!python/object/apply:os.system ['echo hacked']\n", ["YAML tag not allowed"]),
    "not_mapping": ("- just\n- a list\n", ["must be a YAML mapping"]),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_unparseable_recipes_exit_2_without_traceback(proj, clt, name):
    text, needles = BROKEN[name]
    path = write_recipe(proj, text, name)
    before = files_under(proj)
    code, out, err = clt("recipe", "validate", path)
    assert code == 2
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in err
    assert f"{name}.yml" in err
    assert files_under(proj) == before
    assert not (proj / "hacked").exists()


def test_every_schema_error_is_reported_at_once_with_line_and_key(proj, clt):
    text = """schema_version: 1
model: ff
version: 1.0.0
parent: null
strategy: initial_lora
profile: configs/profiles/tiny-cpu.yml
data:
  train:
    - {path: data/firefighter/q1.jsonl}
  seed: "forty-two"
train:
  learning_rate: fast
  epochs: 3
colour: blue
"""
    path = write_recipe(proj, text, "multi")
    code, out, err = clt("recipe", "validate", path)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 4, err
    assert any("multi.yml:10: [data.seed]" in ln and "is not of type 'integer'" in ln for ln in lines)
    assert any("multi.yml:12: [train.learning_rate]" in ln for ln in lines)
    assert any("multi.yml:13: [train.epochs] unknown key 'epochs'" in ln for ln in lines)
    assert any("multi.yml:14: [colour] unknown key 'colour'" in ln for ln in lines)


@pytest.mark.parametrize("changes, needle", [
    ({"version": "1.0.0", "parent": "1.0.0", "strategy": "continued_lora"}, "must be greater than its parent 1.0.0"),
    ({"version": "1.2.0", "parent": "1.10.0", "strategy": "continued_lora"}, "must be greater than its parent"),
    ({"data": {"train": [{"path": "data/firefighter/nope.jsonl"}]}}, "file not found: data/firefighter/nope.jsonl"),
    ({"data": {"train": [{"path": "../../etc/passwd"}]}}, "leaves the project root, the workspace and the toolkit root"),
    ({"data": {"train": [{"path": "/etc/passwd"}]}}, "leaves the project root, the workspace and the toolkit root"),
    ({"profile": "configs/profiles/missing.yml"}, "file not found"),
    ({"strategy": "continued_lora"}, "[parent] None is not of type 'string'"),
    ({"parent": "0.9.0"}, "[parent] '0.9.0' is not of type 'null'"),
    ({"strategy": "distillation", "parent": "0.9.0"}, "'distillation' is a required property"),
    ({"version": "1.0"}, "[version] '1.0' does not match"),
    ({"data": {"train": [{"path": "data/firefighter/q1.jsonl"}], "rehearsal": {"ratio": 1.0, "sources": []}}}, "[data.rehearsal.ratio]"),
])
def test_semantic_and_path_errors(proj, clt, changes, needle):
    path = write_recipe(proj, recipe(**changes), "case")
    code, out, err = clt("recipe", "validate", path)
    assert code == 2, out
    assert needle in err
    assert "Traceback" not in err


def test_workspace_paths_are_allowed_but_cannot_escape(proj, clt):
    ws = proj / "ws"
    (ws / "extracted").mkdir(parents=True)
    (ws / "extracted" / "fb.jsonl").write_text((proj / "data/firefighter/q2.jsonl").read_text())
    ok = recipe(data={"train": [{"path": "workspace:extracted/fb.jsonl"}]})
    assert load_recipe(write_recipe(proj, ok)).recipe.data.train[0]["path"] == "workspace:extracted/fb.jsonl"
    bad = recipe(data={"train": [{"path": "workspace:../../etc/passwd"}]})
    code, _, err = clt("recipe", "validate", write_recipe(proj, bad))
    assert code == 2 and "leaves the project root" in err


def test_a_changed_base_model_needs_a_major_bump(proj, clt):
    write_recipe(proj, recipe())
    gpu = "configs/profiles/llama31-8b-lora.yml"
    minor = recipe(version="1.1.0", parent="1.0.0", strategy="continued_lora", profile=gpu)
    code, _, err = clt("recipe", "validate", write_recipe(proj, minor))
    assert code == 2 and "needs a major version bump" in err
    major = recipe(version="2.0.0", parent="1.0.0", strategy="continued_lora", profile=gpu)
    code, _, err = clt("recipe", "validate", write_recipe(proj, major))
    assert code == 0, err


def test_duplicate_keys_are_errors(proj, clt):
    path = write_recipe(proj, "schema_version: 1\nmodel: ff\nmodel: gg\n", "dup")
    code, _, err = clt("recipe", "validate", path)
    assert code == 2 and "dup.yml:3: [model] duplicate key 'model'" in err


def test_schema_and_dataclass_do_not_drift():
    schema = recipe_schema()
    fields = {f.name for f in dataclasses.fields(Recipe)}
    assert fields == set(schema["properties"])
    filled = apply_defaults({"data": {"train": []}, "gate": {"suite": "s"}, "distillation": {}})
    assert filled["data"]["seed"] == schema["properties"]["data"]["properties"]["seed"]["default"]
    assert filled["distillation"] == {"alpha": 0.3, "temperature": 2.0, "top_k": 20}


def test_exported_schema_for_editors_is_current(clt):
    shipped = json.loads((REPO / "recipes" / "recipe.schema.json").read_text())
    assert shipped == recipe_schema(), "run: clt recipe schema -o recipes/recipe.schema.json"
    code, out, _ = clt("recipe", "schema")
    assert code == 0 and json.loads(out) == shipped
