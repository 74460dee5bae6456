"""`clt registry ...` as a user runs it: output, --json, exit codes, one-line errors."""

from __future__ import annotations

import json
import time

import pytest
from test_registry_support import add_version

from cl_toolkit.registry import open_registry, promote, record_gate

pytestmark = pytest.mark.usefixtures("store_backend")  # every test on SQLite and on PostgreSQL


@pytest.fixture
def ws(empty_workspace):
    """1.0.0 -> 1.1.0 -> 1.2.0 and 1.0.0 -> 1.1.1; 1.1.0 champion (gated), 1.2.0 challenger."""
    with open_registry(empty_workspace) as reg:
        for v, p in [("1.0.0", None), ("1.1.0", "1.0.0"), ("1.1.1", "1.0.0"), ("1.2.0", "1.1.0")]:
            add_version(reg, empty_workspace, v, p)
        promote(reg, "ff", "1.0.0", reason="first")
        record_gate(empty_workspace, "ff", "1.1.0", {"candidate": "1.1.0", "baseline": "1.0.0", "passed": True,
                                                      "accuracy": 0.92, "improvements": 4, "regressions": 0})
        promote(reg, "ff", "1.1.0", reason="gate passed")
        promote(reg, "ff", "1.2.0", to="challenger", reason="A/B")
    return empty_workspace


def test_list_and_show(clt, ws):
    code, out, _ = clt("registry", "list")
    assert code == 0 and "ff 1.1.0" in out and "champion" in out and "challenger" in out
    code, out, _ = clt("registry", "list", "ff", "--json")
    assert [(r["version"], r["aliases"]) for r in json.loads(out)] == [
        ("1.0.0", []), ("1.1.0", ["champion"]), ("1.1.1", []), ("1.2.0", ["challenger"])]
    code, out, _ = clt("registry", "show", "ff", "--json")
    data = json.loads(out)
    assert data["aliases"] == {"champion": "1.1.0", "challenger": "1.2.0"} and len(data["versions"]) == 4
    code, out, _ = clt("registry", "show", "ff", "1.1.0", "--json")
    data = json.loads(out)
    assert data["parents"] == ["1.0.0"] and data["aliases"] == ["champion"] and len(data["artifacts"]) == 7
    code, out, _ = clt("registry", "show", "ff", "1.1.0")
    assert code == 0 and "artifact_dir:" in out and "7 files" in out


def test_lineage_is_a_tree(clt, ws):
    code, out, _ = clt("registry", "lineage", "ff")
    assert code == 0
    assert out.splitlines() == [
        "ff",
        "└── 1.0.0  initial_lora",
        "    ├── 1.1.0  continued_lora  [champion]",
        "    │   └── 1.2.0  continued_lora  [challenger]",
        "    └── 1.1.1  continued_lora",
    ]
    code, out, _ = clt("registry", "lineage", "ff", "1.1.1", "--json")
    tree = json.loads(out)
    assert tree[0]["version"] == "1.0.0" and [c["version"] for c in tree[0]["children"]] == ["1.1.1"]


def test_history(clt, ws):
    code, out, _ = clt("registry", "history", "ff")
    assert code == 0 and "champion: 1.0.0 -> 1.1.0  gate passed" in out
    code, out, _ = clt("registry", "history", "ff", "--json")
    events = json.loads(out)
    assert [e["action"] for e in events] == ["register"] * 4 + ["promote", "gate", "promote", "promote"]


def test_promote_rollback_archive(clt, ws):
    code, _, err = clt("registry", "promote", "ff", "1.2.0", "--reason", "newer")
    assert code == 3 and err.startswith("error: ff 1.2.0 has no gate result against the champion 1.1.0")
    code, out, _ = clt("registry", "promote", "ff", "1.2.0", "--reason", "incident 42", "--force", "--who", "ops")
    assert code == 0 and out.strip() == "ff champion: 1.1.0 -> 1.2.0 (forced)"
    start = time.process_time()  # CPU time: the rollback's own work, not how busy the machine is
    code, out, _ = clt("registry", "rollback", "ff", "--reason", "regressed")
    assert time.process_time() - start < 1.0
    assert code == 0 and out.strip() == "ff champion: 1.2.0 -> 1.1.0 (rollback)"
    code, out, _ = clt("registry", "archive", "ff", "1.1.1", "--reason", "superseded")
    assert code == 0 and "archived" in out
    code, out, _ = clt("registry", "history", "ff", "--json")
    last = json.loads(out)[-4:]
    assert [(e["action"], e["who"], e["forced"]) for e in last][:2] == [("promote", "ops", True), ("unset", "ops", False)]
    assert [e["action"] for e in last[2:]] == ["rollback", "archive"]


