"""`clt recipe validate` judges the recipe's `axolotl:` keys with Axolotl's schema (the
recipe's file:line, a "did you mean" hint) and checks that the versions it continues from
are in the workspace's registry; with no pass-through keys it imports no Axolotl."""

from __future__ import annotations

import os
import subprocess
import sys

from project import REPO, line_of, recipe_text, write_recipe
from test_registry_support import add_version

from cl_toolkit.registry import open_registry
from cl_toolkit.training import axolotl_check
from cl_toolkit.training.axolotl_check import axolotl_version

KD = "axolotl.integrations.kd.KDPlugin"


CHILD = {"version": "1.1.0", "parent": "1.0.0", "strategy": "continued_lora"}


def test_an_unknown_axolotl_key_is_reported_at_its_recipe_line_with_a_hint(proj, clt):
    text = recipe_text(axolotl={"lora_r": 8, "lora_rr": 8, "zzqx_frobnicate": 1})
    path = write_recipe(proj, text, "typo")
    code, out, err = clt("recipe", "validate", path)
    assert code == 2
    version = axolotl_version()
    assert (f"typo.yml:{line_of(text, 'lora_rr')}: [axolotl.lora_rr] Axolotl {version} does not know this key "
            f"and would silently ignore it; did you mean lora_r?") in err
    far = next(t for t in err.splitlines() if "zzqx_frobnicate" in t)
    assert f"typo.yml:{line_of(text, 'zzqx')}: [axolotl.zzqx_frobnicate]" in far and "did you mean" not in far
    assert "[axolotl.lora_r]" not in err and "ok:" not in out  # a known key is fine; the recipe is not
    assert "Traceback" not in err


def test_an_unknown_key_given_with_set_is_reported_against_set(proj, clt):
    path = write_recipe(proj, recipe_text())
    code, _, err = clt("recipe", "validate", path, "--set", "axolotl.lora_rr=8")
    assert code == 2 and "--set: [axolotl.lora_rr] Axolotl" in err and "did you mean lora_r?" in err


def test_the_strategys_plugin_keys_are_known_only_to_that_strategy(proj, clt):
    kd = {"kd_normalize_topk": True}
    distil = write_recipe(proj, recipe_text(**{**CHILD, "strategy": "distillation"}, distillation={}, axolotl=kd), "distil")
    code, out, err = clt("recipe", "validate", distil)
    assert code == 0, err  # the KD plugin the strategy adds knows the key
    plain = write_recipe(proj, recipe_text(axolotl=kd), "plain")
    code, _, err = clt("recipe", "validate", plain)
    assert code == 2 and "[axolotl.kd_normalize_topk] Axolotl" in err


def test_without_axolotl_the_keys_are_an_error_not_a_traceback(proj, clt, monkeypatch):
    text = recipe_text(axolotl={"lora_r": 8})
    monkeypatch.setitem(sys.modules, "axolotl.utils.schemas.config", None)  # as if not installed
    code, _, err = clt("recipe", "validate", write_recipe(proj, text, "noaxo"))
    assert code == 2 and f"noaxo.yml:{line_of(text, 'axolotl:')}: [axolotl] cannot judge these keys" in err
    assert "Traceback" not in err


PROBE = ("import sys\nfrom cl_toolkit.cli import main\ncode = main(['recipe', 'validate', sys.argv[1]])\n"
         "print('CODE', code, sorted({m.split('.')[0] for m in sys.modules} & {'axolotl', 'torch', 'transformers'}))")


def validate_in_a_process(proj, path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLT_HOME": str(proj / "ws"), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", PROBE, str(path)], cwd=proj, env=env, capture_output=True,
                          text=True, timeout=300)


def test_without_passthrough_keys_validate_imports_no_axolotl(proj):
    done = validate_in_a_process(proj, write_recipe(proj, recipe_text()))
    assert "CODE 0 []" in done.stdout, done.stdout + done.stderr


def test_axolotls_key_set_is_kept_so_the_next_validate_imports_no_axolotl(proj):
    path = write_recipe(proj, recipe_text(axolotl={"lora_rr": 8}), "typo")
    first = validate_in_a_process(proj, path)
    assert "CODE 2 ['axolotl'," in first.stdout, first.stdout + first.stderr
    again = validate_in_a_process(proj, path)
    assert "CODE 2 []" in again.stdout, again.stdout + again.stderr
    assert "[axolotl.lora_rr] Axolotl" in again.stderr and "did you mean lora_r?" in again.stderr
    assert len(list((proj / "ws" / "cache" / "axolotl_keys").glob("*.json"))) == 1


def test_the_kept_key_set_follows_axolotls_version_and_the_plugins(proj, monkeypatch):
    cache = proj / "ws" / "cache" / "axolotl_keys"
    assert "lora_r" in axolotl_check.schema_keys([], cache)
    assert "kd_alpha" in axolotl_check.schema_keys([KD], cache) and "kd_alpha" not in axolotl_check.schema_keys([], cache)
    assert len(list(cache.glob("*.json"))) == 2
    real = axolotl_check._version
    monkeypatch.setattr(axolotl_check, "_version", lambda name: "9.9.9" if name == "axolotl" else real(name))
    axolotl_check.schema_keys([], cache)
    assert len(list(cache.glob("*.json"))) == 3


def test_a_parent_missing_from_the_registry_is_reported_at_the_parent_line(proj, clt):
    ws = proj / "ws"
    text = recipe_text(**CHILD)
    path = write_recipe(proj, text, "1.1.0")
    assert clt("recipe", "validate", path)[0] == 0  # no registry yet: nothing to check against
    with open_registry(ws):
        pass  # an empty registry: 1.0.0 was never trained here
    code, _, err = clt("recipe", "validate", path)
    assert code == 2
    assert f"1.1.0.yml:{line_of(text, 'parent:')}: [parent] ff 1.0.0 is not in this workspace's registry" in err
    parent = write_recipe(proj, recipe_text(), "1.0.0")
    assert "train it first (clt train recipes/ff/1.0.0.yml)" in clt("recipe", "validate", path)[2]
    code, out, err = clt("recipe", "validate", parent, path)  # the line, parents first: 1.0.0 is planned
    assert code == 0 and out.count("ok:") == 2, err
    with open_registry(ws) as reg:
        add_version(reg, ws, "1.0.0")
    code, out, err = clt("recipe", "validate", path)
    assert code == 0 and "ok: recipes/ff/1.1.0.yml" in out, err


def test_a_distillation_teacher_missing_from_the_registry_is_reported(proj, clt):
    ws = proj / "ws"
    with open_registry(ws) as reg:
        add_version(reg, ws, "1.0.0")
    text = recipe_text(**{**CHILD, "version": "1.2.0", "strategy": "distillation"}, distillation={"teacher": "1.1.0"})
    code, _, err = clt("recipe", "validate", write_recipe(proj, text))
    assert code == 2
    assert f":{line_of(text, 'teacher:')}: [distillation.teacher] ff 1.1.0 is not in this workspace's registry" in err
    assert "[parent]" not in err
