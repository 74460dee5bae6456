"""The continual-learning benchmark: a stream of experiences (a stream file, bench/stream.py)
learned one after the other by each strategy, with several seeds, through the real toolkit
path: recipe + overrides -> load_recipe -> train (Axolotl) -> registry -> evaluate_version.
Every registered version is asked every experience's test suites and the stream's general
questions, which the base is asked too.

Plan first (`step_recipe`, `build_cases`, `plan_steps`: pure, tested exactly), then execute
(`run_benchmark`): a tiny base is built once and copied into each (strategy, seed)'s own
workspace, so runs never share a registry, a merge cache or a teacher cache. Numbers are
summarised over the seeds in bench/stats.py."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cl_toolkit import __version__
from cl_toolkit.bench import stats
from cl_toolkit.bench.stream import StrategySpec, Stream
from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import atomic_write_json, jsonl_bytes, sha256_bytes, sha256_file
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.core.workspace import portable_path, resolve_path
from cl_toolkit.core.yamlio import display, dump_yaml, read_yaml
from cl_toolkit.evaluation.candidate import adapter_scorer
from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version
from cl_toolkit.evaluation.suite import load_suite, parse_suite
from cl_toolkit.recipe.model import thaw
from cl_toolkit.registry import VersionRecord, open_registry
from cl_toolkit.training.profiles import load_profile
from cl_toolkit.training.strategies import STRATEGIES as TRAINING_STRATEGIES
from cl_toolkit.training.strategies import load_recipe
from cl_toolkit.training.tiny_model import TinySpec, describe, make_tiny_model
from cl_toolkit.training.train import train

GENERAL = "general"  # the prefix of the general questions' case ids
FIRSTS = "firsts"  # under the work folder: one workspace per distinct first experience


@dataclass(frozen=True)
class BenchSettings:
    """What one run of a stream does. None everywhere: the stream file's own."""

    strategies: tuple[str, ...] | None = None  # a subset of the stream's, in this order
    experiences: int | None = None  # only the first N experiences
    seeds: tuple[int, ...] | None = None
    max_rows: int | None = None  # rows of each training file and cases of each test suite (the first N)
    epochs: int | None = None  # train.num_epochs of every training (over the stream's budget)
    learning_rate: float | None = None
    pretrain_epochs: int | None = None  # of the tiny base (None: the profile's)
    threads: int = 1  # torch threads while evaluating (2 threads on a busy 2-core box: 13x slower)
    eval_batch_size: int = 64  # prompts per generate() batch
    train_threads: int = 1  # OMP/MKL threads of each training process (a hidden-64 model gains nothing from more)
    jobs: int = 1  # (strategy, seed) lines trained at once, each in its own worker process
    fresh: bool = False  # train everything again, even what an earlier run kept with the same inputs


def narrow(stream: Stream, settings: BenchSettings) -> Stream:
    """The stream as this run sees it: its strategies, experiences and seeds narrowed."""
    names = [s.name for s in stream.strategies]
    wanted = settings.strategies or tuple(names)
    unknown = [s for s in wanted if s not in names]
    if unknown:
        raise BadInput(f"unknown strategy {', '.join(unknown)} (the stream {stream.path} has: {', '.join(names)})")
    n = settings.experiences or len(stream.experiences)
    if not 1 <= n <= len(stream.experiences):
        raise BadInput(f"experiences must be between 1 and {len(stream.experiences)} (the stream's)")
    if settings.seeds is not None and (not settings.seeds or len(set(settings.seeds)) != len(settings.seeds)):
        raise BadInput("seeds must be distinct, at least one")
    return replace(stream, strategies=tuple(stream.strategy(s) for s in wanted), experiences=stream.experiences[:n],
                   seeds=tuple(settings.seeds or stream.seeds))


# ---- the plan: pure ----------------------------------------------------------------------

def _recipe_strategy(root: Path, recipe: str) -> str:
    return read_yaml(root / recipe)["strategy"]


def version_of(major: bool, i: int) -> str:
    """Experience i's version: a major bump per experience when every one gets a new base."""
    return f"{i + 1}.0.0" if major else f"1.{i}.0"


