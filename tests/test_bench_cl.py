"""The continual-learning benchmark (`clt bench cl --stream FILE`): the stream file and its
errors (file, line, key; exit 2), the plan (recipes and overrides per strategy and
experience), the suite, the metrics, mean ± std over seeds and the noise labels on
constructed results, and a reduced run through Axolotl (slow): 2 strategies x 2
experiences x 8 facts, one seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

from cl_toolkit.bench import metrics, stats
from cl_toolkit.bench.cl import BenchSettings, build_cases, narrow, split_accuracy, step_recipe
from cl_toolkit.bench.output import markdown, plot, summary_table
from cl_toolkit.bench.stream import load_stream
from cl_toolkit.core.errors import BadInput
from cl_toolkit.evaluation.evaluate import cache_path
from cl_toolkit.recipe.model import thaw
from cl_toolkit.training.strategies import load_recipe

STREAM3 = REPO / "benchmarks/streams/firefighter-3q.yml"
STREAM6 = REPO / "benchmarks/streams/firefighter-6q.yml"
R = [[0.9, 0.0, 0.1],
     [0.3, 0.8, 0.0],
     [0.2, 0.4, 1.0]]


def test_metrics_of_a_known_matrix():
    m = metrics.summarize(R)
    assert m["acc"] == pytest.approx((0.2 + 0.4 + 1.0) / 3)
    assert m["bwt"] == pytest.approx(((0.2 - 0.9) + (0.4 - 0.8)) / 2)
    assert m["forgetting_per_experience"] == pytest.approx([0.9 - 0.2, 0.8 - 0.4])
    assert m["forgetting"] == pytest.approx((0.7 + 0.4) / 2)
    assert m["plasticity"] == [0.9, 0.8, 1.0] and m["plasticity_mean"] == pytest.approx(0.9)


def test_one_experience_has_no_backward_metrics_and_bad_matrices_are_refused():
    m = metrics.summarize([[0.75]])
    assert m["acc"] == 0.75 and m["bwt"] is None and m["forgetting"] is None and m["plasticity"] == [0.75]
    with pytest.raises(ValueError):
        metrics.summarize([[0.1, 0.2]])


# ---- the stream file ---------------------------------------------------------------------

def test_the_bundled_streams_load():
    s3, s6 = load_stream(STREAM3, REPO), load_stream(STREAM6, REPO)
    assert [e.name for e in s3.experiences] == ["q1", "q2", "q3"] and s3.seeds == (42, 43, 44)
    assert s3.suites == ("asked", "paraphrased")
    assert dict(s3.general) == {"asked": "data/general/general.jsonl", "heldout": "data/general/general_heldout.jsonl"}
    assert {"naive", "continued_r0.1", "continued_r0.2", "continued_r0.33", "merge_and_retrain",
            "distillation"} <= {s.name for s in s3.strategies}
    assert [e.name for e in s6.experiences] == [f"q{n}" for n in range(1, 7)]
    # the 6-quarter files are the 3-quarter facts cut in halves, in order (scripts/split_stream.py)
    halves = [(REPO / e.train[0]).read_text() for e in s6.experiences]
    assert "".join(halves) == "".join((REPO / e.train[0]).read_text() for e in s3.experiences)
    assert all(len(h.splitlines()) == 24 for h in halves)


def test_the_split_script_writes_the_committed_files():
    import runpy

    split = runpy.run_path(str(REPO / "scripts/split_stream.py"))["split"]
    import os

    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        files = split()
    finally:
        os.chdir(cwd)
    assert len(files) == 18
    assert all((REPO / path).read_text() == text for path, text in files.items())


GOOD = """\
schema_version: 1
profile: configs/profiles/tiny-cpu.yml
model: firefighter
first: recipes/firefighter/1.0.0.yml
rehearsal_sources: [data/general/general.jsonl]
experiences:
  - name: a
    train: [data/firefighter/q1.jsonl]
    tests: {asked: data/firefighter/q1_asked.jsonl}
  - name: b
    train: [data/firefighter/q2.jsonl]
    tests: {asked: data/firefighter/q2_asked.jsonl}
