"""`clt serve LINE --upstream URL`, the router, on loopback: the built-in server (its own
workspace, the same versions) is the upstream, answering `LINE-VERSION` with exactly that
version, as vLLM answers a LoRA module's name. The router answers with its own ids,
tokens and fingerprints, logs each answer once with the version that gave it, streams,
turns a dead or silent upstream into 502/504 with a line for the operator, and follows the
registry's aliases without a restart; two router processes share one store.
`clt serve LINE --print-vllm` prints vLLM's command line for the aliases."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from test_serve_support import FAST, HOST, MODEL, REPO_ROOT, Client, register, setup_line, start

from cl_toolkit.feedback.store import open_store
from cl_toolkit.registry import open_registry, promote, rollback
from cl_toolkit.serve import ChatServer, ServeSettings
from cl_toolkit.serve.protocol import ApiError, parse_chat
from cl_toolkit.serve.routing import route

SHARE = 0.5


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, tiny_model_dir):
    """The built-in server as the upstream, in a workspace of its own (its log is its own)."""
    ws = tmp_path_factory.mktemp("upstream") / "ws"
    setup_line(ws, tiny_model_dir)
    srv = start(ws, challenger_share=SHARE)
    yield srv
    srv.shutdown()


@pytest.fixture
def ws(tmp_path, tiny_model_dir):
    ws = tmp_path / "ws"
    setup_line(ws, tiny_model_dir)  # champion 1.1.0, challenger 1.2.0, as the upstream's
    return ws


def start_router(ws, upstream_url: str, **settings) -> ChatServer:
    options = {**FAST, "port": 0, "host": HOST, "workspace": ws, "challenger_share": SHARE,
               "upstream": upstream_url, **settings}
    return ChatServer(ServeSettings(model=MODEL, **options)).start()


@pytest.fixture
def router(ws, upstream):
    srv = start_router(ws, f"{upstream.url}/v1")
    yield srv
    srv.shutdown()


def ref_for(arm: str, share: float = SHARE, prefix: str = "r") -> str:
    return next(f"{prefix}{i}" for i in range(1000) if route(f"{prefix}{i}", share) == arm)


def stored(ws, rid: str) -> dict | None:
    with open_store(ws) as store:
        row = store.get_prediction(rid)
    return row and {**row, "metadata": json.loads(row["metadata"])}


def count(ws) -> int:
    with open_store(ws) as store:
        return store.count("predictions")


def upstream_row(upstream: ChatServer, rid: str, wait_s: float = 20.0) -> dict:
    """The upstream's own log row of an answer (its writer may still be writing it)."""
    deadline = time.monotonic() + wait_s
    while (row := stored(upstream.settings.workspace, rid)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert row is not None, rid
    return row


def text_of(body: dict) -> str:
    return body["choices"][0]["message"]["content"]


def test_a_request_naming_line_dash_version_pins_that_version():
    body = {"messages": [{"role": "user", "content": "hi"}]}
    parse = partial(parse_chat, model=MODEL, max_tokens=4, versions={"1.0.0", "1.1.0"})
    assert parse({**body, "model": f"{MODEL}-1.0.0"}).pinned == "1.0.0"
    assert parse({**body, "model": f"{MODEL}@1.0.0"}).pinned is None  # a name sent back: the arm decides
    assert parse({**body, "model": MODEL}).pinned is None
    for name in (f"{MODEL}-9.9.9", f"{MODEL}x-1.0.0", "other-1.0.0"):
        with pytest.raises(ApiError) as e:
            parse({**body, "model": name})
        assert (e.value.status, e.value.code) == (404, "model_not_found")


def test_answers_come_from_the_named_version_with_the_routers_ids_and_are_logged_once(ws, upstream, router):
    client, direct = Client(router.port), Client(upstream.port)
    replies = {}
    for arm, version in (("champion", "1.1.0"), ("challenger", "1.2.0")):
        ref = ref_for(arm)
        reply = client.chat(rid=ref, max_tokens=6)
        body = reply.json
        assert reply.status == 200 and body["model"] == f"{MODEL}@{version}", body
        rid = body["id"]
        assert rid.startswith("chatcmpl-") and body["feedback_token"] == router.tokens.sign(rid)
        assert (reply.headers["x-request-id"], reply.headers["x-client-request-id"], reply.headers["x-arm"],
                reply.headers["x-model-version"]) == (rid, ref, arm, version)
        own = direct.chat(model=f"{MODEL}-{version}", max_tokens=6).json  # the upstream, asked directly
        assert text_of(body) == text_of(own)
        assert body["system_fingerprint"] == own["system_fingerprint"] is not None  # the same weights
        replies[rid] = (arm, version, text_of(body), ref)
    assert text_of_versions_differ(replies)
    rated = next(iter(replies))
    fb = client.feedback(request_id=rated, feedback_token=router.tokens.sign(rated), thumbs="up")
    assert fb.status == 200 and fb.json["status"] == "added"
    router.shutdown()
    assert count(ws) == 2
    for rid, (arm, version, text, ref) in replies.items():
        row = stored(ws, rid)
        assert (row["model_version"], row["output"], row["input"]) == (version, text, "What is a hose?")
        assert {"arm": arm, "model": MODEL, "stream": False, "client_request_id": ref}.items() <= row["metadata"].items()
        assert row["metadata"]["completion_tokens"] >= 1 and row["metadata"]["prompt_tokens"] >= 1
        seen = upstream_row(upstream, row["metadata"]["upstream_id"])  # the upstream answered that version
        assert (seen["model_version"], seen["output"], seen["metadata"]["arm"]) == (version, text, "pinned")
    with open_store(ws) as store:
        assert [f["thumbs"] for f in store.get_feedback(rated)] == [1]


def text_of_versions_differ(replies: dict) -> bool:
    return len({text for _, _, text, _ in replies.values()}) == 2


def test_a_stream_passes_through_as_server_sent_events_and_is_logged(ws, upstream, router):
    client = Client(router.port)
    plain = client.chat(rid=ref_for("challenger", prefix="p"), max_tokens=6).json
    reply = client.chat(rid=ref_for("challenger"), max_tokens=6, stream=True)
    assert reply.status == 200 and reply.headers["content-type"] == "text/event-stream"
    rid = reply.headers["x-request-id"]
    events = reply.events()
    assert events[-1] == "[DONE]"
    chunks = events[:-1]  # no usage chunk: the client did not ask (the router did, for its log)
    assert all(c["id"] == rid and c["model"] == f"{MODEL}@1.2.0" and c["choices"] for c in chunks)
    assert all(c["feedback_token"] == router.tokens.sign(rid) for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:]]
    assert sum(1 for p in pieces if p) >= 2 and "".join(pieces) == text_of(plain)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    with_usage = client.chat(rid=ref_for("champion"), max_tokens=6, stream=True,
                             stream_options={"include_usage": True}).events()
    assert with_usage[-2]["choices"] == [] and with_usage[-2]["usage"]["completion_tokens"] >= 1
    router.shutdown()
    row = stored(ws, rid)
    assert (row["output"], row["model_version"]) == ("".join(pieces), "1.2.0")
    assert row["metadata"]["stream"] is True and row["metadata"]["first_token_ms"] > 0
    assert row["metadata"]["completion_tokens"] >= 2 and row["metadata"]["client_disconnected"] is False
    assert count(ws) == 3


