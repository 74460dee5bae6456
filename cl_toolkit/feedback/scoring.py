"""Quality scores: pluggable scorers fill ``predictions.quality_score`` (`clt feedback score`),
which `clt feedback extract --min-quality` then filters on.

SCORERS maps a name to a factory ``(store, endpoint) -> score_batch``; ``score_batch``
takes rows ``[(request_id, input, output)]`` and returns ``[(score or None, flags)]``: a
score in [0, 1] (1: nothing wrong found), or None when it could not judge (the row stays
unscored), and the names of what it found.

- ``heuristic`` multiplies a penalty for each problem found: ``empty`` (0.0, no letter or
  digit), ``refusal`` (0.1), ``truncated`` (0.4: cut mid-sentence, a dangling comma or
  conjunction, an open code fence), ``repetition`` (0.3: a sentence said three times, or
  under half the word trigrams distinct), ``length_outlier`` (0.6: a robust z-score of
  log length over 3.5, against every answer in the store).
- ``judge`` asks an OpenAI-compatible endpoint to grade each answer 1-5, scored
  (grade - 1) / 4; PII is redacted from what is sent. A malformed verdict leaves the row
  unscored and is counted (``judge_malformed``).

Rows are scored in batches, one transaction each, so an interrupted run keeps what it
scored and a re-run (which by default scores only unscored rows) finishes the job.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback.endpoint import Endpoint, MalformedReply, chat
from cl_toolkit.feedback.records import RecordError, normalize_timestamp
from cl_toolkit.feedback.redact import redact
from cl_toolkit.feedback.store import FeedbackStore

PENALTIES = {"empty": 0.0, "refusal": 0.1, "truncated": 0.4, "repetition": 0.3,
             "length_outlier": 0.6}
BATCH_SIZES = {"heuristic": 1000, "judge": 16}
OUTLIER_Z = 3.5
MIN_REFERENCE = 20  # fewer answers than this: no length reference
MIN_MAD = 0.25  # of log length: with it, an outlier is at least ~3.7x longer or shorter
_REFUSAL = re.compile(
    r"\b(?:i(?:'m| am) sorry|i (?:can(?:no|')t|am unable to|am not able to|won't) "
    r"(?:help|assist|answer|provide|do that)|as an ai\b|i do(?:n't| not) (?:know|have "
    r"(?:enough |that )?information))", re.I)
_DANGLING = re.compile(r"(?:[,;:(\[{/\u2013\u2014-]|\b(?:and|or|but|the|a|an|to|of|with|for|"
                       r"because|which|that))\s*\Z", re.I)
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"[.!?\n]+")


def _truncated(text: str) -> bool:
    text = text.rstrip()
    if text.count("```") % 2 or _DANGLING.search(text) or text.count("(") > text.count(")"):
        return True
    return len(text.split()) >= 40 and text[-1].isalpha() and text[-1].islower()


def _repetitive(text: str) -> bool:
    sentences = Counter(" ".join(_WORD.findall(s)) for s in _SENTENCE.split(text.casefold()))
    if any(n >= 3 and s.count(" ") >= 1 for s, n in sentences.items()):
        return True  # the same sentence of two or more words, three times
    words = _WORD.findall(text.casefold())
    if len(words) < 12:
        return False
    grams = list(zip(words, words[1:], words[2:], strict=False))
    return len(set(grams)) / len(grams) < 0.5


def _robust_z(x: float, median: float, mad: float) -> float:
    return abs(0.6745 * (x - median) / mad)  # 0.6745: makes MAD comparable to a std dev


def heuristic_flags(answer: str, reference: tuple[float, float] | None = None) -> list[str]:
    """What is visibly wrong with an answer; `reference` is (median, MAD) of log length."""
    if not any(c.isalnum() for c in answer):
        return ["empty"]
    flags = []
    if _REFUSAL.search(answer[:300]):
        flags.append("refusal")
    if _truncated(answer):
        flags.append("truncated")
    if _repetitive(answer):
        flags.append("repetition")
    if reference and _robust_z(math.log1p(len(answer)), *reference) > OUTLIER_Z:
        flags.append("length_outlier")
    return flags


def length_reference(store: FeedbackStore) -> tuple[float, float] | None:
    """(median, MAD) of log(1 + answer length) over the store; None when too few."""
    return log_length_reference(n for (n,) in store.conn.execute("SELECT length(output) FROM predictions"))


def log_length_reference(lengths) -> tuple[float, float] | None:
    """(median, MAD) of log(1 + length) over answer lengths; None when too few."""
    logs = [math.log1p(n) for n in lengths]
    if len(logs) < MIN_REFERENCE:
        return None
    median = statistics.median(logs)
    # a floor, so near-uniform lengths do not make every small difference an outlier
    return median, max(statistics.median(abs(x - median) for x in logs), MIN_MAD)


def _heuristic(store: FeedbackStore, endpoint: Endpoint | None = None) -> Callable:
    reference = length_reference(store)

    def score_batch(rows):
        results = []
        for _, _, output in rows:
            flags = heuristic_flags(output, reference)
            results.append((math.prod(PENALTIES[f] for f in flags), flags))
        return results

    return score_batch


JUDGE_PROMPT = (
    "You grade the answers of a domain assistant.\n\nQuestion:\n{question}\n\nAnswer:\n{answer}"
    "\n\nGrade the answer from 1 (wrong, unsafe or useless) to 5 (correct, complete and "
    'useful). Reply with JSON only: {{"grade": <1-5>, "reason": "<one sentence>"}}')
_GRADE = re.compile(r'"?grade"?\s*[:=]\s*"?([1-5])\b', re.I)


def parse_grade(text: str) -> int:
    """The 1-5 grade in a judge's reply; MalformedReply when there is none."""
    match = re.search(r"\{.*\}", text, re.S)
    try:
        grade = json.loads(match.group()).get("grade") if match else None
    except (ValueError, AttributeError):
        grade = None
    if grade is None and (found := _GRADE.search(text)):
        grade = int(found.group(1))
    if isinstance(grade, bool) or grade not in (1, 2, 3, 4, 5):
        raise MalformedReply(f"no grade 1-5 in the judge's reply: {text[:120]!r}")
    return int(grade)


