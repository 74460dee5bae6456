"""Model evolution: every fresh evaluation of a model line, appended to
`<workspace>/evals/<model>/model_evolution.json`, so reports can show how each domain
moved across versions. Written atomically, under a file lock (evaluations may run side
by side)."""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path

from cl_toolkit.core import semver
from cl_toolkit.core.files import atomic_write_json

SCHEMA_VERSION = 1


def evals_dir(workspace: Path, model: str) -> Path:
    return Path(workspace) / "evals" / model


def evolution_path(workspace: Path, model: str) -> Path:
    return evals_dir(workspace, model) / "model_evolution.json"


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_evolution(workspace: Path, model: str) -> dict:
    path = evolution_path(workspace, model)
    if not path.is_file():
        return {"schema_version": SCHEMA_VERSION, "model": model, "evaluations": []}
    return json.loads(path.read_text(encoding="utf-8"))


def entry_for(result: dict) -> dict:
    """The part of an evaluation result the history keeps: scores, not outputs."""
    return {
        "version": result["version"], "suite": result["suite"], "suite_sha256": result["suite_sha256"],
        "evaluated_at": result["evaluated_at"], "accuracy": result["accuracy"],
        "passed": result["passed"], "total": result["total"],
        "per_domain": {d: s["accuracy"] for d, s in result["per_domain"].items()},
        "per_criticality": {c: s["accuracy"] for c, s in result["per_criticality"].items()},
        "settings": result["settings"],
        "tokens_per_second": result["performance"]["tokens_per_second"],
    }


def append_evaluation(workspace: Path, result: dict) -> Path:
    """Append one evaluation to its model's history."""
    path = evolution_path(workspace, result["model"])
    with _locked(path):
        doc = load_evolution(workspace, result["model"])
        doc["evaluations"].append(entry_for(result))
        atomic_write_json(path, doc)
    return path


def _version_key(version: str):
    try:
        return (0, semver.parse(version))
    except ValueError:  # not semver: after every semver version, by name
        return (1, version)


def trend(evolution: dict, suite_sha256: str) -> list[dict]:
    """The latest evaluation of each version on one suite, oldest version first."""
    latest: dict[str, dict] = {}
    for e in evolution.get("evaluations", []):
        if e["suite_sha256"] == suite_sha256:
            latest[e["version"]] = e
    return [latest[v] for v in sorted(latest, key=_version_key)]
