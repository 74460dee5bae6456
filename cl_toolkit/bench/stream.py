"""A benchmark stream file: the experiences learned one after the other (training files and
test suites), the strategies compared on them (recipes plus overrides), the profile, the
seeds. Validated once here, every problem reported together with file, line and key
(BadInput, exit 2), then frozen; `clt bench cl --stream FILE` runs one. The format is in
docs/continual_learning.md; benchmarks/streams/ holds the bundled ones."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.yamlio import display, format_key, load_yaml

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
PATHS = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
SUITES = {"type": "object", "minProperties": 1, "propertyNames": {"pattern": NAME},
          "additionalProperties": {"type": "string", "minLength": 1}}

# what a strategy's rehearsal takes from the earlier experiences (besides rehearsal_sources):
# their rows (replay), the parent's own answers to their prompts (self: old prompts only),
# or nothing (none: the old training data is gone)
OLD_DATA = ("replay", "self", "none")

SET = {"type": "object", "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$"}}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "profile", "model", "first", "experiences", "strategies"],
    "properties": {
        "schema_version": {"const": 1},
        "name": {"type": "string", "pattern": NAME},
        "description": {"type": "string"},
        "profile": {"type": "string", "minLength": 1},
        "model": {"type": "string", "pattern": NAME},
        "seeds": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "integer", "minimum": 0}},
        "first": {"type": "string", "minLength": 1},
        "budget": {"type": "object", "propertyNames": {"pattern": r"^[a-z][a-z0-9_]*$"}},
        "rehearsal_sources": PATHS,
        "general": SUITES,
        "experiences": {
            "type": "array", "minItems": 1,
            "items": {"type": "object", "additionalProperties": False, "required": ["name", "train", "tests"],
                      "properties": {"name": {"type": "string", "pattern": NAME}, "train": PATHS, "tests": SUITES}},
        },
        "strategies": {
            "type": "object", "minProperties": 1, "propertyNames": {"pattern": NAME},
            "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["recipe"],
                "properties": {
                    "about": {"type": "string"},
                    "first": {"type": "string", "minLength": 1},
                    "recipe": {"type": "string", "minLength": 1},
                    "rehearsal": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                    "old_data": {"enum": list(OLD_DATA)},
                    "set": SET,
                    "first_set": SET,
                },
            },
        },
    },
}
DEFAULT_SEEDS = (42, 43, 44)  # every strategy runs with at least 3 seeds unless told otherwise


@dataclass(frozen=True)
class Experience:
    name: str
    train: tuple[str, ...]  # training files, relative to the project root
    tests: tuple[tuple[str, str], ...]  # (suite name, file): each asked after every experience


@dataclass(frozen=True)
class StrategySpec:
    """How a line learns the stream: `first` trains experience 1, `recipe` every later one;
    `rehearsal` (a share of the mix, drawn from the earlier experiences and the stream's
    `rehearsal_sources`) on top, then `set` (dotted recipe keys, like `--set`) on every later
    experience and `first_set` on the first. `old_data` is what the rehearsal takes from the
    earlier experiences: their rows, the parent's answers to their prompts, or nothing."""

    name: str
    about: str
    first: str
    recipe: str
    rehearsal: float | None
    set: tuple[tuple[str, object], ...]
    first_set: tuple[tuple[str, object], ...] = ()
    old_data: str = "replay"


@dataclass(frozen=True)
class Stream:
    path: str  # as given (relative to the project root where it lies inside it)
    name: str
    description: str
    profile: str
    model: str
    seeds: tuple[int, ...]
    budget: tuple[tuple[str, object], ...]  # recipe `train:` keys set on every training
    rehearsal_sources: tuple[str, ...]
    general: tuple[tuple[str, str], ...]  # (suite name, file): general knowledge, asked of the base too
    experiences: tuple[Experience, ...]
    strategies: tuple[StrategySpec, ...]

    @property
    def suites(self) -> tuple[str, ...]:
        """The test suite names every experience has, the first one the headline's."""
        return tuple(name for name, _ in self.experiences[0].tests)

    def strategy(self, name: str) -> StrategySpec:
        return next(s for s in self.strategies if s.name == name)


