"""A line of one's own: `clt init` in a repository outside the toolkit, bundled profiles by
name, the toolkit's data as `toolkit:` refs, the profile's training defaults in
`clt recipe new`, and a TODO description refused. The slow test runs two quarters of such
a line through `clt cycle`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.workspace import portable_path, resolve_path, toolkit_root
from cl_toolkit.training.profiles import load_profile
from cl_toolkit.training.strategies import load_recipe

LINE = "ember"
THEIR_DATA = ["q1.jsonl", "q1_asked.jsonl", "q2.jsonl", "q2_asked.jsonl", "regression.jsonl"]


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """The user's own repository: an empty folder outside the toolkit, as cwd."""
    root = tmp_path / "their-repo"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("CLT_HOME", str(tmp_path / "ws"))
    return root


def add_their_data(root: Path) -> None:
    """The user's first two quarters and their regression suite (the firefighter files)."""
    for name in THEIR_DATA:
        shutil.copy(REPO / "data" / "firefighter" / name, root / "data" / LINE / name)


def say_why(path: Path, why: str) -> None:
    """What the author does after init / recipe new: replace the TODO description."""
    path.write_text(re.sub(r"(?m)^description: .*$", f"description: {json.dumps(why)}", path.read_text()))
    assert yaml.safe_load(path.read_text())["description"] == why


def test_the_toolkit_root_holds_the_bundled_configs_and_data():
    assert toolkit_root() == REPO
    assert (toolkit_root() / "configs" / "profiles" / "tiny-cpu.yml").is_file()


def test_init_writes_a_line_that_names_the_toolkits_profile_and_data(repo, clt):
    code, out, err = clt("init", LINE)
    assert code == 0, err
    recipe_path = repo / "recipes" / LINE / "1.0.0.yml"
    for rel in (f"recipes/{LINE}/1.0.0.yml", f"data/{LINE}/regression.jsonl", f"recipes/{LINE}/README.md"):
        assert f"wrote {rel}" in out and (repo / rel).is_file()
    data = yaml.safe_load(recipe_path.read_text())
    assert (data["strategy"], data["parent"], data["profile"]) == ("initial_lora", None, "tiny-cpu")
    assert data["data"]["rehearsal"]["sources"] == [{"path": "toolkit:general/general.jsonl"}]
    assert data["train"] == {"learning_rate": 0.003, "num_epochs": 20}  # tiny-cpu's initial_lora defaults
    assert data["data"]["rehearsal"]["ratio"] == 0.2
    cases = [json.loads(line) for line in (repo / "data" / LINE / "regression.jsonl").read_text().splitlines()]
    assert cases and all(c["id"].startswith("replace-me") and "REPLACE" in c["input"] for c in cases)
    assert "clt cycle recipes/ember/1.0.0.yml" in (repo / "recipes" / LINE / "README.md").read_text()

    code, _, err = clt("recipe", "validate", recipe_path)  # as written: nothing to train on, no reason given
    assert code == 2
    assert "recipes/ember/1.0.0.yml:8: [description] the description still says TODO" in err
    assert "[data.train[0].path] file not found: data/ember/q1.jsonl" in err
    for name in THEIR_DATA[:2]:  # their first quarter, but the suite template left as it came
        shutil.copy(REPO / "data" / "firefighter" / name, repo / "data" / LINE / name)
    say_why(recipe_path, "Q1 facts on the tiny base.")
    code, out, err = clt("recipe", "validate", recipe_path)
    assert code == 2 and f"data/{LINE}/regression.jsonl:1: [input] a template case from `clt init`" in err, err
    code, _, err = clt("cycle", recipe_path)  # refused at its first step, before any data or training
    assert code == 2 and "a template case from `clt init`" in err, err
    assert not (lr_workspace := load_recipe(recipe_path).workspace / "runs").exists(), list(lr_workspace.iterdir())
    add_their_data(repo)
    code, out, err = clt("recipe", "validate", recipe_path)
    assert code == 0, err
    lr = load_recipe(recipe_path)
    assert lr.root == repo
    assert resolve_path(lr.recipe.profile, lr.root, lr.workspace) == REPO / "configs" / "profiles" / "tiny-cpu.yml"


