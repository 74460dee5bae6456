"""Evaluate a version on a suite: generate, score every case, summarise by domain and
criticality. Results are cached at `<workspace>/evals/<model>/<version>/<suite_sha256>.json`
(a version is immutable, so the same suite and settings give the same answers: a gate
evaluates its baseline once) and every fresh evaluation joins the model's history.

With `samples` > 1 every case is answered that many times at `temperature` (seeded): each
case gets its `pass_rate` (share of samples that pass) and `passed` = rate >= 0.5, the
accuracies are mean pass rates, and the cache file is
`<suite_sha256>-s<samples>-t<temperature>-seed<seed>.json`, next to the greedy one.

A suite narrowed to some domains (`clt eval --domain`, suite.only_domains) is cached apart,
`<suite_sha256>...-domains-<hash of the names>.json`, its result names the `domains` and
the suite's full `suite_cases`, and it joins neither the model's history nor (matrix.py)
the registry's scores: the suite's score is always over every case."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit import __version__
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_write_json, sha256_bytes
from cl_toolkit.core.progress import Bar, clock
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.core.workspace import relative_inside, workspace_ref
from cl_toolkit.evaluation import history
from cl_toolkit.evaluation.generate import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    Generation,
    generate,
    load_model,
    pick_device,
    torch_threads,
)
from cl_toolkit.evaluation.judge import PASS_THRESHOLD, judge_all
from cl_toolkit.evaluation.matchers import MATCHERS
from cl_toolkit.evaluation.suite import CRITICALITIES, JUDGE_MATCH, Case, Suite
from cl_toolkit.registry import VersionRecord


@dataclass(frozen=True)
class EvalSettings:
    """How answers are produced; part of the cache key (each can change an answer)."""

    batch_size: int = DEFAULT_BATCH_SIZE
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    device: str = "auto"
    threads: int | None = None  # torch CPU threads during generation; None keeps torch's default
    samples: int = 1  # answers per case; above 1 they are sampled at `temperature` from `seed`
    temperature: float = 0.7
    seed: int = 0

    def key(self, judge_name: str | None) -> dict:
        key = {"batch_size": self.batch_size, "max_new_tokens": self.max_new_tokens,
               "device": pick_device(self.device), "decoding": "greedy", "judge": judge_name}
        if self.samples > 1:
            key.update(decoding="sampled", samples=self.samples, temperature=self.temperature, seed=self.seed)
        return key

    def variant(self) -> str:
        """The cache file's suffix: empty for greedy answers."""
        return f"-s{self.samples}-t{self.temperature:g}-seed{self.seed}" if self.samples > 1 else ""


def require_judge(cases, judge) -> None:
    """Cases with `match: judge` cannot be scored without a judge: say so before generating."""
    judged = [c.id for c in cases if c.match == JUDGE_MATCH]
    if judged and judge is None:
        raise BadInput(f"{len(judged)} case(s) use match: judge (first: {judged[0]}); pass --judge")


def score_cases(cases: tuple[Case, ...] | list[Case], outputs: list[str],
                judge: Callable[[str, str, str], float] | None = None,
                samples: list[list[str]] | None = None) -> list[dict]:
    """One result per case: the case, the output, passed (and the judge's score). With
    `samples` (every answer per case) each sample is scored: `outputs` and `pass_rate` join
    the row, and passed is pass_rate >= 0.5."""
    if samples is not None:
        return _score_samples(cases, samples, judge)
    require_judge(cases, judge)
    judged = [i for i, c in enumerate(cases) if c.match == JUDGE_MATCH]
    items = [(cases[i].input, outputs[i], cases[i].expected) for i in judged]
    scores = dict(zip(judged, judge_all(judge, items), strict=True)) if judged else {}
    rows = []
    for i, (case, output) in enumerate(zip(cases, outputs, strict=True)):
        row = {**case.as_dict(), "output": output}
        if i in scores:
            row["score"] = round(scores[i], 6)
            row["passed"] = scores[i] >= PASS_THRESHOLD
        else:
            row["passed"] = bool(MATCHERS[case.match](output, case.expected, case.tolerance))
        rows.append(row)
    return rows


def _score_samples(cases, samples: list[list[str]], judge) -> list[dict]:
    flat_cases = [case for case, answers in zip(cases, samples, strict=True) for _ in answers]
    flat = score_cases(flat_cases, [a for answers in samples for a in answers], judge)
    rows, at = [], 0
    for case, answers in zip(cases, samples, strict=True):
        scored = flat[at:at + len(answers)]
        at += len(answers)
        rate = sum(r["passed"] for r in scored) / len(scored)
        row = {**case.as_dict(), "output": answers[0], "outputs": list(answers),
               "pass_rate": round(rate, 6), "passed": rate >= 0.5}
        if "score" in scored[0]:
            row["scores"] = [r["score"] for r in scored]
        rows.append(row)
    return rows


def _tally(rows: list[dict]) -> dict:
    passed = sum(r["passed"] for r in rows)
    out = {"passed": passed, "total": len(rows), "accuracy": round(passed / len(rows), 6) if rows else 0.0}
    if rows and any("pass_rate" in r for r in rows):  # sampled: accuracy is the mean pass rate
        out["accuracy"] = round(sum(r.get("pass_rate", float(r["passed"])) for r in rows) / len(rows), 6)
    return out


