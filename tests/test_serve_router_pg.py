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
from concurrent.futures import ThreadPoolExecutor

from test_serve_router import poll_health, start_router_process, stop
from test_serve_support import HOST, MODEL, Client, setup_line

from cl_toolkit.feedback.store import open_store
from cl_toolkit.registry import open_registry, rollback
from cl_toolkit.serve.routing import route


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
    share, n = 0.1, 400
    routers = [start_router_process(ws, f"http://{HOST}:{up_port}/v1", share) for _ in range(2)]
    ports = [port for _, port, _ in routers]
    refs = [f"req-{i}" for i in range(n)]

    def send(i: int, ref: str) -> tuple[str, dict]:
        client = Client(ports[i % 2])
        try:
            reply = client.chat(rid=ref, max_tokens=4)
        finally:
            client.close()
        assert reply.status == 200, reply.raw
        return ref, reply.json

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = dict(pool.map(lambda a: send(*a), enumerate(refs)))
        with open_registry(ws) as reg:
            rollback(reg, MODEL, reason="roll both routers back")
        for port in ports:
            poll_health(Client(port), champion="1.0.0")
        after = [f"after-{i}" for i in range(200) if route(f"after-{i}", share) == "champion"][:20]
        answers |= dict(send(i, ref) for i, ref in enumerate(after))
    finally:
        codes = [stop(proc) for proc, _, _ in routers] + [stop(upstream)]
    assert codes == [0, 0, 0], [''.join(err) for _, _, err in routers] + [''.join(up_err)]
    expected = {ref: "1.2.0" if route(ref, share) == "challenger" else "1.1.0" for ref in refs}
    expected |= {ref: "1.0.0" for ref in after}
    with open_store(ws) as store:  # PostgreSQL: both routers' log
        assert store.count("predictions") == len(answers) == n + len(after)  # every answer, once
        for ref, body in answers.items():
            row = store.get_prediction(body["id"])
            meta = json.loads(row["metadata"])
            assert (row["model_version"], meta["client_request_id"]) == (expected[ref], ref)
    assert not (ws / "feedback.db").exists()  # nothing went to a SQLite file
    challengers = sum(1 for ref in refs if expected[ref] == "1.2.0")
    sigma = (n * share * (1 - share)) ** 0.5
    assert abs(challengers - n * share) <= 4 * sigma, challengers
    assert count(up_ws, up_db) == len(answers)  # the upstream answered each forwarded request once

