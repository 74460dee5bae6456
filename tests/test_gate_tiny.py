"""`clt gate` on the tiny model with adapters made here: a candidate that lost a critical
case is blocked (exit 3) and the report names it; a clean candidate passes (exit 0)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version
from cl_toolkit.evaluation.history import load_evolution
from cl_toolkit.evaluation.matchers import normalize
from cl_toolkit.evaluation.suite import load_suite
from cl_toolkit.registry import VersionRecord, open_registry, weights_sha256

FAST = ["--threads", "1", "--max-new-tokens", "12"]
RECIPE = """schema_version: 1
model: toy
gate:
  suite: workspace:suites/derived.jsonl
  max_critical_regressions: 0
  min_accuracy_delta: -1.0
"""


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


def register(ws, version, adapter_dir, base, parent=None, recipe_text=RECIPE):
    """Register a version the way training would: a run folder with its provenance files."""
    run_dir = ws / "runs" / f"toy-{version}"
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    for name, text in {"recipe.yml": recipe_text, "axolotl.yml": "{}\n", "manifest.json": "{}\n",
                       "data/new.jsonl": ""}.items():
        (run_dir / name).write_text(text)
    with open_registry(ws) as reg:
        return reg.register(VersionRecord(
            model="toy", version=version, parent=parent, strategy="continued_lora" if parent else "initial_lora",
            base_model=str(base), recipe_sha256="r" * 64, data_sha256="d" * 64, run_dir=str(run_dir),
            adapter_dir=adapter_dir))


@pytest.fixture(scope="module")
def gate_ws(tmp_path_factory, tiny_model_dir, repo_root):
    """toy 1.0.0 (adapter A), 1.1.0 (adapter B: other answers) and 1.2.0 (a copy of A: the
    same answers), both children of 1.0.0. The derived suite expects 1.0.0's exact answers
    to the smoke suite's questions and makes critical every case where 1.1.0 answers
    differently, so 1.1.0 deterministically loses critical cases and 1.2.0 loses none."""
    ws = tmp_path_factory.mktemp("gatews")
    a = make_adapter(tiny_model_dir, ws / "adapters" / "a", seed=1)
    b = make_adapter(tiny_model_dir, ws / "adapters" / "b", seed=2)
    shutil.copytree(a, ws / "adapters" / "a-copy")
    register(ws, "1.0.0", a, tiny_model_dir)
    register(ws, "1.1.0", b, tiny_model_dir, parent="1.0.0")
    register(ws, "1.2.0", str(ws / "adapters" / "a-copy"), tiny_model_dir, parent="1.0.0")
    smoke = load_suite(repo_root / "data" / "firefighter" / "smoke_suite.jsonl")
    settings = EvalSettings(max_new_tokens=12, threads=1)
    with open_registry(ws) as reg:
        outs = {v: [c["output"] for c in evaluate_version(ws, reg.require("toy", v), smoke, settings)["cases"]]
                for v in ("1.0.0", "1.1.0")}
    rows = []
    for case, old, new in zip(smoke.cases, outs["1.0.0"], outs["1.1.0"], strict=True):
        if old.strip():
            lost = normalize(old) != normalize(new)
            rows.append({**case.as_dict(), "expected": old, "match": "exact",
                         "criticality": "critical" if lost else "low"})
    lost_ids = [r["id"] for r in rows if r["criticality"] == "critical"]
    assert lost_ids, "the two random adapters should answer differently"
    extra = {"input": "What does ICS stand for?", "criticality": "critical", "domain": "control"}
    rows.append({**extra, "id": "both-pass", "match": "regex", "expected": "^"})
    rows.append({**extra, "id": "both-fail", "match": "contains", "expected": "a phrase no model says"})
    (ws / "suites").mkdir()
    (ws / "suites" / "derived.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ws, lost_ids


@pytest.fixture
def env(gate_ws, monkeypatch, repo_root):
    ws, lost = gate_ws
    monkeypatch.setenv("CLT_HOME", str(ws))
    monkeypatch.chdir(repo_root)
    return ws, lost


def test_a_candidate_that_lost_a_critical_case_is_blocked(clt, env):
    ws, lost = env
    code, out, err = clt("gate", "toy", "--candidate", "1.1.0", *FAST)  # baseline: its parent
    assert code == 3, err
    assert "gate BLOCKED" in out and all(f"regression {cid} (critical" in out for cid in lost)
    gate = json.loads((ws / "runs" / "toy-1.1.0" / "gate.json").read_text())
    assert gate["passed"] is False and gate["baseline"] == "1.0.0" and gate["candidate"] == "1.1.0"
    assert {"model", "suite", "suite_sha256", "improvements", "per_domain", "policy", "accuracy"} <= set(gate)
    assert [r["id"] for r in gate["regressions"]] == sorted(lost)
    assert gate["both_failed"] == ["both-fail"]  # failed by both: critical, yet no regression
    assert gate["accuracy"]["baseline"] < 1.0 and gate["accuracy"]["delta"] < 0
    assert gate["per_domain"]["control"] == {"total": 2, "baseline": 0.5, "candidate": 0.5, "delta": 0.0,
                                             "regressions": 0, "improvements": 0}
    assert (gate["policy"]["max_critical_regressions"], gate["policy"]["min_accuracy_delta"]) == (0, -1.0)
    assert [v["suite"] for v in gate["suites"]] == ["regression"]  # the legacy `suite:` is the regression suite
    assert gate["suites"][0]["suite_sha256"] == gate["suite_sha256"]
    assert gate["matrix"]["versions"][-1] == "1.1.0" and gate["matrix"]["suites"] == ["regression"]
    assert gate["matrix"]["scores"]["1.1.0"]["regression"] == gate["accuracy"]["candidate"]
    md = (ws / "runs" / "toy-1.1.0" / "gate.md").read_text()
    assert md.startswith("# Gate BLOCKED: toy 1.1.0 vs 1.0.0")
    for reg in gate["regressions"]:
        block = md.split(f"### `{reg['id']}`")[1].split("###")[0]
        assert reg["input"] in block and " ".join(reg["baseline_output"].split()) in block
        assert " ".join(reg["candidate_output"].split()) in block
    with open_registry(ws) as reg:  # the registry keeps the verdict for promotion, with what it gated
        row = reg.gate_record("toy", "1.1.0", baseline="1.0.0")
        assert row["passed"] is False and row["result"]["passed"] is False and not row["legacy"]
        assert row["candidate_adapter_sha256"] == weights_sha256(reg.require("toy", "1.1.0"))
        assert row["baseline_adapter_sha256"] == weights_sha256(reg.require("toy", "1.0.0"))
        assert row["suites"] == {"regression": gate["suite_sha256"]}
        assert row["policy"]["min_accuracy_delta"] == -1.0
        scores = {(s["version"], s["suite"]): s for s in reg.scores("toy")}
        assert scores["1.0.0", "regression"]["accuracy"] == gate["accuracy"]["baseline"]


def test_a_clean_candidate_passes(clt, env):
    ws, _ = env
    code, out, err = clt("gate", "toy", "--candidate", "1.2.0", "--baseline", "1.0.0", *FAST)
    assert code == 0, err
    gate = json.loads((ws / "runs" / "toy-1.2.0" / "gate.json").read_text())
    assert gate["passed"] is True and gate["regressions"] == [] and gate["accuracy"]["delta"] == 0.0
    assert "# Gate PASSED" in (ws / "runs" / "toy-1.2.0" / "gate.md").read_text()
    with open_registry(ws) as reg:
        assert reg.gate_result("toy", "1.2.0", baseline="1.0.0")["passed"] is True


def test_the_baseline_is_evaluated_once_per_suite(clt, env):
    ws, _ = env
    for candidate in ("1.1.0", "1.2.0", "1.1.0"):
        clt("gate", "toy", "--candidate", candidate, "--baseline", "1.0.0", *FAST)
    derived = load_suite(ws / "suites" / "derived.jsonl").sha256
    runs = [e for e in load_evolution(ws, "toy")["evaluations"] if e["suite_sha256"] == derived]
    assert sorted(e["version"] for e in runs) == ["1.0.0", "1.1.0", "1.2.0"]


def _sha256_and_cases(path) -> tuple[str, int]:
    """Computed here, not by the toolkit: the file's SHA-256 and its non-blank lines."""
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), sum(1 for line in data.splitlines() if line.strip())


