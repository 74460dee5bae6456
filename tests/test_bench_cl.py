"""The continual-learning benchmark (`clt bench cl`): its metrics, its plan (recipes and
overrides per strategy and experience), its suite, its outputs, and a reduced run through
Axolotl (slow): 2 strategies x 2 experiences x 8 facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

from cl_toolkit.bench import metrics
from cl_toolkit.bench.cl import STRATEGIES, BenchSettings, build_cases, split_accuracy, step_recipe
from cl_toolkit.bench.output import markdown, plot, summary_table
from cl_toolkit.core.errors import BadInput
from cl_toolkit.evaluation.evaluate import cache_path
from cl_toolkit.recipe.model import thaw
from cl_toolkit.training.strategies import load_recipe

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


def test_metrics_match_a_matrix_worked_by_hand():
    """The standard definitions, T experiences, R[i][j] = accuracy on experience j after
    training on experience i (0-based; the papers count from 1):
      ACC = 1/T * sum_j R[T-1][j]                          (Lopez-Paz & Ranzato 2017)
      BWT = 1/(T-1) * sum_{j<T-1} (R[T-1][j] - R[j][j])    (Lopez-Paz & Ranzato 2017)
      forgetting f_j = max_{l in j..T-2} R[l][j] - R[T-1][j], averaged over j < T-1
                                                           (Chaudhry et al. 2018)
      plasticity = R[j][j], and its mean: each experience right after it was learned."""
    r = [[0.50, 0.10, 0.05],
         [0.70, 0.80, 0.20],
         [0.40, 0.60, 0.90]]
    m = metrics.summarize(r)
    # ACC = (0.40 + 0.60 + 0.90) / 3 = 1.90 / 3 = 0.633333
    assert m["acc"] == pytest.approx(0.633333, abs=1e-6)
    # BWT = ((0.40 - 0.50) + (0.60 - 0.80)) / 2 = (-0.10 - 0.20) / 2 = -0.15
    assert m["bwt"] == pytest.approx(-0.15, abs=1e-6)
    # f_0 = max(0.50, 0.70) - 0.40 = 0.30 (experience 0 improved to 0.70 before falling);
    # f_1 = max(0.80) - 0.60 = 0.20; forgetting = (0.30 + 0.20) / 2 = 0.25, not -BWT
    assert m["forgetting_per_experience"] == pytest.approx([0.30, 0.20], abs=1e-6)
    assert m["forgetting"] == pytest.approx(0.25, abs=1e-6)
    # plasticity = [0.50, 0.80, 0.90], mean 2.20 / 3 = 0.733333
    assert m["plasticity"] == [0.50, 0.80, 0.90]
    assert m["plasticity_mean"] == pytest.approx(0.733333, abs=1e-6)


def test_forgetting_is_measured_from_the_best_earlier_accuracy():
    # experience 0 improved after experience 1 (0.5 -> 0.9), then fell to 0.6: forgetting 0.3, BWT +0.1
    m = metrics.summarize([[0.5, 0.0, 0.0], [0.9, 0.7, 0.0], [0.6, 0.7, 0.8]])
    assert m["forgetting_per_experience"] == pytest.approx([0.3, 0.0])
    assert m["bwt"] == pytest.approx((0.1 + 0.0) / 2)


def test_one_experience_has_no_backward_metrics_and_bad_matrices_are_refused():
    m = metrics.summarize([[0.75]])
    assert m["acc"] == 0.75 and m["bwt"] is None and m["forgetting"] is None and m["plasticity"] == [0.75]
    with pytest.raises(ValueError):
        metrics.summarize([[0.1, 0.2]])


def test_step_recipes_are_the_shipped_recipes_with_exact_overrides():
    s = BenchSettings()
    assert step_recipe("naive", 0, s) == ("recipes/firefighter/1.0.0.yml", [
        "version=1.0.0", "parent=null", "data.train=[{path: data/firefighter/q1.jsonl}]", "data.seed=42",
        "data.rehearsal={ratio: 0.0, sources: []}", "train.num_epochs=20", "train.learning_rate=0.003"])
    assert step_recipe("continued_r0.2", 1, BenchSettings(max_rows=8, epochs=2)) == ("recipes/firefighter/1.1.0.yml", [
        "version=1.1.0", "parent=1.0.0", "data.train=[{path: data/firefighter/q2.jsonl, max_rows: 8}]", "data.seed=42",
        "data.rehearsal={ratio: 0.2, sources: [{parent_data: true}, {path: data/general/general.jsonl}]}",
        "train.num_epochs=2", "train.learning_rate=0.003"])
    own = BenchSettings(epochs=None, learning_rate=None)  # each recipe's own budget
    assert step_recipe("merge_and_retrain", 2, own) == ("recipes/firefighter/2.0.0.yml", [
        "version=3.0.0", "parent=2.0.0", "data.train=[{path: data/firefighter/q3.jsonl}]", "data.seed=42"])
    assert step_recipe("distillation", 1, own)[1][-1] == "distillation.teacher=1.0.0"


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_step_of_every_strategy_is_a_valid_recipe(name, tmp_path):
    s = BenchSettings(max_rows=8)
    want = {"initial_lora"} | {"merge_and_retrain" if name == "merge_and_retrain" else
                               "distillation" if name == "distillation" else "continued_lora"}
    strategies, parent = set(), None
    for i in range(3):
        recipe, overrides = step_recipe(name, i, s)
        r = load_recipe(REPO / recipe, overrides, workspace=tmp_path).recipe
        assert r.parent == parent and r.data.train == ({"path": f"data/firefighter/q{i + 1}.jsonl", "max_rows": 8},)
        ratio = STRATEGIES[name].rehearsal
        if ratio is not None:
            assert r.data.rehearsal.ratio == ratio
            sources = thaw(r.data.rehearsal.sources)
            assert ({"parent_data": True} in sources) == (i > 0 and ratio > 0)
        if r.strategy == "distillation":
            assert r.distillation["teacher"] == parent
        strategies.add(r.strategy)
        parent = r.version
    assert strategies == want


def test_unknown_strategies_and_stream_lengths_are_refused():
    with pytest.raises(BadInput, match="unknown strategy nope"):
        BenchSettings(strategies=("naive", "nope")).check()
    with pytest.raises(BadInput, match="between 1 and 3"):
        BenchSettings(experiences=4).check()


def test_cases_ask_each_fact_as_trained_and_paraphrased_plus_general(tmp_path):
    from cl_toolkit.evaluation.suite import load_suite

    cases = build_cases(REPO, 3, None)
    assert len(cases) == 3 * 48 * 2 + 120
    q2 = [json.loads(line) for line in (REPO / "data/firefighter/q2.jsonl").read_text().splitlines()]
    by_id = {c["id"]: c for c in cases}
    assert by_id["q2/asked/005"]["input"] == q2[4]["messages"][0]["content"]
    assert by_id["q2/paraphrased/005"]["input"] != q2[4]["messages"][0]["content"]
    assert by_id["q2/asked/005"]["expected"] == by_id["q2/paraphrased/005"]["expected"]
    assert "paraphrase" not in by_id["q2/asked/005"]["tags"] and "paraphrase" in by_id["q2/paraphrased/005"]["tags"]
    assert by_id["general/001"]["match"] == "exact"
    assert len(build_cases(REPO, 2, 8)) == 2 * 8 * 2 + 120
    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    assert len(load_suite(path).cases) == len(cases)  # a valid regression suite


def test_accuracy_is_split_by_experience_and_phrasing():
    cases = [{"id": "q1/asked/001", "passed": True}, {"id": "q1/asked/002", "passed": False},
             {"id": "q1/paraphrased/001", "passed": False}, {"id": "q1/paraphrased/002", "passed": False},
             {"id": "q2/asked/001", "passed": True}, {"id": "q2/paraphrased/001", "passed": True},
             {"id": "general/001", "passed": True}, {"id": "general/002", "passed": False}]
    assert split_accuracy(cases, 2) == {"asked": [0.5, 1.0], "paraphrased": [0.0, 1.0], "general": 0.5}


def _doc() -> dict:
    def strategy(r):
        steps = [{"experience": f"q{i + 1}", "version": f"1.{i}.0", "asked": row, "paraphrased": row, "general": 0.5}
                 for i, row in enumerate(r)]
        return {"steps": steps, "metrics": {"asked": metrics.summarize(r), "paraphrased": metrics.summarize(r)},
                "general": [0.5] * len(r), "trainer_seconds": 3.0, "train_seconds": 12.0, "step_seconds": 20.0}

    return {"settings": {"epochs": None, "seed": 42, "strategies": ["naive", "merge_and_retrain"]}, "machine": {"nproc": 2, "load_average_at_start": [1.0]},
            "wall_seconds": 60.0, "stream": [{"experience": f"q{i + 1}", "facts": 48} for i in range(3)],
            "base": {"reused": True, "spec": {"pretrain_epochs": 5}, "accuracy": {"asked": [0, 0, 0], "paraphrased": [0, 0, 0], "general": 0.6}},
            "strategies": {"naive": strategy(R), "merge_and_retrain": strategy([[1, 0, 0], [1, 1, 0], [1, 1, 1]])}}


def test_table_and_plot(tmp_path):
    doc = _doc()
    table = summary_table(doc)
    assert table.splitlines()[2] == "| naive | 53 | -55 | 55 | 90 | 53 | -55 | 55 | 90 | 50 | 3 | 12 | 20 |"
    assert "| merge_and_retrain | 100 | +0 | 0 | 100 |" in table
    md = markdown(doc)
    assert "| naive | q3 (1.2.0) | 20 | 40 | 100 | 50 |" in md and "| (base) | — | 0 | 0 | 0 | 60 |" in md
    png = plot(doc, tmp_path / "cl.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_verb_is_listed_and_bad_strategies_exit_2(clt, tmp_path):
    code, out, _ = clt("--help")
    assert code == 0 and "bench" in out
    code, _, err = clt("bench", "cl", "--strategies", "naive,bogus", "--work-dir", tmp_path, "--out", tmp_path)
    assert code == 2 and "unknown strategy bogus" in err


def recorded_accuracy(ws: Path, version: str, suite_sha256: str, phrasing: str) -> list[float]:
    """Accuracy on each experience's facts, counted from the passed flags of the cases in
    the evaluation file that `evaluate_version` wrote for this version."""
    doc = json.loads(cache_path(ws, "firefighter", version, suite_sha256).read_text())
    per_experience = []
    for q in ("q1", "q2"):
        hits = [c["passed"] for c in doc["cases"] if c["id"].startswith(f"{q}/{phrasing}/")]
        assert len(hits) == 8  # --max-rows 8
        per_experience.append(round(sum(hits) / len(hits), 6))
    return per_experience


@pytest.mark.slow
def test_reduced_benchmark_trains_through_axolotl(clt, tmp_path, monkeypatch):
    """2 strategies x 2 experiences x 8 facts, 2 epochs, a base pretrained 1 epoch."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "results"
    code, table, err = clt("bench", "cl", "--strategies", "naive,distillation", "--experiences", 2, "--max-rows", 8,
                           "--epochs", 2, "--pretrain-epochs", 1, "--work-dir", tmp_path / "work", "--out", out)
    assert code == 0, err[-3000:]
    doc = json.loads((out / "cl.json").read_text())
    assert set(doc["strategies"]) == {"naive", "distillation"} and doc["machine"]["nproc"] >= 1
    assert doc["base"]["reused"] is False and doc["base"]["spec"]["pretrain_epochs"] == 1
    assert [s["facts"] for s in doc["stream"]] == [8, 8]
    for res in doc["strategies"].values():
        for phrasing in ("asked", "paraphrased"):
            # R from the per-case results each version's evaluation wrote, not from `metrics`
            r = [recorded_accuracy(Path(res["workspace"]), step["version"], doc["suite"]["sha256"], phrasing)
                 for step in res["steps"]]
            assert r == [step[phrasing] for step in res["steps"]]  # the document's per-step results
            m = res["metrics"][phrasing]
            assert m["R"] == r and all(0 <= v <= 1 for row in r for v in row)
            # T = 2: BWT = R[1][0] - R[0][0]; forgetting f_0 = R[0][0] - R[1][0];
            # ACC = (R[1][0] + R[1][1]) / 2; plasticity = [R[0][0], R[1][1]]
            assert m["bwt"] == pytest.approx(r[1][0] - r[0][0], abs=1e-6)
            assert m["forgetting"] == pytest.approx(r[0][0] - r[1][0], abs=1e-6)
            assert m["acc"] == pytest.approx((r[1][0] + r[1][1]) / 2, abs=1e-6)
            assert m["plasticity"] == [r[0][0], r[1][1]]
        steps = res["steps"]
        assert [s["version"] for s in steps] == ["1.0.0", "1.1.0"] and steps[1]["parent"] == "1.0.0"
        assert all(s["train_seconds"] > s["trainer_seconds"] > 0 for s in steps) and steps[0]["mix"]["new"] == 8
    naive, distil = doc["strategies"]["naive"]["steps"], doc["strategies"]["distillation"]["steps"]
    assert naive[1]["strategy"] == "continued_lora" and naive[1]["mix"]["total"] == 8  # no rehearsal at all
    assert distil[1]["strategy"] == "distillation" and distil[1]["mix"]["total"] > 8
    cfg = (tmp_path / "work" / "strategies" / "distillation" / "runs" / "firefighter-1.1.0" / "axolotl.yml").read_text()
    assert "kd_trainer: true" in cfg
    assert (out / "cl.png").is_file() and "| naive |" in (out / "cl.md").read_text() and "| naive |" in table
