"""Shared helpers for the feedback tests: rows in the import format and CLI runners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cl_toolkit.cli import cli, main
from cl_toolkit.feedback.store import FeedbackStore, open_store


# import these into a test module to use the fixtures "fws" and "store"
@pytest.fixture(name="fws")
def fws_fixture(tmp_path, monkeypatch) -> Path:
    """An empty workspace, set as CLT_HOME."""
    ws = tmp_path / "ws"
    monkeypatch.setenv("CLT_HOME", str(ws))
    return ws


@pytest.fixture(name="store")
def store_fixture(fws) -> FeedbackStore:
    """The workspace's feedback store, closed after the test."""
    s = open_store()
    yield s
    s.close()


def row(request_id: str, *, input: str = "How wide is a 1.75in line?", output: str = "1.75 in",
        model_version: str = "1.0.0", timestamp: str | None = "2025-04-01T12:00:00Z",
        rating: int | None = None, thumbs: int | None = None, correction: str | None = None,
        domain: str | None = "hose", confidence: float | None = 0.9,
        quality_score: float | None = None, **extra) -> dict:
    """One import row; feedback keys that are None are left out."""
    r = {"request_id": request_id, "input": input, "output": output,
         "model_version": model_version,
         "metadata": {"domain": domain, "confidence": confidence, "latency_ms": 120}}
    if timestamp is not None:
        r["timestamp"] = timestamp
    if quality_score is not None:
        r["metadata"]["quality_score"] = quality_score
    feedback = {k: v for k, v in (("rating", rating), ("thumbs", thumbs),
                                  ("correction", correction)) if v is not None}
    if feedback:
        r["user_feedback"] = feedback
    r.update(extra)
    return r


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows (dicts, or raw str/bytes lines) as a JSONL file."""
    with open(path, "wb") as f:
        for r in rows:
            if isinstance(r, dict):
                r = json.dumps(r, ensure_ascii=False)
            f.write((r.encode("utf-8") if isinstance(r, str) else r) + b"\n")
    return path


def invoke(args: list[str]):
    """Run `clt ARGS` in-process; exceptions stay on result.exception."""
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """Run `clt ARGS` as users do: (exit code, stdout, stderr)."""
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