def test_init_refuses_to_overwrite_and_writes_nothing_then(repo, clt):
    (repo / "recipes" / LINE).mkdir(parents=True)
    (repo / "recipes" / LINE / "README.md").write_text("mine\n")
    code, out, err = clt("init", LINE)
    assert code == 2 and "refusing to overwrite recipes/ember/README.md" in err
    assert (repo / "recipes" / LINE / "README.md").read_text() == "mine\n"
    assert not (repo / "recipes" / LINE / "1.0.0.yml").exists() and not (repo / "data").exists()
    code, _, err = clt("init", LINE, repo / "elsewhere")
    assert code == 0, err
    before = (repo / "elsewhere" / "recipes" / LINE / "1.0.0.yml").read_text()
    code, _, err = clt("init", LINE, repo / "elsewhere")
    assert code == 2 and "refusing to overwrite" in err and "1.0.0.yml" in err
    assert (repo / "elsewhere" / "recipes" / LINE / "1.0.0.yml").read_text() == before
    code, _, err = clt("init", "Not A Name")
    assert code == 2 and "line name 'Not A Name'" in err


@pytest.mark.parametrize("name, base", [("tiny-cpu", "models/tiny-llama"),
                                        ("llama31-8b-lora", "meta-llama/Llama-3.1-8B-Instruct")])
def test_a_named_profile_is_the_bundled_one_its_own_paths_in_the_toolkit(repo, clt, name, base):
    code, _, err = clt("init", LINE, "--profile", name)
    assert code == 0, err
    add_their_data(repo)
    recipe_path = repo / "recipes" / LINE / "1.0.0.yml"
    say_why(recipe_path, "Q1.")
    lr = load_recipe(recipe_path)
    path = resolve_path(lr.recipe.profile, lr.root, lr.workspace)
    assert path == REPO / "configs" / "profiles" / f"{name}.yml"
    profile = load_profile(path, lr.root, lr.workspace)
    assert profile.name == name and profile.base_model.endswith(base)
    if name == "llama31-8b-lora":  # a relative path inside a bundled profile is the toolkit's
        assert profile.offline_model_config == REPO / "configs" / "model_configs" / "llama31-8b"
    assert portable_path(path, lr.root, lr.workspace) == f"toolkit:../configs/profiles/{name}.yml"


def test_a_profile_base_model_may_be_a_toolkit_ref(repo):
    text = (REPO / "configs" / "profiles" / "llama31-8b-lora.yml").read_text().replace(
        "base_model: meta-llama/Llama-3.1-8B-Instruct", "base_model: toolkit:../configs/model_configs/llama31-8b")
    (repo / "configs").mkdir()
    (repo / "configs" / "mine.yml").write_text(text)
    profile = load_profile(repo / "configs" / "mine.yml", repo, repo / "ws")
    assert profile.base_is_local and profile.base_model == str(REPO / "configs" / "model_configs" / "llama31-8b")


def test_an_unknown_profile_name_lists_the_bundled_ones(repo, clt):
    clt("init", LINE)
    add_their_data(repo)
    recipe_path = repo / "recipes" / LINE / "1.0.0.yml"
    say_why(recipe_path, "Q1.")
    recipe_path.write_text(recipe_path.read_text().replace("profile: tiny-cpu", "profile: tiny-gpu"))
    code, _, err = clt("recipe", "validate", recipe_path)
    assert code == 2
    assert "recipes/ember/1.0.0.yml:9: [profile] no bundled profile named 'tiny-gpu'" in err
    assert "llama31-8b-lora" in err and "tiny-cpu" in err


def test_toolkit_refs_resolve_under_its_data_and_cannot_escape(repo, clt):
    ws = repo.parent / "ws"
    assert resolve_path("toolkit:general/general.jsonl", repo, ws) == REPO / "data" / "general" / "general.jsonl"
    ref = portable_path(REPO / "data" / "general" / "general.jsonl", repo, ws)
    assert ref == "toolkit:general/general.jsonl"  # what manifests keep: no machine's path
    with pytest.raises(BadInput, match=f"leaves the toolkit root {REPO} "):
        resolve_path("toolkit:../../etc/passwd", repo, ws)
    clt("init", LINE)
    add_their_data(repo)
    recipe_path = repo / "recipes" / LINE / "1.0.0.yml"
    say_why(recipe_path, "Q1.")
    text = recipe_path.read_text()
    recipe_path.write_text(text.replace("toolkit:general/general.jsonl", "toolkit:../../secrets.jsonl")
                           .replace("data/ember/q1.jsonl", "../outside.jsonl"))
    code, _, err = clt("recipe", "validate", recipe_path)
    assert code == 2
    assert "[data.rehearsal.sources[0].path] path 'toolkit:../../secrets.jsonl' leaves the toolkit root" in err
    line = next(x for x in err.splitlines() if "'../outside.jsonl'" in x)
    assert "[data.train[0].path]" in line  # the roots that were allowed, each named
    assert f"project root {repo}" in line and f"workspace {ws}" in line and f"toolkit root {REPO}" in line


