"""`clt feedback extract`: training examples out of the feedback store, by explicit rules.

Every prediction that passes the filters (time window, model versions, domains, quality
score) is
judged by its *effective* rating and correction, each taken from the most trusted source
that gave one (expert, then incident, then user, then api; thumbs count as 5 / 3 / 1):

- rated >= min_rating: the answer is kept as it was (``kept_as_is``);
- rated <= max_bad_rating with a correction: the example trains on the correction
  (``corrected``, or ``corrected_by_expert`` when an expert's correction beat the rest);
- anything else is dropped, counted by reason; except that, when pseudo-labelling is
  asked for (off by default), an unrated prediction with neither rating nor correction
  whose model confidence is at least ``pseudo_label_min_confidence`` is kept as it was
  (``pseudo_labelled``); the manifest lists those examples' line numbers.

Corrections posted to `clt serve`'s /v1/feedback (source ``api``) are unverified: anyone
holding an answer's feedback token can write one. They count only when an expert or an
incident review has looked at the same request (an annotation import or review gave it a
row of its own) or when ``trust_api_corrections`` is set (``--trust-api-corrections``);
otherwise such a prediction counts as ``bad_without_correction`` and the manifest's
``api_corrections`` says how many were withheld. API ratings count like user ratings.

Examples are then PII-redacted (on by default), deduplicated on a hash of the prompt and
answer with case and whitespace normalised (the first, oldest example wins), and written
in one format. A manifest beside the output records the counts per rule, the filters, the
source and the output's SHA-256. Same store and options: byte-identical output.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from json.encoder import encode_basestring as _q
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_open, atomic_write_json, sha256_file
from cl_toolkit.feedback.domains import check_store_domains, domain_clause
from cl_toolkit.feedback.ratings import (
    EFFECTIVE_CORRECTION,
    EFFECTIVE_RATING,
    NEGATIVE_MAX,
    POSITIVE_MIN,
    SOURCE_JOINS,
    TRUST_ORDER,
)
from cl_toolkit.feedback.records import RecordError, normalize_timestamp
from cl_toolkit.feedback.redact import PLACEHOLDERS, may_hold_pii, redact
from cl_toolkit.feedback.store import FeedbackStore

MANIFEST_KIND = "feedback-extract"
# what _judge decides for each selected prediction
RULES = ("kept_as_is", "corrected", "corrected_by_expert", "bad_without_correction",
         "neutral", "unrated", "below_quality")
PROGRESS_EVERY = 100_000
# one JSON line per example; equal to json.dumps(row, sort_keys=True, ensure_ascii=False)
FORMATS: dict[str, Callable[[str, str, str | None], str]] = {
    "chat": lambda p, a, s: (
        '{"messages": [' + (f'{{"content": {_q(s)}, "role": "system"}}, ' if s else "")
        + f'{{"content": {_q(p)}, "role": "user"}}, {{"content": {_q(a)}, "role": "assistant"}}]}}\n'),
    "alpaca": lambda p, a, s: (
        f'{{"input": "", "instruction": {_q(p)}, "output": {_q(a)}'
        + (f', "system": {_q(s)}' if s else "") + "}\n"),
    "completion": lambda p, a, s: f'{{"text": {_q((s + chr(10) if s else "") + p + chr(10) + a)}}}\n',
}
_REVIEWED = "(e.request_id IS NOT NULL OR i.request_id IS NOT NULL)"  # an expert or incident row
# the effective correction without unreviewed API corrections
_VERIFIED_CORRECTION = ("COALESCE(" + ", ".join(f"{a}.correction" for a, s in TRUST_ORDER if s != "api")
                        + f", CASE WHEN {_REVIEWED} THEN a.correction END)")


def _select(trust_api: bool) -> str:
    correction = EFFECTIVE_CORRECTION if trust_api else _VERIFIED_CORRECTION
    return f"""SELECT p.input, p.output, p.quality_score, p.confidence,
    {EFFECTIVE_RATING} AS rating,
    {correction} AS correction,
    e.correction IS NOT NULL AS expert_correction,
    {EFFECTIVE_CORRECTION} IS NOT NULL AND {correction} IS NULL AS withheld
