"""`clt eval --domain`: only that domain's cases of a suite are answered, the result is
cached apart from the whole suite's, and it never becomes the suite's score (neither in the
model's history nor in the registry's accuracy matrix). The tiny base, no training."""

from __future__ import annotations

import json
import shutil

import pytest

from cl_toolkit.core.errors import BadInput
from cl_toolkit.evaluation.evaluate import EvalSettings, evaluate_version
from cl_toolkit.evaluation.history import evolution_path, load_evolution
from cl_toolkit.evaluation.matrix import NamedSuite, evaluate_suites
from cl_toolkit.evaluation.suite import load_suite, only_domains
from cl_toolkit.registry import VersionRecord, open_registry

FAST = EvalSettings(threads=1, max_new_tokens=6)
SMOKE_DOMAINS = {"equipment": 2, "exposure_limits": 4, "flammability": 3, "hazmat_id": 1,
                 "incident_command": 2}


@pytest.fixture(scope="module")
def toy_ws(tmp_path_factory, tiny_model_dir, repo_root):
    """toy 1.0.0 is the bare tiny base (a merged-style version); its recipe names the smoke suite."""
    ws = tmp_path_factory.mktemp("domainws")
    shutil.copy(repo_root / "data" / "firefighter" / "smoke_suite.jsonl", ws / "smoke.jsonl")
    run_dir = ws / "runs" / "toy-1.0.0"
    (run_dir / "data").mkdir(parents=True)
    for name, text in {"recipe.yml": "model: toy\ngate: {suite: 'workspace:smoke.jsonl'}\n",
                       "axolotl.yml": "{}\n", "manifest.json": "{}\n", "data/new.jsonl": ""}.items():
        (run_dir / name).write_text(text)
    shutil.copytree(tiny_model_dir, run_dir / "merged")
    with open_registry(ws) as reg:
        reg.register(VersionRecord(model="toy", version="1.0.0", parent=None, strategy="initial_lora",
                                   base_model=str(run_dir / "merged"), recipe_sha256="r" * 64,
                                   data_sha256="d" * 64, run_dir=str(run_dir), adapter_dir=None))
    return ws


@pytest.fixture
def env(toy_ws, monkeypatch, repo_root):
    monkeypatch.setenv("CLT_HOME", str(toy_ws))
    monkeypatch.chdir(repo_root)
    for stale in (toy_ws / "evals").glob("*"):  # each test starts without results
        shutil.rmtree(stale)
    return toy_ws


def _rec(ws):
    with open_registry(ws) as reg:
        return reg.resolve("toy", "1.0.0")


def test_only_domains_keeps_those_cases_and_refuses_a_domain_without_any(repo_root):
    suite = load_suite(repo_root / "data" / "firefighter" / "smoke_suite.jsonl")
    assert suite.domain_counts() == SMOKE_DOMAINS
    part = only_domains(suite, ["flammability", "hazmat_id"])
    assert {c.domain for c in part.cases} == {"flammability", "hazmat_id"} and len(part.cases) == 4
    assert part.domains == ("flammability", "hazmat_id") and part.total == 12 and part.sha256 == suite.sha256
    assert only_domains(suite, []) is suite
    with pytest.raises(BadInput, match=r"\[domain\] no case in domain 'hazmat'; the suite's domains are "
                                       r"equipment, exposure_limits, flammability, hazmat_id, incident_command"):
        only_domains(suite, ["flammability", "hazmat"])


def test_a_narrowed_evaluation_is_cached_apart_and_stays_out_of_the_history(env):
    rec, suite = _rec(env), load_suite(env / "smoke.jsonl")
    part = evaluate_version(env, rec, only_domains(suite, ["exposure_limits"]), FAST)
    assert part["total"] == 4 and set(part["per_domain"]) == {"exposure_limits"}
    assert {c["domain"] for c in part["cases"]} == {"exposure_limits"}
    assert part["domains"] == ["exposure_limits"] and part["suite_cases"] == 12
    assert "-domains-" in part["cache_path"] and not part["cached"]
    assert not evolution_path(env, "toy").exists()
    # the whole suite is not answered from the part's cache, and it is what the history keeps
    whole = evaluate_version(env, rec, suite, FAST)
    assert not whole["cached"] and whole["total"] == 12 and "domains" not in whole
    assert whole["cache_path"] != part["cache_path"]
    assert [e["total"] for e in load_evolution(env, "toy")["evaluations"]] == [12]
    # each is then served from its own cache; another domain set is another entry
    assert evaluate_version(env, rec, only_domains(suite, ["exposure_limits"]), FAST)["cached"]
    other = evaluate_version(env, rec, only_domains(suite, ["equipment"]), FAST)
    assert not other["cached"] and other["total"] == 2 and other["cache_path"] != part["cache_path"]
    assert evaluate_version(env, rec, suite, FAST)["cached"]


def test_the_accuracy_matrix_refuses_a_narrowed_suite(env):
    rec, suite = _rec(env), load_suite(env / "smoke.jsonl")
    with pytest.raises(BadInput, match="narrowed to some domains"):
        evaluate_suites(env, rec, [NamedSuite("regression", "regression", only_domains(suite, ["equipment"]))],
                        FAST)
    with open_registry(env) as reg:
        assert reg.scores("toy") == []


def test_cli_eval_domain(clt, env, tmp_path):
    code, stdout, err = clt("eval", "toy@1.0.0", "--domain", "flammability", "--domain", "equipment",
                            "--threads", "1", "--max-new-tokens", "6", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["domains"] == ["equipment", "flammability"] and res["total"] == 5
    assert set(res["per_domain"]) == {"equipment", "flammability"}
    code, stdout, err = clt("eval", "toy@1.0.0", "--domain", "equipment", "--threads", "1",
                            "--max-new-tokens", "6")
    assert code == 0 and "only domains equipment: 2 of the suite's 12 cases" in stdout
    code, _, err = clt("eval", "toy@1.0.0", "--domain", "ems")
    assert code == 2 and "no case in domain 'ems'" in err and "exposure_limits" in err
    assert "Traceback" not in err
    code, _, err = clt("eval", "toy@1.0.0", "--suite", env / "smoke.jsonl", "--domain", "ems")
    assert code == 2 and "smoke.jsonl" in err and "no case in domain 'ems'" in err