def test_the_mix_records_a_toolkit_ref_as_written(repo, clt):
    from cl_toolkit.registry import open_registry
    from cl_toolkit.training.mix import build_mix

    clt("init", LINE)
    add_their_data(repo)
    recipe_path = repo / "recipes" / LINE / "1.0.0.yml"
    say_why(recipe_path, "Q1.")
    lr = load_recipe(recipe_path)
    with open_registry(lr.workspace) as reg:
        mix = build_mix(lr, reg)
    assert [i["source"] for i in mix.inputs] == ["data/ember/q1.jsonl", "toolkit:general/general.jsonl"]


@pytest.mark.parametrize("description", ["TODO: why 1.0.0 exists", "Q1 facts (TODO: which ones)"])
def test_a_description_that_still_says_todo_is_refused(repo, clt, description):
    clt("init", LINE)
    add_their_data(repo)
    recipe_path = repo / "recipes" / LINE / "1.0.0.yml"
    say_why(recipe_path, description)
    code, _, err = clt("recipe", "validate", recipe_path)
    assert code == 2 and err.strip() == ("error: recipes/ember/1.0.0.yml:8: [description] the description still "
                                         "says TODO: say why this version exists")


def _started_line(repo: Path, clt) -> Path:
    clt("init", LINE)
    add_their_data(repo)
    say_why(repo / "recipes" / LINE / "1.0.0.yml", "Q1.")
    return repo / "recipes" / LINE


def test_recipe_new_writes_the_profiles_defaults_for_the_strategy(repo, clt):
    line_dir = _started_line(repo, clt)
    code, out, err = clt("recipe", "new", LINE, "--from", "1.0.0", "--strategy", "continued_lora", "--bump", "minor",
                         "--data", f"data/{LINE}/q2.jsonl")
    assert code == 0, err
    data = yaml.safe_load((line_dir / "1.1.0.yml").read_text())
    assert data["profile"] == "tiny-cpu"  # kept as written
    assert data["train"] == {"learning_rate": 0.006, "num_epochs": 10, "lora_dropout": 0.0}
    assert data["data"]["rehearsal"] == {"ratio": 0.67, "resample": "per_epoch",
                                         "sources": [{"parent_data": True}, {"path": "toolkit:general/general.jsonl"}]}
    assert data["gate"]["suites"]["q2"] == {"path": f"data/{LINE}/q2_asked.jsonl", "role": "learning"}


def test_recipe_new_reads_the_defaults_of_the_users_own_profile(repo, clt):
    line_dir = _started_line(repo, clt)
    own = yaml.safe_load((REPO / "configs" / "profiles" / "tiny-cpu.yml").read_text())
    own["name"] = "my-cpu"
    own["defaults"]["continued_lora"] = {"learning_rate": 0.0005, "num_epochs": 7, "rehearsal_ratio": 0.45,
                                         "rehearsal_resample": "once"}
    (repo / "configs" / "profiles").mkdir(parents=True)
    (repo / "configs" / "profiles" / "my-cpu.yml").write_text(yaml.safe_dump(own))
    recipe = line_dir / "1.0.0.yml"
    recipe.write_text(recipe.read_text().replace("profile: tiny-cpu", "profile: configs/profiles/my-cpu.yml"))
    code, _, err = clt("recipe", "new", LINE, "--from", "1.0.0", "--strategy", "continued_lora", "--bump", "minor",
                       "--data", f"data/{LINE}/q2.jsonl")
    assert code == 0, err
    data = yaml.safe_load((line_dir / "1.1.0.yml").read_text())
    assert data["train"] == {"learning_rate": 0.0005, "num_epochs": 7, "lora_dropout": 0.1}  # dropout: the strategy's
    assert data["data"]["rehearsal"]["ratio"] == 0.45 and data["data"]["rehearsal"]["resample"] == "once"


def test_a_profile_default_of_the_wrong_type_names_its_line(repo, clt):
    line_dir = _started_line(repo, clt)
    (repo / "configs" / "profiles").mkdir(parents=True)
    text = (REPO / "configs" / "profiles" / "tiny-cpu.yml").read_text().replace(
        "continued_lora: {learning_rate: 0.006,", "continued_lora: {learning_rate: fast,")
    (repo / "configs" / "profiles" / "bad.yml").write_text(text)
    lineno = next(i for i, x in enumerate(text.splitlines(), 1) if "learning_rate: fast" in x)
    recipe = line_dir / "1.0.0.yml"
    recipe.write_text(recipe.read_text().replace("profile: tiny-cpu", "profile: configs/profiles/bad.yml"))
    code, _, err = clt("recipe", "new", LINE, "--from", "1.0.0", "--strategy", "continued_lora", "--bump", "minor")
    assert code == 2 and f"configs/profiles/bad.yml:{lineno}: [defaults.continued_lora.learning_rate]" in err
    assert not (line_dir / "1.1.0.yml").exists()


