"""YAML read with `safe_load` only, keeping the line of every key so errors can point at it.

Every YAML file the toolkit reads comes through `load_yaml` (or `read_yaml`). Anchors and
aliases (`&name`, `*name`) are refused before anything is built: a 634-byte file of nested
aliases (the "billion laughs") would otherwise expand to gigabytes. Nesting deeper than
`MAX_DEPTH` is refused too. Both are found by one pass over the parser's events, in time
and memory linear in the text. `dump_yaml` writes without anchors, so what the toolkit
writes it can read back."""

from __future__ import annotations

from pathlib import Path

import yaml

from cl_toolkit.core.errors import BadInput, Problem

KeyPath = tuple  # of str | int

MAX_DEPTH = 64  # nested mappings and lists; recipes and profiles need fewer than 10


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
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(fname, "a key must be a plain value, not a list or mapping",
                                        key_node.start_mark.line + 1, format_key(path) or None))
                continue
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


def _structure_problem(text: str, fname: str) -> Problem | None:
    """The first anchor, alias or over-deep nesting in `text`, from the parser's events
    alone (nothing is composed or built, so an alias bomb costs what its text costs)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            return Problem(fname, "YAML anchors and aliases (&name, *name) are not allowed; "
                                  "write each value out", line)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return Problem(fname, f"nested deeper than {MAX_DEPTH} levels", line)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def load_yaml(path: Path | str, *, text: str | None = None, name: str | None = None) -> tuple[object, LineMap]:
    """Parse YAML safely. Returns (data, line map); raises BadInput listing every problem.
    `name` is the file as errors show it (default: `path`, as `display` writes it)."""
    fname = name or display(path)
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
        refused = _structure_problem(text, fname)
        if refused is not None:
            raise BadInput([refused])
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _walk(node, (), lines, problems, fname)
        data = yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - SafeLoader is safe_load
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = (e.problem or e.context or "cannot parse").replace("\n", " ")  # never the text itself
        if "constructor for the tag" in what or "could not determine a constructor" in what:
            what = f"YAML tag not allowed ({what.split('tag')[-1].strip()}); recipes are plain data"
        problems.append(Problem(fname, f"invalid YAML: {what}", mark.line + 1 if mark else None))
        raise BadInput(problems) from None
    except yaml.YAMLError as e:
        raise BadInput([Problem(fname, f"invalid YAML: {type(e).__name__}")]) from None
    if problems:
        raise BadInput(problems)
    return data, lines


def read_yaml(path: Path | str) -> object:
    """The data of a YAML file (no line map): for files the toolkit wrote itself, which
    go through the same checks as any other."""
    return load_yaml(path)[0]


class _PlainDumper(yaml.SafeDumper):
    """SafeDumper that writes a value twice rather than as an anchor and an alias."""

    def ignore_aliases(self, data) -> bool:
        return True


def dump_yaml(data, **options) -> str:
    """YAML text for `data` (safe types only, no anchors): what load_yaml reads back."""
    return yaml.dump(data, Dumper=_PlainDumper, **options)
