"""The package's layers, enforced: every import (function-local ones included) points down
the order core < recipe < feedback, registry < training < evaluation < monitoring, serve <
pipeline, bench < cli, or stays inside its own package; and no import cycle remains."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cl_toolkit"

# package -> rank; packages of one rank may not import each other
LAYERS = {"core": 0, "recipe": 1, "feedback": 2, "registry": 2, "training": 3, "evaluation": 4,
          "monitoring": 5, "serve": 5, "pipeline": 6, "bench": 6, "cli": 7}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every cl_toolkit import in the file, at any depth."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        out.extend((node.lineno, t) for t in targets if t == "cl_toolkit" or t.startswith("cl_toolkit."))
    return out


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _edges() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {t for _, t in _imports(p) if t in mods and t != m} for m, p in mods.items()}


def violations() -> list[str]:
    """Every import against the layer order, as `file:line: a -> b`."""
    bad, mods = [], _modules()
    for name, path in mods.items():
        here = _layer(name)
        for line, target in _imports(path):
            there = _layer(target)
            if target not in mods and target.rsplit(".", 1)[0] in mods:
                there = _layer(target.rsplit(".", 1)[0])  # `from pkg.mod import name`
            if here is None:
                ok = name == "cl_toolkit.__main__" or there is None  # the root only re-exports
            elif there is None:
                ok = target in ("cl_toolkit", "cl_toolkit.__version__")
            else:
                ok = there == here or LAYERS[there] < LAYERS[here]
            if not ok:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name} -> {target}")
    return bad


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges, index, low, stack, on, out = _edges(), {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_import_points_down_the_layers():
    assert violations() == []


def test_no_import_cycle_remains():
    assert cycles() == []


def test_the_checker_sees_a_function_local_import_against_the_order(tmp_path, monkeypatch):
    """The walker must catch what today's code no longer has: a local import upwards."""
    fake = tmp_path / "cl_toolkit"
    (fake / "core").mkdir(parents=True)
    (fake / "training").mkdir()
    for f in ("__init__.py", "core/__init__.py", "training/__init__.py", "training/train.py"):
        (fake / f).write_text("")
    (fake / "core" / "files.py").write_text("def f():\n    from ..training.train import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert violations() == ["cl_toolkit/core/files.py:2: cl_toolkit.core.files -> cl_toolkit.training.train",
                            "cl_toolkit/core/files.py:2: cl_toolkit.core.files -> cl_toolkit.training.train.x"]
    (fake / "training" / "train.py").write_text("from cl_toolkit.training import render\n")
    (fake / "training" / "render.py").write_text("from cl_toolkit.training.train import x\n")
    assert cycles() == [["cl_toolkit.training.render", "cl_toolkit.training.train"]]


def test_module_names_are_unique_and_shadow_no_standard_module():
    """Outside cli/ (whose modules are named after their verbs) a module's name is unique, and
    no module is called like a standard-library one (`secrets`, `profile`)."""
    names = [p.stem for p in PACKAGE.rglob("*.py") if p.stem != "__init__" and "cli" not in p.parts]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    assert sorted(set(names) & sys.stdlib_module_names) == []


def test_importing_the_cli_table_loads_no_heavy_library():
    code = ("import sys, cl_toolkit.cli as c; c.cli.list_commands(None); "
            "print(sorted(m for m in ('torch', 'transformers', 'axolotl', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
