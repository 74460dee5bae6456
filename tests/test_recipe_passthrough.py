"""Trojans through `axolotl:`: plugins are only Axolotl's integrations and the toolkit's and
nothing is imported before that check; pass-through paths stay in the project and the
workspace; trust_remote_code needs --trust-remote-code."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import sys
import typing

import pytest
import yaml
from conftest import REPO
from project import line_of, recipe_text, write_recipe

from cl_toolkit.core.errors import BadInput
from cl_toolkit.recipe import passthrough
from cl_toolkit.training.axolotl_check import validate_with_axolotl
from cl_toolkit.training.strategies import load_recipe

R100 = REPO / "recipes" / "firefighter" / "1.0.0.yml"
EVIL = "evil_module_xyz"
EVIL_PLUGIN = f"{EVIL}.EvilPlugin"  # Axolotl's form, module.Class: it imports the module


@pytest.fixture
def evil(proj, monkeypatch):
    """An importable module in the project that leaves a marker file when imported."""
    marker = proj / "IMPORTED"
    (proj / f"{EVIL}.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    monkeypatch.syspath_prepend(str(proj))
    assert importlib.util.find_spec(EVIL) is not None  # it would import, if asked
    yield marker
    assert sys.modules.pop(EVIL, None) is None  # never imported (and no leftover for other tests)


def test_a_plugin_from_the_project_is_refused_before_import(proj, clt, evil):
    text = recipe_text(axolotl={"plugins": ["axolotl.integrations.kd.KDPlugin", EVIL_PLUGIN]})
    path = write_recipe(proj, text, "evil")
    out = proj / "out"
    code, _, err = clt("recipe", "render", path, "-o", out)
    assert code == 2
    assert f"evil.yml:{line_of(text, EVIL)}: [axolotl.plugins[1]] only Axolotl's integrations" in err
    assert "plugins[0]" not in err  # Axolotl's KD plugin is allowed
    assert not evil.exists() and not out.exists()


def test_axolotl_check_refuses_the_plugin_before_prepare_plugins(evil):
    """Whoever calls the validator directly (a rendered config, another strategy) is covered."""
    with pytest.raises(BadInput) as e:
        validate_with_axolotl({"base_model": "x", "plugins": [EVIL_PLUGIN]}, cpu=True)
    assert "[plugins[0]]" in str(e.value)
    assert not evil.exists()


def test_a_plugin_in_a_profile_is_refused(proj, clt, evil):
    profile = (proj / "configs" / "profiles" / "tiny-cpu.yml").read_text() + f"  plugins: [{EVIL_PLUGIN}]\n"
    (proj / "configs" / "profiles" / "plug.yml").write_text(profile)
    path = write_recipe(proj, recipe_text(profile="configs/profiles/plug.yml"), "pp")
    code, _, err = clt("recipe", "validate", path)
    assert code == 2 and f"plug.yml:{len(profile.splitlines())}: [axolotl.plugins[0]]" in err
    assert not evil.exists()


@pytest.mark.parametrize("name", ["axolotl.integrations.kd.KDPlugin", "cl_toolkit.training.something.Plugin"])
def test_axolotl_and_toolkit_plugins_are_accepted(proj, name):
    lr = load_recipe(write_recipe(proj, recipe_text(axolotl={"plugins": [name]}), "ok"))
    assert lr.recipe.axolotl["plugins"] == (name,)


@pytest.mark.parametrize("name", ["axolotl.integrationsx.evil", "os", "cl_toolkit", "axolotl.integrations.",
                                  "axolotl.integrations.kd.KDPlugin; import os", 7])
def test_lookalike_plugin_names_are_refused(name):
    assert passthrough.plugin_problems({"plugins": [name]})


def test_a_dataset_type_or_trl_function_naming_a_foreign_module_is_refused(proj, clt, evil):
    """Axolotl imports the module a dotted dataset `type` or a TRL reward function names."""
    text = recipe_text(axolotl={"datasets": [{"path": "data/ff/q1.jsonl", "type": f"{EVIL}.load"}],
                                "trl": {"reward_funcs": [f"{EVIL}.reward"]}})
    path = write_recipe(proj, text, "evil")
    code, _, err = clt("recipe", "validate", path)
    assert code == 2
    assert "[axolotl.datasets[0].type] dataset type names a module to import" in err
    assert "[axolotl.trl.reward_funcs[0]] trl.reward_funcs names a module" in err
    assert not evil.exists()


@pytest.mark.parametrize("kind", ["alpaca", "chat_template", "axolotl.integrations.kd.chat_template",
                                  {"field_instruction": "q", "format": "{instruction}"}])
def test_axolotls_own_dataset_types_are_accepted(kind):
    assert passthrough.code_ref_problems({"datasets": [{"path": "x", "type": kind}]}) == []
    assert passthrough.code_ref_problems({"datasets": [{"path": "x", "type": "os.system"}]})


@pytest.mark.slow  # imports the KD integration (about a minute on a loaded 2-core machine)
def test_the_kd_plugin_still_extends_axolotls_schema():
    from cl_toolkit.training.axolotl_check import _input_config_class, known_keys

    keys = known_keys(_input_config_class({"plugins": ["axolotl.integrations.kd.KDPlugin"]}))
    assert {"kd_trainer", "kd_alpha", "kd_temperature"} <= keys


@pytest.mark.parametrize("key,value", [("lora_model_dir", "/etc"), ("output_dir", "../../elsewhere"),
                                       ("resume_from_checkpoint", "~/.ssh"), ("deepspeed", "/etc/passwd"),
                                       ("tokenizer_config", "file:///etc"), ("my_new_cache_dir", "/var/tmp")])
def test_passthrough_paths_outside_the_project_are_refused(proj, clt, key, value):
    text = recipe_text(axolotl={key: value})
    path = write_recipe(proj, text, "path")
    code, _, err = clt("recipe", "validate", path)
    assert code == 2
    assert f"path.yml:{line_of(text, key)}: [axolotl.{key}]" in err and "leaves the project root" in err


def test_dataset_paths_and_symlinks_are_confined(proj, clt):
    (proj / "link").symlink_to("/etc")
    text = recipe_text(axolotl={"test_datasets": [{"path": "link/hosts", "type": "chat_template"},
                                                  {"path": "org/name", "data_files": ["../../x.jsonl"]}]})
    path = write_recipe(proj, text, "ds")
    code, _, err = clt("recipe", "validate", path)
    assert code == 2
    assert "[axolotl.test_datasets[0].path]" in err and "[axolotl.test_datasets[1].data_files[0]]" in err
    assert "[axolotl.test_datasets[1].path]" not in err  # a hub id


def test_paths_inside_render_absolute_and_hub_ids_stay(proj):
    (proj / "adapters" / "a").mkdir(parents=True)
    ws = proj / "ws"
    block = {"lora_model_dir": "adapters/a", "base_model": "meta-llama/Llama-3.1-8B-Instruct",
             "dataset_prepared_path": "workspace:prepared", "chat_template_jinja": "{{ messages }}",
             "test_datasets": [{"path": "data/firefighter/q1.jsonl"}, {"path": "s3://bucket/key"}]}
    out, problems = passthrough.resolve_paths(block, proj, ws)
    assert problems == []
    assert out["lora_model_dir"] == str(proj / "adapters" / "a")
    assert out["dataset_prepared_path"] == str(ws / "prepared")
    assert out["test_datasets"][0]["path"] == str(proj / "data" / "firefighter" / "q1.jsonl")
    for same in ("base_model", "chat_template_jinja"):
        assert out[same] == block[same]
    assert out["test_datasets"][1]["path"] == "s3://bucket/key"


def test_trust_remote_code_needs_the_flag(proj, clt):
    text = recipe_text(axolotl={"trust_remote_code": True})
    path = write_recipe(proj, text, "trc")
    for args in (("recipe", "validate", path), ("train", path, "--dry-run"), ("cycle", path, "--dry-run"),
                 ("recipe", "render", path, "-o", proj / "out")):
        code, _, err = clt(*args)
        assert code == 2, args
        assert f"trc.yml:{line_of(text, 'trust_remote_code')}: [axolotl.trust_remote_code]" in err, args
        assert "--trust-remote-code" in err
    assert not (proj / "out").exists() and not (proj / "ws" / "runs").exists()
    code, out, err = clt("recipe", "validate", path, "--trust-remote-code")
    assert code == 0, err
    assert load_recipe(path, trust_remote_code=True).recipe.axolotl["trust_remote_code"] is True


def test_trust_remote_code_in_a_profile_or_a_dataset_needs_the_flag(proj, clt):
    profile = (proj / "configs" / "profiles" / "tiny-cpu.yml").read_text() + "  trust_remote_code: true\n"
    (proj / "configs" / "profiles" / "remote.yml").write_text(profile)
    path = write_recipe(proj, recipe_text(profile="configs/profiles/remote.yml"), "tp")
    code, _, err = clt("recipe", "validate", path)
    assert code == 2 and f"remote.yml:{len(profile.splitlines())}: [axolotl.trust_remote_code]" in err
    assert clt("recipe", "validate", path, "--trust-remote-code")[0] == 0
    nested = write_recipe(proj, recipe_text(axolotl={"test_datasets": [{"path": "org/ds", "trust_remote_code": True}]}), "td")
    code, _, err = clt("recipe", "validate", nested)
    assert code == 2 and "[axolotl.test_datasets[0].trust_remote_code]" in err
    assert clt("recipe", "validate", path, "--set", "axolotl.trust_remote_code=false", "--trust-remote-code")[0] == 0


def test_render_with_the_flag_keeps_trust_remote_code(clt, workspace, tmp_path):
    out = tmp_path / "r"
    code, _, err = clt("recipe", "render", R100, "-o", out, "--set", "axolotl.trust_remote_code=true")
    assert code == 2 and "[axolotl.trust_remote_code]" in err and not out.exists()
    code, _, err = clt("recipe", "render", R100, "-o", out, "--set", "axolotl.trust_remote_code=true",
                       "--trust-remote-code")
    assert code == 0, err
    assert yaml.safe_load((out / "axolotl.yml").read_text())["trust_remote_code"] is True


# ---- the path keys come from Axolotl's own schema ------------------------------------------

# str fields whose description mentions a path or file but that are not one
NOT_PATHS = {
    "attn_implementation", "ds_type", "fp32_norm_classes", "lisa_layers_attribute", "save_strategy",
    "wandb_log_model",
    "reward_funcs", "rollout_func",  # importable names (TRL), not files
}


def _schema_fields():
    """(key path, field) for every field of Axolotl's config, nested models two levels down."""
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from pydantic import BaseModel

    def models(ann):
        out = [m for a in typing.get_args(ann) for m in models(a)]
        return out + ([ann] if inspect.isclass(ann) and issubclass(ann, BaseModel) else [])

    def walk(cls, prefix, depth):
        for name, field in cls.model_fields.items():
            yield (*prefix, name), field
            if depth < 2:
                for sub in models(field.annotation):
                    yield from walk(sub, (*prefix, name, 0), depth + 1)

    return list(walk(AxolotlInputConfig, (), 0))


