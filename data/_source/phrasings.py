"""Write the general questions in other wordings: two for pretraining the tiny base
(data/general/general_phrasings.jsonl) and one held out, never trained on, to measure
whether the base answers a question it was not asked that way
(data/general/general_heldout.jsonl). Answers are the training answers, word for word.

Capitals and arithmetic are reworded (`Which city is the capital of France?`, `How much is 7
plus 8?`); the other questions get a framing around the same words (`Question: ...`), so their
held-out score measures robustness to framing, not to rewording. Deterministic:
`python3 data/_source/phrasings.py` from the repository root."""

from __future__ import annotations

import json
import re
from pathlib import Path

GENERAL = Path("data/general")
CAPITAL = re.compile(r"What is the capital of (.+)\?")
ARITHMETIC = re.compile(r"What is (.+ (?:plus|minus|times|divided by) .+|the square root of .+|.+ squared"
                        r"|.+ to the power of .+|half of .+|.+ percent of .+)\?")


def wordings(question: str) -> tuple[list[str], str]:
    """(training wordings, the held-out one) of a general question."""
    if m := CAPITAL.fullmatch(question):
        return [f"Which city is the capital of {m[1]}?", f"Name the capital of {m[1]}."], \
            f"What is the capital city of {m[1]}?"
    if m := ARITHMETIC.fullmatch(question):
        return [f"How much is {m[1]}?", f"Calculate {m[1]}."], f"What do you get for {m[1]}?"
    return [f"Question: {question}", f"Tell me: {question}"], f"Quick question: {question}"


def chat(question: str, answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]},
                      ensure_ascii=False)


def main() -> None:
    rows = [json.loads(line) for line in (GENERAL / "general.jsonl").read_text(encoding="utf-8").splitlines() if line]
    train, held = [], []
    for row in rows:
        question, answer = row["messages"][0]["content"], row["messages"][-1]["content"]
        others, kept = wordings(question)
        train += [chat(q, answer) for q in others]
        held.append(chat(kept, answer))
    for name, lines in (("general_phrasings.jsonl", train), ("general_heldout.jsonl", held)):
        (GENERAL / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(train)} training and {len(held)} held-out wordings to {GENERAL}")


if __name__ == "__main__":
    main()
