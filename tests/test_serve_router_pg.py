"""Issue #20's fleet, for real: two router processes (`clt serve --upstream`) in front of one
upstream process share one PostgreSQL feedback store and registry. 400 requests at a 10%
challenger share are each logged once with the version that answered, the split is within
4σ, and a rollback in the registry moves both routers to the champion without a restart.

The upstream is the built-in server in a workspace of its own, on SQLite by explicit
`--store-url`/`--registry-url` (which win over the environment), so its log stays its own;
every server here is a separate process, since an in-process one would follow this test's
$CLT_FEEDBACK_URL. Skipped, saying why, where no PostgreSQL server binaries are installed."""

from __future__ import annotations

import json

from test_serve_router import start_router_process, stop, two_routers
from test_serve_support import HOST, setup_line

from cl_toolkit.feedback.store import open_store


def sqlite_urls(ws) -> list[str]:
    return ["--store-url", str(ws / "feedback.db"), "--registry-url", str(ws / "registry" / "registry.db")]


def count(ws, url: str | None = None) -> int:
    with open_store(ws, url=url) as store:
        return store.count("predictions")


def test_two_routers_on_one_postgresql_log_each_answer_once_and_follow_a_rollback(
        tmp_path, tiny_model_dir, pg_url, monkeypatch):
    up_ws, ws = tmp_path / "upstream", tmp_path / "ws"
    for name in ("CLT_FEEDBACK_URL", "CLT_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    setup_line(up_ws, tiny_model_dir)  # the upstream's own line, on SQLite
    up_db = str(up_ws / "feedback.db")
    monkeypatch.setenv("CLT_FEEDBACK_URL", pg_url)  # from here on: this test and the routers
    monkeypatch.setenv("CLT_REGISTRY_URL", pg_url)
    setup_line(ws, tiny_model_dir)  # champion 1.1.0, challenger 1.2.0, in PostgreSQL
    upstream, up_port, up_err = start_router_process(up_ws, None, 0.5, extra=sqlite_urls(up_ws))
    try:
        answers, expected = two_routers(ws, f"http://{HOST}:{up_port}/v1")
    finally:
        code = stop(upstream)
    assert code == 0, "".join(up_err)
    with open_store(ws) as store:  # PostgreSQL: both routers' log
        assert store.count("predictions") == len(answers) == 420  # every answer, once
        for ref, body in answers.items():
            row = store.get_prediction(body["id"])
            meta = json.loads(row["metadata"])
            assert (row["model_version"], meta["client_request_id"]) == (expected[ref], ref)
    assert not (ws / "feedback.db").exists()  # nothing went to a SQLite file
    assert count(up_ws, up_db) == len(answers)  # the upstream answered each forwarded request once
