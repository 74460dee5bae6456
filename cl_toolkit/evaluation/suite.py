"""Regression suites: JSONL, one case a line (`id, input, expected, match, criticality,
domain, tags`, optional `tolerance` for numeric cases). Validated once on load: every
problem in the file is collected and reported together, each with file and line.

`only_domains` narrows a loaded suite to some domains' cases (`clt eval --domain`); the
narrowed suite keeps the file's SHA-256 and says which domains it holds, so an evaluation
of it is never taken for the whole suite's score."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import sha256_bytes
from cl_toolkit.core.yamlio import display
from cl_toolkit.evaluation.matchers import MATCHERS, quantities

CRITICALITIES = ("critical", "high", "medium", "low")
JUDGE_MATCH = "judge"  # scored by a judge (LLM-as-judge) instead of a deterministic matcher
MATCH_KINDS = (*MATCHERS, JUDGE_MATCH)
TEMPLATE_MARK = "REPLACE"  # what the `clt init` template cases say until the author writes real ones
REQUIRED = ("id", "input", "expected", "match", "criticality", "domain")
OPTIONAL = ("tags", "tolerance")


@dataclass(frozen=True)
class Case:
    """One regression case. `expected` is a list of strings for `any_of`, else a string."""

    id: str
    input: str
    expected: str | tuple[str, ...]
    match: str
    criticality: str
    domain: str
    tags: tuple[str, ...] = ()
    tolerance: float = 0.0

    def as_dict(self) -> dict:
        return {"id": self.id, "input": self.input, "match": self.match, "criticality": self.criticality,
                "domain": self.domain, "tags": list(self.tags), "tolerance": self.tolerance,
                "expected": list(self.expected) if isinstance(self.expected, tuple) else self.expected}


@dataclass(frozen=True)
class Suite:
    path: Path
    cases: tuple[Case, ...]
    sha256: str  # of the file's bytes: the cache key of every evaluation on it
    domains: tuple[str, ...] = ()  # only these domains' cases (only_domains); () = the whole file
    total: int | None = None  # the file's cases when narrowed to some domains

    @property
    def name(self) -> str:
        return display(self.path)

    def domain_counts(self) -> dict[str, int]:
        """{domain: cases}, by domain name."""
        counts: dict[str, int] = {}
        for c in self.cases:
            counts[c.domain] = counts.get(c.domain, 0) + 1
        return dict(sorted(counts.items()))


def only_domains(suite: Suite, domains) -> Suite:
    """The suite narrowed to the cases of `domains` (any of them); the suite itself for
    none. BadInput, naming the suite's domains, for a domain it has no case of."""
    names = tuple(sorted({d.strip() for d in domains or ()}))
    if not names:
        return suite
    counts = suite.domain_counts()
    unknown = [d for d in names if d not in counts]
    if unknown:
        listed = ", ".join(repr(d) for d in unknown)
        raise BadInput([Problem(suite.name, f"no case in domain{'s' if len(unknown) > 1 else ''} {listed}; "
                                f"the suite's domains are {', '.join(counts)}", key="domain")])
    kept = tuple(c for c in suite.cases if c.domain in names)
    return Suite(path=suite.path, cases=kept, sha256=suite.sha256, domains=names, total=len(suite.cases))


def _is_text(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _expected_problems(row: dict) -> list[tuple[str, str]]:
    """(key, message) for an `expected` that its matcher cannot use."""
    match, expected = row["match"], row["expected"]
    if match == "any_of":
        if not (isinstance(expected, list) and expected and all(_is_text(e) for e in expected)):
            return [("expected", "any_of needs a non-empty list of non-empty strings")]
        return []
    if not _is_text(expected):
        return [("expected", f"{match} needs a non-empty string")]
    if match == "regex":
        try:
            re.compile(expected)
        except re.error as e:
            return [("expected", f"regex does not compile: {e}")]
    if match == "numeric" and not quantities(expected):
        return [("expected", f"numeric needs a number (with an optional unit), got {expected!r}")]
    return []


def _row_problems(row, fname: str, line: int) -> list[Problem]:
    if not isinstance(row, dict):
        return [Problem(fname, "a case must be a JSON object", line)]
    out = [Problem(fname, f"missing key {k!r}", line, k) for k in REQUIRED if k not in row]
    out += [Problem(fname, f"unknown key {k!r} (allowed: {', '.join(REQUIRED + OPTIONAL)})", line, k)
            for k in sorted(set(row) - set(REQUIRED) - set(OPTIONAL))]
    if out:
        return out
    for key in ("id", "input", "domain"):
        if not _is_text(row[key]):
            out.append(Problem(fname, "must be a non-empty string", line, key))
    if row["match"] not in MATCH_KINDS:
        out.append(Problem(fname, f"unknown matcher {row['match']!r} (known: {', '.join(MATCH_KINDS)})", line, "match"))
    else:
        out += [Problem(fname, msg, line, key) for key, msg in _expected_problems(row)]
    if row["criticality"] not in CRITICALITIES:
        out.append(Problem(fname, f"unknown criticality {row['criticality']!r} (known: {', '.join(CRITICALITIES)})",
                           line, "criticality"))
    tags = row.get("tags", [])
    if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        out.append(Problem(fname, "must be a list of strings", line, "tags"))
    tol = row.get("tolerance", 0.0)
    if isinstance(tol, bool) or not isinstance(tol, int | float) or tol < 0:
        out.append(Problem(fname, "must be a number >= 0 (relative tolerance)", line, "tolerance"))
    out += _template_problems(row, fname, line)
    return out


def _template_problems(row: dict, fname: str, line: int) -> list[Problem]:
    """A case of `clt init`'s suite template (tag `template`) whose text still says REPLACE:
    a gate that judged it would judge nothing real."""
    if "template" not in row.get("tags", []):
        return []
    return [Problem(fname, f"a template case from `clt init` ({row['id']!r}): replace its {TEMPLATE_MARK} text with "
                           f"a real case, or delete the line", line, key)
            for key in ("input", "expected", "domain") if TEMPLATE_MARK in str(row.get(key, ""))][:1]


def _case(row: dict) -> Case:
    exp = row["expected"]
    return Case(id=row["id"], input=row["input"], expected=tuple(exp) if isinstance(exp, list) else exp,
                match=row["match"], criticality=row["criticality"], domain=row["domain"],
                tags=tuple(row.get("tags", [])), tolerance=float(row.get("tolerance", 0.0)))


def parse_suite(data: bytes, fname: str) -> list[Case]:
    """The cases of a suite file's bytes; BadInput lists every problem (file, line, key)."""
    problems: list[Problem] = []
    cases: list[Case] = []
    first_line: dict[str, int] = {}
    for n, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            problems.append(Problem(fname, f"not valid JSON: {e.msg} (column {e.colno})", n))
            continue
        found = _row_problems(row, fname, n)
        problems += found
        if found:
            continue
        if row["id"] in first_line:
            problems.append(Problem(fname, f"duplicate id {row['id']!r} (first on line {first_line[row['id']]})", n, "id"))
            continue
        first_line[row["id"]] = n
        cases.append(_case(row))
    if not problems and not cases:
        problems.append(Problem(fname, "the suite has no cases"))
    if problems:
        raise BadInput(problems)
    return cases


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file."""
    path = Path(path)
    if not path.is_file():
        raise BadInput([Problem(display(path), "suite file not found")])
    data = path.read_bytes()
    return Suite(path=path.resolve(), cases=tuple(parse_suite(data, display(path))), sha256=sha256_bytes(data))
