"""YAML read with `safe_load` only, keeping the line of every key so errors can point at it."""

from __future__ import annotations

from pathlib import Path

import yaml

from cl_toolkit.core.errors import BadInput, Problem

KeyPath = tuple  # of str | int


def display(path: Path | str) -> str:
    """A path as the user should see it: relative to the current folder when possible."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


class LineMap(dict):
    """Maps a key path such as ("data", "train", 0, "path") to its 1-based line."""

    def line_for(self, path) -> int | None:
        path = tuple(path)
        while path:
            if path in self:
                return self[path]
            path = path[:-1]
        return self.get((), None)


def _walk(node, path: KeyPath, lines: LineMap, problems: list[Problem], fname: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.append(Problem(fname, f"duplicate key {key!r}", key_node.start_mark.line + 1,
                                        format_key((*path, key))))
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines, problems, fname)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines, problems, fname)


def format_key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(path: Path | str, *, text: str | None = None) -> tuple[object, LineMap]:
    """Parse YAML safely. Returns (data, line map); raises BadInput listing every problem."""
    fname = display(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BadInput([Problem(fname, "file not found")]) from None
        except UnicodeDecodeError as e:
            raise BadInput([Problem(fname, f"not UTF-8 text ({e.reason} at byte {e.start})")]) from None
        except OSError as e:
            raise BadInput([Problem(fname, f"cannot read: {e.strerror}")]) from None
    problems: list[Problem] = []
    lines = LineMap()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _walk(node, (), lines, problems, fname)
        data = yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - SafeLoader is safe_load
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = (e.problem or str(e)).replace("\n", " ")
        if "constructor for the tag" in what or "could not determine a constructor" in what:
            what = f"YAML tag not allowed ({what.split('tag')[-1].strip()}); recipes are plain data"
        problems.append(Problem(fname, f"invalid YAML: {what}", mark.line + 1 if mark else None))
        raise BadInput(problems) from None
    except yaml.YAMLError as e:
        raise BadInput([Problem(fname, f"invalid YAML: {e}")]) from None
    if problems:
        raise BadInput(problems)
    return data, lines
