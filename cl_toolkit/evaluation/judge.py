"""Judges: score an answer against the expected one when no deterministic matcher fits
(suite cases with `match: judge`). A judge is any callable

    judge(question: str, answer: str, expected: str) -> float   # 0.0 wrong .. 1.0 right

with a `name` attribute (recorded with the results, part of the cache key). A judge may
also offer `batch(items) -> list[float]` to score many at once. Deterministic matchers
stay the default; a judge is used only where a suite asks for one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from cl_toolkit.evaluation.generate import LoadedModel, build_prompts, load_model

PASS_THRESHOLD = 0.5

JUDGE_PROMPT = (
    "You are grading an answer.\n"
    "Question: {question}\n"
    "Reference answer: {expected}\n"
    "Answer to grade: {answer}\n"
    "Does the answer to grade say the same as the reference answer? Reply yes or no."
)


class Judge(Protocol):
    name: str

    def __call__(self, question: str, answer: str, expected: str) -> float: ...


def judge_all(judge: Callable[[str, str, str], float], items: Sequence[tuple[str, str, str]]) -> list[float]:
    """Scores for (question, answer, expected) items, batched when the judge can."""
    batch = getattr(judge, "batch", None)
    if callable(batch):
        return [float(s) for s in batch(list(items))]
    return [float(judge(q, a, e)) for q, a, e in items]


class LocalModelJudge:
    """LLM-as-judge on a local causal LM: the probability that its next token after the
    grading prompt is "yes" rather than "no". One forward pass per batch, no sampling,
    so the scores are deterministic."""

    def __init__(self, lm: LoadedModel, batch_size: int = 16, name: str | None = None):
        self.lm = lm
        self.batch_size = batch_size
        self.name = name or f"local:{lm.source}"
        self._yes = self._first_tokens(["yes", "Yes", " yes", " Yes"])
        self._no = self._first_tokens(["no", "No", " no", " No"])

    @classmethod
    def from_path(cls, base_model: str, adapter_dir: str | None = None, device: str | None = None) -> LocalModelJudge:
        return cls(load_model(base_model, adapter_dir, device))

    def _first_tokens(self, words: list[str]) -> list[int]:
        ids = {self.lm.tokenizer.encode(w, add_special_tokens=False)[0] for w in words}
        return sorted(ids)

    def __call__(self, question: str, answer: str, expected: str) -> float:
        return self.batch([(question, answer, expected)])[0]

    def batch(self, items: list[tuple[str, str, str]]) -> list[float]:
        import torch

        texts = [JUDGE_PROMPT.format(question=q, answer=a, expected=e) for q, a, e in items]
        prompts = build_prompts(self.lm.tokenizer, texts)
        scores: list[float] = []
        for b in range(0, len(prompts), self.batch_size):
            enc = self.lm.tokenizer(prompts[b:b + self.batch_size], return_tensors="pt", padding=True,
                                    add_special_tokens=False).to(self.lm.device)
            with torch.no_grad():
                logits = self.lm.model(**enc).logits[:, -1, :].float()  # left padding: last is real
            yes = torch.logsumexp(logits[:, self._yes], dim=-1)
            no = torch.logsumexp(logits[:, self._no], dim=-1)
            scores += torch.sigmoid(yes - no).tolist()
        return scores


def load_judge(spec: str, workspace, device: str | None = None) -> LocalModelJudge:
    """A local-model judge from `MODEL@VERSION` (a registered version) or a model folder."""
    from pathlib import Path

    from cl_toolkit.core.errors import BadInput
    from cl_toolkit.registry import open_registry

    if Path(spec).is_dir():
        return LocalModelJudge(load_model(str(Path(spec).resolve()), None, device), name=f"local:{spec}")
    model, sep, version = spec.partition("@")
    if not sep:
        raise BadInput(f"--judge: {spec!r} is neither a model folder nor MODEL@VERSION")
    with open_registry(workspace) as reg:
        rec = reg.resolve(model, version)  # MODEL@champion works too; the name keys the cache by version
    return LocalModelJudge(load_model(rec.base_model, rec.adapter_dir, device), name=f"registry:{model}@{rec.version}")
