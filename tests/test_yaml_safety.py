"""YAML bombs: anchors and aliases are refused everywhere the toolkit reads YAML (one error
with file and line), before anything is composed; nesting has a depth limit; everything
reads YAML through core/yamlio.py, and what the toolkit writes has no anchors."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest
import yaml
from project import REPO, recipe_text, write_recipe

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.yamlio import MAX_DEPTH, dump_yaml, load_yaml

LOADERS = {"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all", "full_load_all",
           "unsafe_load_all", "compose", "compose_all", "parse", "scan"}


def billion_laughs() -> str:
    """The classic: nine levels of nine aliases, 9**9 strings once expanded."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


SCRIPT = """
import sys, tracemalloc
tracemalloc.start()
from cl_toolkit.cli import main
code = main(["recipe", "validate", sys.argv[1]])
print("peak", tracemalloc.get_traced_memory()[1])
sys.exit(code)
"""


def test_the_alias_bomb_is_refused_at_once(proj):
    text = recipe_text() + billion_laughs()
    assert 600 <= len(text.encode()) <= 1400  # a file of a few hundred bytes ...
    path = write_recipe(proj, text, "bomb")
    first_anchor = next(i for i, t in enumerate(text.splitlines(), 1) if "&a" in t)
    # ... that expands to 387 420 489 strings: the unprotected loader never finishes
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True,
                          timeout=120, cwd=proj)
    assert proc.returncode == 2, proc.stderr
    assert f"bomb.yml:{first_anchor}:" in proc.stderr and "anchors and aliases" in proc.stderr
    assert proc.stderr.count("\n") == 1  # one error
    assert "Traceback" not in proc.stderr
    peak = int(proc.stdout.split("peak")[-1])
    assert peak < 100 * 2**20


def test_a_plain_anchor_and_alias_in_a_recipe_is_refused(proj, clt):
    text = recipe_text().replace("train:\n  num_epochs: 1\n", "train: &t\n  num_epochs: 1\nx: *t\n")
    assert "&t" in text
    path = write_recipe(proj, text, "alias")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "&t" in t)
    code, out, err = clt("recipe", "validate", path)
    assert code == 2
    assert f"alias.yml:{line}: YAML anchors and aliases" in err
    assert "Traceback" not in err


def test_aliases_are_refused_in_profiles_and_set_values(proj, clt):
    profile = (proj / "configs" / "profiles" / "tiny-cpu.yml").read_text()
    profile = profile.replace("  lora_r: 16\n", "  lora_r: &r 16\n  lora_alpha_x: *r\n")
    (proj / "configs" / "profiles" / "anchored.yml").write_text(profile)
    line = next(i for i, t in enumerate(profile.splitlines(), 1) if "&r" in t)
    path = write_recipe(proj, recipe_text(profile="configs/profiles/anchored.yml"), "p")
    code, _, err = clt("recipe", "validate", path)
    assert code == 2 and f"anchored.yml:{line}: YAML anchors and aliases" in err
    plain = write_recipe(proj, recipe_text(), "plain")
    code, _, err = clt("recipe", "validate", plain, "--set", "axolotl.special_tokens=[&x [a, b], *x]")
    assert code == 2 and "[axolotl.special_tokens] cannot read the value: YAML anchors and aliases" in err


def test_deep_nesting_is_refused_without_a_traceback(proj, clt):
    depth = MAX_DEPTH + 1
    text = recipe_text() + "deep: " + "[" * depth + "]" * depth + "\n"
    path = write_recipe(proj, text, "deep")
    code, _, err = clt("recipe", "validate", path)
    assert code == 2 and f"deep.yml:{len(text.splitlines())}: nested deeper than {MAX_DEPTH}" in err
    assert "Traceback" not in err
    inner = MAX_DEPTH - 1  # the top-level mapping is one level
    data, _ = load_yaml("ok.yml", text="a: " + "[" * inner + "]" * inner)  # the limit itself is fine
    assert json.dumps(data, separators=(",", ":")) == '{"a":' + "[" * inner + "]" * inner + "}"


def test_a_collection_as_a_key_is_an_error_not_a_crash():
    with pytest.raises(BadInput) as e:
        load_yaml("k.yml", text="? [a, b]\n: c\n")
    assert "k.yml:1:" in str(e.value) and "a key must be a plain value" in str(e.value)


def test_what_the_toolkit_writes_it_can_read_back():
    shared = ["assistant"]
    data = {"datasets": [{"roles": shared}, {"roles": shared}]}
    assert "&" in yaml.safe_dump(data)  # PyYAML's own dumper would write an anchor
    text = dump_yaml(data)
    assert "&" not in text and "*" not in text
    assert load_yaml("x.yml", text=text)[0] == data


def test_nothing_but_yamlio_calls_a_yaml_loader():
    offenders = []
    for path in sorted((REPO / "cl_toolkit").rglob("*.py")):
        if path.relative_to(REPO).as_posix() == "cl_toolkit/core/yamlio.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml" \
                    and node.attr in LOADERS:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} yaml.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "yaml" and {a.name for a in node.names} & LOADERS:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} from yaml import")
    assert offenders == []
