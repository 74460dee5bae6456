"""Incident reviews (`clt feedback review`): a reviewer goes through an incident's
predictions one by one and says how each recommendation held up.

An incident's predictions are selected by a time window, metadata tags (``KEY=VALUE``
matches a metadata key or column; a bare ``TAG`` matches an entry of ``metadata.tags``)
and/or a file of request ids; every given criterion must hold. Each answer - a rating
1-5, what actually happened, what should have been recommended - is stored at once, in
one transaction, as feedback with source ``incident`` (rating, the correction, notes
``incident NAME: what happened``) plus an ``incident_reviews`` row (the context and the
reviewer). Stopping is safe at any point: running the same review again asks only what
is still unreviewed. The same answers can come from a CSV or YAML file, for scripts.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import re
import select as select_io  # the module defines select() (an incident's predictions)
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.yamlio import load_yaml
from cl_toolkit.feedback.records import (
    COLUMN_KEYS,
    MAX_ID_CHARS,
    RecordError,
    normalize_timestamp,
    now_timestamp,
)
from cl_toolkit.feedback.store import FeedbackStore

ANSWER_FIELDS = ("request_id", "rating", "what_happened", "should_have_recommended")
ALIASES = {"correction": "should_have_recommended"}
QUIT, SKIP = "quit", "skip"
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True)
class Answer:
    """One reviewed prediction."""

    request_id: str
    rating: int
    what_happened: str | None = None
    should_have_recommended: str | None = None


@dataclass(frozen=True)
class Selection:
    """Which predictions belong to an incident; every given criterion must hold."""

    since: str | None = None
    until: str | None = None
    tags: tuple[str, ...] = ()
    request_ids: tuple[str, ...] | None = None

    def given(self) -> bool:
        return bool(self.since or self.until or self.tags or self.request_ids is not None)


def check_incident(incident: str) -> str:
    """The incident's name, if it is one (not blank, at most 256 characters)."""
    if not incident.strip() or len(incident) > MAX_ID_CHARS:
        raise BadInput(f"incident name {incident[:40]!r} must be 1-{MAX_ID_CHARS} characters")
    return incident