def _judge(store: FeedbackStore, endpoint: Endpoint | None = None) -> Callable:
    if endpoint is None:
        raise BadInput("the judge scorer needs --base-url and --model")

    def score_one(question: str, answer: str):
        prompt = JUDGE_PROMPT.format(question=redact(question), answer=redact(answer))
        try:
            grade = parse_grade(chat(endpoint, [{"role": "user", "content": prompt}]))
        except MalformedReply:
            return None, ["judge_malformed"]
        return (grade - 1) / 4, [f"grade_{grade}"]

    return lambda rows: [score_one(question, answer) for _, question, answer in rows]


SCORERS: dict[str, Callable] = {"heuristic": _heuristic, "judge": _judge}


def _filters(since, until, versions, rescore: bool) -> tuple[str, list]:
    clauses, params = [], []
    try:
        for column, op, value, key in (("timestamp", ">=", since, "since"),
                                       ("timestamp", "<", until, "until")):
            if value:
                clauses.append(f"{column} {op} ?")
                params.append(normalize_timestamp(value, key))
    except RecordError as e:
        raise BadInput(f"--{e.key}: {e}") from None
    if versions:
        clauses.append(f"model_version IN ({', '.join('?' * len(versions))})")
        params += list(versions)
    if not rescore:
        clauses.append("quality_score IS NULL")
    return "".join(f" AND {c}" for c in clauses), params


def score_store(store: FeedbackStore, scorer: str = "heuristic", *, since: str | None = None,
                until: str | None = None, model_versions=(), rescore: bool = False,
                endpoint: Endpoint | None = None, batch_size: int | None = None,
                progress: Callable[[int], None] | None = None) -> dict:
    """Score the selected predictions (by default the unscored ones); returns a summary.
    `endpoint` is the judge's (the heuristic scorer needs none)."""
    if scorer not in SCORERS:
        raise BadInput(f"unknown scorer {scorer!r}; choose from {', '.join(SCORERS)}")
    score_batch = SCORERS[scorer](store, endpoint)
    where, params = _filters(since, until, model_versions, rescore)
    sql = (f"SELECT request_id, input, output FROM predictions WHERE request_id > ?{where} "
           "ORDER BY request_id LIMIT ?")
    size, last, flags = batch_size or BATCH_SIZES[scorer], "", Counter()
    scored = unscored = total = 0
    while rows := store.conn.execute(sql, [last, *params, size]).fetchall():
        results = score_batch(rows)
        updates = [(round(s, 4), r[0]) for r, (s, _) in zip(rows, results, strict=True)
                   if s is not None]
        with store.transaction() as conn:
            conn.executemany("UPDATE predictions SET quality_score = ? WHERE request_id = ?",
                             updates)
        scored, unscored = scored + len(updates), unscored + len(rows) - len(updates)
        total += sum(s for s, _ in updates)
        flags.update(f for _, found in results for f in found)
        last = rows[-1][0]
        if progress:
            progress(scored + unscored)
    return {"scorer": scorer, "selected": scored + unscored, "scored": scored,
            "unscored": unscored, "mean_score": round(total / scored, 4) if scored else None,
            "flags": dict(sorted(flags.items())),
            "filters": {"since": since, "until": until, "model_versions": sorted(model_versions),
                        "rescore": rescore}}
