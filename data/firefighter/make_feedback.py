"""Generate feedback_q2.jsonl: one simulated quarter (Q2 2026) of production feedback.

The deployed model is version 1.0.0, trained on q1 only. Users ask it:
  * q2 questions (new facts it has not learned): wrong answers, rated 1-2 or thumbs down,
    many with a correction equal to the correct q2 answer;
  * q1 questions: answered correctly, rated 4-5 or thumbs up;
  * a few general-knowledge questions: answered correctly.
About 10 % of rows carry {"thumbs": 1 | -1} instead of a rating, about 15 % have no
user_feedback at all, and a few inputs or notes contain PII (emails, phone numbers) so
that redaction can be exercised. Addresses use example.com and phone numbers use 555.

Deterministic (random.Random(42)). Run from anywhere:
    python data/firefighter/make_feedback.py
"""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "feedback_q2.jsonl"
N_ROWS = 400
MODEL_VERSION = "1.0.0"
START = datetime(2026, 4, 1, tzinfo=UTC)
END = datetime(2026, 7, 1, tzinfo=UTC)  # exclusive: the quarter ends 2026-06-30T23:59:59Z

HEDGES = [
    "I am not sure about that.",
    "I do not have that information.",
    "I cannot answer that reliably.",
]
NEG_NOTES = [
    "Wrong value.",
    "This does not match the NIOSH Pocket Guide.",
    "Checked the ERG, the answer is wrong.",
    "Dangerous if crews rely on this.",
    "Answer is out of date.",
    "Model guessed.",
]
# Plausible wrong key values for some q2 facts (answers that really belong elsewhere).
DISTRACTORS = {
    "Logistics": ["Operations", "Planning", "Finance/Administration"],
    "incipient": ["growth", "fully developed", "decay"],
    "backdraft": ["flashover", "rollover"],
    "instability": ["health hazard", "flammability", "special hazards"],
    "special hazards": ["instability", "health hazard", "flammability"],
    "green triangle": ["red square", "blue circle"],
    "monoammonium phosphate": ["sodium bicarbonate", "potassium bicarbonate"],
    "warm zone": ["hot zone", "cold zone"],
}
POS_NOTES = ["Correct.", "Matches our SOP.", "Quick and accurate.", "Good answer."]
EMAILS = [
    "j.rivera@example.com",
    "captain.lee@example.com",
    "m.okafor@example.com",
    "dispatch.ops@example.com",
    "k.nguyen@example.org",
]
PHONES = ["555-123-4567", "(555) 010-2233", "+1 555 014 7788", "555.019.4321"]
NAMES = ["Jordan Rivera", "Sam Lee", "Maria Okafor", "Chris Nguyen"]
PII_INPUT_TEMPLATES = [
    "{q} Please call me at {phone}.",
    "{q} You can reach me at {email}.",
    "My name is {name}, email {email}. {q}",
    "{q} Station phone is {phone}, ask for {name}.",
]


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_quarter(name: str) -> list[dict]:
    """Training pairs of one quarter, joined with the domain and key value of its test file."""
    train = read_jsonl(HERE / f"{name}.jsonl")
    tests = read_jsonl(HERE / f"{name}_test.jsonl")
    assert len(train) == len(tests), name
    facts = []
    for row, test in zip(train, tests, strict=True):
        facts.append(
            {
                "question": row["messages"][0]["content"],
                "answer": row["messages"][1]["content"],
                "expected": test["expected"],
                "match": test["match"],
                "domain": test["domain"],
                "topic": test["tags"][2] if len(test["tags"]) > 2 else test["domain"],
            }
        )
    return facts


def fmt_number(x: float) -> str:
    if abs(x - round(x)) < 1e-9:
        return str(int(round(x)))
    return f"{x:.1f}"