strategies:
  naive:
    recipe: recipes/firefighter/1.1.0.yml
    rehearsal: 0.0
  mine:
    recipe: recipes/firefighter/1.1.0.yml
    rehearsal: 0.25
    set: {train.lora_dropout: 0.05}
    first_set: {train.lora_dropout: 0.1}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stream.yml"
    path.write_text(text)
    return path


def test_a_stream_of_ones_own_loads_with_the_default_seeds(tmp_path):
    s = load_stream(write(tmp_path, GOOD), REPO)
    assert s.seeds == (42, 43, 44) and s.name == "stream" and s.general == ()
    mine = s.strategy("mine")
    assert mine.first == "recipes/firefighter/1.0.0.yml" and mine.rehearsal == 0.25
    assert mine.set == (("train.lora_dropout", 0.05),) and mine.first_set == (("train.lora_dropout", 0.1),)


@pytest.mark.parametrize("change, where", [
    (("model: firefighter\n", "model: firefighter\nbogus: 1\n"), ":1: Additional properties are not allowed ('bogus'"),
    (("    train: [data/firefighter/q2.jsonl]", "    train: [data/firefighter/nope.jsonl]"),
     ":11: [experiences[1].train[0]] file not found: data/firefighter/nope.jsonl"),
    (("    tests: {asked: data/firefighter/q2_asked.jsonl}", "    tests: {other: data/firefighter/q2_asked.jsonl}"),
     ":12: [experiences[1].tests] every experience needs the same test suites"),
    (("    rehearsal: 0.25\n", "    rehearsal: 1.5\n"), ":19: [strategies.mine.rehearsal] 1.5 is greater than or equal"),
    (("    set: {train.lora_dropout: 0.05}", "    set: {data.seed: 3}"),
     ":20: [strategies.mine.set.data.seed] data.seed is set by the benchmark"),
    (("  - name: b\n", "  - name: a\n"), ":10: [experiences[1].name] experience name 'a' is used twice"),
    (("first: recipes/firefighter/1.0.0.yml", "first: /etc/passwd"), ":4: [first] /etc/passwd: write paths relative"),
])
def test_stream_problems_name_the_file_line_and_key_and_exit_2(tmp_path, clt, change, where):
    path = write(tmp_path, GOOD.replace(*change))
    assert path.read_text() != GOOD
    code, out, err = clt("bench", "cl", "--stream", path, "--check")
    assert code == 2 and out == ""
    assert f"{path}{where}" in err or f"stream.yml{where}" in err, err
    assert "Traceback" not in err


def test_every_problem_is_reported_at_once(tmp_path):
    text = GOOD.replace("data/firefighter/q1.jsonl", "data/x.jsonl").replace("rehearsal: 0.25", "rehearsal: 0.25\n    oops: 1")
    with pytest.raises(BadInput) as e:
        load_stream(write(tmp_path, text), REPO)
    messages = [str(p) for p in e.value.problems]
    assert len(messages) == 1 and "oops" in messages[0]  # structure first: files are checked on a valid shape
    with pytest.raises(BadInput) as e:
        load_stream(write(tmp_path, GOOD.replace("q1.jsonl", "x.jsonl").replace("q2_asked", "y")), REPO)
    assert [p.key for p in e.value.problems] == ["experiences[0].train[0]", "experiences[1].tests.asked"]