def _takes_str(ann) -> bool:
    return ann is str or any(_takes_str(a) for a in typing.get_args(ann))


def test_every_path_field_of_axolotls_schema_is_confined():
    pathy = re.compile(r"\b(path|paths|directory|dir|folder|file|files|checkpoint)\b", re.I)
    missed = []
    for at, field in _schema_fields():
        name = at[-1]
        if not _takes_str(field.annotation) or name in NOT_PATHS or name == "trust_remote_code":
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        about = f"{field.description or ''} {extra.get('description', '')}"  # Axolotl keeps it in the extra
        if name.endswith(passthrough.PATH_SUFFIXES) or pathy.search(about):
            block: dict = {}
            node = block
            for part, nxt in zip(at[:-1], at[1:], strict=True):
                node = node.setdefault(part, [{}] if isinstance(nxt, int) else {}) if isinstance(part, str) else node[0]
            if isinstance(node, list):
                node = node[0]
            node[name] = "/outside/the/project"
            if not passthrough.path_refs(block, REPO):
                missed.append(".".join(map(str, at)))
    assert missed == []


def test_the_named_path_keys_exist_in_axolotls_schema():
    names = {at[-1] for at, _ in _schema_fields()}
    assert (passthrough.PATH_KEYS | passthrough.HUB_OR_PATH_KEYS | passthrough.TEMPLATE_OR_PATH_KEYS) - names == set()
    assert os.sep == "/"  # the path rules are POSIX ones
