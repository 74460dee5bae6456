"""Seeded synthetic production logs in the import format, for tests and benchmarks.

Rows look like a fire-service assistant's traffic: a few templates with varying numbers,
ratings skewed high, corrections on some bad answers, a little PII, some near-duplicates.
Same (n, seed): the same rows.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from cl_toolkit.core.timefmt import from_epoch

DOMAINS = ("hose", "ventilation", "hazmat", "ems", "rescue", "apparatus")
QUESTIONS = (
    "What nozzle pressure should a {a} inch handline run at for a {b} foot stretch?",
    "How many firefighters does a {a} story residential search need, crew {b}?",
    "At what distance should we stage from a tanker leak of {a} gallons, wind {b} mph?",
    "What is the flow of a {a} inch smooth bore tip at {b} psi?",
    "When should crews ventilate a {a} story building with {b} occupants reported?",
    "How long does a {a} minute SCBA cylinder last at heavy work, crew {b}?",
)
ANSWERS = (
    "Run it at {a}0 psi and add {b} psi for friction loss per 100 feet.",
    "Assign {a} firefighters for search and keep a rapid intervention crew of {b}.",
    "Stage at least {a}00 feet upwind and uphill; re-check after {b} minutes.",
    "About {a}{b}0 gallons per minute; confirm with the flow chart on the apparatus.",
    "Ventilate after the attack line is in place, coordinating with crew {b} on floor {a}.",
    "Plan for roughly {a} minutes of work and leave the hazard with {b} minutes to spare.",
)
PII = (" Call me at +1 555 {a}{b}3 4567.", " My email is crew{a}@station{b}.example.org.",
       " Card 4111 1111 1111 {a}{b}11 was charged.", " IBAN DE89 3704 0044 0532 01{a}{b} 00.")


def _text(rng: random.Random, kind: int, templates: tuple, pii_rate: float) -> str:
    r = rng.random  # int(r() * n) rather than randint: same idea, a third of the cost
    text = templates[kind].format(a=1 + int(r() * 9), b=1 + int(r() * 99))
    if r() < pii_rate:
        text += PII[int(r() * len(PII))].format(a=1 + int(r() * 9), b=10 + int(r() * 90))
    return text


def _feedback(rng: random.Random, answer: str) -> dict | None:
    roll = rng.random()
    if roll < 0.70:
        return {"rating": rng.choice((4, 4, 5, 5, 5))}
    if roll < 0.80:
        return {"thumbs": rng.choice((-1, 1, 1))}
    if roll < 0.85:
        return {"rating": 3}
    if roll < 0.95:
        return {"rating": rng.choice((1, 2)), "correction": "Corrected: " + answer.upper()}
    return {"rating": 1, "notes": "wrong, no time to fix"}


def generate_rows(n: int, *, seed: int = 0, prefix: str = "req", start: str = "2025-04-01",
                  feedback_rate: float = 1.0, pii_rate: float = 0.02,
                  duplicate_rate: float = 0.03) -> Iterator[dict]:
    """`n` import rows, one every 10 seconds from `start`, deterministic for a seed."""
    rng = random.Random(seed)
    t0 = int(datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp())
    previous = None
    for i in range(n):
        kind = int(rng.random() * len(QUESTIONS))
        question = _text(rng, kind, QUESTIONS, pii_rate)
        answer = _text(rng, kind, ANSWERS, pii_rate)
        if previous and rng.random() < duplicate_rate:  # a near-duplicate of the last one
            question, answer = previous[0].upper() + "  ", " " + previous[1].lower()
        previous = (question, answer)
        row = {
            "request_id": f"{prefix}-{i:08d}",
            "timestamp": from_epoch(t0 + 10 * i),
            "input": question, "output": answer,
            "model_version": "1.0.0" if i % 3 else "1.1.0",
            "metadata": {"domain": DOMAINS[kind], "confidence": round(rng.random(), 3),
                         "latency_ms": 40 + int(rng.random() * 860),
                         "quality_score": round(rng.random(), 3), "region": "eu"},
        }
        if rng.random() < feedback_rate:
            row["user_feedback"] = _feedback(rng, answer)
        yield row


def write_jsonl(path: str | Path, rows) -> int:
    """Write rows as JSONL (not atomic: generated data); returns the count."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