def load_stream(path: Path, root: Path) -> Stream:
    """Read and check a stream file; relative paths in it start at the project `root`.
    BadInput lists every problem (file, line, key)."""
    data, lines = load_yaml(path)
    fname = display(path)
    if not isinstance(data, dict):
        raise BadInput([Problem(fname, "a stream file must be a YAML mapping", 1)])
    problems = [Problem(fname, e.message, lines.line_for(e.absolute_path), format_key(e.absolute_path) or None)
                for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(data)]
    if not problems:
        problems = _semantic_problems(data, root)
        problems = [Problem(fname, why, lines.line_for(at), format_key(at)) for at, why in problems]
    if problems:
        raise BadInput(sorted(problems, key=lambda p: (p.line or 0, p.key or "")))
    return _freeze(data, path, root)


def _files(data: dict) -> list[tuple[tuple, str]]:
    """(key path, path) of every file the stream names."""
    out = [(("profile",), data["profile"]), (("first",), data["first"])]
    out += [(("rehearsal_sources", i), p) for i, p in enumerate(data.get("rehearsal_sources", []))]
    out += [(("general", k), p) for k, p in data.get("general", {}).items()]
    for i, exp in enumerate(data["experiences"]):
        out += [(("experiences", i, "train", j), p) for j, p in enumerate(exp["train"])]
        out += [(("experiences", i, "tests", k), p) for k, p in exp["tests"].items()]
    for name, s in data["strategies"].items():
        out += [(("strategies", name, key), s[key]) for key in ("first", "recipe") if key in s]
    return out


def _semantic_problems(data: dict, root: Path) -> list[tuple[tuple, str]]:
    """What the schema cannot say: files exist inside the project, experience names are
    unique, every experience has the same test suites, `set` leaves the keys the benchmark
    sets alone."""
    problems = []
    for at, raw in _files(data):
        p = Path(raw)
        if p.is_absolute() or ".." in p.parts:
            problems.append((at, f"{raw}: write paths relative to the project root, inside it"))
        elif not (root / p).is_file():
            problems.append((at, f"file not found: {raw}"))
    names = [e["name"] for e in data["experiences"]]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append((("experiences", i, "name"), f"experience name {name!r} is used twice"))
    suites = list(data["experiences"][0]["tests"])
    for i, exp in enumerate(data["experiences"][1:], 1):
        if list(exp["tests"]) != suites:
            problems.append((("experiences", i, "tests"),
                             f"every experience needs the same test suites, in the same order: {', '.join(suites)}"))
    for name, s in data["strategies"].items():
        for block, key in [(b, k) for b in ("set", "first_set") for k in s.get(b, {})]:
            if re.match(OWNED, key):
                problems.append((("strategies", name, block, key),
                                 f"{key} is set by the benchmark for every step; use the stream's keys instead"))
        if s.get("old_data", "replay") != "replay" and "rehearsal" not in s:
            problems.append((("strategies", name, "old_data"), "old_data says what a rehearsal ratio draws from: "
                             "give the strategy a rehearsal ratio too"))
        if "rehearsal" in s and not data.get("rehearsal_sources") and s["rehearsal"] > 0:
            problems.append((("strategies", name, "rehearsal"),
                             "a rehearsal ratio needs the stream's rehearsal_sources (besides the earlier experiences)"))
    return problems


# keys every step's overrides own: the version chain, the training data, the seed
OWNED = r"^(version|parent|model|data\.train|data\.seed)(\.|$)"


def _freeze(data: dict, path: Path, root: Path) -> Stream:
    first = data["first"]
    strategies = tuple(
        StrategySpec(name=name, about=s.get("about", ""), first=s.get("first", first), recipe=s["recipe"],
                     rehearsal=s.get("rehearsal"), set=tuple(s.get("set", {}).items()),
                     first_set=tuple(s.get("first_set", {}).items()), old_data=s.get("old_data", "replay"))
        for name, s in data["strategies"].items())
    experiences = tuple(Experience(e["name"], tuple(e["train"]), tuple(e["tests"].items())) for e in data["experiences"])
    rel = Path(path).resolve()
    try:
        shown = str(rel.relative_to(Path(root).resolve()))
    except ValueError:
        shown = str(path)
    return Stream(path=shown, name=data.get("name", Path(path).stem), description=data.get("description", ""),
                  profile=data["profile"], model=data["model"], seeds=tuple(data.get("seeds", DEFAULT_SEEDS)),
                  budget=tuple(data.get("budget", {}).items()), rehearsal_sources=tuple(data.get("rehearsal_sources", ())),
                  general=tuple(data.get("general", {}).items()), experiences=experiences, strategies=strategies)