@pytest.mark.parametrize("args, message", [
    (["promote", "ff", "1.2.0"], "Missing option '--reason'"),
    (["promote", "ff", "1.2.0", "--to", "prod", "--reason", "x"], "Invalid value for '--to'"),
    (["promote", "ff", "9.9.9", "--reason", "x"], "error: ff 9.9.9 is not in the registry"),
    (["rollback", "ff", "--to", "latest", "--reason", "x"], "error: ff: not a semantic version"),
    (["show", "nope"], "error: no versions of 'nope' are registered (models: ff)"),
    (["export", "nope", "-o", "x.json"], "error: no versions of 'nope'"),
])
def test_bad_input_is_one_line_and_exit_2(clt, ws, args, message):
    code, out, err = clt("registry", *args)
    assert code == 2 and message in err and "Traceback" not in err + out


def test_check_finds_missing_and_changed_files(clt, ws):
    code, out, _ = clt("registry", "check")
    assert code == 0 and out.strip() == "checked 4 versions, 28 files: ok"
    art = ws / "registry" / "artifacts" / "ff"
    (art / "1.1.0" / "adapter" / "adapter_model.safetensors").write_bytes(b"corrupt")
    (art / "1.0.0" / "manifest.json").unlink()
    code, out, err = clt("registry", "check", "--json")
    report = json.loads(out)
    assert code == 3 and not report["ok"] and err.strip() == "error: registry check failed: 2 problems"
    assert report["problems"] == ["ff 1.0.0: manifest.json is missing from " + str(art / "1.0.0"),
                                  "ff 1.1.0: adapter/adapter_model.safetensors changed "
                                  + report["problems"][1].split("changed ")[1]]


def test_export(clt, ws, tmp_path):
    out_file = tmp_path / "model_registry.json"
    code, out, _ = clt("registry", "export", "ff", "-o", out_file)
    assert code == 0 and "4 versions" in out
    data = json.loads(out_file.read_text())
    assert data["model"] == "ff" and data["aliases"] == {"champion": "1.1.0", "challenger": "1.2.0"}
    v = {x["version"]: x for x in data["versions"]}
    assert list(v) == ["1.0.0", "1.1.0", "1.1.1", "1.2.0"]
    first = v["1.1.0"]
    assert list(first)[:10] == ["version", "release_date", "base_model", "training_data", "parent_model",
                                "training_type", "training_duration_hours", "accuracy", "improvements",
                                "regressions"]
    assert first["training_data"] == {"examples": 6, "files": [
        {"file": "data/ff/1.1.0.jsonl", "role": "train", "examples": 3},
        {"file": "data/general/general.jsonl", "role": "rehearsal", "examples": 10}]}
    assert (first["parent_model"], first["training_type"], first["training_duration_hours"]) == (
        "1.0.0", "continued_lora", 2.0)
    assert (first["accuracy"], first["improvements"], first["regressions"]) == (0.92, 4, 0)
    assert (v["1.2.0"]["accuracy"], v["1.2.0"]["regressions"]) == (None, None)  # never gated
    assert len(first["release_date"]) == 10


def test_the_rollback_benchmark_runs(capsys):
    import importlib.util

    from test_registry_support import REPO

    spec = importlib.util.spec_from_file_location("bench_registry", REPO / "benchmarks" / "bench_registry.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--rollbacks", "3", "--cli-rollbacks", "0", "--history", "4"]) == 0
    out = capsys.readouterr().out
    assert "library (open+rollback)" in out and out.splitlines()[-1].endswith("yes")