def test_suite_option_overrides_the_recipe(clt, env, repo_root):
    ws, _ = env
    smoke = repo_root / "data" / "firefighter" / "smoke_suite.jsonl"
    code, out, _ = clt("gate", "toy", "--candidate", "1.1.0", "--suite", smoke, "--json", *FAST)
    gate = json.loads(out)
    assert gate["suite"].endswith("smoke_suite.jsonl") and code == (0 if gate["passed"] else 3)
    sha, cases = _sha256_and_cases(smoke)
    assert (gate["suite_sha256"], gate["suite_cases"]) == (sha, cases) == (sha, 12)
    assert sum(d["total"] for d in gate["per_domain"].values()) == cases
    own_sha, _ = _sha256_and_cases(ws / "suites" / "derived.jsonl")  # the recipe's gate.suite
    assert own_sha != sha  # (its case count may equal 12 by chance: the hash tells them apart)
    on_disk = json.loads((ws / "runs" / "toy-1.1.0" / "gate.json").read_text())
    assert (on_disk["suite_sha256"], on_disk["suite_cases"]) == (sha, cases)


def test_gate_refuses_what_it_cannot_compare(clt, env):
    assert clt("gate", "toy", "--candidate", "1.0.0", *FAST)[0] == 2  # no parent, no --baseline
    code, _, err = clt("gate", "toy", "--candidate", "1.1.0", "--baseline", "1.1.0", *FAST)
    assert code == 2 and "same version" in err
    code, _, err = clt("gate", "toy", "--candidate", "9.9.9", *FAST)
    assert code == 2 and "not in the registry" in err


def test_versions_may_be_named_by_alias(clt, env):
    ws, _ = env
    with open_registry(ws) as reg:
        reg.set_alias("toy", "champion", "1.0.0")
    code, out, err = clt("gate", "toy", "--candidate", "1.2.0", "--baseline", "champion", "--json", *FAST)
    assert code == 0, err
    assert json.loads(out)["baseline"] == "1.0.0"
    code, _, err = clt("gate", "toy", "--candidate", "1.2.0", "--baseline", "nobody", *FAST)
    assert code == 2 and "no version or alias 'nobody'" in err
