"""A real server on a free loopback port with the tiny model and real adapters: answers
arrive and are logged with their version and arm, streams are Server-Sent Events made of
real pieces of the answer, feedback lands on its row, and bad requests get OpenAI-style
errors with the right status codes."""

from __future__ import annotations

import json
import socket

import pytest
from test_serve_support import HOST, MODEL, TIMEOUT_S, Client, setup_line, start

from cl_toolkit.feedback.store import open_store
from cl_toolkit.registry import open_registry, weights_sha256
from cl_toolkit.serve.routing import route

BODY_LIMIT = 4096


@pytest.fixture
def ws(tmp_path, tiny_model_dir):
    ws = tmp_path / "ws"
    setup_line(ws, tiny_model_dir)  # champion 1.1.0, challenger 1.2.0
    return ws


@pytest.fixture
def server(ws):
    srv = start(ws, challenger_share=0.5, max_body_bytes=BODY_LIMIT)
    yield srv
    srv.shutdown()


@pytest.fixture
def client(server):
    c = Client(server.port)
    yield c
    c.close()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory, tiny_model_dir):
    """One server for the tests that only read answers (errors, health, models)."""
    ws = tmp_path_factory.mktemp("serve-shared") / "ws"
    setup_line(ws, tiny_model_dir)
    srv = start(ws, challenger_share=0.5, max_body_bytes=BODY_LIMIT)
    yield srv
    srv.shutdown()


@pytest.fixture
def shared(shared_server):
    c = Client(shared_server.port)
    yield c
    c.close()


def rid_for(arm: str, share: float = 0.5, prefix: str = "r") -> str:
    return next(f"{prefix}{i}" for i in range(1000) if route(f"{prefix}{i}", share) == arm)


def stored(ws, rid: str) -> dict:
    with open_store(ws) as store:
        row = store.get_prediction(rid)
    assert row is not None, rid
    return {**row, "metadata": json.loads(row["metadata"])}


def test_start_up_says_what_it_does_and_when_it_is_ready(ws, capsys):
    srv = start(ws, challenger_share=0.5)
    try:
        out, err = capsys.readouterr()
    finally:
        srv.shutdown()
    lines = err.splitlines()
    assert out == ""  # `clt serve` prints its URL on stdout; start-up progress goes to stderr
    assert lines[0] == f"starting clt serve {MODEL}: opening the feedback store  0:00 elapsed"
    assert lines[-1].startswith(f"starting clt serve {MODEL}: ready in 0:")
    assert lines[-1].endswith("(serving champion 1.1.0, challenger 1.2.0)")