def test_check_validates_every_step_recipe_and_names_the_strategy(tmp_path, clt, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("CLT_HOME", str(tmp_path / "ws"))
    code, out, err = clt("bench", "cl", "--stream", write(tmp_path, GOOD), "--check", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert [s["recipe"] for s in plan["mine"]["steps"]] == ["recipes/firefighter/1.0.0.yml", "recipes/firefighter/1.1.0.yml"]
    bad = GOOD.replace("set: {train.lora_dropout: 0.05}", "set: {train.num_epochs: -3}")
    code, _, err = clt("bench", "cl", "--stream", write(tmp_path, bad), "--check")
    assert code == 2 and "strategy mine, experience b:" in err and "num_epochs" in err


def test_unknown_strategies_experiences_and_seeds_are_refused(tmp_path, clt):
    s = load_stream(STREAM3, REPO)
    with pytest.raises(BadInput, match="unknown strategy nope"):
        narrow(s, BenchSettings(strategies=("naive", "nope")))
    with pytest.raises(BadInput, match="between 1 and 3"):
        narrow(s, BenchSettings(experiences=4))
    with pytest.raises(BadInput, match="distinct"):
        narrow(s, BenchSettings(seeds=(1, 1)))
    code, _, err = clt("bench", "cl", "--seeds", "1,x", "--check")
    assert code == 2 and "comma-separated list of ints" in err


# ---- the plan ------------------------------------------------------------------------------

def test_step_recipes_are_the_streams_recipes_with_exact_overrides():
    s = load_stream(STREAM3, REPO)
    settings = BenchSettings()
    assert step_recipe(s, s.strategy("naive"), 0, 42, settings, REPO) == ("recipes/firefighter/1.0.0.yml", [
        "version=1.0.0", "parent=null", "data.train=[{path: data/firefighter/q1.jsonl}]", "data.seed=42",
        "data.rehearsal={ratio: 0.0, sources: []}", "train.num_epochs=20", "train.learning_rate=0.003"])
    assert step_recipe(s, s.strategy("continued_r0.2"), 1, 43, BenchSettings(max_rows=8, epochs=2), REPO) == (
        "recipes/firefighter/1.1.0.yml", [
            "version=1.1.0", "parent=1.0.0", "data.train=[{path: data/firefighter/q2.jsonl, max_rows: 8}]", "data.seed=43",
            "data.rehearsal={ratio: 0.2, sources: [{parent_data: true}, {path: data/general/general.jsonl}]}",
            "train.num_epochs=2", "train.learning_rate=0.003"])
    assert step_recipe(s, s.strategy("merge_and_retrain"), 2, 42, settings, REPO)[1][:2] == ["version=3.0.0", "parent=2.0.0"]
    assert step_recipe(s, s.strategy("distillation"), 1, 42, settings, REPO)[1][-1] == "distillation.teacher=1.0.0"


def test_set_and_first_set_come_last_as_yaml(tmp_path):
    s = load_stream(write(tmp_path, GOOD), REPO)
    first = step_recipe(s, s.strategy("mine"), 0, 42, BenchSettings(), REPO)[1]
    later = step_recipe(s, s.strategy("mine"), 1, 42, BenchSettings(), REPO)[1]
    assert first[-1] == "train.lora_dropout=0.1" and later[-1] == "train.lora_dropout=0.05"
    lr = load_recipe(REPO / "recipes/firefighter/1.1.0.yml", later, workspace=tmp_path)
    assert lr.recipe.train["lora_dropout"] == 0.05 and lr.recipe.data.rehearsal.ratio == 0.25


@pytest.mark.parametrize("name", ["naive", "continued_r0.2", "merge_and_retrain", "distillation"])
def test_every_step_of_a_bundled_strategy_is_a_valid_recipe(name, tmp_path):
    s = load_stream(STREAM3, REPO)
    spec, parent, strategies = s.strategy(name), None, set()
    for i in range(3):
        recipe, overrides = step_recipe(s, spec, i, 44, BenchSettings(max_rows=8), REPO)
        r = load_recipe(REPO / recipe, overrides, workspace=tmp_path).recipe
        assert r.parent == parent and r.data.seed == 44
        assert r.data.train == ({"path": f"data/firefighter/q{i + 1}.jsonl", "max_rows": 8},)
        if spec.rehearsal is not None:
            assert r.data.rehearsal.ratio == spec.rehearsal
            assert ({"parent_data": True} in thaw(r.data.rehearsal.sources)) == (i > 0 and spec.rehearsal > 0)
        strategies.add(r.strategy)
        parent = r.version
    assert "initial_lora" in strategies and len(strategies) == 2


def test_lines_share_a_first_experience_only_when_its_recipe_and_overrides_are_the_same(tmp_path):
    from cl_toolkit.bench.cl import first_key

    text = GOOD + """  later_only:
    recipe: recipes/firefighter/1.1.0.yml
    rehearsal: 0.25
    set: {train.lora_dropout: 0.2}
    first_set: {train.lora_dropout: 0.1}
  other_first:
    recipe: recipes/firefighter/1.1.0.yml
    rehearsal: 0.25
    first_set: {train.lora_dropout: 0.2}
  same_first:
    recipe: recipes/firefighter/1.1.0.yml
    rehearsal: 0.5
    first_set: {train.lora_dropout: 0.1, data.rehearsal.ratio: 0.25}
"""
    s, settings = load_stream(write(tmp_path, text), REPO), BenchSettings()
    ws = tmp_path / "plan"
    key = {name: first_key(s, s.strategy(name), 42, settings, REPO, ws)
           for name in ("naive", "mine", "later_only", "other_first", "same_first")}
    assert key["mine"] == key["later_only"]  # `set` changes only the later experiences
    assert key["mine"] == key["same_first"]  # the same recipe once the overrides are applied
    assert len({key["naive"], key["mine"], key["other_first"]}) == 3  # rehearsal, first_set differ
    assert first_key(s, s.strategy("mine"), 43, settings, REPO, ws) != key["mine"]  # and the seed
    assert first_key(s, s.strategy("mine"), 42, BenchSettings(epochs=2), REPO, ws) != key["mine"]


@pytest.mark.parametrize("old_data, sources", [
    ("replay", [{"parent_data": True}, {"path": "data/general/general.jsonl"}]),
    ("none", [{"path": "data/general/general.jsonl"}]),
    ("self", [{"self_rehearsal": {"prompts": {"parent_data": True}, "n": 100_000}}, {"path": "data/general/general.jsonl"}]),
])
def test_old_data_says_what_rehearsal_takes_from_the_earlier_experiences(old_data, sources, tmp_path):
    text = GOOD.replace("    rehearsal: 0.25\n", f"    rehearsal: 0.25\n    old_data: {old_data}\n")
    s = load_stream(write(tmp_path, text), REPO)
    first = step_recipe(s, s.strategy("mine"), 0, 42, BenchSettings(), REPO)[1]
    later = step_recipe(s, s.strategy("mine"), 1, 42, BenchSettings(), REPO)[1]
    assert "data.rehearsal={ratio: 0.25, sources: [{path: data/general/general.jsonl}]}" in first
    (reh,) = [o for o in later if o.startswith("data.rehearsal=")]
    import yaml

    assert yaml.safe_load(reh.split("=", 1)[1]) == {"ratio": 0.25, "sources": sources}


def test_old_data_needs_a_rehearsal_ratio(tmp_path):
    text = GOOD.replace("    rehearsal: 0.0\n", "    old_data: none\n")
    with pytest.raises(BadInput) as e:
        load_stream(write(tmp_path, text), REPO)
    assert "[strategies.naive.old_data] old_data says what a rehearsal ratio draws from" in str(e.value)


def test_cases_ask_each_experiences_suites_then_the_general_questions():
    from cl_toolkit.evaluation.suite import parse_suite

    s = load_stream(STREAM3, REPO)
    cases = build_cases(s, REPO)
    assert len(cases) == 3 * 48 * 2 + 2 * 120
    by_id = {c["id"]: c for c in cases}
    asked = [json.loads(line) for line in (REPO / "data/firefighter/q2_asked.jsonl").read_text().splitlines()]
    assert by_id["q2/asked/005"]["input"] == asked[4]["input"]
    assert by_id["q2/paraphrased/005"]["expected"] == by_id["q2/asked/005"]["expected"]
    general = [json.loads(line) for line in (REPO / "data/general/general.jsonl").read_text().splitlines()]
    assert by_id["general/asked/001"] | {"tags": None} == {
        "id": "general/asked/001", "input": general[0]["messages"][0]["content"], "match": "exact",
        "expected": general[0]["messages"][-1]["content"], "criticality": "low", "domain": "general", "tags": None}
    assert by_id["general/heldout/001"]["expected"] == by_id["general/asked/001"]["expected"]
    assert len(build_cases(narrow(s, BenchSettings(experiences=2)), REPO, 8)) == 2 * 8 * 2 + 2 * 120
    assert len(parse_suite("".join(json.dumps(c) + "\n" for c in cases).encode(), "suite")) == len(cases)


def test_accuracy_is_split_by_experience_suite_and_general(tmp_path):
    s = narrow(one_general(), BenchSettings(experiences=2))
    cases = [{"id": "q1/asked/001", "passed": True}, {"id": "q1/asked/002", "passed": False},
             {"id": "q1/paraphrased/001", "passed": False}, {"id": "q2/asked/001", "passed": True},
             {"id": "q2/paraphrased/001", "passed": True}, {"id": "general/asked/001", "passed": True},
             {"id": "general/asked/002", "passed": False}, {"id": "general/asked/003", "passed": False}]
    assert split_accuracy(cases, s) == {"asked": [0.5, 1.0], "paraphrased": [0.0, 1.0],
                                        "general": {"asked": pytest.approx(1 / 3, abs=1e-6)}}


# ---- mean ± std and noise, on constructed results --------------------------------------------

def test_mean_and_sample_std_over_seeds():
    m = stats.mean_std([0.5, 0.7, 0.9])
    # mean 0.7; sample variance ((-0.2)^2 + 0 + 0.2^2) / (3 - 1) = 0.04, std 0.2
    assert m == {"mean": pytest.approx(0.7), "std": pytest.approx(0.2), "n": 3}
    assert stats.mean_std([0.4]) == {"mean": 0.4, "std": None, "n": 1}
    assert stats.mean_std([None, 0.3, 0.5])["n"] == 2


def test_a_difference_smaller_than_the_combined_std_is_within_noise():
    a, b = stats.mean_std([0.50, 0.60, 0.70]), stats.mean_std([0.55, 0.65, 0.75])  # std 0.1 each
    d = stats.noise_label(a, b)
    # delta +0.05; combined std sqrt(0.1^2 + 0.1^2) = 0.141: within noise
    assert d["delta"] == pytest.approx(0.05) and d["noise"] == pytest.approx(0.141421, abs=1e-6)
    assert d["label"] == "within noise"
    far = stats.noise_label(a, stats.mean_std([0.95, 1.0, 0.9]))  # +0.35 > sqrt(0.01 + 0.0025) = 0.112
    assert far["label"] == "beyond noise" and far["delta"] == pytest.approx(0.35)
    assert stats.noise_label(stats.mean_std([0.5]), stats.mean_std([0.9]))["label"] == "noise unknown (one seed)"


def one_general():
    """The bundled stream with only its first general suite (constructed results need less)."""
    from dataclasses import replace

    s = load_stream(STREAM3, REPO)
    return replace(s, general=s.general[:1])


def _run(seed: int, r: list[list[float]], general: list[float], tokens: list[int]) -> dict:
    steps = [{"asked": row, "paraphrased": row, "general": {"asked": g}, "optimizer_steps": 10, "training_tokens": t,
              "trainer_seconds": 1.0, "train_seconds": 5.0, "step_seconds": 6.0}
             for row, g, t in zip(r, general, tokens, strict=True)]
    return {"seed": seed, "workspace": f"strategies/x/seed-{seed}", "steps": steps,
            **stats.line_metrics(steps, one_general())}


def _doc() -> dict:
    s = one_general()
    forget = [[1.0, 0, 0], [0.0, 1.0, 0], [0.0, 0.0, 1.0]]
    keep = [[1.0, 0, 0], [1.0, 1.0, 0], [1.0, 1.0, 1.0]]
    keep2 = [[1.0, 0, 0], [0.9, 1.0, 0], [0.8, 0.9, 1.0]]
    runs = {"naive": [_run(1, forget, [0.9, 0.5, 0.3], [100, 100, 100]), _run(2, forget, [0.9, 0.6, 0.4], [100, 100, 100])],
            "mine": [_run(1, keep, [0.9, 0.9, 0.9], [120, 150, 150]), _run(2, keep2, [0.9, 0.8, 0.8], [120, 150, 150])]}
    base = {"local": True, "reused": True, "accuracy": {"asked": [0, 0, 0], "paraphrased": [0, 0, 0], "general": {"asked": 0.95}}}
    return {"stream": {"path": "s.yml", "name": "s", "suites": ["asked", "paraphrased"], "general": ["asked"],
                       "experiences": [{"name": f"q{i}"} for i in (1, 2, 3)]},
            "settings": {"strategies": ["naive", "mine"], "seeds": [1, 2]}, "machine": {"nproc": 2, "load_average_at_start": [1.0]},
            "wall_seconds": 60.0, "base": base, "runs": runs,
            "strategies": {n: stats.summarize_runs(r, base, s) for n, r in runs.items()},
            "comparison": stats.compare_all(runs, base, s)}


def test_summaries_comparison_and_tables_of_constructed_runs(tmp_path):
    doc = _doc()
    mine = doc["strategies"]["mine"]
    # BWT per seed: 0 and ((0.8 - 1) + (0.9 - 1)) / 2 = -0.15: mean -0.075, std 0.106
    assert mine["metrics"]["asked"]["bwt"] == {"mean": pytest.approx(-0.075), "std": pytest.approx(0.106066, abs=1e-6), "n": 2}
    assert mine["metrics"]["asked"]["R"][2] == pytest.approx([0.9, 0.95, 1.0])
    # general after the last: 0.9 and 0.8; drop from the base's 0.95: 0.05 and 0.15
    assert mine["general"]["asked"]["final"]["mean"] == pytest.approx(0.85)
    assert mine["general"]["asked"]["drop"]["mean"] == pytest.approx(0.10)
    assert mine["compute"]["training_tokens"] == [120, 150, 150] and mine["totals"]["training_tokens"]["mean"] == 420
    comp = doc["comparison"]
    assert comp["reference"] == "naive"
    assert comp["strategies"]["mine"]["tokens_vs_reference"] == [1.2, 1.5, 1.5]
    assert comp["strategies"]["mine"]["max_tokens_vs_reference"] == 1.5
    # BWT: naive -1 exactly (std 0), mine -0.075 ± 0.106: +0.925 is beyond noise
    assert comp["strategies"]["mine"]["deltas"]["bwt"]["label"] == "beyond noise"
    # general: naive 0.35 ± 0.071, mine 0.85 ± 0.071: +0.5 beyond; plasticity equal (1.0 both): within
    assert comp["strategies"]["mine"]["deltas"]["plasticity_mean"] == {"delta": 0.0, "noise": 0.0, "label": "within noise"}
    table = summary_table(doc)  # ACC per seed: 1.0 and (0.8 + 0.9 + 1.0) / 3 = 0.9
    assert "| mine | 2 | 95 ± 7 | -8 ± 11 | 8 ± 11 | 100 ± 0 | 85 ± 7 | 10 ± 7 | ≤ 1.50× | 15 ± 0 |" in table
    md = markdown(doc)
    assert "+62 (noise 7): beyond noise" in md and "+0 (noise 0): within noise" in md
    assert "| mine | tokens vs naive | 1.20× | 1.50× | 1.50× |  |" in md
    assert "| (base) | — | 0 | 0 | 0 | 95 |" in md
    assert plot(doc, tmp_path / "cl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_tradeoff_plane_places_each_strategy_by_plasticity_and_bwt_and_marks_the_bounded(tmp_path):
    from cl_toolkit.bench.output import tradeoff_plot, tradeoff_points

    doc = _doc()
    points = {p["strategy"]: p for p in tradeoff_points(doc)}
    assert points["naive"]["bwt"]["mean"] == pytest.approx(-1.0) and points["naive"]["plasticity"]["mean"] == 1.0
    assert points["mine"]["bwt"]["mean"] == pytest.approx(-0.075) and points["mine"]["bounded"] is True  # 1.5x: bounded
    doc["comparison"]["strategies"]["mine"]["max_tokens_vs_reference"] = 1.51
    assert tradeoff_points(doc)[1]["bounded"] is False
    assert tradeoff_plot(doc, tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the reduced run ---------------------------------------------------------------------------

REDUCED = GOOD.replace("first: recipes/firefighter/1.0.0.yml", "first: recipes/firefighter/1.0.0.yml\n"
                       "general: {asked: data/general/general.jsonl}\nseeds: [7]")


def recorded_accuracy(ws: Path, version: str, suite_sha256: str) -> list[float]:
    """Accuracy on each experience's facts, counted from the passed flags of the cases in
    the evaluation file that `evaluate_version` wrote for this version."""
    doc = json.loads(cache_path(ws, "firefighter", version, suite_sha256).read_text())
    out = []
    for q in ("a", "b"):
        hits = [c["passed"] for c in doc["cases"] if c["id"].startswith(f"{q}/asked/")]
        assert len(hits) == 8  # --max-rows 8
        out.append(round(sum(hits) / len(hits), 6))
    return out


def absolute_strings(node, at="") -> list[str]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in absolute_strings(v, f"{at}.{k}")]
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in absolute_strings(v, f"{at}[{i}]")]
    return [f"{at}: {node}"] if isinstance(node, str) and node.startswith("/") else []


@pytest.mark.slow
def test_a_reduced_stream_trains_through_axolotl(clt, tmp_path, monkeypatch):
    """A stream of one's own: 3 strategies x 2 experiences x 8 facts, 2 epochs, one seed,
    a base pretrained 1 epoch; the work folder inside the workspace. `naive_too` shares
    naive's first experience (trained once); the first run trains in 2 worker processes, a
    rerun reuses every line."""
    monkeypatch.chdir(REPO)
    ws = tmp_path / "ws"
    monkeypatch.setenv("CLT_HOME", str(ws))
    out = tmp_path / "results"
    ws.mkdir()
    stream = write(ws, REDUCED + "  naive_too:\n    recipe: recipes/firefighter/1.1.0.yml\n    rehearsal: 0.0\n"
                           "    set: {train.lora_dropout: 0.1}\n")
    args = ("bench", "cl", "--stream", stream, "--max-rows", 8, "--epochs", 2, "--pretrain-epochs", 1, "--out", out)
    code, table, err = clt(*args, "--jobs", 2)
    assert code == 0, err[-3000:]
    assert "2 first experiences, then 3 lines, in 2 worker processes" in err
    assert "training a for naive, naive_too, seed 7 (1/2)" in err and "training mine, seed 7, b (2/2)" in err
    assert err.count("first experiences: ") == 2 and "lines: 3/3 done" in err
    assert "base: general (asked)" in err
    doc = json.loads((out / "stream.json").read_text())
    assert absolute_strings(doc) == []  # every path relative (to the work folder, the project, the workspace)
    assert doc["work_dir"] == "workspace:bench-cl/stream" and doc["suite"]["path"] == "suite.jsonl"
    assert doc["stream"]["path"] == "workspace:stream.yml"
    work = ws / "bench-cl" / "stream"
    assert doc["base"]["reused"] is False and doc["base"]["spec"]["pretrain_epochs"] == 1
    assert (work / doc["base"]["path"] / "model.safetensors").is_file()
    for name, (run,) in doc["runs"].items():
        r = [recorded_accuracy(work / run["workspace"], step["version"], doc["suite"]["sha256"]) for step in run["steps"]]
        assert r == [step["asked"] for step in run["steps"]] == run["metrics"]["asked"]["R"]
        assert run["metrics"]["asked"]["bwt"] == pytest.approx(r[1][0] - r[0][0], abs=1e-6)
        s = doc["strategies"][name]
        assert s["metrics"]["asked"]["acc"] == {"mean": pytest.approx((r[1][0] + r[1][1]) / 2, abs=1e-6), "std": None, "n": 1}
        steps = run["steps"]
        assert [x["version"] for x in steps] == ["1.0.0", "1.1.0"]
        for x in steps:
            # Axolotl's count: ceil(2 epochs x rows / micro-batch 8); tokens over every row twice.
            # A per_epoch mix (rehearsal drawn afresh each epoch) holds both epochs already and
            # is trained in one pass
            passes = 1 if x["mix"].get("resample") == "per_epoch" else 2
            assert x["optimizer_steps"] == -(-passes * x["mix"]["total"] // 8)
            assert x["training_tokens"] > passes * x["mix"]["total"] * 5
            assert x["train_seconds"] > x["trainer_seconds"] > 0
        assert s["general"]["asked"]["drop"]["mean"] == pytest.approx(
            doc["base"]["accuracy"]["general"]["asked"] - steps[-1]["general"]["asked"], abs=1e-6)
    naive, mine, too = (doc["runs"][n][0]["steps"] for n in ("naive", "mine", "naive_too"))
    assert too[0] == naive[0] and too[0]["trained_in"] == next(k["trained_in"] for k in doc["firsts"].values()
                                                               if k["strategies"] == ["naive", "naive_too"])
    assert too[1]["overrides"][-1] == "train.lora_dropout=0.1" and naive[1]["overrides"][-1] != too[1]["overrides"][-1]
    assert naive[1]["mix"]["total"] == 8 and mine[1]["mix"]["total"] > 2 * 8  # rehearsal only in `mine`
    assert mine[1]["mix"]["resample"] == "per_epoch"  # a continued strategy's default: both epochs written out
    ratio = doc["comparison"]["strategies"]["mine"]["tokens_vs_reference"][1]
    assert ratio == pytest.approx(mine[1]["training_tokens"] / naive[1]["training_tokens"], abs=1e-3) and ratio > 1
    assert doc["comparison"]["strategies"]["mine"]["deltas"]["acc"]["label"] == "noise unknown (one seed)"
    assert (out / "stream.png").is_file() and "| mine |" in (out / "stream.md").read_text() and "| naive |" in table
    assert (out / "stream-tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    # the rerun trains nothing: the same lines, kept with the fingerprint of their inputs
    code, _, err = clt(*args)
    assert code == 0, err[-3000:]
    assert err.count("  reused ") == 2 + 3 and "training firefighter" not in err
    again = json.loads((out / "stream.json").read_text())
    assert again["runs"] == doc["runs"] and again["strategies"] == doc["strategies"]
    assert doc["reused"] == {"first_experiences": 0, "lines": 0, "of": {"first_experiences": 2, "lines": 3}}
    assert again["reused"] == {"first_experiences": 2, "lines": 3, "of": {"first_experiences": 2, "lines": 3}}
    assert "3 of 3 lines and 2 of 2 first experiences were reused" in (out / "stream.md").read_text()


def test_the_documented_stream_example_is_a_valid_stream(tmp_path):
    import re

    text = (REPO / "docs/continual_learning.md").read_text()
    section = text.split("## The stream file", 1)[1]
    (example,) = re.findall(r"```yaml\n(.*?)```", section.split("### Your own stream")[0], re.DOTALL)
    s = load_stream(write(tmp_path, example), REPO)
    assert [e.name for e in s.experiences] == ["q1", "q2"] and s.strategy("continued_r0.2").first_set
    assert s.strategy("self_rehearsal").old_data == "self"


def test_stored_paths_are_relative_to_the_work_folder_project_or_workspace(tmp_path):
    from cl_toolkit.bench.cl import portable_rel, stream_doc

    work = tmp_path / "ws" / "bench-cl" / "s"
    assert portable_rel(work / "strategies" / "naive" / "seed-42", work) == "strategies/naive/seed-42"
    s = load_stream(STREAM3, REPO)
    assert stream_doc(s, REPO, tmp_path / "ws")["path"] == "benchmarks/streams/firefighter-3q.yml"
    (tmp_path / "ws").mkdir()
    mine = load_stream(write(tmp_path / "ws", GOOD), REPO)
    assert stream_doc(mine, REPO, tmp_path / "ws")["path"] == "workspace:stream.yml"