FROM predictions p
{SOURCE_JOINS}"""


def _where(since: str | None, until: str | None, versions: list[str],
           domains: tuple[str, ...] = ()) -> tuple[str, list]:
    clauses, params = [], []
    if since:
        clauses.append("p.timestamp >= ?")
        params.append(since)
    if until:
        clauses.append("p.timestamp < ?")
        params.append(until)
    if versions:
        clauses.append(f"p.model_version IN ({', '.join('?' * len(versions))})")
        params += versions
    if domains:
        clause, values = domain_clause(domains)
        clauses.append(clause)
        params += values
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _judge(row: tuple, min_rating: int, max_bad: int, min_quality: float | None,
           min_confidence: float | None):
    """(rule, answer or None) for one selected row."""
    _, output, quality, confidence, rating, correction, by_expert, _withheld = row
    if min_quality is not None and (quality is None or quality < min_quality):
        return "below_quality", None
    if rating is None:
        if (min_confidence is not None and correction is None and confidence is not None
                and confidence >= min_confidence):
            return "pseudo_labelled", output
        return "unrated", None
    if rating >= min_rating:
        return "kept_as_is", output
    if rating <= max_bad:
        if correction:
            return ("corrected_by_expert" if by_expert else "corrected"), correction
        return "bad_without_correction", None
    return "neutral", None


def dedupe_key(prompt: str, answer: str) -> bytes:
    """The key two examples are duplicates by: prompt and answer, case and whitespace normalised."""
    text = " ".join(prompt.casefold().split()) + "\x00" + " ".join(answer.casefold().split())
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _check_options(fmt: str, min_rating: int, max_bad: int, since, until,
                   min_confidence: float | None) -> tuple:
    if fmt not in FORMATS:
        raise BadInput(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not 1 <= max_bad < min_rating <= 5:
        raise BadInput("need 1 <= max-bad-rating < min-rating <= 5")
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise BadInput(f"--pseudo-label-min-confidence must be in [0, 1], got {min_confidence}")
    try:
        return (normalize_timestamp(since, "since") if since else None,
                normalize_timestamp(until, "until") if until else None)
    except RecordError as e:
        raise BadInput(f"--{e.key}: {e}") from None


def _examples(rows, job: dict, counts: Counter, redactions: Counter,
              progress: Callable[[int], None] | None = None) -> Iterator[tuple]:
    """Judge and redact rows: (dedupe key or None, JSON line, rule) for each example kept."""
    render, system = FORMATS[job["format"]], job["system_prompt"]
    limits = (job["min_rating"], job["max_bad_rating"], job["min_quality"],
              job["pseudo_label_min_confidence"])
    for n, row in enumerate(rows, 1):
        rule, answer = _judge(row, *limits)
        counts[rule] += 1
        if row[7] and rule == "bad_without_correction":
            counts["api_withheld"] += 1
        if progress and n % PROGRESS_EVERY == 0:
            progress(n)
        if answer is None:
            continue
        prompt = row[0]
        # one cheap check for both texts: most examples hold nothing to redact
        if job["redact_pii"] and may_hold_pii(f"{prompt}\n{answer}"):
            prompt, answer = redact(prompt, redactions), redact(answer, redactions)
        key = dedupe_key(prompt, answer) if job["dedupe"] else None
        yield key, render(prompt, answer, system), rule


def _write_new(examples: Iterable[tuple], f, seen: set, counts: Counter,
               pseudo_lines: list[int]) -> None:
    """Write the examples whose key was not seen before: the first, oldest, one wins."""
    for key, line, rule in examples:
        if key is not None:
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
        f.write(line)
        counts["written"] += 1
        if rule == "pseudo_labelled":
            pseudo_lines.append(counts["written"])


def extract(store: FeedbackStore, out_path: str | Path, *, fmt: str = "chat", min_rating: int = POSITIVE_MIN,
            max_bad_rating: int = NEGATIVE_MAX, min_quality: float | None = None, since: str | None = None,
            until: str | None = None, model_versions: list[str] | tuple = (),
            domains: list[str] | tuple = (), redact_pii: bool = True, dedupe: bool = True, system_prompt: str | None = None,
            pseudo_label_min_confidence: float | None = None, trust_api_corrections: bool = False,
            progress: Callable[[int], None] | None = None) -> dict:
    """Write training examples to `out_path` (JSONL) and its manifest; return the manifest.

    `since` is inclusive and `until` exclusive (ISO 8601). The store is read in one
    snapshot; the output appears atomically. `pseudo_label_min_confidence` (None: off)
    also keeps unrated predictions at or above that model confidence.
    `trust_api_corrections` uses corrections posted to the server's API without review.
    `domains` keeps only predictions of those domains; one the store lacks is BadInput.
    """
    since, until = _check_options(fmt, min_rating, max_bad_rating, since, until,
                                  pseudo_label_min_confidence)
    domains = check_store_domains(store, domains)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    opts = {"min_rating": min_rating, "max_bad_rating": max_bad_rating,
            "min_quality": min_quality, "since": since, "until": until,
            "model_versions": sorted(model_versions), "domains": list(domains), "redact_pii": redact_pii,
            "dedupe": dedupe, "system_prompt": system_prompt,
            "pseudo_label_min_confidence": pseudo_label_min_confidence,
            "trust_api_corrections": trust_api_corrections}
    job, counts, redactions = {**opts, "format": fmt}, Counter(), Counter()
    pseudo_lines: list[int] = []
    with atomic_open(out_path, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as f:
        _write(store, job, f, counts, redactions, pseudo_lines, progress)
    return _finish(store, out_path, fmt, opts, counts, redactions, pseudo_lines)


def _write(store, job: dict, f, counts: Counter, redactions: Counter, pseudo_lines: list,
           progress) -> None:
    """Select, judge, redact, dedupe and write, from one read snapshot."""
    where, params = _where(job["since"], job["until"], job["model_versions"], tuple(job["domains"]))
    store.conn.execute("BEGIN")  # one consistent snapshot while we read
    try:
        select = _select(job["trust_api_corrections"])
        rows = store.conn.execute(f"{select}{where} ORDER BY p.timestamp, p.request_id", params)
        _write_new(_examples(rows, job, counts, redactions, progress), f, set(), counts,
                   pseudo_lines)
    finally:
        store.conn.execute("COMMIT")


def manifest_path(out_path: str | Path) -> Path:
    """The manifest beside an extract: OUT.jsonl -> OUT.manifest.json."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".manifest.json")


