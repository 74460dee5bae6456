"""Helpers shared by the monitoring tests (no tests here): seeded synthetic traffic written
through the feedback store's API, and a registry model line with a champion.

Traffic is deterministic: the same arguments give the same rows, and the number of
positive ratings is exact (round(rated * positive_rate)), so tests can aim at thresholds.
"""

from __future__ import annotations

import random
from pathlib import Path

from test_registry_support import add_version

from cl_toolkit.feedback.records import check_feedback, check_prediction
from cl_toolkit.feedback.store import open_store
from cl_toolkit.monitoring.windows import shift
from cl_toolkit.registry import open_registry, promote, record_gate

__test__ = False
DOMAINS = ("hose", "ventilation", "hazmat", "ems")


def traffic(prefix: str, version: str, start: str, *, days: float = 7, n: int = 200,
            positive_rate: float = 0.9, rated_share: float = 1.0, seed: int = 0,
            latency: tuple[float, float] = (300.0, 40.0), domains: tuple = DOMAINS,
            domain_weights: tuple | None = None, prompt_words: tuple[int, int] = (8, 20),
            quality: tuple[float, float] | None = (0.8, 0.05), model: str | None = None) -> list[dict]:
    """n predictions spread evenly over `days` from `start`, with feedback on a share."""
    rng = random.Random(seed)
    rated = round(n * rated_share)
    positives = round(rated * positive_rate)
    verdicts = ["pos"] * positives + ["neg"] * (rated - positives) + [None] * (n - rated)
    rng.shuffle(verdicts)
    rows = []
    for k, verdict in enumerate(verdicts):
        words = rng.randint(*prompt_words)
        rows.append({
            "request_id": f"{prefix}-{k:05d}", "timestamp": shift(start, days * k / n),
            "input": " ".join(rng.choice(("nozzle", "pressure", "ladder", "crew", "smoke")) for _ in range(words)),
            "output": "answer " * rng.randint(3, 12), "model_version": version,
            "domain": rng.choices(domains, weights=domain_weights)[0],
            "confidence": min(1.0, max(0.0, rng.gauss(0.8, 0.1))),
            "latency_ms": max(1.0, rng.gauss(*latency)),
            "quality_score": rng.gauss(*quality) if quality else None,
            "metadata": {"model": model} if model else None,
            "feedback": _feedback(rng, verdict)})
    return rows


def _feedback(rng: random.Random, verdict: str | None) -> list[dict]:
    if verdict is None:
        return []
    if verdict == "pos":
        return [rng.choice(({"rating": 5}, {"rating": 4}, {"thumbs": 1}))]
    return [rng.choice(({"rating": 1}, {"rating": 2}, {"rating": 3}, {"thumbs": -1}))]


def seed_store(workspace: Path, rows: list[dict]) -> None:
    """Write rows and their feedback through the store's bulk API, in one transaction."""
    predictions, feedback = [], []
    for r in rows:
        predictions.append(check_prediction(
            r["request_id"], r["input"], r["output"], r["model_version"], timestamp=r["timestamp"],
            domain=r.get("domain"), confidence=r.get("confidence"), latency_ms=r.get("latency_ms"),
            quality_score=r.get("quality_score"), metadata=r.get("metadata")))
        for fb in r.get("feedback", []):
            fb = {"timestamp": r["timestamp"], **fb}
            feedback.append(check_feedback(r["request_id"], **fb))
    with open_store(workspace) as store, store.transaction():
        store.insert_predictions(predictions)
        if feedback:
            store.upsert_feedback(feedback)


def line_with_champion(workspace: Path, model: str = "ff") -> str:
    """Register 1.0.0 and 1.1.0 of `model`; 1.0.0 was champion, 1.1.0 is now (gated).
    Returns 1.1.0's release time: its promote event's timestamp."""
    with open_registry(workspace) as reg:
        add_version(reg, workspace, "1.0.0", model=model)
        add_version(reg, workspace, "1.1.0", "1.0.0", model=model)
        promote(reg, model, "1.0.0", reason="first release")
        record_gate(workspace, model, "1.1.0", {"candidate": "1.1.0", "baseline": "1.0.0", "passed": True})
        promote(reg, model, "1.1.0", reason="gate passed")
        return [e for e in reg.events(model) if e.action == "promote" and e.version == "1.1.0"][-1].at
