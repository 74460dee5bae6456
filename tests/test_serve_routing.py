"""Champion and challenger where the traffic is: the split follows the configured share
(within a binomial bound) and the stable router, every request is logged with the version
that answered it, and promotions and rollbacks apply while serving, without a restart."""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_serve_support import MODEL, Client, setup_line, start

from cl_toolkit.feedback.store import open_store
from cl_toolkit.registry import open_registry, promote, rollback
from cl_toolkit.serve.engine import load_version
from cl_toolkit.serve.routing import route

SWITCH_TIMEOUT_S = 60  # a deadline, not a wait: generous for a loaded machine


@pytest.fixture
def ws(tmp_path, tiny_model_dir):
    ws = tmp_path / "ws"
    setup_line(ws, tiny_model_dir)  # champion 1.1.0 (after 1.0.0), challenger 1.2.0
    return ws


def logged(ws) -> dict[str, dict]:
    """The logged rows by the client's own id (X-Request-Id; the server issues the real ids)."""
    with open_store(ws) as store:
        rows = store.conn.execute("SELECT request_id, model_version, metadata FROM predictions").fetchall()
    out = {}
    for rid, v, meta in rows:
        meta = json.loads(meta)
        assert rid.startswith("chatcmpl-") and rid != meta["client_request_id"]
        out[meta["client_request_id"]] = {"version": v, **meta}
    return out


def send_all(port: int, rids: list[str], workers: int = 4) -> dict[str, tuple[str, str]]:
    """rid -> (arm, version) for each request, sent by `workers` keep-alive clients."""
    chunks = [rids[i::workers] for i in range(workers)]

    def run(part):
        c, out = Client(port), {}
        try:
            for rid in part:
                reply = c.chat(rid=rid, max_tokens=1)
                assert reply.status == 200, reply.raw
                out[rid] = (reply.headers["x-arm"], reply.headers["x-model-version"])
        finally:
            c.close()
        return out

    with ThreadPoolExecutor(workers) as pool:
        return {k: v for part in pool.map(run, chunks) for k, v in part.items()}


def test_the_split_follows_the_share_and_every_request_is_logged(ws):
    share, n = 0.3, 400
    server = start(ws, challenger_share=share)
    rids = [f"split-{i}" for i in range(n)]
    try:
        answered = send_all(server.port, rids)
    finally:
        server.shutdown()
    challengers = sum(arm == "challenger" for arm, _ in answered.values())
    bound = 4 * math.sqrt(n * share * (1 - share))  # 4 sigma of Binomial(n, share)
    assert abs(challengers - n * share) <= bound, (challengers, n * share, bound)
    versions = {"champion": "1.1.0", "challenger": "1.2.0"}
    for rid, (arm, version) in answered.items():
        assert arm == route(rid, share) and version == versions[arm]
    rows = logged(ws)
    assert len(rows) == n
    for rid, (arm, version) in answered.items():
        assert (rows[rid]["version"], rows[rid]["arm"], rows[rid]["model"]) == (version, arm, MODEL)


def test_without_a_challenger_everything_goes_to_the_champion(tmp_path, tiny_model_dir):
    ws = tmp_path / "ws"
    setup_line(ws, tiny_model_dir, challenger=False)
    server = start(ws, challenger_share=0.5)
    try:
        answered = send_all(server.port, [f"solo-{i}" for i in range(20)], workers=2)
    finally:
        server.shutdown()
    assert set(answered.values()) == {("champion", "1.1.0")}


def wait_for_champion(client: Client, rid: str, version: str) -> dict:
    """Poll /health (bounded) until `version` is the champion, then ask as `rid`."""
    deadline = time.monotonic() + SWITCH_TIMEOUT_S
    while time.monotonic() < deadline:
        if client.request("GET", "/health").json["champion"] == version:
            return client.chat(rid=rid, max_tokens=4).json
        time.sleep(0.05)
    raise AssertionError(f"still not serving {version} after {SWITCH_TIMEOUT_S} s")


def test_a_rollback_while_serving_switches_versions_without_a_restart(tmp_path, tiny_model_dir):
    ws = tmp_path / "ws"
    setup_line(ws, tiny_model_dir, challenger=False)
    server = start(ws)
    client = Client(server.port)
    try:
        before = client.chat(rid="before", max_tokens=4).json
        assert before["model"] == f"{MODEL}@1.1.0"
        with open_registry(ws) as reg:
            assert rollback(reg, MODEL, reason="bad answers").version == "1.0.0"
        after = wait_for_champion(client, "after", "1.0.0")
        assert after["model"] == f"{MODEL}@1.0.0"
        assert after["choices"][0]["message"]["content"] != before["choices"][0]["message"]["content"]
        health = client.request("GET", "/health").json
        assert health["champion"] == "1.0.0" and health["reloads"] == 1
    finally:
        client.close()
        server.shutdown()
    rows = logged(ws)
    assert (rows["before"]["version"], rows["after"]["version"]) == ("1.1.0", "1.0.0")


def test_promoting_the_challenger_reuses_its_loaded_model(ws):
    server = start(ws, challenger_share=0.5)
    client = Client(server.port)
    try:
        challenger = server.watcher.current.challenger
        with open_registry(ws) as reg:
            promote(reg, MODEL, "1.2.0", reason="it won", force=True)
        wait_for_champion(client, "promoted", "1.2.0")
        current = server.watcher.current
        assert current.champion is challenger and current.challenger is None  # not loaded again
        answered = send_all(server.port, [f"after-{i}" for i in range(10)], workers=2)
        assert set(answered.values()) == {("champion", "1.2.0")}
    finally:
        client.close()
        server.shutdown()


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(ws):
    def loader(rec, device):
        if rec.version == "1.0.0":
            raise OSError("adapter files are unreadable")
        return load_version(rec, device)

    from cl_toolkit.serve import ChatServer, ServeSettings

    # no challenger share: a request without X-Request-Id is routed by a random id, which would reach
    # the challenger one time in ten and make the version below a matter of chance
    server = ChatServer(ServeSettings(model=MODEL, port=0, threads=1, max_tokens=2, reload_interval=0.1,
                                      challenger_share=0.0, workspace=ws), loader=loader).start()
    client = Client(server.port)
    try:
        with open_registry(ws) as reg:
            rollback(reg, MODEL, reason="try the old one")
        deadline = time.monotonic() + SWITCH_TIMEOUT_S
        while server.watcher.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "adapter files are unreadable" in server.watcher.last_error
        reply = client.chat(max_tokens=2)
        assert reply.status == 200 and reply.headers["x-model-version"] == "1.1.0"
    finally:
        client.close()
        server.shutdown()


def test_a_client_may_send_back_a_version_issued_before_a_restart(ws):
    """`LINE@VERSION` names any registered version of the line (an answer from before this
    server started carries one); the router still picks the arm; other names are a 404."""
    server = start(ws, challenger_share=0.0)  # serves 1.1.0 only: 1.0.0 was never answered here
    client = Client(server.port)
    try:
        reply = client.chat(model=f"{MODEL}@1.0.0", max_tokens=1)
        assert reply.status == 200, reply.raw
        assert reply.headers["x-model-version"] == "1.1.0"
        missing = client.chat(model=f"{MODEL}@9.9.9", max_tokens=1)
        assert missing.status == 404 and f"{MODEL}@1.0.0" in missing.raw.decode()
    finally:
        client.close()
        server.shutdown()