def _finish(store, out_path: Path, fmt: str, opts: dict, counts: Counter,
            redactions: Counter, pseudo_lines: list[int]) -> dict:
    pseudo = opts["pseudo_label_min_confidence"] is not None
    judged = (*RULES, "pseudo_labelled") if pseudo else RULES  # the key only when asked for
    rules = (*judged, "duplicates", "written")
    selected = sum(counts[r] for r in judged)
    manifest = {
        "kind": MANIFEST_KIND,
        "output": {"path": out_path.name, "format": fmt, "rows": counts["written"],
                   "bytes": out_path.stat().st_size, "sha256": sha256_file(out_path)},
        "source": {"store": str(store.path), "schema_version": store.schema_version,
                   "predictions": store.count("predictions"),
                   "feedback": store.count("feedback")},
        "filters": opts,
        "counts": {"selected": selected, **{r: counts[r] for r in rules}},
        "redactions": {kind: redactions[kind] for kind in PLACEHOLDERS},
        # bad answers whose only correction came unreviewed through the server's API
        "api_corrections": {"trusted": opts["trust_api_corrections"],
                            "withheld": counts["api_withheld"]},
    }
    if pseudo:  # which lines of the output no person rated: 1-based line numbers
        manifest["pseudo_labels"] = {"min_confidence": opts["pseudo_label_min_confidence"],
                                     "rows": len(pseudo_lines), "lines": pseudo_lines}
    atomic_write_json(manifest_path(out_path), manifest)
    return manifest