def closed_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def test_an_upstream_that_is_down_is_a_502_and_a_line_for_the_operator(ws, capsys):
    srv = start_router(ws, f"http://{HOST}:{closed_port()}/v1")
    try:
        client = Client(srv.port)
        reply = client.chat(rid=ref_for("challenger"), max_tokens=4)
        streamed = client.chat(rid=ref_for("champion"), max_tokens=4, stream=True)
        health = client.request("GET", "/health").json
    finally:
        srv.shutdown()
    assert reply.status == 502 and reply.json["error"]["code"] == "upstream_unavailable"
    assert reply.json["error"]["type"] == "server_error" and "Traceback" not in reply.raw.decode()
    assert streamed.status == 502 and streamed.headers["content-type"] == "application/json"
    rid = reply.headers["x-request-id"]
    err = capsys.readouterr().err
    assert re.search(rf"^clt serve: upstream failed {rid} \(challenger 1\.2\.0\): 502 upstream_unavailable: ",
                     err, re.MULTILINE), err
    assert health["upstream"]["errors"] == 2 and "upstream_unavailable" in health["upstream"]["last_error"]
    assert count(ws) == 0  # the store holds answers; there was none


def test_an_upstream_that_stays_silent_is_a_504(ws, capsys):
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen(8)  # accepts connections (the kernel does), never answers
    try:
        srv = start_router(ws, f"http://{HOST}:{silent.getsockname()[1]}/v1", upstream_timeout_s=0.5)
        try:
            started = time.monotonic()
            reply = Client(srv.port).chat(max_tokens=4)
            took = time.monotonic() - started
        finally:
            srv.shutdown()
    finally:
        silent.close()
    assert reply.status == 504 and reply.json["error"]["code"] == "upstream_timeout", reply.json
    assert 0.4 < took < 10
    assert "504 upstream_timeout" in capsys.readouterr().err and count(ws) == 0