def test_a_chat_answer_arrives_and_is_logged_with_its_version(ws, server, client):
    ref = rid_for("champion")  # the client's own id: a reference that routes, never the id
    reply = client.chat(rid=ref, max_tokens=4)
    assert reply.status == 200
    body = reply.json
    rid = body["id"]
    assert rid.startswith("chatcmpl-") and body["object"] == "chat.completion" and body["model"] == f"{MODEL}@1.1.0"
    answer = body["choices"][0]["message"]["content"]
    assert answer and body["choices"][0]["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] <= 4
    assert (reply.headers["x-request-id"], reply.headers["x-client-request-id"], reply.headers["x-model-version"],
            reply.headers["x-arm"]) == (rid, ref, "1.1.0", "champion")
    assert body["feedback_token"] == reply.headers["x-feedback-token"] == server.tokens.sign(rid)
    server.shutdown()  # drains the writer
    row = stored(ws, rid)
    assert (row["input"], row["output"], row["model_version"]) == ("What is a hose?", answer, "1.1.0")
    assert row["latency_ms"] > 0
    assert {"model": MODEL, "arm": "champion", "stream": False, "client_request_id": ref,
            "end_user": None}.items() <= row["metadata"].items()


def test_the_two_arms_answer_differently_and_ids_are_made_when_missing(ws, server, client):
    champion = client.chat(rid=rid_for("champion"), max_tokens=6).json
    challenger = client.chat(rid=rid_for("challenger"), max_tokens=6).json
    assert challenger["model"] == f"{MODEL}@1.2.0"
    assert champion["choices"][0]["message"]["content"] != challenger["choices"][0]["message"]["content"]
    made = client.chat(max_tokens=2)
    assert made.json["id"].startswith("chatcmpl-") and made.headers["x-request-id"] == made.json["id"]
    assert "x-client-request-id" not in made.headers
    by_user = client.chat(user="user-chosen-id", max_tokens=2)
    assert by_user.json["id"].startswith("chatcmpl-")  # `user` is the end user, never the id
    server.shutdown()
    assert stored(ws, made.json["id"])["model_version"] == made.headers["x-model-version"]
    row = stored(ws, by_user.json["id"])
    assert row["output"] == by_user.json["choices"][0]["message"]["content"]
    assert row["metadata"]["end_user"] == "user-chosen-id" and row["metadata"]["client_request_id"] is None


def test_a_stream_is_server_sent_events_of_real_pieces(ws, server, client):
    ref = rid_for("challenger")  # 1.2.0 answers in several words: several pieces
    plain = client.chat(rid=rid_for("challenger", prefix="p"), max_tokens=8).json
    reply = client.chat(rid=ref, max_tokens=8, stream=True, stream_options={"include_usage": True})
    assert reply.status == 200 and reply.headers["content-type"] == "text/event-stream"
    rid, token = reply.headers["x-request-id"], reply.headers["x-feedback-token"]
    assert rid.startswith("chatcmpl-") and reply.headers["x-arm"] == "challenger"
    assert token == server.tokens.sign(rid)
    events = reply.events()
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == rid for c in chunks)
    assert all(c["feedback_token"] == token for c in events[:-1])  # every chunk, usage included
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert len(pieces) >= 2 and all(pieces)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] <= 8
    text = "".join(pieces)
    assert text == plain["choices"][0]["message"]["content"]  # greedy: the same answer either way
    server.shutdown()
    row = stored(ws, rid)
    assert row["output"] == text and row["model_version"] == "1.2.0"
    assert row["metadata"]["stream"] is True and row["metadata"]["arm"] == "challenger"
    assert row["metadata"]["first_token_ms"] > 0


def test_feedback_lands_on_its_prediction_with_its_token(ws, server, client):
    reply = client.chat(rid=rid_for("champion"), max_tokens=2)
    rid, token = reply.json["id"], reply.json["feedback_token"]
    first = client.feedback(request_id=rid, thumbs="up", feedback_token=token)
    assert first.status == 200 and first.json == {"object": "feedback", "request_id": rid, "status": "added"}
    again = client.request("POST", "/v1/feedback", {"request_id": rid, "rating": 2, "correction": "a 1.75 in hose line"},
                           {"X-Feedback-Token": token})  # the header works as well as the field
    assert again.json["status"] == "updated"
    unknown = client.feedback(request_id="never-asked", thumbs=1, feedback_token=server.tokens.sign("never-asked"))
    assert unknown.status == 404 and unknown.json["error"]["code"] == "request_not_found"
    bad = client.feedback(request_id=rid, rating=9, feedback_token=token)
    assert bad.status == 400 and "rating" in bad.json["error"]["message"]
    assert "feedback.db" not in bad.json["error"]["message"]  # no server paths in answers
    server.shutdown()
    with open_store(ws) as store:
        (fb,) = store.get_feedback(rid)
    assert (fb["source"], fb["rating"], fb["thumbs"], fb["correction"]) == ("api", 2, None, "a 1.75 in hose line")


def test_feedback_without_the_answers_token_is_refused(ws, server, client):
    mine = client.chat(max_tokens=2).json
    theirs = client.chat(max_tokens=2).json
    rid = theirs["id"]
    missing = client.feedback(request_id=rid, rating=1, correction="forged")
    assert missing.status == 401 and missing.json["error"]["code"] == "missing_feedback_token"
    for wrong in (mine["feedback_token"], theirs["feedback_token"][:-1] + "0", "", "ft1." + "0" * 64):
        if wrong == theirs["feedback_token"]:
            continue
        refused = client.feedback(request_id=rid, rating=1, correction="forged", feedback_token=wrong)
        assert refused.status == 403 and refused.json["error"]["code"] == "invalid_feedback_token", wrong
    header_only = client.request("POST", "/v1/feedback", {"request_id": rid, "rating": 1},
                                 {"X-Feedback-Token": mine["feedback_token"]})
    assert header_only.status == 403
    server.shutdown()
    with open_store(ws) as store:
        assert store.get_feedback(rid) == [] and store.count("feedback") == 0