def yaml_value(value) -> str:
    """A value as `--set` reads it back (one line of flow-style YAML)."""
    return dump_yaml(value, default_flow_style=True, width=1 << 30).strip().removesuffix("...").strip()


SELF_PROMPTS = 100_000  # self rehearsal: every earlier prompt (n caps the prompts drawn)
OLD_SOURCES = {"replay": ["{parent_data: true}"], "none": [],
               "self": [f"{{self_rehearsal: {{prompts: {{parent_data: true}}, n: {SELF_PROMPTS}}}}}"]}


def _rehearsal(ratio: float, i: int, sources: tuple[str, ...], old_data: str = "replay") -> str:
    items = (OLD_SOURCES[old_data] if i else []) + [f"{{path: {p}}}" for p in sources]
    return f"data.rehearsal={{ratio: {ratio}, sources: [{', '.join(items) if ratio else ''}]}}"


def is_major(spec: StrategySpec, root: Path) -> bool:
    """Whether every later experience gets a new base (merge): a major version bump each."""
    return TRAINING_STRATEGIES[_recipe_strategy(root, spec.recipe)].new_base


def step_recipe(stream: Stream, spec: StrategySpec, i: int, seed: int, settings: BenchSettings,
                root: Path) -> tuple[str, list[str]]:
    """The recipe (relative to the project root) and the --set overrides that make
    experience `i` (0-based) of strategy `spec` with `seed`."""
    exp, major = stream.experiences[i], is_major(spec, root)
    parent = version_of(major, i - 1) if i else None
    rows = f", max_rows: {settings.max_rows}" if settings.max_rows else ""
    train = ", ".join(f"{{path: {p}{rows}}}" for p in exp.train)
    overrides = [f"version={version_of(major, i)}", f"parent={parent or 'null'}", f"data.train=[{train}]",
                 f"data.seed={seed}"]
    if spec.rehearsal is not None:
        overrides.append(_rehearsal(spec.rehearsal, i, stream.rehearsal_sources, spec.old_data))
    budget = dict(stream.budget)
    budget.update({k: v for k, v in (("num_epochs", settings.epochs), ("learning_rate", settings.learning_rate)) if v})
    overrides += [f"train.{k}={yaml_value(v)}" for k, v in budget.items()]
    recipe = spec.first if i == 0 else spec.recipe
    if i:  # versions the recipe names (distillation's teacher) become the previous one
        overrides += [f"{key}={parent}" for key in TRAINING_STRATEGIES[_recipe_strategy(root, recipe)].parent_refs]
    overrides += [f"{k}={yaml_value(v)}" for k, v in (spec.first_set if i == 0 else spec.set)]
    return recipe, overrides


def plan_steps(stream: Stream, settings: BenchSettings, root: Path, workspace: Path) -> dict:
    """Every step's recipe and overrides, per strategy, for the first seed; each loaded
    (validated) now, so a bad recipe or override stops the run before any training.
    Problems name the stream file and the strategy."""
    plan, problems = {}, []
    for spec in stream.strategies:
        steps = []
        for i, exp in enumerate(stream.experiences):
            recipe, overrides = step_recipe(stream, spec, i, stream.seeds[0], settings, root)
            try:
                load_recipe(root / recipe, overrides, workspace=workspace)
            except BadInput as e:
                problems += [Problem(stream.path, f"strategy {spec.name}, experience {exp.name}: {p}",
                                     key=f"strategies.{spec.name}") for p in e.problems]
            steps.append({"experience": exp.name, "recipe": recipe, "overrides": overrides})
        plan[spec.name] = {"major": is_major(spec, root), "steps": steps}
    if problems:
        raise BadInput(problems)
    return plan


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _suite_cases(path: Path, limit: int | None) -> list[dict]:
    """A test file's cases: a regression suite as it is, chat rows (`messages`) as exact
    questions (the user turn asked, the last assistant turn expected)."""
    rows = _read_jsonl(path)
    if rows and "messages" in rows[0]:
        cases = [{"id": f"row-{n}", "input": r["messages"][0]["content"], "expected": r["messages"][-1]["content"],
                  "match": "exact", "criticality": "low", "domain": GENERAL, "tags": []} for n, r in enumerate(rows, 1)]
    else:
        cases = [c.as_dict() for c in parse_suite(path.read_bytes(), str(path))]
    return cases[:limit]


