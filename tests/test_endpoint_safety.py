"""Where the endpoint client sends the API key: never along a redirect, never over plain
http to anything but loopback; and one timeout, with one default, bounds a request.

Real HTTP servers on loopback ports, in threads: one answers with a redirect to a second
that records every Authorization header it receives."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from feedback_helpers import fws_fixture, run_main, store_fixture  # noqa: F401 (fixtures)

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback.endpoint import DEFAULT_TIMEOUT_S, Endpoint, EndpointError, chat

KEY = "sk-redirect-test-0123456789abcdefghij"
REPLY = json.dumps({"choices": [{"message": {"role": "assistant", "content": "ok"}}]}).encode()


class Recorder:
    """A loopback server; `answer(handler)` writes each reply, every request is recorded."""

    def __init__(self, answer):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                seen.append({"method": self.command, "path": self.path,
                             "authorization": self.headers.get("Authorization")})
                answer(self)

            do_GET = do_POST = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _ok(h):
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(REPLY)))
    h.end_headers()
    h.wfile.write(REPLY)


def _redirect_to(target: str, code: int):
    def answer(h):
        h.send_response(code)
        h.send_header("Location", target + h.path)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return answer


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_server_never_receives_the_key(monkeypatch, code):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with Recorder(_ok) as other, Recorder(_redirect_to(other.url, code)) as first:
        endpoint = Endpoint(first.url + "/v1", "m", attempts=3, backoff_s=0.01, timeout_s=5)
        with pytest.raises(EndpointError) as err:
            chat(endpoint, [{"role": "user", "content": "hi"}])
    assert other.seen == []  # nothing at all reached the second server, so not the key
    assert [r["authorization"] for r in first.seen] == [f"Bearer {KEY}"]  # asked once, not retried
    message = str(err.value)
    assert f"HTTP {code} redirect to {other.url}/v1/chat/completions not followed" in message
    assert KEY not in message


def test_a_same_origin_redirect_is_not_followed_either(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    where = {}

    def answer(h):
        if h.path == "/elsewhere":
            return _ok(h)
        h.send_response(307)
        h.send_header("Location", where["url"] + "/elsewhere")
        h.send_header("Content-Length", "0")
        h.end_headers()

    with Recorder(answer) as server:
        where["url"] = server.url
        with pytest.raises(EndpointError, match="HTTP 307 redirect .* not followed"):
            chat(Endpoint(server.url + "/v1", "m", attempts=1), [{"role": "user", "content": "hi"}])
    assert [r["path"] for r in server.seen] == ["/v1/chat/completions"]


def test_synth_stops_at_a_redirect_and_writes_nothing(fws, store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    scenario = tmp_path / "s.md"
    scenario.write_text("# A scenario\n\ntext\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with Recorder(_ok) as other, Recorder(_redirect_to(other.url, 302)) as first:
        code, stdout, stderr = run_main(["synth", "--scenario", str(scenario), "-n", "2",
                                         "--base-url", first.url + "/v1", "--model", "m",
                                         "-o", str(out), "--attempts", "2", "--backoff", "0.01"],
                                        capsys)
    assert code == 1 and "redirect" in stderr and KEY not in stdout + stderr
    assert other.seen == [] and not out.exists()


def test_the_judge_scorer_stops_at_a_redirect(fws, store, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    store.log_prediction("r1", "How wide is a 1.75in line?", "1.75 in", "1.0.0")
    with Recorder(_ok) as other, Recorder(_redirect_to(other.url, 302)) as first:
        code, _, stderr = run_main(["feedback", "score", "--scorer", "judge", "--base-url",
                                    first.url + "/v1", "--model", "judge"], capsys)
    assert code == 1 and "redirect" in stderr and KEY not in stderr
    assert other.seen == [] and len(first.seen) == 1


@pytest.mark.parametrize("url", ["http://example.com/v1", "http://10.1.2.3:8000/v1",
                                 "http://[2001:db8::1]/v1", "http://127.0.0.1.example.net/v1",
                                 "http://localhost.attacker.example/v1"])
def test_plain_http_to_a_host_that_is_not_loopback_is_refused_before_connecting(
        url, fws, store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    connections = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connections.append(a))
    with pytest.raises(BadInput, match="plain http is accepted only for a loopback host"):
        Endpoint(url, "m")
    scenario = tmp_path / "s.md"
    scenario.write_text("# A scenario\n", encoding="utf-8")
    code, _, stderr = run_main(["synth", "--scenario", str(scenario), "--base-url", url,
                                "--model", "m", "-o", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and "use https://" in stderr and KEY not in stderr
    code, _, stderr = run_main(["feedback", "score", "--scorer", "judge", "--base-url", url,
                                "--model", "m"], capsys)
    assert code == 2 and "plain http" in stderr
    assert connections == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1", "http://127.8.9.10/v1", "http://[::1]:9/v1",
                                 "http://localhost:9/v1", "https://example.com/v1",
                                 "https://10.1.2.3/v1"])
def test_loopback_http_and_any_https_are_accepted(url):
    assert Endpoint(url, "m").describe()["base_url"] == url


def test_one_timeout_setting_with_one_default():
    from cl_toolkit.cli.synth import cli

    option = next(p for p in cli.params if p.name == "timeout")
    assert option.default == Endpoint("https://h/v1", "m").timeout_s == DEFAULT_TIMEOUT_S


def test_the_timeout_bounds_the_whole_reply_not_each_read():
    sent, done = [], threading.Event()

    def drip(h):  # announces a large reply, then sends a byte every 10 ms for up to 5 s
        h.send_response(200)
        h.send_header("Content-Length", str(1 << 20))
        h.end_headers()
        try:
            for _ in range(500):
                h.wfile.write(b" ")
                h.wfile.flush()
                sent.append(1)
                time.sleep(0.01)
        except OSError:
            pass  # the client hung up
        finally:
            done.set()

    with Recorder(drip) as server:
        endpoint = Endpoint(server.url + "/v1", "m", attempts=1, timeout_s=0.5)
        # every byte comes well within the timeout; the whole reply never does
        with pytest.raises(EndpointError, match="TimeoutError: the reply took longer"):
            chat(endpoint, [{"role": "user", "content": "hi"}])
        assert done.wait(10)
    assert len(sent) < 500  # the client hung up mid-reply, it did not wait for the end


@pytest.mark.parametrize("url, what", [
    ("https://ana:s3cret-pass@api.example.com/v1", "user info"),
    ("https://api.example.com/v1?api_key=sk-live-abcdef0123456789", "query parameter 'api_key'"),
    ("http://127.0.0.1:9/v1?sig=abcdef0123456789&x=1", "query parameter 'sig'"),
])
def test_a_url_carrying_credentials_is_refused_without_echoing_them(url, what):
    with pytest.raises(BadInput) as err:
        Endpoint(url, "m")
    message = str(err.value)
    assert f"carries credentials ({what})" in message and "OPENAI_API_KEY" in message
    assert "s3cret" not in message and "abcdef0123456789" not in message