class ScriptedUpstream:
    """A loopback socket that answers every request with the same raw bytes, then closes:
    an upstream misbehaving in ways a real one only does on a bad day."""

    def __init__(self, reply: bytes):
        self.reply, self.sock = reply, socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        self.url = f"http://{HOST}:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                size = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)[1])
                while len(body) < size:
                    body += conn.recv(65536)
                conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def sse_line(event: dict) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def test_a_stream_that_breaks_off_ends_with_an_error_event_and_an_answer_without_usage_is_served(ws, capsys):
    piece = {"id": "up-1", "choices": [{"index": 0, "delta": {"content": "half an"}, "finish_reason": None}]}
    broken = ScriptedUpstream(SSE_HEAD + sse_line(piece))  # and then the connection closes
    whole = {"id": "up-2", "object": "chat.completion",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "an answer"}, "finish_reason": "stop"}]}
    data = json.dumps(whole).encode()
    no_usage = ScriptedUpstream(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                + str(len(data)).encode() + b"\r\nConnection: close\r\n\r\n" + data)
    try:
        srv = start_router(ws, broken.url)
        try:
            streamed = Client(srv.port).chat(rid=ref_for("champion"), max_tokens=4, stream=True)
        finally:
            srv.shutdown()
        srv = start_router(ws, no_usage.url)
        try:
            plain = Client(srv.port).chat(rid=ref_for("champion"), max_tokens=4)
        finally:
            srv.shutdown()
    finally:
        broken.close()
        no_usage.close()
    events = streamed.events()
    assert streamed.status == 200 and events[1]["choices"][0]["delta"] == {"content": "half an"}
    assert events[-1]["error"]["type"] == "server_error" and "[DONE]" not in events
    rid = streamed.headers["x-request-id"]
    assert f"clt serve: upstream failed {rid} (champion 1.1.0): 502 upstream_error:" in capsys.readouterr().err
    assert stored(ws, rid) is None  # half an answer is not an answer
    assert plain.status == 200 and text_of(plain.json) == "an answer"
    assert plain.json["usage"] == {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}
    row = stored(ws, plain.json["id"])
    assert (row["output"], row["metadata"]["upstream_id"], row["metadata"]["prompt_tokens"]) == ("an answer", "up-2", None)
    assert count(ws) == 1


def test_the_upstreams_own_refusals_reach_the_client(ws, upstream, router, tiny_model_dir):
    client = Client(router.port)
    long = client.chat("hose " * 5000, rid=ref_for("champion"), max_tokens=4)
    assert long.status == 400 and long.json["error"]["code"] == "context_length_exceeded"  # the upstream's
    register(ws, "1.3.0", (tiny_model_dir.parent / "adapter-3"), tiny_model_dir, parent="1.2.0")  # not upstream
    with open_registry(ws) as reg:
        promote(reg, MODEL, "1.3.0", to="challenger", reason="only the router's registry has it", force=True)
    wait_for(router, challenger="1.3.0")
    missing = client.chat(rid=ref_for("challenger"), max_tokens=4)
    assert missing.status == 502 and "answered 404" in missing.json["error"]["message"]
    assert "--print-vllm" in missing.json["error"]["message"]
    router.shutdown()
    assert count(ws) == 0