def build_cases(stream: Stream, root: Path, max_rows: int | None = None) -> list[dict]:
    """The benchmark's one suite: each experience's test suites (ids `<experience>/<suite>/<n>`;
    `max_rows` keeps the first N cases of each, matching the first N training rows of the
    bundled files), then the general questions (`general/<suite>/<n>`, all of them)."""
    out = []
    for exp in stream.experiences:
        for suite, path in exp.tests:
            for n, case in enumerate(_suite_cases(root / path, max_rows), 1):
                out.append({**case, "id": f"{exp.name}/{suite}/{n:03d}"})
    for suite, path in stream.general:
        for n, case in enumerate(_suite_cases(root / path, None), 1):
            out.append({**case, "id": f"{GENERAL}/{suite}/{n:03d}", "tags": [*case.get("tags", []), GENERAL]})
    return out


def split_accuracy(cases: list[dict], stream: Stream) -> dict:
    """Accuracy per suite per experience, and per general suite, from scored cases."""
    def acc(prefix: str) -> float:
        hits = [c["passed"] for c in cases if c["id"].startswith(prefix)]
        return round(sum(hits) / len(hits), 6)

    out = {s: [acc(f"{e.name}/{s}/") for e in stream.experiences] for s in stream.suites}
    return {**out, GENERAL: {s: acc(f"{GENERAL}/{s}/") for s, _ in stream.general}}


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


def evaluate(ws: Path, rec: VersionRecord, suite, stream: Stream, settings: BenchSettings) -> dict:
    start = time.monotonic()
    result = evaluate_version(ws, rec, suite, EvalSettings(batch_size=settings.eval_batch_size, threads=settings.threads),
                              fresh=True)
    return {**split_accuracy(result["cases"], stream), "eval_seconds": round(time.monotonic() - start, 2)}


def base_record(model: str, base: str) -> VersionRecord:
    """The base as a pseudo-version (no adapter), so it is scored the same way."""
    weights = Path(base) / "model.safetensors"
    sha = sha256_file(weights) if weights.is_file() else base
    return VersionRecord(model=model, version="0.0.0", parent=None, strategy="base", base_model=base,
                         recipe_sha256=sha, data_sha256=sha, run_dir=str(base), adapter_dir=None)


