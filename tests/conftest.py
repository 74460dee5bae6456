"""Shared fixtures. No network: every model is built locally from a config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1", "WANDB_MODE": "disabled",
               "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ[_k] = _v

if os.environ.get("PYTEST_XDIST_WORKER"):
    # several test processes share the cores: one thread each (torch reads this at import),
    # inherited by the training processes the tests start
    for _k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_k, "1")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny-cpu profile's base model, built once per session from the bundled text."""
    from cl_toolkit.training.tiny_model import TinySpec, build_tiny_model, bundled_corpus

    out = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    build_tiny_model(out, TinySpec(), bundled_corpus(REPO))
    return out


@pytest.fixture
def workspace(tmp_path, monkeypatch, tiny_model_dir) -> Path:
    """A fresh workspace (CLT_HOME) that already holds the tiny base model."""
    ws = tmp_path / "ws"
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    monkeypatch.setenv("CLT_HOME", str(ws))
    monkeypatch.chdir(REPO)
    return ws


@pytest.fixture
def proj(tmp_path, monkeypatch) -> Path:
    """A throwaway copy of the project (configs, some data, an empty recipes/ff/), as cwd,
    with its own workspace."""
    from project import make_project

    root = make_project(tmp_path / "proj")
    monkeypatch.chdir(root)
    monkeypatch.setenv("CLT_HOME", str(root / "ws"))
    return root


@pytest.fixture
def shipped_project(tmp_path, monkeypatch) -> Path:
    """A copy of the project's configs, data and shipped recipes, as cwd, with its own workspace."""
    root = tmp_path / "proj"
    for sub in ("configs", "data", "recipes"):
        shutil.copytree(REPO / sub, root / sub)
    monkeypatch.chdir(root)
    monkeypatch.setenv("CLT_HOME", str(root / "ws"))
    return root


@pytest.fixture
def empty_workspace(tmp_path, monkeypatch) -> Path:
    ws = tmp_path / "ws"
    monkeypatch.setenv("CLT_HOME", str(ws))
    monkeypatch.chdir(REPO)
    return ws


@pytest.fixture
def clt(capsys):
    """Run `clt ARGS...` in-process the way a user does: returns (exit code, stdout, stderr)."""
    from cl_toolkit.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        saved = dict(os.environ)  # a command quiets third-party libraries through the environment
        try:
            code = main([str(a) for a in args])
        finally:  # this process is the test's, not the command's: later tests see it as it was
            os.environ.clear()
            os.environ.update(saved)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def clt_proc(ws, *args) -> subprocess.CompletedProcess:
    """The real `clt --workspace WS ARGS` in a process of its own, from the repository, output kept."""
    return subprocess.run([sys.executable, "-m", "cl_toolkit", "--workspace", str(ws), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True)


def trained_workspace(ws: Path, tiny_model_dir: Path, *trainings: tuple) -> Path:
    """A workspace holding the tiny base, then `clt train ARGS...` for each of `trainings`
    in order (each in a process of its own, each required to succeed)."""
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny-llama")
    for args in trainings:
        proc = clt_proc(ws, "train", *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return ws


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL cluster for this test process (tests/pg_support.py), or a skip
    that says why there is none."""
    from pg_support import Cluster, find_bin_dir, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = Cluster(find_bin_dir()).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """The URL of a new, empty PostgreSQL database."""
    return pg_cluster.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_backend(request, monkeypatch) -> str:
    """Runs a test once per backend: on postgresql, $CLT_FEEDBACK_URL and $CLT_REGISTRY_URL
    name a new database (child processes inherit them); on sqlite they are unset."""
    for name in ("CLT_FEEDBACK_URL", "CLT_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        monkeypatch.setenv("CLT_FEEDBACK_URL", url)
        monkeypatch.setenv("CLT_REGISTRY_URL", url)
    return request.param