def wait_for(srv: ChatServer, wait_s: float = 20.0, **versions) -> None:
    deadline = time.monotonic() + wait_s
    while {k: srv.watcher.current.versions[k] for k in versions} != versions:
        assert time.monotonic() < deadline, srv.watcher.current.versions
        time.sleep(0.05)


def test_promotion_and_rollback_move_the_router_without_a_restart(ws, upstream, router):
    client = Client(router.port)
    champion = ref_for("champion")
    assert client.chat(rid=champion, max_tokens=4).json["model"] == f"{MODEL}@1.1.0"
    with open_registry(ws) as reg:
        rollback(reg, MODEL, reason="1.1.0 misbehaves")  # back to 1.0.0, which no arm upstream serves
    health = poll_health(client, champion="1.0.0")
    assert health["reloads"] == 1
    after = client.chat(rid=champion, max_tokens=4).json
    assert after["model"] == f"{MODEL}@1.0.0"
    with open_registry(ws) as reg:
        promote(reg, MODEL, "1.2.0", reason="the challenger won", force=True)
    poll_health(client, champion="1.2.0")
    promoted = client.chat(rid=champion, max_tokens=4).json
    assert promoted["model"] == f"{MODEL}@1.2.0"
    router.shutdown()
    versions = [stored(ws, r["id"])["model_version"] for r in (after, promoted)]
    assert versions == ["1.0.0", "1.2.0"]
    seen = upstream_row(upstream, stored(ws, after["id"])["metadata"]["upstream_id"])
    assert seen["model_version"] == "1.0.0"


def poll_health(client: Client, wait_s: float = 20.0, **versions) -> dict:
    deadline = time.monotonic() + wait_s
    while True:
        health = client.request("GET", "/health").json
        if all(health[k] == v for k, v in versions.items()):
            return health
        assert time.monotonic() < deadline, health
        time.sleep(0.05)


def test_a_connection_the_upstream_closed_while_idle_is_retried_once(ws, tiny_model_dir, tmp_path):
    up_ws = tmp_path / "up"
    setup_line(up_ws, tiny_model_dir)
    up = start(up_ws, challenger_share=SHARE, idle_timeout_s=0.2)  # closes idle keep-alives fast
    srv = start_router(ws, f"{up.url}/v1")
    try:
        client = Client(srv.port)
        first = client.chat(rid=ref_for("champion"), max_tokens=4)
        time.sleep(0.6)  # the router's pooled connection is closed by now; the router cannot know
        second = client.chat(rid=ref_for("champion"), max_tokens=4)
    finally:
        srv.shutdown()
        up.shutdown()
    assert (first.status, second.status) == (200, 200), second.raw
    assert count(up_ws) == 2 and count(ws) == 2  # forwarded once each


# --- --print-vllm ------------------------------------------------------------------------------

def test_print_vllm_is_the_command_line_for_the_aliases(ws, tiny_model_dir, clt, monkeypatch):
    monkeypatch.setenv("CLT_HOME", str(ws))
    code, out, err = clt("serve", MODEL, "--print-vllm")
    assert code == 0, err
    with open_registry(ws) as reg:  # the registry's copies, resolved from the workspace
        adapter = {v: reg.get(MODEL, v).adapter_dir for v in ("1.1.0", "1.2.0")}
    assert all(path.startswith(str(ws)) and os.path.isdir(path) for path in adapter.values())
    assert shlex.split(out) == ["vllm", "serve", str(tiny_model_dir), "--enable-lora", "--lora-modules",
                                f"{MODEL}-1.1.0={adapter['1.1.0']}", f"{MODEL}-1.2.0={adapter['1.2.0']}",
                                "--max-loras", "2", "--max-lora-rank", "8"]
    assert "note: ff 1.1.0: its adapter has modules_to_save (lm_head), which vLLM refuses" in err
    code, out, _ = clt("serve", MODEL, "--print-vllm", "--challenger-share", "0")
    assert code == 0 and shlex.split(out)[4:] == ["--lora-modules", f"{MODEL}-1.1.0={adapter['1.1.0']}",
                                                  "--max-loras", "1", "--max-lora-rank", "8"]