def test_recipe_new_starts_a_line_with_initial_lora(repo, clt):
    (repo / "data" / "wick").mkdir(parents=True)
    for name in ("q1.jsonl", "q1_asked.jsonl", "regression.jsonl"):
        shutil.copy(REPO / "data" / "firefighter" / name, repo / "data" / "wick" / name)
    code, out, err = clt("recipe", "new", "wick", "--strategy", "initial_lora", "--data", "data/wick/q1.jsonl",
                         "--profile", "tiny-cpu")
    assert code == 0, err
    assert "wrote recipes/wick/1.0.0.yml" in out
    data = yaml.safe_load((repo / "recipes" / "wick" / "1.0.0.yml").read_text())
    assert (data["version"], data["parent"], data["strategy"]) == ("1.0.0", None, "initial_lora")
    assert data["train"] == {"learning_rate": 0.003, "num_epochs": 20}
    assert data["gate"]["suites"] == {"regression": "data/wick/regression.jsonl",
                                      "q1": {"path": "data/wick/q1_asked.jsonl", "role": "learning"}}
    code, _, err = clt("recipe", "new", "wick", "--strategy", "continued_lora", "--data", "data/wick/q1.jsonl")
    assert code == 2 and "continues from a parent: pass --from VERSION" in err


def test_initial_lora_from_a_recipe_is_a_fresh_start_without_parent_data(repo, clt):
    line_dir = _started_line(repo, clt)
    (line_dir / "1.0.0.yml").write_text((line_dir / "1.0.0.yml").read_text().replace(
        "    - path: toolkit:general/general.jsonl", "    - path: toolkit:general/general.jsonl\n    - parent_data: true"))
    code, _, err = clt("recipe", "new", LINE, "--from", "1.0.0", "--strategy", "initial_lora", "--bump", "major",
                       "--data", f"data/{LINE}/q2.jsonl")
    assert code == 0, err
    data = yaml.safe_load((line_dir / "2.0.0.yml").read_text())
    assert (data["parent"], data["strategy"]) == (None, "initial_lora")
    assert data["data"]["rehearsal"]["sources"] == [{"path": "toolkit:general/general.jsonl"}]  # no parent to rehearse


@pytest.mark.slow
def test_a_line_in_its_own_repository_learns_its_second_quarter(repo, clt, tmp_path):
    """The new user's first two quarters, outside the toolkit: 1.0.0 from `clt init`, 1.1.0
    from `clt recipe new` with the profile's defaults, both through `clt cycle`. The cycle
    builds the profile's pretrained base from the toolkit's bundled text, as it would for
    them (a random-init base learns little: Q2 2% -> 10% with the same recipes)."""
    ws = tmp_path / "ws"
    line_dir = _started_line(repo, clt)
    code, out, err = clt("cycle", line_dir / "1.0.0.yml")
    assert code == 0, err
    code, _, err = clt("recipe", "new", LINE, "--from", "1.0.0", "--strategy", "continued_lora", "--bump", "minor",
                       "--data", f"data/{LINE}/q2.jsonl")
    assert code == 0, err
    say_why(line_dir / "1.1.0.yml", "Q2, continued from 1.0.0.")
    # up to the evaluation: the gate's verdict on the regression suite is the gate tests'
    # business; what this line must show is that the version learned the new quarter
    code, out, err = clt("cycle", line_dir / "1.1.0.yml", "--until", "evaluate")
    assert code == 0, err
    code, out, err = clt("eval", "matrix", LINE, "--all", "--json")
    assert code == 0, err
    scores = json.loads(out)["scores"]
    assert scores["1.1.0"]["q2"] >= scores["1.0.0"]["q2"] + 0.3, scores
    manifest = json.loads((ws / "runs" / f"{LINE}-1.1.0" / "manifest.json").read_text())
    assert manifest["profile"]["path"] == "toolkit:../configs/profiles/tiny-cpu.yml"
    assert "toolkit:general/general.jsonl" in [i["source"] for i in manifest["inputs"]]
    assert manifest["recipe"]["path"] == f"recipes/{LINE}/1.1.0.yml"
