"""Synthetic question/answer pairs for a new scenario, from any OpenAI-compatible chat
endpoint (`clt synth`). Not to be confused with :mod:`.synth`, the seeded log generator.

A scenario is a Markdown file describing situations production has not seen; its SHA-256
identifies it. It may open with a YAML front matter block naming its domain (``---``,
``domain: hazmat_id``, ``---``: the domain names of the feedback store and the suites); the
block is not sent to the endpoint. ``clt synth --scenario FOLDER --domain D`` generates for
the folder's scenarios of domain D only, one output each; a domain no scenario declares is
an error naming those they do. A single scenario file without front matter given with one
``--domain D`` is that domain's scenario (as `clt analyze`'s plan writes them).

The endpoint is asked for a few pairs at a time, as a JSON array of ``{"question",
"answer"}``. Each pair is checked (text lengths; the answer must not be
empty, a refusal, cut off or repetitive: the heuristic scorer's checks), PII-redacted
(on by default) and deduplicated on its question, case and whitespace folded, against
the feedback store's inputs, existing data files and the pairs already taken. A reply
that is no such array is reported and skipped; requests are bounded (default: three
times as many as `n` needs), so a run always ends. An endpoint that still fails after
its retries (or refuses, e.g. HTTP 401) ends the run with an error and nothing written.

Output: canonical chat JSONL (as `clt feedback extract` writes it) and, beside it,
OUT.manifest.json: ``synthetic: true``, the scenario's path, title and SHA-256, the
endpoint's URL and model (never the key), the counts, the problems and the output's
SHA-256; the scenario's ``domain`` and the ``filters`` asked for (``domains``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import atomic_write_json, atomic_write_text, sha256_bytes, sha256_file
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.core.yamlio import load_yaml
from cl_toolkit.feedback.domains import normalise, unknown_domain_error
from cl_toolkit.feedback.endpoint import Endpoint, MalformedReply, chat
from cl_toolkit.feedback.extract import FORMATS, manifest_path
from cl_toolkit.feedback.records import now_timestamp
from cl_toolkit.feedback.redact import PLACEHOLDERS, redact
from cl_toolkit.feedback.scoring import heuristic_flags
from cl_toolkit.feedback.store import FeedbackStore

MANIFEST_KIND = "synthetic"
QUESTION_CHARS, MAX_ANSWER_CHARS = (8, 2000), 4000
AVOID_SHOWN = 30  # questions already taken, listed in each request so the model moves on
SYSTEM = "You write training data for a domain assistant. You reply with JSON only."
PROMPT = """Scenario: {title}

{text}