def training_tokens(run: Path, tokenizer) -> int:
    """Tokens the training process went through: every row of the rendered training file,
    as the chat template lays it out (cut at sequence_len), times its epochs."""
    cfg = read_yaml(run / "axolotl.yml")
    limit = int(cfg.get("sequence_len") or 1 << 30)
    texts = [tokenizer.apply_chat_template(row["messages"], tokenize=False) for row in _read_jsonl(run / "data" / "train.jsonl")]
    per_epoch = sum(min(len(ids), limit) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else 0
    return int(per_epoch * float(cfg.get("num_epochs") or 1))


def run_step(spec: StrategySpec, i: int, seed: int, ws: Path, reg, suite, stream: Stream,
             settings: BenchSettings, root: Path, tokenizer) -> dict:
    """Train experience `i` of a strategy in workspace `ws`, then evaluate the version."""
    recipe, overrides = step_recipe(stream, spec, i, seed, settings, root)
    lr = load_recipe(root / recipe, overrides, workspace=ws)
    counted: dict = {}
    eval_settings = EvalSettings(batch_size=settings.eval_batch_size, threads=settings.threads)
    start = time.monotonic()
    rec = train(lr, reg, on_progress=lambda info: counted.update(info) if set(info) == {"steps"} else None,
                scorer=adapter_scorer(eval_settings)).record  # merge_adapters scores its merge weights
    wall = time.monotonic() - start
    run = Path(rec.run_dir)
    manifest = json.loads((run / "manifest.json").read_text())
    summary = next((x for x in json.loads((run / "metrics.json").read_text())["losses"] if "train_runtime" in x), {})
    return {"experience": stream.experiences[i].name, "version": rec.version, "parent": rec.parent,
            "strategy": rec.strategy, "recipe": recipe, "recipe_sha256": lr.sha256, "overrides": overrides,
            "mix": manifest["mix"], "train_loss": rec.metrics.get("train_loss"),
            **{k: v for k, v in rec.metrics.items() if k.startswith("merge_")},  # merge_adapters' choice
            "optimizer_steps": counted.get("steps"), "training_tokens": training_tokens(run, tokenizer),
            "trainer_seconds": summary.get("train_runtime"),  # Axolotl's training loop alone
            "train_seconds": rec.train_seconds,  # the whole training process, imports included
            "step_seconds": round(wall, 2),  # render (merge, teacher log-probs) + training process
            **evaluate(ws, rec, suite, stream, settings)}


class Progress:
    """One line per training: which of how many, and the time left at the pace so far."""

    def __init__(self, total: int | None, say: Callable[[str], None]):
        """`total` None: a worker's trainings, counted by the process that gathers them."""
        self.total, self.done, self.say, self.start = total, 0, say, time.monotonic()

    def begin(self, what: str) -> None:
        if self.total is None:
            return self.say(f"training {what}")
        left = ""
        if self.done:
            pace = (time.monotonic() - self.start) / self.done
            left = f", about {pace * (self.total - self.done) / 60:.0f} min left"
        self.say(f"training {self.done + 1}/{self.total}: {what}{left}")

    def end(self, line: str) -> None:
        self.done += 1
        self.say(line)


@dataclass(frozen=True)
class Context:
    """What every training of a run shares (sent to each worker process of `jobs`)."""

    stream: Stream
    settings: BenchSettings
    root: Path
    work: Path
    base: dict
    base_dir: str
    suite: object
    firsts: dict  # (strategy, seed) -> the key of its first experience (first_key)


_TOKENIZERS: dict = {}


def _tokenizer(base_dir: str):
    """The base's tokenizer, once per process (it counts training tokens)."""
    if base_dir not in _TOKENIZERS:
        from transformers import AutoTokenizer

        _TOKENIZERS[base_dir] = AutoTokenizer.from_pretrained(base_dir)
    return _TOKENIZERS[base_dir]


def first_key(stream: Stream, spec: StrategySpec, seed: int, settings: BenchSettings, root: Path,
              workspace: Path) -> str:
    """Strategies whose first experience is the same recipe once its overrides are applied
    (and the same seed) train it once: CPU training is deterministic
    (training/determinism.py), so the adapter would be the same bytes in every line. The key
    names that training: a hash of the loaded recipe."""
    recipe, overrides = step_recipe(stream, spec, 0, seed, settings, root)
    loaded = load_recipe(root / recipe, overrides, workspace=workspace)
    return f"seed-{seed}-" + sha256_bytes(json.dumps(thaw(loaded.raw), sort_keys=True, default=str).encode())[:12]


def sharing(firsts: dict, key: str) -> list[str]:
    """The strategies whose first experience is the training `key` names (firsts:
    (strategy, seed) -> key, as Context holds it)."""
    return [name for (name, _), k in firsts.items() if k == key]


def _fresh_workspace(ws: Path, ctx: Context) -> None:
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    if ctx.base.get("copy_to"):
        shutil.copytree(ctx.work / ctx.base["path"], ws / ctx.base["copy_to"])


def _step_line(spec: StrategySpec, seed: int, s: dict, stream: Stream) -> str:
    head = stream.suites[0]
    general = "".join(f", general {v:.0%}" for v in list(s[GENERAL].values())[:1])
    return (f"  {spec.name} {s['version']} (seed {seed}): {s['step_seconds']:.0f} s, "
            f"{s['optimizer_steps'] or '?'} steps, {s['training_tokens']} tokens; {head} {_pct(s[head])}{general}")


def fingerprint(ctx: Context, spec: StrategySpec, seed: int, steps: range) -> str:
    """What a stored result depends on: the toolkit, the base, the suite, and per step its
    recipe (path, bytes and overrides), the profile and every data file it reads. A stored
    first experience or line with the same fingerprint is reused (training is deterministic);
    any change trains it again."""
    stream, root = ctx.stream, ctx.root
    files = [stream.profile, *stream.rehearsal_sources]
    parts: list = [__version__, ctx.base.get("spec") or ctx.base.get("path"), ctx.base.get("weights_sha256"), ctx.suite.sha256]
    for i in steps:
        recipe, overrides = step_recipe(stream, spec, i, seed, ctx.settings, root)
        parts.append([recipe, overrides, sha256_file(root / recipe)])
        files += list(stream.experiences[i].train)
    parts.append({f: sha256_file(root / f) for f in sorted(set(files))})
    return sha256_bytes(json.dumps(parts, sort_keys=True, default=str).encode())


def _stored(path: Path, key: str, ctx: Context) -> dict | None:
    """The result kept at `path` when it was made from the same inputs (and --fresh is off)."""
    if ctx.settings.fresh or not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc.get("result") if doc.get("fingerprint") == key else None


def run_first(spec: StrategySpec, seed: int, key: str, ctx: Context, progress: Progress) -> tuple[dict, bool]:
    """Train the first experience in its own workspace, FIRSTS/<key>, which every line that
    shares it starts from (a copy); its step is kept there as first.json, and reused by a
    later run while its fingerprint holds. Returns (the step, whether it was reused)."""
    ws = ctx.work / FIRSTS / key
    what = f"{ctx.stream.experiences[0].name} for {', '.join(sharing(ctx.firsts, key))}, seed {seed} (1/{len(ctx.stream.experiences)})"
    sig = fingerprint(ctx, spec, seed, range(1))
    step = _stored(ws / "first.json", sig, ctx)
    if step is not None:
        progress.end(f"  reused {what}: trained by an earlier run with the same inputs ({portable_rel(ws, ctx.work)})")
        return step, True
    _fresh_workspace(ws, ctx)
    progress.begin(what)
    with open_registry(ws) as reg:
        step = run_step(spec, 0, seed, ws, reg, ctx.suite, ctx.stream, ctx.settings, ctx.root, _tokenizer(ctx.base_dir))
    atomic_write_json(ws / "first.json", {"fingerprint": sig, "result": step})
    progress.end(_step_line(spec, seed, step, ctx.stream))
    return step, False


def run_line(spec: StrategySpec, seed: int, ctx: Context, progress: Progress) -> tuple[dict, bool]:
    """Learn the stream with one strategy and one seed in a fresh workspace: a copy of its
    first experience's (run_first), then every later experience. The finished line is kept
    as line.json and reused by a later run while its fingerprint holds. Returns (the line,
    whether it was reused)."""
    stream, work = ctx.stream, ctx.work
    ws = work / "strategies" / spec.name / f"seed-{seed}"
    sig = fingerprint(ctx, spec, seed, range(len(stream.experiences)))
    line = _stored(ws / "line.json", sig, ctx)
    if line is not None:
        for i in range(1, len(stream.experiences)):
            progress.end(f"  reused {spec.name}, seed {seed}, {stream.experiences[i].name}: an earlier run's, same inputs")
        return line, True
    first = work / FIRSTS / ctx.firsts[(spec.name, seed)]
    shutil.rmtree(ws, ignore_errors=True)
    ws.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(first, ws, ignore=shutil.ignore_patterns("first.json"))
    steps = [{**json.loads((first / "first.json").read_text())["result"], "trained_in": portable_rel(first, work)}]
    with open_registry(ws) as reg:
        for i in range(1, len(stream.experiences)):
            progress.begin(f"{spec.name}, seed {seed}, {stream.experiences[i].name} ({i + 1}/{len(stream.experiences)})")
            s = run_step(spec, i, seed, ws, reg, ctx.suite, stream, ctx.settings, ctx.root, _tokenizer(ctx.base_dir))
            steps.append(s)
            progress.end(_step_line(spec, seed, s, stream))
    line = {"seed": seed, "workspace": portable_rel(ws, work), "steps": steps, **stats.line_metrics(steps, stream)}
    atomic_write_json(ws / "line.json", {"fingerprint": sig, "result": line})
    return line, False


_MESSAGES = None  # in a worker process: the queue its progress lines go to (the parent says them)


def _init_worker(log: str, messages) -> None:
    """A worker's own output (the trainings' bars, library warnings) goes to its log file,
    so two workers never write over each other's live bars; its progress lines go to the
    parent through `messages`."""
    global _MESSAGES
    _MESSAGES = messages
    f = open(log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - the worker's stderr while it lives
    os.dup2(f.fileno(), 2)
    sys.stderr = f


def _first_job(spec: StrategySpec, seed: int, key: str, ctx: Context) -> tuple[dict, bool]:
    return run_first(spec, seed, key, ctx, Progress(None, _MESSAGES.put))


def _line_job(spec: StrategySpec, seed: int, ctx: Context) -> tuple[dict, bool]:
    return run_line(spec, seed, ctx, Progress(None, _MESSAGES.put))


def _relay(messages, say: Callable[[str], None]) -> None:
    for message in iter(messages.get, None):
        say(message)


def run_all(ctx: Context, jobs: int, say: Callable[[str], None]) -> tuple[dict, dict, dict]:
    """Every first experience once, then every (strategy, seed) line: in this process with
    one progress count, or in `jobs` worker processes (each training pinned to its own
    threads, so 2 jobs on 2 cores train about twice as fast as one; each worker's own output
    goes to WORK/logs/). Returns ({key: first step}, {strategy: [line per seed]}, how many of
    each were reused from an earlier run)."""
    stream = ctx.stream
    firsts: dict[str, tuple[StrategySpec, int]] = {}
    for spec in stream.strategies:
        for seed in stream.seeds:
            firsts.setdefault(ctx.firsts[(spec.name, seed)], (spec, seed))
    lines = [(spec, seed) for spec in stream.strategies for seed in stream.seeds]
    if jobs <= 1:
        progress = Progress(len(firsts) + len(lines) * (len(stream.experiences) - 1), say)
        done = [run_first(spec, seed, k, ctx, progress) for k, (spec, seed) in firsts.items()]
        out = [run_line(spec, seed, ctx, progress) for spec, seed in lines]
    else:
        import multiprocessing
        import threading
        from concurrent.futures import ProcessPoolExecutor

        logs = ctx.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        say(f"{len(firsts)} first experiences, then {len(lines)} lines, in {jobs} worker processes "
            f"(their own output: {display(logs)}/)")
        mp = multiprocessing.get_context("spawn")
        with mp.Manager() as manager:
            messages = manager.Queue()
            relay = threading.Thread(target=_relay, args=(messages, say), daemon=True)
            relay.start()
            try:
                with ProcessPoolExecutor(jobs, mp_context=mp, initializer=_init_worker,
                                         initargs=(str(logs / f"workers-{os.getpid()}.log"), messages)) as pool:
                    done = _gather(pool, [(_first_job, spec, seed, k, ctx) for k, (spec, seed) in firsts.items()],
                                   "first experiences", say)
                    out = _gather(pool, [(_line_job, spec, seed, ctx) for spec, seed in lines], "lines", say)
            finally:
                messages.put(None)
                relay.join()
    runs: dict[str, list] = {}
    for (spec, _), (line, _) in zip(lines, out, strict=True):
        runs.setdefault(spec.name, []).append(line)
    reused = {"first_experiences": sum(r for _, r in done), "lines": sum(r for _, r in out),
              "of": {"first_experiences": len(firsts), "lines": len(lines)}}
    return dict(zip(firsts, (step for step, _ in done), strict=True)), runs, reused


def _gather(pool, calls: list[tuple], what: str, say: Callable[[str], None]) -> list:
    """Submit every call, say each completion with the time left at the pace so far, and
    return the results in the calls' order."""
    from concurrent.futures import as_completed

    start = time.monotonic()
    futures = {pool.submit(*call): n for n, call in enumerate(calls)}
    results: list = [None] * len(calls)
    for k, future in enumerate(as_completed(futures), 1):
        results[futures[future]] = future.result()
        pace = (time.monotonic() - start) / k
        say(f"{what}: {k}/{len(calls)} done, about {pace * (len(calls) - k) / 60:.0f} min left")
    return results


def _pct(values: list[float]) -> str:
    return "/".join(f"{v:.0%}" for v in values)


def portable_rel(path: Path, work: Path) -> str:
    """A path under the benchmark's work folder, relative to it (results travel with it)."""
    return Path(path).resolve().relative_to(Path(work).resolve()).as_posix()


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


def setup_base(stream: Stream, settings: BenchSettings, root: Path, work: Path, say) -> tuple[dict, str]:
    """The base every line starts from, as the result document describes it and as a path
    or hub id to load. A profile with a `tiny_model:` block gets it built under the work
    folder (once) and copied to where the profile expects it in each line's workspace
    (`copy_to`); any other profile's base (a hub id, a local folder) is used as it is."""
    probe = work / "strategies" / "_probe"
    profile = load_profile(resolve_path(stream.profile, root, probe), root, probe)
    inside = profile.base_is_local and Path(profile.base_model).is_relative_to(probe)
    if not (profile.tiny_model and inside):
        return {"path": portable_path(profile.base_model, root, work), "local": False}, profile.base_model
    spec = profile.tiny_model
    if settings.pretrain_epochs is not None:
        spec = replace(spec, pretrain_epochs=settings.pretrain_epochs)
    out = work / "base" / Path(profile.base_model).name
    base = prepare_base(out, spec, root, say)
    return ({**base, "path": portable_rel(out, work), "local": True,
             "copy_to": Path(profile.base_model).relative_to(probe).as_posix()}, str(out))


def run_benchmark(stream: Stream, root: Path, work: Path, workspace: Path, settings: BenchSettings,
                  say: Callable[[str], None] = lambda m: None) -> dict:
    """Run every strategy with every seed over the stream; the whole result document."""
    stream = narrow(stream, settings)
    start, started_at = time.monotonic(), utc_now()
    host = machine()
    plan_steps(stream, settings, root, work / "strategies" / "_plan")  # every step valid before any trains
    (work / "suite.jsonl").parent.mkdir(parents=True, exist_ok=True)
    (work / "suite.jsonl").write_bytes(jsonl_bytes(build_cases(stream, root, settings.max_rows)))
    suite = load_suite(work / "suite.jsonl")
    with thread_env(settings.train_threads):
        base, base_dir = setup_base(stream, settings, root, work, say)
        base["accuracy"] = evaluate(work / "base", base_record(stream.model, base_dir), suite, stream, settings)
        say("base: " + ", ".join(f"general ({k}) {v:.0%}" for k, v in base["accuracy"][GENERAL].items()))
        keys = {(s.name, seed): first_key(stream, s, seed, settings, root, work / "strategies" / "_plan")
                for s in stream.strategies for seed in stream.seeds}
        ctx = Context(stream, settings, root, work, base, base_dir, suite, keys)
        firsts, runs, reused = run_all(ctx, settings.jobs, say)
    base.pop("copy_to", None)
    return {
        "benchmark": "continual-learning", "toolkit_version": __version__, "started_at": started_at,
        "wall_seconds": round(time.monotonic() - start, 2),
        "reused": reused,  # from an earlier run in the same work folder: their seconds are that run's
        "machine": {**host, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "stream": stream_doc(stream, root, workspace), "settings": {**asdict(settings), "strategies": [s.name for s in stream.strategies],
                                                   "seeds": list(stream.seeds)},
        "work_dir": portable_path(work, root, workspace),
        "suite": {"path": "suite.jsonl", "sha256": suite.sha256, "cases": len(suite.cases)},
        "profile": {"path": stream.profile, "sha256": sha256_file(root / stream.profile)},
        "base": base, "firsts": {k: {"experience": v["experience"], "trained_in": f"{FIRSTS}/{k}",
                                     "strategies": sharing(keys, k)} for k, v in firsts.items()},
        "runs": runs,
        "strategies": {s.name: {"about": s.about, **stats.summarize_runs(runs[s.name], base, stream)}
                       for s in stream.strategies},
        "comparison": stats.compare_all(runs, base, stream),
    }


def stream_doc(stream: Stream, root: Path, workspace: Path) -> dict:
    """The stream as the result document records it (its file as a portable path)."""
    return {"path": portable_path(root / stream.path, root, workspace), "name": stream.name, "suites": list(stream.suites),
            "general": [name for name, _ in stream.general],
            "experiences": [{"name": e.name, "train": list(e.train), "tests": dict(e.tests)} for e in stream.experiences]}
