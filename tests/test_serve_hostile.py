"""`clt serve` under hostile load, over real loopback sockets: clients that send their body
slowly hold no worker and are not counted as requests in flight; a request must arrive
whole within one deadline (not one per read); idle connections are closed; the cap on open
connections holds; the worker pool does not grow with connections."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from test_serve_support import HOST, MODEL, TIMEOUT_S, Client, setup_line, start

SLOW_HEAD = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
             f"Content-Length: 100000\r\n\r\n").encode()


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_model_dir):
    ws = tmp_path_factory.mktemp("serve-hostile") / "ws"
    setup_line(ws, tiny_model_dir, challenger=False)  # one version: quicker to start
    return ws


class SlowBodies:
    """n connections that each send a request header and then their body a byte at a time,
    every `every` seconds, from one thread, until stopped."""

    def __init__(self, port: int, n: int, every: float = 0.5):
        self.socks = [socket.create_connection((HOST, port), timeout=TIMEOUT_S) for _ in range(n)]
        for s in self.socks:
            s.sendall(SLOW_HEAD + b"{")
        self.every, self.stop, self.alive = every, threading.Event(), n
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(self.every):
            alive = 0
            for s in self.socks:
                try:
                    s.send(b" ")
                    alive += 1
                except OSError:
                    pass
            self.alive = alive

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=TIMEOUT_S)
        for s in self.socks:
            s.close()


def workers(srv) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("clt-serve-worker")]


def status_of(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the one response on `sock`, read up to EOF."""
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else {}


def test_slow_bodies_hold_no_worker_and_no_admission_slot(ws):
    srv = start(ws, challenger_share=0.0, max_pending=4, max_connections=64)
    slow = None
    c = Client(srv.port)
    try:
        pool = len(workers(srv))
        assert pool == 4 + 4  # max_pending + the workers kept for /health
        slow = SlowBodies(srv.port, 24)  # six times max_pending: ThreadingHTTPServer gave 429 here
        for _ in range(5):
            reply = c.chat(max_tokens=1)
            assert reply.status == 200, reply.raw
        health = c.request("GET", "/health").json
        assert health["inflight"] == 0 and slow.alive == 24
        assert srv.httpd.open_connections == 25
        assert len(workers(srv)) == pool  # connections do not make threads
    finally:
        if slow:
            slow.close()
        c.close()
        srv.shutdown()


def test_a_request_must_arrive_whole_within_one_deadline(ws):
    """Bytes every 0.2 s would satisfy any per-read timeout; the total deadline (1 s) ends
    the request with 408 and closes the connection."""
    srv = start(ws, challenger_share=0.0, request_timeout_s=1.0)
    slow = SlowBodies(srv.port, 1, every=0.2)
    try:
        status, body = status_of(slow.socks[0])  # ends with EOF: the server closed it
        assert status == 408 and body["error"]["code"] == "request_timeout"
        ok = Client(srv.port)
        assert ok.chat(max_tokens=1).status == 200
        ok.close()
    finally:
        slow.close()
        srv.shutdown()


@pytest.fixture(scope="module")
def tight(ws):
    """A server with at most 4 open connections."""
    srv = start(ws, challenger_share=0.0, max_connections=4)
    yield srv
    srv.shutdown()


def wait_until(check, what: str, limit_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {limit_s} s")
        time.sleep(0.02)


def test_idle_connections_are_closed(ws):
    srv = start(ws, challenger_share=0.0, idle_timeout_s=0.5)
    try:
        with socket.create_connection((HOST, srv.port), timeout=TIMEOUT_S) as quiet:
            assert quiet.recv(1) == b""  # closed by the server, nothing sent
        idle_after_an_answer(srv)
        assert srv.httpd.open_connections == 0
    finally:
        srv.shutdown()


def idle_after_an_answer(srv) -> None:
    with socket.create_connection((HOST, srv.port), timeout=TIMEOUT_S) as used:
        used.sendall(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        f = used.makefile("rb")
        assert f.readline().split()[1] == b"200"
        while f.readline() not in (b"\r\n", b""):
            pass  # headers; the body follows, then the connection goes idle and is closed
        rest = f.read()  # up to EOF
        assert json.loads(rest)["model"] == MODEL


def test_the_cap_on_open_connections_holds(tight):
    wait_until(lambda: tight.httpd.open_connections == 0, "idle")
    held = [socket.create_connection((HOST, tight.port), timeout=TIMEOUT_S) for _ in range(4)]
    try:
        wait_until(lambda: tight.httpd.open_connections == 4, "4 open")
        with socket.create_connection((HOST, tight.port), timeout=TIMEOUT_S) as fifth:
            status, body = status_of(fifth)
        assert status == 503 and body["error"]["code"] == "too_many_connections"
        assert tight.httpd.open_connections == 4
        held.pop().close()
        wait_until(lambda: tight.httpd.open_connections == 3, "3 open")
        c = Client(tight.port)
        assert c.request("GET", "/health").status == 200
        c.close()
    finally:
        for s in held:
            s.close()


def test_pipelined_requests_are_answered_in_order(tight):
    wait_until(lambda: tight.httpd.open_connections == 0, "idle")
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).encode()
    post = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
    get = f"GET /v1/models HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((HOST, tight.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(post + get)  # both at once, in one segment
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert raw.count(b"HTTP/1.1 200 OK") == 2
    assert raw.index(b"chat.completion") < raw.index(b'"object": "list"')


@pytest.mark.slow
def test_100_slow_bodies_held_for_20_s_while_a_normal_client_gets_its_answers(ws):
    srv = start(ws, challenger_share=0.0)  # the defaults: max_pending 64, 30 s request deadline
    slow = SlowBodies(srv.port, 100, every=1.0)
    c = Client(srv.port)
    try:
        end, answered = time.monotonic() + 20, 0
        while time.monotonic() < end:
            t0 = time.monotonic()
            reply = c.chat(max_tokens=1)
            took = time.monotonic() - t0
            assert reply.status == 200, reply.raw
            assert took < 1.0, f"answer {answered + 1} took {took:.2f} s"
            answered += 1
            time.sleep(0.2)
        assert slow.alive == 100 and srv.httpd.open_connections == 101
        assert c.request("GET", "/health").json["inflight"] == 0
    finally:
        slow.close()
        c.close()
        srv.shutdown()
