"""Score an adapter that is not (yet) a registered version on some suites: what a strategy's
finish step hands to `Strategy.finish` as its scorer (merge_adapters scores each merge weight
it tries). The same generation and matchers as `evaluate.py`; no cache, no history: a
candidate is thrown away unless it is chosen, and then it is evaluated as a version."""

from __future__ import annotations

from pathlib import Path

from cl_toolkit.evaluation.evaluate import EvalSettings, score_cases, summarize
from cl_toolkit.evaluation.generate import generate, load_model, torch_threads
from cl_toolkit.evaluation.suite import load_suite


def adapter_scorer(settings: EvalSettings | None = None):
    """A scorer: (base_model, adapter_dir, {name: suite JSONL}) -> {name: accuracy}, greedy."""
    settings = settings or EvalSettings()

    def score(base_model: str, adapter_dir: Path, suites: dict[str, Path]) -> dict[str, float]:
        loaded = {name: load_suite(path) for name, path in suites.items()}
        lm = load_model(base_model, str(adapter_dir), settings.device)
        out = {}
        with torch_threads(settings.threads):
            for name, suite in loaded.items():
                gen = generate(lm, [c.input for c in suite.cases], settings.batch_size, settings.max_new_tokens)
                out[name] = summarize(score_cases(suite.cases, gen.outputs))["accuracy"]
        return out

    return score