Write {k} new question/answer pairs that people working in this scenario would ask, each \
with a correct, concise, self-contained answer.
Reply with a JSON array only: [{{"question": "...", "answer": "..."}}, ...]"""
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.S)
FRONT_MATTER_KEYS = ("domain",)


@dataclass(frozen=True)
class Scenario:
    path: Path
    title: str
    text: str  # what the endpoint is sent: the file without its front matter
    sha256: str  # of the whole file
    domain: str | None = None


def _front_matter(text: str, path: Path) -> tuple[dict, str]:
    """(the front matter's keys, the text after it); BadInput with line and key if wrong."""
    found = _FRONT_MATTER.match(text)
    if not found:
        return {}, text
    # the opening --- as a comment: the line numbers of errors are the file's
    data, lines = load_yaml(path, text="#\n" + (found.group(1) or ""), name=str(path))
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise BadInput([Problem(str(path), "the front matter must be a mapping (domain: NAME)", 2)])
    problems = [Problem(str(path), f"unknown key (allowed: {', '.join(FRONT_MATTER_KEYS)})",
                        lines.get((k,), 2), str(k)) for k in data if k not in FRONT_MATTER_KEYS]
    domain = data.get("domain")
    if "domain" in data and not (isinstance(domain, str) and domain.strip()):
        problems.append(Problem(str(path), "must be a non-empty string", lines.get(("domain",), 2), "domain"))
    if problems:
        raise BadInput(problems)
    return data, text[found.end():]


def load_scenario(path: str | Path) -> Scenario:
    """A scenario file: its text, its first Markdown heading as title, its domain (from the
    front matter, if any) and its SHA-256."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError as e:
        raise BadInput([Problem(str(path), f"not UTF-8 (byte {e.start + 1})")]) from None
    front, text = _front_matter(text, path)
    text = text.strip()
    if not text:
        raise BadInput([Problem(str(path), "the scenario is empty")])
    heading = re.search(r"^#+\s+(.+?)\s*$", text, re.M)
    domain = front["domain"].strip() if "domain" in front else None
    return Scenario(path, heading.group(1) if heading else path.stem, text, sha256_bytes(data), domain)


def load_scenarios(path: str | Path, domains: Iterable[str] = ()) -> list[Scenario]:
    """The scenario a file holds, or every ``*.md`` of a folder (by name), keeping those of
    `domains` when given; BadInput naming the scenarios' domains when one has none. One
    file that declares no domain is taken as the scenario of the one domain given."""
    path = Path(path)
    files = sorted(path.glob("*.md")) if path.is_dir() else [path]
    if not files:
        raise BadInput([Problem(str(path), "no scenario (*.md) in this folder")])
    scenarios, wanted = [load_scenario(f) for f in files], normalise(domains)
    if not wanted:
        return scenarios
    if not path.is_dir() and scenarios[0].domain is None:
        if len(wanted) > 1:
            raise BadInput([Problem(str(path), f"declares no domain, and --domain names {len(wanted)}: "
                                    "give one, or name it in a front matter block (domain: NAME)")])
        return [replace(scenarios[0], domain=wanted[0])]
    declared = sorted({s.domain for s in scenarios if s.domain})
    unknown = [d for d in wanted if d not in declared]
    if unknown:
        raise unknown_domain_error(unknown, declared, f"the scenarios in {path}")
    return [s for s in scenarios if s.domain in wanted]


def messages(scenario: Scenario, k: int, avoid: list[str]) -> list[dict]:
    """The chat request for `k` more pairs."""
    prompt = PROMPT.format(title=scenario.title, text=scenario.text, k=k)
    if avoid:
        prompt += "\nDo not repeat these questions:\n" + "\n".join(f"- {q}" for q in avoid)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def parse_pairs(text: str) -> list:
    """The items of the JSON array in a reply (fenced or not); MalformedReply otherwise."""
    fenced = _FENCE.search(text)
    body = (fenced.group(1) if fenced else text).strip()
    try:
        data = json.loads(body)
    except ValueError:
        start, end = body.find("["), body.rfind("]")
        try:
            data = json.loads(body[start:end + 1]) if 0 <= start < end else None
        except ValueError:
            data = None
    if isinstance(data, dict):  # {"pairs": [...]} and the like
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        raise MalformedReply(f"not a JSON array of question/answer pairs: {text[:120]!r}")
    return data


def check_pair(item) -> tuple[str, str]:
    """(question, answer), stripped; ValueError naming the first problem."""
    if not isinstance(item, dict):
        raise ValueError("not_an_object")
    question, answer = item.get("question"), item.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        raise ValueError("missing_question_or_answer")
    question, answer = question.strip(), answer.strip()
    if not QUESTION_CHARS[0] <= len(question) <= QUESTION_CHARS[1]:
        raise ValueError("question_length")
    if len(answer) > MAX_ANSWER_CHARS:
        raise ValueError("answer_length")
    flags = heuristic_flags(answer)
    if flags:
        raise ValueError(f"answer_{flags[0]}")
    return question, answer


def question_key(question: str) -> bytes:
    """Questions that differ only in case, spacing or end punctuation share a key."""
    text = " ".join(question.casefold().split()).rstrip(" ?.!")
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _file_questions(path: Path) -> Iterable[str]:
    """The prompt of each row of a JSONL data file: chat, import/suite or Alpaca rows."""
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict):
                continue
            for m in row.get("messages") or ():
                if isinstance(m, dict) and m.get("role") == "user":
                    row = {"input": m.get("content")}
                    break
            text = row.get("input") or row.get("question") or row.get("instruction")
            if isinstance(text, str):
                yield text


def known_questions(store: FeedbackStore, files: Iterable[str | Path], redact_pii: bool) -> set:
    """Keys of every question already in the store or the files."""
    prepare = redact if redact_pii else str
    keys = {question_key(prepare(q)) for (q,) in store.conn.execute("SELECT input FROM predictions")}
    for path in files:
        keys.update(question_key(prepare(q)) for q in _file_questions(Path(path)))
    return keys


@dataclass
class _Run:
    pairs: list
    seen: set
    counts: Counter
    invalid: Counter
    redactions: Counter
    problems: list

    def take(self, items: list, n: int, redact_pii: bool) -> None:
        for item in items:
            if len(self.pairs) >= n:
                self.counts["unused"] += 1
                continue
            try:
                question, answer = check_pair(item)
            except ValueError as e:
                self.invalid[str(e)] += 1
                continue
            if redact_pii:
                question, answer = redact(question, self.redactions), redact(answer, self.redactions)
            key = question_key(question)
            if key in self.seen:
                self.counts["duplicates"] += 1
                continue
            self.seen.add(key)
            self.pairs.append((question, answer))


def _ask(run: _Run, endpoint: Endpoint, scenario: Scenario, job: dict, k: int) -> list:
    run.counts["requests"] += 1
    seed = None if job["seed"] is None else job["seed"] + run.counts["requests"]
    avoid = [q for q, _ in run.pairs[-AVOID_SHOWN:]]
    try:
        reply = chat(endpoint, messages(scenario, k, avoid), temperature=job["temperature"],
                     max_tokens=job["max_tokens"], seed=seed)
        items = parse_pairs(reply)
    except MalformedReply as e:
        run.counts["malformed_replies"] += 1
        run.problems.append(endpoint.scrub(f"request {run.counts['requests']}: malformed "
                                           f"reply skipped: {e}"))
        return []
    run.counts["pairs_received"] += len(items)
    return items


def generate(store: FeedbackStore, scenario: Scenario, endpoint: Endpoint, n: int,
             out_path: str | Path, *, against: Iterable[str | Path] = (), per_request: int = 10,
             max_requests: int | None = None, temperature: float = 0.8, seed: int | None = None,
             max_tokens: int = 2048, redact_pii: bool = True, system_prompt: str | None = None,
             domains: Iterable[str] = (),
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Ask for `n` pairs, write the chat JSONL and its manifest; return the manifest.
    `domains` is the filter the scenario was chosen by, recorded in the manifest."""
    if n < 1 or per_request < 1 or (max_requests is not None and max_requests < 1):
        raise BadInput("need n, --per-request and --max-requests of at least 1")
    against = [Path(p) for p in against]
    job = {"n": n, "per_request": per_request, "temperature": temperature, "seed": seed,
           "max_tokens": max_tokens, "redact_pii": redact_pii, "system_prompt": system_prompt,
           "max_requests": max_requests or 3 * math.ceil(n / per_request)}
    seen = known_questions(store, against, redact_pii)
    run = _Run([], set(seen), Counter(), Counter(), Counter(), [])
    while len(run.pairs) < n and run.counts["requests"] < job["max_requests"]:
        items = _ask(run, endpoint, scenario, job, min(per_request, n - len(run.pairs)))
        run.take(items, n, redact_pii)
        if progress:
            progress(run.counts["requests"], len(run.pairs))
    out_path = Path(out_path)
    render = FORMATS["chat"]
    atomic_write_text(out_path, "".join(render(q, a, system_prompt) for q, a in run.pairs))
    return _manifest(store, scenario, endpoint, out_path, {**job, "domains": list(normalise(domains))},
                     run, against, len(seen))


def generate_each(store: FeedbackStore, scenarios: list[Scenario], endpoint: Endpoint,
                  out_path: str | Path | None = None, *, against: Iterable[str | Path] = (),
                  **options) -> list[tuple[Path, dict]]:
    """generate() for each scenario in turn, each into `out_path` (one scenario only) or
    WORKSPACE/synthetic/STEM-HASH.jsonl, and each deduplicated against the outputs before
    it too. -> [(output, manifest)]."""
    if out_path and len(scenarios) > 1:
        raise BadInput(f"-o names one file, but {len(scenarios)} scenarios were chosen: leave it out")
    done, against = [], list(against)
    for s in scenarios:
        path = Path(out_path or workspace_dir() / "synthetic" / f"{s.path.stem}-{s.sha256[:12]}.jsonl")
        done.append((path, generate(store, s, endpoint, out_path=path, against=against, **options)))
        against.append(path)
    return done


def _manifest(store, scenario: Scenario, endpoint: Endpoint, out_path: Path, job: dict,
              run: _Run, against: list[Path], known: int) -> dict:
    counts = ("requests", "malformed_replies", "pairs_received", "duplicates", "unused")
    manifest = {
        "kind": MANIFEST_KIND, "synthetic": True, "created_at": now_timestamp(),
        "scenario": {"path": str(scenario.path), "title": scenario.title,
                     "sha256": scenario.sha256, "domain": scenario.domain},
        "filters": {"domains": job["domains"]},
        "endpoint": endpoint.describe(),
        "generation": {**{k: v for k, v in job.items() if k != "domains"},
                       "prompt_sha256": sha256_bytes((SYSTEM + PROMPT).encode())},
        "deduped_against": {"store": str(store.path), "files": [str(p) for p in against],
                            "known_questions": known},
        "counts": {**{c: run.counts[c] for c in counts}, "invalid": sum(run.invalid.values()),
                   "written": len(run.pairs), "short_by": job["n"] - len(run.pairs)},
        "invalid": dict(sorted(run.invalid.items())),
        "redactions": {kind: run.redactions[kind] for kind in PLACEHOLDERS},
        "problems": run.problems,
        "output": {"path": out_path.name, "format": "chat", "rows": len(run.pairs),
                   "bytes": out_path.stat().st_size, "sha256": sha256_file(out_path)},
    }
    atomic_write_json(manifest_path(out_path), manifest)
    return manifest
