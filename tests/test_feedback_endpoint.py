"""`clt synth` and the judge scorer against a real OpenAI-compatible HTTP endpoint: a small
scripted server on a free loopback port, started by each test, that answers a bounded
number of requests and stops by itself. Malformed replies, retries, refusals, the key."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from feedback_helpers import fws_fixture, read_jsonl, run_main, store_fixture  # noqa: F401 (fixtures)

from cl_toolkit.core.files import sha256_file
from cl_toolkit.feedback.endpoint import Endpoint, EndpointError, MalformedReply, chat
from cl_toolkit.feedback.extract import manifest_path
from cl_toolkit.feedback.scoring import parse_grade, score_store
from cl_toolkit.feedback.synth_remote import parse_pairs

KEY = "sk-test-0123456789abcdefghijklmnop"
LIFETIME_S = 20.0  # the server stops by itself after this, whatever happens
FAST = ["--attempts", "3", "--backoff", "0.01", "--timeout", "5"]


def completion(content: str) -> dict:
    return {"id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}]}


def pairs_reply(pairs: list[tuple[str, str]], fence: bool = False) -> dict:
    text = json.dumps([{"question": q, "answer": a} for q, a in pairs])
    return completion(f"Here you go:\n```json\n{text}\n```" if fence else text)


class FakeOpenAI:
    """Answers POST /v1/chat/completions with the next scripted reply: a dict (200 JSON),
    bytes (200 raw body) or (status, body, headers). Serves at most `max_requests`."""

    def __init__(self, script: list, max_requests: int = 50):
        self.script, self.requests, self.max_requests = list(script), [], max_requests
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "body": json.loads(body)})
                reply = fake.script.pop(0) if fake.script else (500, b"script exhausted", {})
                status, payload, headers = reply if isinstance(reply, tuple) else (200, reply, {})
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 0.05
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.stopping = threading.Event()

    def _serve(self):
        deadline = time.monotonic() + LIFETIME_S
        while (not self.stopping.is_set() and len(self.requests) < self.max_requests
               and time.monotonic() < deadline):
            self.server.handle_request()
        self.server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=5)


@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "ev_fire.md"
    path.write_text("# EV fire in a garage\n\nA battery car burns on level 2.\n", encoding="utf-8")
    return path


def test_synth_writes_validated_unique_pairs_and_a_manifest_without_the_key(
        fws, store, scenario, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    store.log_prediction("seen", "How do we cool the battery pack?", "With lots of water.", "1.0.0")
    existing = tmp_path / "q3.jsonl"
    existing.write_text(json.dumps({"messages": [
        {"role": "user", "content": "What gas does a burning battery vent?"},
        {"role": "assistant", "content": "Hydrogen fluoride."}]}) + "\n", encoding="utf-8")
    script = [
        completion("Sure! Here are some great questions about EV fires."),  # malformed
        (503, {"error": {"message": "busy"}}, {"Retry-After": "0"}),  # retried
        pairs_reply([("How long should we watch for re-ignition?", "At least 45 minutes with a TIC."),
                     ("how do we  COOL the battery pack", "Duplicate of the store."),
                     ("What gas does a burning battery vent?", "Duplicate of a data file."),
                     ("Can we cut the orange cables?", "I'm sorry, but I can't help with that."),
                     ("Who do we call, jane@example.com?", "The towing company, before handover."),
                     ("What PPE for overhaul?", "Full SCBA and decon, because")],
                    fence=True),
        pairs_reply([("HOW LONG should we watch for re-ignition", "A repeat in other case."),
                     ("Where do we aim the water?", "At the battery pack, not the flames."),
                     ("Extra pair beyond n?", "Not needed.")]),
    ]
    out = tmp_path / "synth" / "ev.jsonl"
    with FakeOpenAI(script) as api:
        code, stdout, stderr = run_main(
            ["synth", "--scenario", str(scenario), "-n", "3", "--base-url", api.base_url,
             "--model", "teacher-7b", "-o", str(out), "--against", str(existing), "--seed", "7",
             "--json", *FAST], capsys)
    assert code == 0, stderr
    assert [m["messages"] for m in read_jsonl(out)] == [
        [{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in [
            ("How long should we watch for re-ignition?", "At least 45 minutes with a TIC."),
            ("Who do we call, [EMAIL]?", "The towing company, before handover."),
            ("Where do we aim the water?", "At the battery pack, not the flames.")]]
    m = json.loads(stdout)
    assert m == json.loads(manifest_path(out).read_text())
    assert m["synthetic"] is True and m["kind"] == "synthetic"
    assert m["scenario"] == {"path": str(scenario), "title": "EV fire in a garage",
                             "sha256": sha256_file(scenario), "domain": None}
    assert m["filters"] == {"domains": []}
    assert m["endpoint"] == {"base_url": api.base_url, "model": "teacher-7b"}
    assert m["counts"] == {"requests": 3, "malformed_replies": 1, "pairs_received": 9,
                           "duplicates": 3, "unused": 1, "invalid": 2, "written": 3,
                           "short_by": 0}
    assert m["invalid"] == {"answer_refusal": 1, "answer_truncated": 1}
    assert m["output"]["sha256"] == sha256_file(out) and m["redactions"]["email"] == 1
    assert "request 1: malformed reply skipped" in m["problems"][0]
    # the key went to the endpoint, and nowhere else
    assert {r["headers"]["Authorization"] for r in api.requests} == {f"Bearer {KEY}"}
    assert [r["body"]["seed"] for r in api.requests] == [8, 9, 9, 10]
    assert api.requests[0]["body"]["model"] == "teacher-7b"
    for text in (stdout, stderr, out.read_text(), manifest_path(out).read_text()):
        assert KEY not in text


def test_a_reply_that_is_not_a_chat_completion_is_skipped_and_the_run_ends(
        fws, scenario, tmp_path, capsys):
    script = [b"<html>oops</html>", {"choices": []}, completion("[1, 2]"),
              pairs_reply([("What is the first step at an EV fire?", "Size up and isolate.")]),
              completion("[]"), completion("[]")]
    with FakeOpenAI(script) as api:
        code, stdout, _ = run_main(["synth", "--scenario", str(scenario), "-n", "2",
                                    "--per-request", "1", "--base-url", api.base_url,
                                    "--model", "m", "--json", *FAST], capsys)
    m = json.loads(stdout)
    assert code == 0 and len(api.requests) == 6 == m["counts"]["requests"]  # 3 x ceil(2/1)
    assert (m["counts"]["malformed_replies"], m["counts"]["invalid"]) == (2, 2)
    assert m["counts"]["written"] == 1 and m["counts"]["short_by"] == 1
    out = fws / "synthetic" / f"ev_fire-{sha256_file(scenario)[:12]}.jsonl"
    assert len(read_jsonl(out)) == 1  # the default output is in the workspace


def test_bounded_requests_when_every_reply_is_malformed(fws, scenario, capsys):
    with FakeOpenAI([completion("no json here")] * 10) as api:
        code, stdout, _ = run_main(["synth", "--scenario", str(scenario), "-n", "4",
                                    "--per-request", "2", "--base-url", api.base_url,
                                    "--model", "m", "--json", *FAST], capsys)
    m = json.loads(stdout)
    assert code == 0 and m["counts"]["requests"] == 6 == len(api.requests)
    assert m["counts"]["written"] == 0 and len(m["problems"]) == 6


def test_transient_errors_are_retried_then_the_run_fails_without_writing(
        fws, scenario, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    out = tmp_path / "o.jsonl"
    with FakeOpenAI([(503, b"overloaded", {})] * 5) as api:
        code, _, err = run_main(["synth", "--scenario", str(scenario), "-n", "1", "--base-url",
                                 api.base_url, "--model", "m", "-o", str(out), "--api-key-env",
                                 "MY_KEY", *FAST], capsys)
    assert code == 1 and len(api.requests) == 3 and "gave up after 3 attempts" in err
    assert not out.exists() and "Traceback" not in err
    with FakeOpenAI([(401, {"error": {"message": f"bad key {KEY}"}}, {})]) as api:
        code, _, err = run_main(["synth", "--scenario", str(scenario), "-n", "1", "--base-url",
                                 api.base_url, "--model", "m", "--api-key-env", "MY_KEY", *FAST],
                                capsys)
    assert code == 1 and len(api.requests) == 1 and "HTTP 401" in err and KEY not in err


def test_connection_refused_is_retried_with_backoff():
    with FakeOpenAI([]) as api:
        url = api.base_url
    endpoint = Endpoint(url, "m", attempts=3, backoff_s=0.05, timeout_s=2)
    start = time.monotonic()
    with pytest.raises(EndpointError, match="gave up after 3 attempts"):
        chat(endpoint, [{"role": "user", "content": "hi"}])
    assert time.monotonic() - start >= 0.15  # 0.05 + 0.10


def test_bad_endpoint_options_are_bad_input(fws, scenario, capsys):
    code, _, err = run_main(["synth", "--scenario", str(scenario), "--base-url", "ftp://x",
                             "--model", "m"], capsys)
    assert code == 2 and "not an http(s) URL" in err


@pytest.mark.parametrize("text, expected", [
    ('[{"question": "q", "answer": "a"}]', [{"question": "q", "answer": "a"}]),
    ('```json\n{"pairs": [{"question": "q"}]}\n```', [{"question": "q"}]),
    ('Sure: [{"question": "q", "answer": "a"}] hope it helps', [{"question": "q", "answer": "a"}]),
])
def test_parse_pairs(text, expected):
    assert parse_pairs(text) == expected


@pytest.mark.parametrize("text", ["", "nothing", '{"question": 1}', "[1, 2"])
def test_parse_pairs_refuses_what_is_not_an_array(text):
    with pytest.raises(MalformedReply):
        parse_pairs(text)


def test_judge_scorer_grades_through_the_endpoint_and_skips_malformed_verdicts(store, monkeypatch):
    for rid in ("a", "b", "c", "d"):
        store.log_prediction(rid, f"question {rid} from jane@example.com", f"answer {rid}", "1.0.0")
    script = [completion('{"grade": 5, "reason": "right"}'), completion("Grade: 2 - vague"),
              completion("I refuse to grade."), completion('```json\n{"grade": 9}\n```')]
    with FakeOpenAI(script) as api:
        endpoint = Endpoint(api.base_url, "judge", attempts=2, backoff_s=0.01, timeout_s=5)
        r = score_store(store, "judge", endpoint=endpoint)
    assert (r["scored"], r["unscored"], r["flags"]["judge_malformed"]) == (2, 2, 2)
    assert [store.get_prediction(x)["quality_score"] for x in "abcd"] == [1.0, 0.25, None, None]
    sent = api.requests[0]["body"]["messages"][0]["content"]
    assert "question a from [EMAIL]" in sent and "answer a" in sent  # PII stays home


@pytest.mark.parametrize("reply, grade", [('{"grade": 3}', 3), ('"grade": "4"', 4),
                                          ("grade = 1", 1)])
def test_parse_grade(reply, grade):
    assert parse_grade(reply) == grade


@pytest.mark.slow
def test_synth_and_judge_against_the_real_clt_serve_endpoint(fws, store, scenario, tmp_path,
                                                             tiny_model_dir, capsys, monkeypatch):
    """`clt serve` with the tiny model: the wire format, the key and the model name work end
    to end; its answers are no JSON pairs, so every reply is reported and skipped."""
    from test_serve_support import MODEL, setup_line, start

    serve_ws = tmp_path / "serve-ws"
    setup_line(serve_ws, tiny_model_dir, challenger=False)
    monkeypatch.setenv("SERVE_KEY", KEY)
    server = start(serve_ws, api_key=KEY)
    try:
        base_url = f"http://127.0.0.1:{server.port}/v1"
        code, stdout, err = run_main(["synth", "--scenario", str(scenario), "-n", "2",
                                      "--per-request", "2", "--base-url", base_url, "--model",
                                      MODEL, "--api-key-env", "SERVE_KEY", "--json", *FAST], capsys)
        assert code == 0, err
        m = json.loads(stdout)
        assert m["counts"]["requests"] == 3 and m["counts"]["written"] == 0
        assert m["counts"]["malformed_replies"] + m["counts"]["invalid"] >= 3
        assert KEY not in stdout + err
        store.log_prediction("p1", "What is a hose?", "A tube for water.", "1.0.0")
        r = score_store(store, "judge", endpoint=Endpoint(base_url, MODEL, api_key_env="SERVE_KEY",
                                                          attempts=2, backoff_s=0.01))
        assert r["selected"] == 1 and r["scored"] + r["unscored"] == 1
    finally:
        server.shutdown()
