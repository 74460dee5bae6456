"""The continual-learning benchmark: a stream of quarterly experiences (Q1, Q2, Q3 of the
bundled firefighter facts) learned one after the other by each strategy, through the real
toolkit path: shipped recipe + overrides -> load_recipe -> train (Axolotl) -> registry ->
evaluate_version. Every registered version is asked every experience's facts, both as
trained and paraphrased, plus the general Q&A the base was pretrained on.

Plan first (`step_recipe`, `build_cases`: pure, tested exactly), then execute
(`run_benchmark`): the pretrained tiny base is built once and copied into each strategy's
own workspace, so strategies never share a registry, a merge cache or a teacher cache."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cl_toolkit import __version__
from cl_toolkit.bench import metrics
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import jsonl_bytes, sha256_file
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version
from cl_toolkit.evaluation.matchers import MATCHERS
from cl_toolkit.evaluation.suite import load_suite
from cl_toolkit.registry import VersionRecord, open_registry
from cl_toolkit.training.profiles import load_profile
from cl_toolkit.training.strategies import STRATEGIES as TRAINING_STRATEGIES
from cl_toolkit.training.strategies import load_recipe
from cl_toolkit.training.tiny_model import TinySpec, describe, make_tiny_model
from cl_toolkit.training.train import train

STREAM = ("q1", "q2", "q3")  # data/firefighter/<q>.jsonl to train, <q>_test.jsonl paraphrased
PHRASINGS = ("asked", "paraphrased")  # as in training / reworded (the bundled *_test.jsonl)
RECIPES = "recipes/firefighter"
GENERAL = "data/general/general.jsonl"
MODEL = "firefighter"


@dataclass(frozen=True)
class Variant:
    """How a line learns experiences 2..T: a training strategy (a name in
    training.strategies.STRATEGIES), the shipped recipe of it it starts from, and its
    rehearsal ratio (None: the recipe's own). Experience 1 is always recipes 1.0.0
    (initial_lora), with the same ratio of general rehearsal (None: 1.0.0's own)."""

    strategy: str
    recipe: str
    rehearsal: float | None
    about: str

    @property
    def major(self) -> bool:
        """Every experience gets a new base (merge): a major version bump."""
        return TRAINING_STRATEGIES[self.strategy].new_base


# name -> the benchmark's variant of a training strategy
STRATEGIES: dict[str, Variant] = {
    "naive": Variant("continued_lora", "1.1.0.yml", 0.0, "continued LoRA on the new quarter only, no rehearsal"),
    "continued_r0.1": Variant("continued_lora", "1.1.0.yml", 0.1, "continued LoRA, 10% rehearsal (earlier quarters + general)"),
    "continued_r0.2": Variant("continued_lora", "1.1.0.yml", 0.2, "continued LoRA, 20% rehearsal (earlier quarters + general)"),
    "continued_r0.5": Variant("continued_lora", "1.1.0.yml", 0.5, "continued LoRA, 50% rehearsal (earlier quarters + general)"),
    "merge_and_retrain": Variant("merge_and_retrain", "2.0.0.yml", None,
                                 "merge the previous version into the base; fresh LoRA on every quarter so far + general"),
    "distillation": Variant("distillation", "2.1.0.yml", None,
                            "fresh LoRA student distilled from the previous version over new + rehearsal"),
}


@dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run does. Defaults are the full benchmark (`make bench-cl`)."""

    strategies: tuple[str, ...] = tuple(STRATEGIES)
    experiences: int = len(STREAM)  # how many quarters of the stream
    max_rows: int | None = None  # facts per experience (None: all 48)
    # One training budget for every strategy and experience, so strategies differ only in
    # their data and starting point (the shipped recipes differ: 1.1.0 trains at 1e-3, and
    # at that rate a continued LoRA learned 27% of a new quarter). None: each recipe's own.
    epochs: int | None = 20
    learning_rate: float | None = 0.003
    pretrain_epochs: int | None = None  # of the tiny base (None: the profile's)
    seed: int = 42  # data.seed of every recipe (the mix and Axolotl's seed)
    threads: int = 1  # torch threads while evaluating (2 threads on a busy 2-core box: 13x slower)
    eval_batch_size: int = 64  # prompts per generate() batch
    train_threads: int = 1  # OMP/MKL threads of each training process (a hidden-64 model gains nothing from more)
    profile: str = "configs/profiles/tiny-cpu.yml"

    def check(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise BadInput(f"unknown strategy {', '.join(unknown) or '(none given)'}; known: {', '.join(STRATEGIES)}")
        if not 1 <= self.experiences <= len(STREAM):
            raise BadInput(f"experiences must be between 1 and {len(STREAM)}")


# ---- the plan: pure ----------------------------------------------------------------------

def version_of(strategy: Variant, i: int) -> str:
    return f"{i + 1}.0.0" if strategy.major else f"1.{i}.0"


def _rehearsal(ratio: float, i: int) -> str:
    sources = ([] if i == 0 else ["{parent_data: true}"]) + [f"{{path: {GENERAL}}}"]
    return f"data.rehearsal={{ratio: {ratio}, sources: [{', '.join(sources) if ratio else ''}]}}"


def step_recipe(name: str, i: int, settings: BenchSettings) -> tuple[str, list[str]]:
    """The shipped recipe (relative to the project root) and the --set overrides that make
    experience `i` (0-based) of strategy `name`."""
    s = STRATEGIES[name]
    recipe = f"{RECIPES}/{'1.0.0.yml' if i == 0 else s.recipe}"
    parent = version_of(s, i - 1) if i else None
    rows = f", max_rows: {settings.max_rows}" if settings.max_rows else ""
    overrides = [f"version={version_of(s, i)}", f"parent={parent or 'null'}",
                 f"data.train=[{{path: data/firefighter/{STREAM[i]}.jsonl{rows}}}]", f"data.seed={settings.seed}"]
    if s.rehearsal is not None:
        overrides.append(_rehearsal(s.rehearsal, i))
    if settings.epochs:
        overrides.append(f"train.num_epochs={settings.epochs}")
    if settings.learning_rate:
        overrides.append(f"train.learning_rate={settings.learning_rate}")
    if i:  # versions the shipped recipe names (distillation's teacher) become the previous one
        overrides += [f"{key}={parent}" for key in TRAINING_STRATEGIES[s.strategy].parent_refs]
    return recipe, overrides


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_cases(root: Path, experiences: int, max_rows: int | None) -> list[dict]:
    """The benchmark's suite: for each experience its facts asked as trained and
    paraphrased (ids `<q>/<phrasing>/<n>`), then the general Q&A (`general/<n>`, exact).
    The bundled test files hold one paraphrase per training row, in the same order: each
    pairing is checked (the expected value must match the training answer)."""
    cases = []
    for q in STREAM[:experiences]:
        train = _read_jsonl(root / "data" / "firefighter" / f"{q}.jsonl")[:max_rows]
        tests = _read_jsonl(root / "data" / "firefighter" / f"{q}_test.jsonl")[:max_rows]
        for n, (row, case) in enumerate(zip(train, tests, strict=True), 1):
            question, answer = row["messages"][0]["content"], row["messages"][-1]["content"]
            if not MATCHERS[case["match"]](answer, case["expected"], case.get("tolerance", 0.0)):
                raise BadInput(f"{q}_test.jsonl case {n} ({case['expected']!r}) does not match {q}.jsonl row {n}")
            cases.append({**case, "id": f"{q}/asked/{n:03d}", "input": question,
                          "tags": [t for t in case.get("tags", []) if t != "paraphrase"] + ["asked"]})
            cases.append({**case, "id": f"{q}/paraphrased/{n:03d}"})
    for n, row in enumerate(_read_jsonl(root / GENERAL), 1):
        cases.append({"id": f"general/{n:03d}", "input": row["messages"][0]["content"],
                      "expected": row["messages"][-1]["content"], "match": "exact", "criticality": "low",
                      "domain": "general", "tags": ["general"]})
    return cases


def split_accuracy(cases: list[dict], experiences: int) -> dict:
    """Accuracy per phrasing per experience, and on the general Q&A, from scored cases."""
    def acc(prefix: str) -> float:
        hits = [c["passed"] for c in cases if c["id"].startswith(prefix)]
        return round(sum(hits) / len(hits), 6)

    out = {p: [acc(f"{q}/{p}/") for q in STREAM[:experiences]] for p in PHRASINGS}
    return {**out, "general": acc("general/")}


# ---- execution ---------------------------------------------------------------------------

def prepare_base(out: Path, spec: TinySpec, root: Path, say: Callable[[str], None]) -> dict:
    """The pretrained tiny base, built once (reused while its spec is unchanged)."""
    spec_file = out / "tiny_spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) == asdict(spec):
        return {**describe(out), "spec": asdict(spec), "reused": True, "build_seconds": None}
    say(f"building the tiny base: random init, then {spec.pretrain_epochs} epochs of full fine-tuning through Axolotl")
    start = time.monotonic()
    make_tiny_model(out, spec, root)
    return {**describe(out), "spec": asdict(spec), "reused": False, "build_seconds": round(time.monotonic() - start, 2)}


def evaluate(ws: Path, rec: VersionRecord, suite, settings: BenchSettings) -> dict:
    start = time.monotonic()
    result = evaluate_version(ws, rec, suite, EvalSettings(batch_size=settings.eval_batch_size, threads=settings.threads), fresh=True)
    return {**split_accuracy(result["cases"], settings.experiences), "eval_seconds": round(time.monotonic() - start, 2)}


def base_record(base: Path) -> VersionRecord:
    """The pretrained base as a pseudo-version (no adapter), so it is scored the same way."""
    sha = sha256_file(base / "model.safetensors")
    return VersionRecord(model=MODEL, version="0.0.0", parent=None, strategy="base", base_model=str(base),
                         recipe_sha256=sha, data_sha256=sha, run_dir=str(base), adapter_dir=None)


def run_step(name: str, i: int, ws: Path, reg, suite, settings: BenchSettings, root: Path) -> dict:
    """Train experience `i` of strategy `name` in workspace `ws`, then evaluate the version."""
    recipe, overrides = step_recipe(name, i, settings)
    lr = load_recipe(root / recipe, overrides, workspace=ws)
    start = time.monotonic()
    rec = train(lr, reg).record
    wall = time.monotonic() - start
    run = Path(rec.run_dir)
    mix = json.loads((run / "manifest.json").read_text())["mix"]
    summary = next((x for x in json.loads((run / "metrics.json").read_text())["losses"] if "train_runtime" in x), {})
    return {"experience": STREAM[i], "version": rec.version, "parent": rec.parent, "strategy": rec.strategy,
            "recipe": recipe, "recipe_sha256": lr.sha256, "overrides": overrides, "base_model": rec.base_model,
            "mix": mix, "train_loss": rec.metrics.get("train_loss"),
            "trainer_seconds": summary.get("train_runtime"),  # Axolotl's training loop alone
            "train_seconds": rec.train_seconds,  # the whole training process, imports included
            "step_seconds": round(wall, 2),  # render (merge, teacher log-probs) + training process
            **evaluate(ws, rec, suite, settings)}


def run_strategy(name: str, work: Path, base: Path, suite, settings: BenchSettings, root: Path,
                 say: Callable[[str], None]) -> dict:
    """Learn the stream with one strategy in a fresh workspace; its matrices and metrics."""
    ws = work / "strategies" / name
    shutil.rmtree(ws, ignore_errors=True)
    shutil.copytree(base, ws / "models" / "tiny-llama")
    steps = []
    with open_registry(ws) as reg:
        for i in range(settings.experiences):
            say(f"[{name}] experience {i + 1}/{settings.experiences} ({STREAM[i]})")
            steps.append(run_step(name, i, ws, reg, suite, settings, root))
            say(f"[{name}] {steps[-1]['version']}: trained in {steps[-1]['step_seconds']:.0f} s; as trained "
                f"{_pct(steps[-1]['asked'])}, paraphrased {_pct(steps[-1]['paraphrased'])}, general {steps[-1]['general']:.0%}")
    return {"about": STRATEGIES[name].about, "workspace": str(ws), "steps": steps,
            "metrics": {p: metrics.summarize([s[p] for s in steps]) for p in PHRASINGS},
            "general": [s["general"] for s in steps],
            **{k: round(sum(s[k] or 0 for s in steps), 2) for k in ("trainer_seconds", "train_seconds", "step_seconds")}}


def _pct(values: list[float]) -> str:
    return "/".join(f"{v:.0%}" for v in values)


@contextmanager
def thread_env(n: int) -> Iterator[None]:
    """Training processes inherit our environment (train_env): pin their OMP/MKL threads,
    then restore. On a shared 2-core machine oversubscribed threads mostly wait."""
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: str(n) for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def machine() -> dict:
    """Where the numbers were measured: cores, load, and the versions of what trained."""
    from importlib.metadata import version

    return {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            **{pkg: version(pkg) for pkg in ("torch", "axolotl", "transformers", "peft", "accelerate")},
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def run_benchmark(root: Path, work: Path, settings: BenchSettings, say: Callable[[str], None] = lambda m: None) -> dict:
    """Run every strategy over the stream; the whole result document (see write_results)."""
    settings.check()
    start, started_at = time.monotonic(), utc_now()
    host = machine()
    profile = load_profile(root / settings.profile, root, work)
    spec = profile.tiny_model or TinySpec()
    if settings.pretrain_epochs is not None:
        spec = replace(spec, pretrain_epochs=settings.pretrain_epochs)
    base_dir = work / "base" / "tiny-llama"
    (work / "suite.jsonl").parent.mkdir(parents=True, exist_ok=True)
    (work / "suite.jsonl").write_bytes(jsonl_bytes(build_cases(root, settings.experiences, settings.max_rows)))
    suite = load_suite(work / "suite.jsonl")
    with thread_env(settings.train_threads):
        base = prepare_base(base_dir, spec, root, say)
        base["accuracy"] = evaluate(work / "base", base_record(base_dir), suite, settings)
        results = {name: run_strategy(name, work, base_dir, suite, settings, root, say) for name in settings.strategies}
    return {
        "benchmark": "continual-learning", "toolkit_version": __version__, "started_at": started_at,
        "wall_seconds": round(time.monotonic() - start, 2),
        "machine": {**host, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {**asdict(settings), "strategies": list(settings.strategies)},
        "stream": [{"experience": q, "train": f"data/firefighter/{q}.jsonl", "test": f"data/firefighter/{q}_test.jsonl",
                    "facts": sum(c["id"].startswith(f"{q}/asked/") for c in suite_rows(suite))}
                   for q in STREAM[:settings.experiences]],
        "suite": {"path": str(work / "suite.jsonl"), "sha256": suite.sha256, "cases": len(suite.cases)},
        "profile": {"path": settings.profile, "sha256": sha256_file(root / settings.profile)},
        "base": base, "strategies": results,
    }


def suite_rows(suite) -> list[dict]:
    return [c.as_dict() for c in suite.cases]
