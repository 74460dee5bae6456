"""`clt recipe new` and the strategies' fast checks (vocabulary, merge cache key)."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from cl_toolkit.core.errors import BadInput
from cl_toolkit.training.strategies import load_recipe


@pytest.fixture
def proj(shipped_project):
    """Here the project's shipped recipes too (conftest's proj has an empty recipes/ff/)."""
    return shipped_project


# the tiny-cpu profile's `defaults:` (measured on the firefighter recipes), not the strategies' own
@pytest.mark.parametrize("strategy, bump, version, train, ratio", [
    ("continued_lora", "minor", "1.2.0", {"learning_rate": 0.006, "num_epochs": 10, "lora_dropout": 0.0}, 0.67),
    ("merge_and_retrain", "major", "2.0.0", {"learning_rate": 0.002, "num_epochs": 10}, 0.15),
    ("distillation", "patch", "1.1.1", {"learning_rate": 0.003, "num_epochs": 10}, 0.6),
])
def test_recipe_new_writes_a_valid_next_recipe_with_the_profiles_defaults(proj, clt, strategy, bump, version, train,
                                                                          ratio):
    (proj / "recipes/firefighter/2.0.0.yml").unlink()
    code, out, err = clt("recipe", "new", "firefighter", "--from", "1.1.0", "--strategy", strategy, "--bump", bump,
                         "--data", "data/firefighter/q3.jsonl")
    assert code == 0, err
    path = proj / "recipes" / "firefighter" / f"{version}.yml"
    assert f"wrote recipes/firefighter/{version}.yml" in out
    data = yaml.safe_load(path.read_text())
    assert (data["version"], data["parent"], data["strategy"]) == (version, "1.1.0", strategy)
    assert data["data"]["train"] == [{"path": "data/firefighter/q3.jsonl"}]
    assert data["data"]["rehearsal"]["ratio"] == ratio
    # continued_lora writes the rehearsal mode the benchmark measured (a fresh draw each epoch)
    assert data["data"]["rehearsal"].get("resample") == ("per_epoch" if strategy == "continued_lora" else None)
    assert data.get("train") == train
    has_parent_data = {"parent_data": True} in data["data"]["rehearsal"]["sources"]
    assert has_parent_data == (strategy != "merge_and_retrain")  # merge trains on all history anyway
    if strategy == "distillation":
        assert data["distillation"] == {"teacher": "1.1.0", "alpha": 0.3, "temperature": 2.0, "top_k": 20}
    with pytest.raises(BadInput, match=r"\[description\] the description still says TODO"):
        load_recipe(path)  # the author must say why the version exists
    path.write_text(path.read_text().replace(data["description"], f"Q3 by {strategy}."))
    assert load_recipe(path).recipe.version == version
    assert data["gate"]["suites"]["q3"] == {"path": "data/firefighter/q3_asked.jsonl", "role": "learning"}


def test_recipe_new_refuses_to_overwrite_and_validates_before_writing(proj, clt):
    before = (proj / "recipes/firefighter/2.0.0.yml").read_text()
    code, _, err = clt("recipe", "new", "firefighter", "--from", "1.1.0", "--strategy", "merge_and_retrain",
                       "--bump", "major")
    assert code == 2 and "exists; pass --force" in err
    assert (proj / "recipes/firefighter/2.0.0.yml").read_text() == before
    code, _, err = clt("recipe", "new", "firefighter", "--from", "1.1.0", "--strategy", "continued_lora",
                       "--bump", "patch", "--data", "data/firefighter/missing.jsonl")
    assert code == 2 and "recipes/firefighter/1.1.1.yml" in err and "file not found" in err
    assert not (proj / "recipes/firefighter/1.1.1.yml").exists()
    assert not list((proj / "recipes/firefighter").glob(".*"))  # no temp file left behind
    code, _, err = clt("recipe", "new", "firefighter", "--from", "9.9.9", "--strategy", "continued_lora", "--bump", "minor")
    assert code == 2 and "no recipe for firefighter 9.9.9" in err


def test_distill_refuses_teacher_and_student_without_a_shared_vocabulary(tmp_path):
    from transformers import AutoTokenizer

    from cl_toolkit.training.teacher import check_shared_vocabulary
    from cl_toolkit.training.tiny_model import TinySpec, build_tiny_model, bundled_corpus

    build_tiny_model(tmp_path / "a", TinySpec(vocab_size=2048), bundled_corpus(REPO))
    build_tiny_model(tmp_path / "b", TinySpec(vocab_size=1024), bundled_corpus(REPO))
    a, b = AutoTokenizer.from_pretrained(tmp_path / "a"), AutoTokenizer.from_pretrained(tmp_path / "b")
    check_shared_vocabulary(a, AutoTokenizer.from_pretrained(tmp_path / "a"), "t", "s")
    with pytest.raises(BadInput, match="share a vocabulary"):
        check_shared_vocabulary(a, b, "firefighter 2.0.0", "the profile's base model")


def test_merge_cache_key_follows_base_and_adapter_contents(tmp_path):
    from cl_toolkit.training.merge_lora import merge_key

    for name in ("base", "adapter"):
        (tmp_path / name).mkdir()
    (tmp_path / "base" / "model.safetensors").write_bytes(b"base-weights")
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"lora-weights")
    k1 = merge_key(str(tmp_path / "base"), str(tmp_path / "adapter"))
    assert k1 == merge_key(str(tmp_path / "base"), str(tmp_path / "adapter"))
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"lora-weights-2")
    assert merge_key(str(tmp_path / "base"), str(tmp_path / "adapter")) != k1
