"""A trained workspace is copied elsewhere and the original deleted: gate, eval, serve,
report and registry check all work on the copy, read the copy's files (the evaluation
cached before the move is reused), and write nothing outside it. Slow: one real training
through Axolotl on the tiny model."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.request

import pytest
import yaml
from conftest import REPO
from test_serve_shutdown import read_url

from cl_toolkit.registry import VersionRecord, open_registry, promote

pytestmark = pytest.mark.slow

RECIPES = REPO / "recipes" / "firefighter"
FAST = ["--threads", "1", "--max-new-tokens", "8"]
SMOKE = REPO / "data" / "firefighter" / "smoke_suite.jsonl"


def _clt(ws, *args, timeout=900):
    return subprocess.run([sys.executable, "-m", "cl_toolkit", "--workspace", str(ws), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _register_copy_of_parent(ws) -> None:
    """1.1.0: 1.0.0's trained adapter under the 1.1.0 recipe (same answers, so its gate
    passes), registered from a run folder the way training leaves one."""
    src, run = ws / "runs" / "firefighter-1.0.0", ws / "runs" / "firefighter-1.1.0"
    for rel in ("adapter", "data"):
        shutil.copytree(src / rel, run / rel)
    for rel in ("axolotl.yml", "manifest.json", "metrics.json"):
        shutil.copy(src / rel, run / rel)
    # the same adapter learns nothing new: gate it on the regression suite alone (a learning
    # suite would block it, rightly; this test is about the moved workspace)
    recipe = yaml.safe_load((RECIPES / "1.1.0.yml").read_text())
    recipe["gate"]["suites"] = {"regression": recipe["gate"]["suites"]["regression"]}
    (run / "recipe.yml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    with open_registry(ws) as reg:
        parent = reg.require("firefighter", "1.0.0")
        reg.register(VersionRecord(
            model="firefighter", version="1.1.0", parent="1.0.0", strategy="continued_lora",
            base_model=parent.base_model, recipe_sha256="r" * 64, data_sha256=parent.data_sha256,
            run_dir=str(run), adapter_dir=str(run / "adapter"), metrics=parent.metrics, train_seconds=1.0))
        promote(reg, "firefighter", "1.0.0", reason="first release")


@pytest.fixture(scope="module")
def moved(tmp_path_factory, tiny_model_dir):
    """(the tmp folder, the original workspace's path, the copy): trained, evaluated once,
    copied with shutil.copytree, the original deleted."""
    top = tmp_path_factory.mktemp("relocate")
    ws = top / "original" / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    proc = _clt(ws, "train", RECIPES / "1.0.0.yml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _register_copy_of_parent(ws)
    proc = _clt(ws, "eval", "firefighter@1.0.0", "--suite", SMOKE, *FAST, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["cached"] is False
    copy = top / "moved" / "ws"
    shutil.copytree(ws, copy, symlinks=True)
    shutil.rmtree(top / "original")
    return top, ws, copy


def _tree(top, skip):
    """Every path under `top` except those under `skip`, with size and mtime."""
    out = {}
    for p in top.rglob("*"):
        if p == skip or skip in p.parents:
            continue
        st = p.lstat()
        out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _chat(url: str) -> dict:
    body = json.dumps({"model": "firefighter", "messages": [{"role": "user", "content": "What is a hose?"}],
                       "max_tokens": 4}).encode()
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def _serve_once(copy) -> tuple[dict, str]:
    """`clt serve` on the copy (real process, free port): one chat completion, then SIGTERM."""
    cmd = [sys.executable, "-m", "cl_toolkit", "--workspace", str(copy), "serve", "firefighter", "--port", "0",
           "--threads", "1", "--max-tokens", "4"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        answer = _chat(read_url(proc))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    return answer, out


def test_the_moved_workspace_works_and_writes_only_inside_itself(moved, monkeypatch):
    top, original, copy = moved
    monkeypatch.setenv("CLT_HOME", str(copy))
    before = _tree(top, skip=copy)

    gate = _clt(copy, "gate", "firefighter", "--candidate", "1.1.0", *FAST)
    assert gate.returncode == 0, gate.stdout[-2000:] + gate.stderr[-3000:]
    ev = _clt(copy, "eval", "firefighter@champion", "--suite", SMOKE, *FAST, "--json")
    assert ev.returncode == 0, ev.stderr[-3000:]
    result = json.loads(ev.stdout)
    assert result["cached"] is True  # the evaluation made before the move is still valid
    assert (copy / result["cache_path"]).is_file() and not result["cache_path"].startswith("/")
    answer, out = _serve_once(copy)
    assert answer["choices"][0]["message"]["role"] == "assistant" and "stopped: 1 predictions logged" in out
    report = _clt(copy, "report", "firefighter")
    assert report.returncode == 0, report.stderr[-3000:]
    check = _clt(copy, "registry", "check")
    assert check.returncode == 0 and check.stdout.strip().endswith(": ok"), check.stdout + check.stderr

    assert not original.exists() and not (top / "original").exists()
    assert _tree(top, skip=copy) == before  # nothing written outside the copy
    gate_json = json.loads((copy / "runs" / "firefighter-1.1.0" / "gate.json").read_text())
    assert gate_json["passed"] is True and gate_json["baseline"] == "1.0.0"
    evals = gate_json["evaluations"]
    paths = [evals["baseline"], evals["candidate"], *(p for by_version in evals["suites"].values()
                                                      for p in by_version.values())]
    assert len(paths) >= 4  # the regression suite's, then every suite's for each version
    for rel in paths:
        assert not rel.startswith("/") and (copy / rel).is_file()
    with open_registry(copy) as reg:
        assert reg.gate_result("firefighter", "1.1.0")["evaluations"] == gate_json["evaluations"]
    assert (copy / "reports" / "firefighter" / "report.md").is_file()
    assert (copy / "feedback.db").is_file()
    written = [copy / "runs" / "firefighter-1.1.0" / "gate.json", copy / "evals" / "firefighter" / "model_evolution.json",
               *(copy / "evals" / "firefighter").rglob("*.json"), copy / "reports" / "firefighter" / "checklist.json"]
    for path in written:  # the records the commands wrote name no folder of this machine
        text = path.read_text()
        assert str(copy) not in text and str(original) not in text, path


def test_the_registry_stores_no_absolute_path(moved):
    _, original, copy = moved
    with sqlite3.connect(copy / "registry" / "registry.db") as conn:
        rows = conn.execute("SELECT version, run_dir, adapter_dir, artifact_dir, base_model FROM versions").fetchall()
    assert {r[0] for r in rows} == {"1.0.0", "1.1.0"}
    for version, run_dir, adapter_dir, artifact_dir, base_model in rows:
        assert run_dir == f"runs/firefighter-{version}"
        assert artifact_dir == f"firefighter/{version}" and adapter_dir == f"firefighter/{version}/adapter"
        assert base_model == "workspace:models/tiny-llama"
    manifest = json.loads((copy / "runs" / "firefighter-1.0.0" / "manifest.json").read_text())
    assert manifest["profile"]["base_model"] == "workspace:models/tiny-llama"
    assert str(original) not in json.dumps(manifest)
    with open_registry(copy) as reg:  # handed out resolved, in the copy
        rec = reg.require("firefighter", "1.1.0")
    assert rec.adapter_dir == str(copy / "registry" / "artifacts" / "firefighter" / "1.1.0" / "adapter")
    assert rec.run_dir == str(copy / "runs" / "firefighter-1.1.0")