def test_a_client_id_cannot_take_over_another_answer(ws, server, client):
    """Two clients send the same X-Request-Id and the same `user`: two answers, two rows,
    two tokens; neither token opens the other's row."""
    other = Client(server.port)
    try:
        a = client.chat("What is a hose?", rid="ticket-1", user="alice", max_tokens=2)
        b = other.chat("What is a nozzle?", rid="ticket-1", user="alice", max_tokens=2)
        assert a.status == b.status == 200 and a.json["id"] != b.json["id"]
        assert a.headers["x-client-request-id"] == b.headers["x-client-request-id"] == "ticket-1"
        refused = other.feedback(request_id=a.json["id"], rating=1, feedback_token=b.json["feedback_token"])
        assert refused.status == 403
        for name in ("ticket-1", "alice"):
            gone = other.feedback(request_id=name, rating=1, feedback_token=b.json["feedback_token"])
            assert gone.status == 403
    finally:
        other.close()
    server.shutdown()
    assert stored(ws, a.json["id"])["input"] == "What is a hose?"
    assert stored(ws, b.json["id"])["input"] == "What is a nozzle?"
    with open_store(ws) as store:
        assert store.count("predictions") == 2 and store.count("feedback") == 0


def test_a_conversation_logs_its_last_user_turn_and_keeps_the_rest(ws, server, client):
    messages = [{"role": "system", "content": "You answer firefighters."},
                {"role": "user", "content": "What is a hose?"}, {"role": "assistant", "content": "A tube."},
                {"role": "user", "content": "How wide?"}]
    reply = client.request("POST", "/v1/chat/completions", {"messages": messages, "max_tokens": 2,
                                                            "metadata": {"domain": "hose", "team": "b"}},
                           {"X-Request-Id": "conv-1"})
    assert reply.status == 200
    server.shutdown()
    row = stored(ws, reply.json["id"])
    assert row["input"] == "How wide?" and row["domain"] == "hose"
    assert row["metadata"]["messages"] == messages and row["metadata"]["team"] == "b"


def raw_post(client, body: bytes, headers: dict | None = None):
    return client.request("POST", "/v1/chat/completions", body, headers)


@pytest.mark.parametrize("send, status, code", [
    (lambda c: raw_post(c, b"{not json"), 400, None),
    (lambda c: c.request("POST", "/v1/chat/completions", {"messages": []}), 400, None),
    (lambda c: c.chat(model="gpt-4"), 404, "model_not_found"),
    (lambda c: c.chat(n=3), 400, None),
    (lambda c: c.chat(rid="bad id"), 400, None),
    (lambda c: c.chat(user="u" * 300), 400, None),
    (lambda c: raw_post(c, b'{"messages": ' + b"[" * 2000 + b"]" * 2000 + b"}"), 400, "json_too_deep"),
    (lambda c: raw_post(c, b'{"metadata": ' + b'{"a": ' * 40 + b"1" + b"}" * 41), 400, "json_too_deep"),
    (lambda c: c.chat("word " * 600), 400, "context_length_exceeded"),
    (lambda c: raw_post(c, b"x" * (BODY_LIMIT + 1)), 413, "request_too_large"),
    (lambda c: c.request("GET", "/v1/chat/completions"), 405, "method_not_allowed"),
    (lambda c: c.request("DELETE", "/health"), 405, "method_not_allowed"),
    (lambda c: c.request("POST", "/v1/completions", {"prompt": "x"}), 404, "unknown_url"),
    (lambda c: c.request("GET", "/"), 404, "unknown_url"),
])
def test_bad_requests_get_openai_errors(shared, send, status, code):
    reply = send(shared)
    assert reply.status == status
    err = reply.json["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == "invalid_request_error" and err["code"] == code
    assert shared.chat(max_tokens=1).status == 200  # the connection (or a new one) still works


def test_health_and_models(shared):
    health = shared.request("GET", "/health")
    assert health.status == 200
    assert {"status": "ok", "model": MODEL, "champion": "1.1.0", "challenger": "1.2.0",
            "challenger_share": 0.5}.items() <= health.json.items()
    log = health.json["log"]  # the writer's counters, the journal's included
    assert {"journaled": 0, "replayed": 0, "journaling": False, "failed": 0}.items() <= log.items()
    assert log["written"] >= 0 and log["retries"] >= 0
    models = shared.request("GET", "/v1/models").json
    assert [m["id"] for m in models["data"]] == [MODEL]


def test_an_api_key_is_required_when_set(ws):
    srv = start(ws, api_key="s3cret")
    c = Client(srv.port)
    try:
        assert c.chat(max_tokens=1).status == 401
        assert c.chat(max_tokens=1).json["error"]["code"] == "invalid_api_key"
        assert c.request("GET", "/health").status == 200
        ok = c.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                        "max_tokens": 1}, {"Authorization": "Bearer s3cret"})
        assert ok.status == 200
    finally:
        c.close()
        srv.shutdown()


