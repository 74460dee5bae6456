"""`clt eval` on the tiny model with LoRA adapters made here (no training): per-case
results, summaries, performance, the cache, the history, judges and merged versions."""

from __future__ import annotations

import json
import shutil

import pytest

from cl_toolkit.evaluation import evaluate as evaluate_mod
from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version
from cl_toolkit.evaluation.generate import generate, load_model, torch_threads
from cl_toolkit.evaluation.history import evolution_path, load_evolution
from cl_toolkit.evaluation.judge import LocalModelJudge
from cl_toolkit.evaluation.suite import load_suite
from cl_toolkit.registry import VersionRecord, open_registry

FAST = ["--threads", "1", "--max-new-tokens", "12"]


def make_adapter(base_dir, out, seed: int) -> str:
    """A LoRA adapter with random (not zero) B matrices, so it really changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=8, lora_alpha=16, init_lora_weights=False, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    get_peft_model(model, config).save_pretrained(out)
    return str(out)


def register(ws, version, adapter_dir, base, parent=None, recipe_text="model: toy\n"):
    """Register a version the way training would: a run folder with its provenance files."""
    run_dir = ws / "runs" / f"toy-{version}"
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    for name, text in {"recipe.yml": recipe_text, "axolotl.yml": "{}\n", "manifest.json": "{}\n",
                       "data/new.jsonl": ""}.items():
        (run_dir / name).write_text(text)
    if adapter_dir is None:  # a merged version keeps its full weights in run_dir/merged
        shutil.copytree(base, run_dir / "merged", dirs_exist_ok=True)
        base = run_dir / "merged"
    with open_registry(ws) as reg:
        return reg.register(VersionRecord(
            model="toy", version=version, parent=parent, strategy="initial_lora", base_model=str(base),
            recipe_sha256="r" * 64, data_sha256="d" * 64, run_dir=str(run_dir), adapter_dir=adapter_dir))


@pytest.fixture(scope="module")
def toy_ws(tmp_path_factory, tiny_model_dir, repo_root):
    """A workspace with toy 1.0.0 (base + random adapter) and toy 2.0.0 (the bare base, as a
    merged/full model), whose recipe copies name the smoke suite as their gate suite."""
    ws = tmp_path_factory.mktemp("evalws")
    shutil.copy(repo_root / "data" / "firefighter" / "smoke_suite.jsonl", ws / "smoke.jsonl")
    recipe = "model: toy\ngate: {suite: 'workspace:smoke.jsonl'}\n"
    register(ws, "1.0.0", make_adapter(tiny_model_dir, ws / "adapters" / "a", seed=1), tiny_model_dir,
             recipe_text=recipe)
    register(ws, "2.0.0", None, tiny_model_dir, recipe_text=recipe)
    return ws


@pytest.fixture
def env(toy_ws, monkeypatch, repo_root):
    monkeypatch.setenv("CLT_HOME", str(toy_ws))
    monkeypatch.chdir(repo_root)
    return toy_ws


def test_eval_writes_every_case_and_the_summaries(clt, env, tmp_path):
    out = tmp_path / "res.json"
    code, stdout, err = clt("eval", "toy@1.0.0", "--out", out, "--fresh", *FAST)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["suite"].endswith("smoke.jsonl") and len(res["suite_sha256"]) == 64
    assert len(res["cases"]) == 12 and {"id", "input", "expected", "output", "passed", "new_tokens"} <= set(res["cases"][0])
    assert res["total"] == 12 and 0 <= res["accuracy"] <= 1
    assert set(res["per_domain"]) == {"exposure_limits", "flammability", "hazmat_id", "equipment", "incident_command"}
    assert set(res["per_criticality"]) == {"critical", "high", "medium", "low"}
    assert res["per_criticality"]["critical"]["total"] == 4
    perf = res["performance"]
    assert perf["tokens_per_second"] > 0 and perf["peak_memory_mb"] > 0 and perf["device"] == "cpu"
    assert all(0 < c["new_tokens"] <= 12 for c in res["cases"])
    assert "toy 1.0.0 on" in stdout and "tokens/s" in stdout and "peak memory" in stdout
    assert stdout.index("criticality critical") < stdout.index("criticality high") < stdout.index("criticality low")


def test_eval_shows_cases_done_on_stderr_and_keeps_stdout_json(clt, env):
    code, stdout, err = clt("eval", "toy@1.0.0", "--fresh", "--json", "--batch-size", "4", *FAST)
    assert code == 0, err
    result = json.loads(stdout)  # the whole of stdout: no bar, no library output in it
    lines = err.splitlines()
    assert lines[0] == "evaluating toy 1.0.0 on smoke: loading the model  0:00 elapsed"
    assert lines[-1].startswith(f"evaluating toy 1.0.0 on smoke: {result['passed']}/12 passed (")
    assert not any("Loading weights" in line or "it/s]" in line for line in lines)


def test_eval_is_deterministic_and_cached(clt, env, monkeypatch):
    assert clt("eval", "toy@1.0.0", "--fresh", *FAST)[0] == 0
    first = json.loads(next((env / "evals" / "toy" / "1.0.0").glob("*.json")).read_text())
    code, _, _ = clt("eval", "toy@1.0.0", "--fresh", *FAST)
    second = json.loads(next((env / "evals" / "toy" / "1.0.0").glob("*.json")).read_text())
    assert code == 0 and [c["output"] for c in first["cases"]] == [c["output"] for c in second["cases"]]

    def no_generation(*a, **k):
        raise AssertionError("a cached evaluation must not generate")

    monkeypatch.setattr(evaluate_mod, "generate", no_generation)
    before = len(load_evolution(env, "toy")["evaluations"])
    code, stdout, _ = clt("eval", "toy@1.0.0", *FAST)
    assert code == 0 and "[cached]" in stdout
    assert len(load_evolution(env, "toy")["evaluations"]) == before  # a cache hit is no new evaluation
    # other settings are another evaluation, not a cache hit
    with pytest.raises(AssertionError, match="cached"):
        evaluate_version(env, open_registry(env).require("toy", "1.0.0"), load_suite(env / "smoke.jsonl"),
                         EvalSettings(max_new_tokens=5, threads=1))


def test_history_grows_with_each_fresh_evaluation(clt, env):
    before = len(load_evolution(env, "toy")["evaluations"])
    assert clt("eval", "toy@2.0.0", "--fresh", *FAST)[0] == 0
    doc = json.loads(evolution_path(env, "toy").read_text())
    assert len(doc["evaluations"]) == before + 1
    last = doc["evaluations"][-1]
    assert last["version"] == "2.0.0" and set(last["per_domain"]) >= {"exposure_limits"}
    assert "cases" not in last  # the history keeps scores, not outputs


def test_a_merged_version_and_its_adapter_twin_differ(clt, env):
    """2.0.0 is the bare base (adapter_dir None); the random adapter of 1.0.0 changes answers."""
    for v in ("1.0.0", "2.0.0"):
        assert clt("eval", f"toy@{v}", *FAST)[0] == 0
    outs = {v: [c["output"] for c in json.loads(next((env / "evals" / "toy" / v).glob("*.json")).read_text())["cases"]]
            for v in ("1.0.0", "2.0.0")}
    assert outs["1.0.0"] != outs["2.0.0"]


def test_generation_reports_the_prompts_answered_after_each_batch(tiny_model_dir):
    lm, seen = load_model(str(tiny_model_dir)), []
    with torch_threads(1):
        gen = generate(lm, [f"question {i}?" for i in range(10)], batch_size=4, max_new_tokens=3, on_batch=seen.append)
    assert seen == [4, 8, 10] and len(gen.outputs) == 10


def test_generation_pads_left_and_batches_match_their_order(tiny_model_dir):
    lm = load_model(str(tiny_model_dir))
    assert lm.tokenizer.padding_side == "left"
    inputs = ["What is the LEL of methane?", "Hi?", "What does PASS stand for when using an extinguisher?"]
    with torch_threads(1):
        batched = generate(lm, inputs, batch_size=3, max_new_tokens=8)
        alone = [generate(lm, [text], batch_size=1, max_new_tokens=8).outputs[0] for text in inputs]
    assert len(batched.outputs) == 3 and all(1 <= n <= 8 for n in batched.new_tokens)
    assert batched.outputs == alone  # left padding and the attention mask keep each answer its own


def test_judge_cases_need_a_judge(clt, env, tiny_model_dir, tmp_path):
    suite = tmp_path / "judged.jsonl"
    suite.write_text(json.dumps({"id": "j1", "input": "What is the LEL of methane?", "expected": "5.0 %",
                                 "match": "judge", "criticality": "high", "domain": "flammability"}) + "\n")
    code, _, err = clt("eval", "toy@1.0.0", "--suite", suite, *FAST)
    assert code == 2 and "pass --judge" in err
    out = tmp_path / "judged.json"
    code, _, err = clt("eval", "toy@1.0.0", "--suite", suite, "--judge", tiny_model_dir, "--out", out, *FAST)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert 0.0 <= res["cases"][0]["score"] <= 1.0 and res["settings"]["judge"].startswith("local:")


def test_a_callable_judge_scores_cases(env):
    calls = []

    def strict(question, answer, expected):
        calls.append((question, answer, expected))
        return 1.0 if "ppm" in answer else 0.0

    strict.name = "strict"
    suite_path = env / "judged.jsonl"
    suite_path.write_text(json.dumps({"id": "j1", "input": "What is the NIOSH IDLH for ammonia?",
                                      "expected": "300 ppm", "match": "judge", "criticality": "critical",
                                      "domain": "exposure_limits"}) + "\n")
    with open_registry(env) as reg:
        rec = reg.require("toy", "1.0.0")
    res = evaluate_version(env, rec, load_suite(suite_path), EvalSettings(max_new_tokens=8, threads=1), strict)
    assert calls and calls[0][0] == "What is the NIOSH IDLH for ammonia?" and calls[0][2] == "300 ppm"
    assert res["cases"][0]["score"] in (0.0, 1.0) and res["settings"]["judge"] == "strict"


def test_the_local_model_judge_is_deterministic(tiny_model_dir):
    judge = LocalModelJudge.from_path(str(tiny_model_dir))
    items = [("What is the IDLH?", "300 ppm", "300 ppm"), ("What is the IDLH?", "I do not know", "300 ppm")]
    with torch_threads(1):
        first, second = judge.batch(items), judge.batch(items)
    assert first == second and all(0.0 <= s <= 1.0 for s in first)
    assert judge(*items[0]) == pytest.approx(first[0], abs=1e-6)