def test_print_vllm_refuses_two_bases_and_a_line_without_champion(ws, tiny_model_dir, clt, monkeypatch, tmp_path):
    monkeypatch.setenv("CLT_HOME", str(ws))
    other = tmp_path / "other-base"
    other.mkdir()
    register(ws, "2.0.0", tiny_model_dir.parent / "adapter-3", other, parent="1.2.0")
    with open_registry(ws) as reg:
        promote(reg, MODEL, "2.0.0", to="challenger", reason="a new base", force=True)
    code, out, err = clt("serve", MODEL, "--print-vllm")
    assert (code, out) == (2, "") and "different base models" in err and "Traceback" not in err
    monkeypatch.setenv("CLT_HOME", str(tmp_path / "empty"))
    code, out, err = clt("serve", MODEL, "--print-vllm")
    assert (code, out) == (2, "") and "has no champion" in err


def test_a_bad_upstream_url_is_bad_input(clt, ws, monkeypatch):
    monkeypatch.setenv("CLT_HOME", str(ws))
    for url, says in (("ftp://h:1/v1", "scheme must be http"), ("http://user:pw@h:1/v1", "--upstream-api-key"),
                      ("http://h:99999/v1", "port")):
        code, out, err = clt("serve", MODEL, "--upstream", url)
        assert code == 2 and says in err and "pw" not in err.replace(url, ""), (url, err)


# --- two router processes, one upstream, one store ---------------------------------------------

def start_router_process(ws, upstream_url: str | None, share: float,
                         extra: list[str] = ()) -> tuple[subprocess.Popen, int, list[str]]:
    """`clt serve` in a process of its own: a router, or (no `upstream_url`) the built-in
    server; `extra` are options of the `clt` group (--store-url ...)."""
    cmd = [sys.executable, "-m", "cl_toolkit", "--workspace", str(ws), *extra, "serve", MODEL, "--host", HOST,
           "--port", "0", *(["--upstream", upstream_url] if upstream_url else []), "--challenger-share", str(share),
           "--reload-interval", "0.2", "--max-tokens", "4"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found, err = [], []
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()

    def read() -> None:
        for line in proc.stdout:
            if m := re.search(rf"http://{re.escape(HOST)}:(\d+)", line):
                found.append(int(m[1]))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 120
    while not found and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found, f"router did not start (exit {proc.poll()}): {''.join(err)}"
    return proc, found[0], err


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def two_routers(ws, upstream_url: str, share: float = 0.1, n: int = 400) -> tuple[dict, dict]:
    """Two router processes in front of `upstream_url`, sharing ws's store and registry: n
    requests at a `share` challenger split, then a rollback, which both must follow without a
    restart, and 20 champion-routed requests. -> ({client ref: answer}, {client ref: version
    the routing implies}); the routers' exits are checked."""
    routers = [start_router_process(ws, upstream_url, share) for _ in range(2)]
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
        codes = [stop(proc) for proc, _, _ in routers]
    assert codes == [0, 0], [''.join(err) for _, _, err in routers]
    expected = {ref: "1.2.0" if route(ref, share) == "challenger" else "1.1.0" for ref in refs}
    expected |= {ref: "1.0.0" for ref in after}
    challengers = sum(1 for ref in refs if expected[ref] == "1.2.0")
    sigma = (n * share * (1 - share)) ** 0.5
    assert abs(challengers - n * share) <= 4 * sigma, challengers
    return answers, expected


def test_two_routers_share_one_store_split_traffic_and_both_follow_a_rollback(ws, upstream):
    before = count(upstream.settings.workspace)
    answers, expected = two_routers(ws, f"{upstream.url}/v1")
    assert count(ws) == len(answers) == 420  # every answer logged, once
    for ref, body in answers.items():
        row = stored(ws, body["id"])
        assert (row["model_version"], row["metadata"]["client_request_id"]) == (expected[ref], ref)
        assert body["model"] == f"{MODEL}@{expected[ref]}"
    deadline = time.monotonic() + 30  # the upstream answered each forwarded request once
    while count(upstream.settings.workspace) - before < len(answers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count(upstream.settings.workspace) - before == len(answers)