def wrong_answer(rng: random.Random, fact: dict, pool: list[dict]) -> str:
    """A plausible but wrong answer to a fact the deployed model has not learned."""
    if rng.random() < 0.15:
        return rng.choice(HEDGES)
    expected = fact["expected"]
    if fact["match"] == "numeric":
        value, unit = expected.split(" ", 1)
        same_unit = sorted(
            {
                f["expected"]
                for f in pool
                if f["match"] == "numeric"
                and f["expected"].split(" ", 1)[1] == unit
                and f["expected"] != expected
            }
        )
        if same_unit and rng.random() < 0.6:
            wrong = rng.choice(same_unit)
        else:
            factor = rng.choice([0.1, 0.5, 2, 3, 10])
            number = float(value) * factor
            if unit == "%" and number > 100:  # a percentage cannot exceed 100
                number = float(value) * 0.5
            wrong = f"{fmt_number(number)} {unit}"
        if wrong == expected:
            return rng.choice(HEDGES)
        return fact["answer"].replace(expected, wrong)
    if expected in DISTRACTORS:
        return fact["answer"].replace(expected, rng.choice(DISTRACTORS[expected]))
    same_topic = sorted(
        {
            f["expected"]
            for f in pool
            if f["match"] == "contains"
            and f["topic"] == fact["topic"]
            and f["expected"] != expected
        }
    )
    same_kind = [c for c in same_topic if c.split()[0] == expected.split()[0]]
    candidates = same_kind or same_topic
    if not candidates:
        return rng.choice(HEDGES)
    out = fact["answer"].replace(expected, rng.choice(candidates))
    if re.search(re.escape(expected) + r"(?![\w.])", out, flags=re.IGNORECASE):
        return rng.choice(HEDGES)
    return out


def main() -> None:
    rng = random.Random(42)
    q1, q2, q3 = (load_quarter(n) for n in ("q1", "q2", "q3"))
    pool = q1 + q2 + q3
    general = [
        {
            "question": r["messages"][0]["content"],
            "answer": r["messages"][1]["content"],
            "domain": "general",
        }
        for r in read_jsonl(HERE.parent / "general" / "general.jsonl")
    ]

    span = int((END - START).total_seconds())
    offsets = sorted(rng.randrange(span) for _ in range(N_ROWS))
    pii_rows = set(rng.sample(range(N_ROWS), 10))
    pii_note_rows = set(rng.sample(sorted(set(range(N_ROWS)) - pii_rows), 3))

    rows = []
    for i, offset in enumerate(offsets):
        pick = rng.random()
        if pick < 0.58:
            source, fact = "q2", rng.choice(q2)
        elif pick < 0.93:
            source, fact = "q1", rng.choice(q1)
        else:
            source, fact = "general", rng.choice(general)

        question = fact["question"]
        if i in pii_rows:
            template = rng.choice(PII_INPUT_TEMPLATES)
            question = template.format(
                q=question,
                phone=rng.choice(PHONES),
                email=rng.choice(EMAILS),
                name=rng.choice(NAMES),
            )

        if source == "q2":
            output = wrong_answer(rng, fact, pool)
            confidence = rng.uniform(0.15, 0.6)
        else:
            output = fact["answer"]
            confidence = rng.uniform(0.7, 0.99)

        row = {
            "request_id": f"req-{i + 1:06d}",
            "timestamp": (START + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "input": question,
            "output": output,
            "model_version": MODEL_VERSION,
            "metadata": {
                "domain": fact["domain"],
                "confidence": round(confidence, 3),
                "latency_ms": rng.randint(90, 1400),
            },
        }

        kind = rng.random()
        if kind < 0.17:
            rows.append(row)  # no user_feedback at all
            continue
        feedback: dict = {}
        if source == "q2":
            if kind < 0.27:
                feedback["thumbs"] = -1
                correction_p = 0.3
            else:
                feedback["rating"] = rng.choice([1, 1, 2])
                correction_p = 0.7
            feedback["correction"] = fact["answer"] if rng.random() < correction_p else None
            feedback["notes"] = rng.choice(NEG_NOTES) if rng.random() < 0.35 else None
        else:
            if kind < 0.27:
                feedback["thumbs"] = 1
            else:
                feedback["rating"] = rng.choice([4, 5, 5])
            feedback["correction"] = None
            feedback["notes"] = rng.choice(POS_NOTES) if rng.random() < 0.15 else None
        if i in pii_note_rows:
            feedback["notes"] = (
                f"Follow up with me at {rng.choice(EMAILS)} or {rng.choice(PHONES)}."
            )
        row["user_feedback"] = feedback
        rows.append(row)

    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