def summarize(rows: list[dict]) -> dict:
    """Accuracy overall, per domain and per criticality (only those present)."""
    domains = sorted({r["domain"] for r in rows})
    crits = [c for c in CRITICALITIES if any(r["criticality"] == c for r in rows)]
    return {**_tally(rows),
            "per_domain": {d: _tally([r for r in rows if r["domain"] == d]) for d in domains},
            "per_criticality": {c: _tally([r for r in rows if r["criticality"] == c]) for c in crits}}


def domain_variant(domains: tuple[str, ...]) -> str:
    """The cache file's suffix for a suite narrowed to `domains`: empty for the whole suite
    (domain names are free text: the file name holds a hash of them, the result the names)."""
    return f"-domains-{sha256_bytes(chr(10).join(domains).encode())[:12]}" if domains else ""


def cache_path(workspace: Path, model: str, version: str, suite_sha256: str, variant: str = "") -> Path:
    return history.evals_dir(workspace, model) / version / f"{suite_sha256}{variant}.json"


def fingerprint(rec: VersionRecord, workspace: Path) -> str:
    """What makes a version's weights: a retrained workspace must not reuse old results.
    Paths inside the workspace count relative to it, so a moved workspace keeps its cache."""
    weights = workspace_ref(rec.adapter_dir or rec.base_model, workspace)
    return f"{rec.recipe_sha256}:{rec.data_sha256}:{rec.created_at}:{weights}"


def suite_label(suite: Suite, workspace: Path) -> str:
    """How results name a suite: `workspace:...` for one in the workspace, else as shown
    (relative to the current folder when it is below it): never this machine's workspace path."""
    ref = workspace_ref(str(suite.path), Path(workspace))
    return ref if ref != str(suite.path) else suite.name


def _narrowed(suite: Suite) -> dict:
    """What a result says of a suite narrowed to some domains ({} for the whole suite)."""
    return {"domains": list(suite.domains), "suite_cases": suite.total} if suite.domains else {}


def build_result(rec: VersionRecord, suite: Suite, rows: list[dict], gen: Generation, settings: dict,
                 workspace: Path) -> dict:
    return {
        "model": rec.model, "version": rec.version, "suite": suite_label(suite, workspace),
        "suite_sha256": suite.sha256, **_narrowed(suite), "version_fingerprint": fingerprint(rec, workspace), "settings": settings, **summarize(rows),
        "performance": {"seconds": round(gen.seconds, 4), "generated_tokens": sum(gen.new_tokens),
                        "tokens_per_second": round(gen.tokens_per_second, 2),
                        "peak_memory_mb": round(gen.peak_memory_mb, 1), "device": settings["device"],
                        "batch_size": settings["batch_size"]},
        "evaluated_at": utc_now(), "toolkit_version": __version__,
        "cases": [{**r, "new_tokens": n} for r, n in zip(rows, gen.new_tokens, strict=True)],
    }


def _cached(path: Path, rec: VersionRecord, settings: dict, workspace: Path, suite: Suite) -> dict | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # a damaged cache entry is recomputed, never trusted
    ok = (doc.get("version_fingerprint") == fingerprint(rec, workspace) and doc.get("settings") == settings
          and doc.get("domains", []) == list(suite.domains))
    return doc if ok else None


def _evaluate_now(workspace: Path, rec: VersionRecord, suite: Suite, settings: EvalSettings,
                  judge: Callable[[str, str, str], float] | None, key: dict) -> dict:
    """Load, answer and score, with a bar of cases answered on stderr."""
    with Bar(f"evaluating {rec.model} {rec.version} on {Path(suite.path).stem}", len(suite.cases), unit="cases") as bar:
        bar.update(phase="loading the model")
        lm = load_model(rec.base_model, rec.adapter_dir, settings.device)
        bar.update(0, phase="answering")
        with torch_threads(settings.threads):
            gen = generate(lm, [c.input for c in suite.cases], settings.batch_size, settings.max_new_tokens,
                           samples=settings.samples, temperature=settings.temperature, seed=settings.seed,
                           on_batch=bar.update)
        bar.update(phase="judging" if judge else "scoring")
        doc = build_result(rec, suite, score_cases(suite.cases, gen.outputs, judge, gen.samples), gen, key, workspace)
        bar.finish(f"{doc['passed']}/{doc['total']} passed ({doc['accuracy']:.1%}) in {clock(bar.elapsed())}")
    return doc


def evaluate_version(workspace: Path, rec: VersionRecord, suite: Suite, settings: EvalSettings | None = None,
                     judge: Callable[[str, str, str], float] | None = None, fresh: bool = False) -> dict:
    """Evaluate `rec` on `suite`, from the cache when possible. The returned result has
    `cached` (bool) and `cache_path` (relative to the workspace) added; neither is stored."""
    settings = settings or EvalSettings()
    require_judge(suite.cases, judge)
    key = settings.key(getattr(judge, "name", None) if judge else None)
    variant = settings.variant() + domain_variant(suite.domains)
    path = cache_path(workspace, rec.model, rec.version, suite.sha256, variant)
    where = relative_inside(str(path), Path(workspace))  # gate.json keeps it: no machine's path
    doc = None if fresh else _cached(path, rec, key, workspace, suite)
    if doc is None:
        doc = _evaluate_now(workspace, rec, suite, settings, judge, key)
        atomic_write_json(path, doc)
        if not suite.domains:  # part of a suite is not the suite's score: the history keeps only whole ones
            history.append_evaluation(workspace, doc)
        return {**doc, "cached": False, "cache_path": where}
    return {**doc, "cached": True, "cache_path": where}