def test_stop_strings_and_sampling(shared):
    def rid(prefix: str) -> str:  # the challenger, 1.2.0, answers in several words
        return rid_for("challenger", prefix=prefix)

    full = shared.chat(rid=rid("full"), max_tokens=8).json["choices"][0]["message"]["content"]
    first_word = full.split(" ")[0]
    assert first_word != full
    cut = shared.chat(rid=rid("cut"), max_tokens=8, stop=[" "]).json["choices"][0]
    assert (cut["message"]["content"], cut["finish_reason"]) == (first_word, "stop")
    events = shared.chat(rid=rid("stream"), max_tokens=8, stop=" ", stream=True).events()
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == first_word and events[-2]["choices"][0]["finish_reason"] == "stop"
    sampled = shared.chat(rid=rid("hot"), max_tokens=4, temperature=1.5, top_p=0.9)
    assert sampled.status == 200 and sampled.json["usage"]["completion_tokens"] <= 4


@pytest.mark.parametrize("head", [
    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST /v1/feedback HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_a_body_needs_a_content_length(shared_server, head):
    with socket.create_connection((HOST, shared_server.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(head.encode())
        status_line = sock.makefile("rb").readline()
    assert status_line.split()[1] == b"411"


def test_a_client_may_send_back_the_model_it_was_given(shared_server, shared):
    with open_registry(shared_server.settings.workspace) as reg:
        prints = {v: "fp_" + weights_sha256(reg.get(MODEL, v))[:16] for v in ("1.1.0", "1.2.0")}
    assert prints["1.1.0"] != prints["1.2.0"]
    first = shared.chat(rid=rid_for("champion"), max_tokens=2).json
    assert (first["model"], first["system_fingerprint"]) == (f"{MODEL}@1.1.0", prints["1.1.0"])
    again = shared.chat(rid=rid_for("challenger"), model=first["model"], max_tokens=2)  # as openai clients do
    assert again.status == 200, again.json
    assert (again.json["model"], again.json["system_fingerprint"]) == (f"{MODEL}@1.2.0", prints["1.2.0"])
    events = shared.chat(rid=rid_for("champion"), model=f"{MODEL}@1.2.0", max_tokens=2, stream=True).events()
    assert {e["system_fingerprint"] for e in events[:-1]} == {prints["1.1.0"]}
    never = shared.chat(model=f"{MODEL}@9.9.9", max_tokens=2)
    assert never.status == 404 and never.json["error"]["code"] == "model_not_found"
    assert f"also named {MODEL}@1.0.0, {MODEL}@1.1.0, {MODEL}@1.2.0" in never.json["error"]["message"]
    assert shared.chat(model="gg@1.1.0", max_tokens=2).status == 404