def read_ids(path: str | Path) -> tuple[str, ...]:
    """Request ids, one a line; blank lines and # comments are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise BadInput([Problem(str(path), f"not UTF-8 (byte {e.start + 1})")]) from None
    return tuple(s for line in lines if (s := line.split("#", 1)[0].strip()))


def _tag_clause(tag: str) -> tuple[str, list]:
    if "=" not in tag:
        return ("EXISTS (SELECT 1 FROM json_each(p.metadata, '$.tags') t WHERE t.value = ?)",
                [tag])
    key, value = tag.split("=", 1)
    if not _KEY.match(key):
        raise BadInput(f"--tag {tag!r}: the key must be a plain name")
    if key in COLUMN_KEYS:
        return f"CAST(p.{key} AS TEXT) = ?", [value]
    return "CAST(json_extract(p.metadata, ?) AS TEXT) = ?", [f'$."{key}"', value]


def select(store: FeedbackStore, selection: Selection) -> list[str]:
    """The incident's request ids, oldest first."""
    if not selection.given():
        raise BadInput("select the incident's predictions: --since/--until, --tag or --ids")
    clauses, params = [], []
    try:
        for op, value, key in ((">=", selection.since, "since"), ("<", selection.until, "until")):
            if value:
                clauses.append(f"p.timestamp {op} ?")
                params.append(normalize_timestamp(value, key))
    except RecordError as e:
        raise BadInput(f"--{e.key}: {e}") from None
    for tag in selection.tags:
        clause, more = _tag_clause(tag)
        clauses.append(clause)
        params += more
    if selection.request_ids is not None:
        clauses.append("p.request_id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(selection.request_ids))
    sql = (f"SELECT p.request_id FROM predictions p WHERE {' AND '.join(clauses)} "
           "ORDER BY p.timestamp, p.request_id")
    return [rid for (rid,) in store.conn.execute(sql, params)]


def pending(store: FeedbackStore, incident: str, ids: list[str]) -> list[str]:
    """`ids` this incident's review has not covered yet, in order."""
    done = {rid for (rid,) in store.conn.execute(
        "SELECT request_id FROM incident_reviews WHERE incident = ?", (incident,))}
    return [rid for rid in ids if rid not in done]


def _rows(incident: str, answer: Answer, reviewer: str | None, now: str) -> tuple[tuple, tuple]:
    notes = f"incident {incident}" + (f": {answer.what_happened}" if answer.what_happened else "")
    feedback = (answer.request_id, "incident", answer.rating, None,
                answer.should_have_recommended, notes, now)
    return feedback, (incident, answer.request_id, answer.what_happened, reviewer, now)


def save(store: FeedbackStore, incident: str, answers: list[Answer], reviewer: str | None) -> None:
    """Store answers as incident feedback plus their review records, in one transaction."""
    now = now_timestamp()
    pairs = [_rows(incident, a, reviewer, now) for a in answers]
    with store.transaction() as conn:
        store.upsert_feedback([f for f, _ in pairs])
        conn.executemany("INSERT INTO incident_reviews (incident, request_id, what_happened, reviewer, "
                         "reviewed_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (incident, request_id) DO UPDATE "
                         "SET what_happened = excluded.what_happened, reviewer = excluded.reviewer, "
                         "reviewed_at = excluded.reviewed_at", [r for _, r in pairs])


def default_reviewer() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


# --- from a file --------------------------------------------------------------------------
def _text(value) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def check_answer(raw) -> Answer | None:
    """An answer from one file row; None when the row is blank; ValueError if wrong."""
    if not isinstance(raw, dict):
        raise ValueError("each answer must be a mapping")
    raw = {ALIASES.get(str(k).strip(), str(k).strip()): v for k, v in raw.items()}
    rating, happened, should = (_text(raw.get(k)) for k in ANSWER_FIELDS[1:])
    if not (rating or happened or should):
        return None
    if rating not in {"1", "2", "3", "4", "5"}:
        raise ValueError(f"rating {rating!r} is not a whole number 1-5")
    request_id = _text(raw.get("request_id"))
    if not request_id:
        raise ValueError("request_id is missing")
    return Answer(request_id, int(rating), happened, should)


def read_answers(path: str | Path) -> list[tuple[int | None, object]]:
    """[(line, raw row)] from a CSV (header row) or YAML file (a list, or {answers: [...]})."""
    path = Path(path)
    if path.suffix.lower() in (".yml", ".yaml"):
        data, lines = load_yaml(path)
        key = ("answers",) if isinstance(data, dict) else ()
        items = data.get("answers") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise BadInput([Problem(str(path), "expected a list of answers (or answers: [...])")])
        return [(lines.line_for((*key, i)), item) for i, item in enumerate(items)]
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadInput([Problem(str(path), f"not UTF-8 (byte {e.start + 1})")]) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = {"request_id", "rating"} - set(reader.fieldnames or ())
    if missing:
        raise BadInput([Problem(str(path), f"missing columns: {', '.join(sorted(missing))}", 1)])
    rows, start = [], 2
    try:
        for row in reader:
            rows.append((start, row))
            start = reader.line_num + 1  # a quoted text can span lines
    except csv.Error as e:
        raise BadInput([Problem(str(path), f"bad CSV: {e}", start)]) from None
    return rows


def apply_answers(store: FeedbackStore, incident: str, path: str | Path,
                  selected: list[str] | None = None, reviewer: str | None = None) -> dict:
    """Store a file's answers (one transaction); rows that are wrong are listed, not stored."""
    check_incident(incident)
    allowed = set(selected) if selected is not None else None
    answers, problems, blank = [], [], 0
    for line, raw in read_answers(path):
        try:
            answer = check_answer(raw)
            if answer and not store.has_prediction(answer.request_id):
                raise ValueError(f"unknown request_id {answer.request_id!r}")
            if answer and allowed is not None and answer.request_id not in allowed:
                raise ValueError(f"{answer.request_id!r} is not in this incident's selection")
        except ValueError as e:
            problems.append(Problem(str(path), str(e), line))
            continue
        blank += answer is None
        answers += [answer] if answer else []
    save(store, incident, answers, reviewer)
    remaining = len(pending(store, incident, selected)) if selected is not None else None
    return {"incident": incident, "answers": len(answers), "blank": blank,
            "rejected": len(problems), "remaining": remaining, "problems": problems}


# --- in a terminal ------------------------------------------------------------------------
def terminal_input(prompt: str, out=None, fd: int | None = None) -> str:
    """input() for the review's terminal, without its lost-Ctrl-C race: the prompt goes to
    `out` (stderr, where input() puts it on a terminal), then one line is read from `fd`
    (stdin); EOFError on Ctrl-D at the start of a line.

    input() writes the prompt and then blocks in read(); a Ctrl-C that lands between the
    two only sets Python's signal flag, which nothing checks until the next signal, so the
    reviewer's Ctrl-C is ignored (seen about once in ten when it follows the prompt at
    once). Here a signal wakeup pipe is armed before the prompt shows and waited on with
    the terminal, so a Ctrl-C at any moment after the prompt raises KeyboardInterrupt.
    """
    out = out if out is not None else sys.stderr
    fd = sys.stdin.fileno() if fd is None else fd
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    old = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    try:
        out.write(prompt)
        out.flush()
        return _read_line(fd, wake_r)
    finally:
        signal.set_wakeup_fd(old)
        os.close(wake_r)
        os.close(wake_w)


def _read_line(fd: int, wake_r: int) -> str:
    """One line from `fd`. A signal wakes the wait up; its Python handler runs as soon as
    select returns (Ctrl-C: KeyboardInterrupt), so only signals that raise nothing get here."""
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select_io.select([fd, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 512)  # drain it, or the next wait would return at once
        if fd not in ready:
            continue
        byte = os.read(fd, 1)  # one at a time: what follows the line stays for the next ask
        if not byte:
            if not data:
                raise EOFError
            break
        data += byte
    return data.decode(getattr(sys.stdin, "encoding", None) or "utf-8", errors="replace").removesuffix("\n")


def _ask_one(request_id: str, ask: Callable[[str], str], say: Callable[[str], None]):
    """An Answer, SKIP or QUIT, from the reviewer."""
    while True:
        choice = ask("Rating 1-5 (s = skip, q = quit): ").strip().lower()
        if choice in ("q", "quit", "s", "skip"):
            return QUIT if choice.startswith("q") else SKIP
        if choice in {"1", "2", "3", "4", "5"}:
            break
        say("  please type a whole number 1-5, s or q")
    happened = ask("What actually happened: ").strip() or None
    should = ask("What should have been recommended (blank: it was right): ").strip() or None
    return Answer(request_id, int(choice), happened, should)


def _show(say, prediction: dict, position: str) -> None:
    confidence = prediction["confidence"]
    say(f"\n[{position}] {prediction['request_id']}  {prediction['timestamp']}  "
        f"model {prediction['model_version']}"
        + (f"  confidence {confidence:.2f}" if confidence is not None else ""))
    say(f"Query:       {prediction['input']}")
    say(f"Recommended: {prediction['output']}")


def walk(store: FeedbackStore, incident: str, ids: list[str], *, ask: Callable[[str], str],
         say: Callable[[str], None], reviewer: str | None = None) -> dict:
    """Ask about each unreviewed prediction, storing every answer as it comes.

    `ask(prompt)` returns a line (EOFError counts as quitting); `say(text)` shows text.
    """
    todo = pending(store, check_incident(incident), ids)
    say(f"incident {incident}: {len(todo)} to review, {len(ids) - len(todo)} already reviewed")
    reviewed = skipped = 0
    stopped = False
    for i, request_id in enumerate(todo, 1):
        _show(say, store.get_prediction(request_id), f"{i}/{len(todo)}")
        try:
            answer = _ask_one(request_id, ask, say)
        except EOFError:
            answer = QUIT
        if answer == QUIT:
            stopped = True
            break
        if answer == SKIP:
            skipped += 1
            continue
        save(store, incident, [answer], reviewer)
        reviewed += 1
        say("saved.")
    remaining = len(pending(store, incident, ids))
    say(f"\n{reviewed} reviewed, {skipped} skipped, {remaining} remaining"
        + ("; run the same command to continue" if remaining else ""))
    return {"incident": incident, "selected": len(ids), "reviewed": reviewed,
            "skipped": skipped, "remaining": remaining, "stopped": stopped}


def run_review(store: FeedbackStore, incident: str, wanted: Selection, *, answers: str | Path | None = None,
           interactive: bool, ask: Callable[[str], str], say: Callable[[str], None],
           reviewer: str | None = None) -> dict:
    """`clt feedback review`: store an answers file's answers (within the selection, if one
    is given), else walk the selection in a terminal (`interactive`: stdin is one)."""
    # an answers file may stand alone; a walk needs to know what to walk through
    selected = select(store, wanted) if wanted.given() or not answers else None
    if answers:
        return apply_answers(store, incident, answers, selected, reviewer)
    if not interactive:
        raise BadInput("review asks in a terminal; for scripts pass --answers FILE")
    return walk(store, incident, selected, ask=ask, say=say, reviewer=reviewer)
