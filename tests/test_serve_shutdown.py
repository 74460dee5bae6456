"""Shutting down loses no logged row: requests in flight finish and are logged, the
writer's queue is drained into the store, later requests are refused (503). And `clt
serve` itself: a real process on a free loopback port, stopped with SIGTERM."""

from __future__ import annotations

import http.client
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from test_serve_support import HOST, MODEL, REPO_ROOT, Client, setup_line, start

from cl_toolkit.feedback.store import FeedbackStore, open_store

START_TIMEOUT_S = 120


def test_a_shutdown_under_load_loses_no_logged_row(tmp_path, tiny_model_dir, monkeypatch):
    ws = tmp_path / "ws"
    setup_line(ws, tiny_model_dir)
    store_log, release = FeedbackStore.log_prediction, threading.Event()

    def held(self, *args, **kwargs):  # the store is stuck until the shutdown has begun: rows queue up
        release.wait(timeout=60)
        return store_log(self, *args, **kwargs)

    monkeypatch.setattr(FeedbackStore, "log_prediction", held)
    server = start(ws, challenger_share=0.5)
    answered, refused, lock = [], [], threading.Lock()

    def client_loop(k: int) -> None:
        c = Client(server.port)
        try:
            for i in range(200):  # bounded: the shutdown ends it much sooner
                rid = f"load-{k}-{i}"
                reply = c.chat(rid=rid, max_tokens=2, stream=bool(i % 2))
                with lock:  # the id the server issued
                    (answered if reply.status == 200 else refused).append(
                        (reply.headers.get("x-request-id", rid), reply.status))
                if reply.status != 200:
                    return
        except (OSError, http.client.HTTPException):
            return  # the server closed the connection: fine, nothing more was answered
        finally:
            c.close()

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    pending = server.writer.pending
    assert pending >= 20  # answered, queued, not yet in the store
    result = []
    stopper = threading.Thread(target=lambda: result.append(server.shutdown()))
    stopper.start()
    for _ in range(1000):  # bounded: the shutdown sets `closing` first thing
        if server.closing:
            break
        time.sleep(0.01)
    release.set()  # the store comes back while the shutdown is under way
    stopper.join(timeout=120)
    for t in threads:
        t.join(timeout=30)
    (stats,) = result
    assert {status for _, status in refused} <= {503}
    with open_store(ws) as store:
        stored = {r[0] for r in store.conn.execute("SELECT request_id FROM predictions")}
    assert stored == {rid for rid, _ in answered}
    assert stats.written == len(answered) and stats.failed == stats.rejected == 0


def read_url(proc: subprocess.Popen) -> str:
    """The URL `clt serve` prints once it listens (bounded wait)."""
    found: list[str] = []

    def reader():
        for line in proc.stdout:
            if m := re.search(r"http://127\.0\.0\.1:\d+", line):
                found.append(m.group(0))
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(START_TIMEOUT_S)
    if not found:
        proc.kill()
        raise AssertionError(f"clt serve did not start: {proc.stderr.read()[-2000:]}")
    return found[0]


def test_clt_serve_runs_answers_and_stops_cleanly_on_sigterm(tmp_path, tiny_model_dir):
    ws = tmp_path / "ws"
    setup_line(ws, tiny_model_dir)
    cmd = [sys.executable, "-m", "cl_toolkit", "--workspace", str(ws), "serve", MODEL, "--port", "0",
           "--threads", "1", "--max-tokens", "4", "--challenger-share", "0.5"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(read_url(proc).rsplit(":", 1)[1])
        c = Client(port)
        replies = [c.chat(rid=f"cli-{i}", stream=i == 0) for i in range(5)]
        assert [r.status for r in replies] == [200] * 5
        rid, token = replies[3].json["id"], replies[3].json["feedback_token"]
        assert c.feedback(request_id=rid, thumbs="down", feedback_token=token).status == 200
        c.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped: 5 predictions logged" in out
    with open_store(ws) as store:
        assert store.count("predictions") == 5 and store.get_feedback(rid)[0]["thumbs"] == -1
    assert (ws / "feedback_token.key").stat().st_mode & 0o777 == 0o600


def test_clt_serve_refuses_a_line_without_a_champion(clt, tmp_path, tiny_model_dir):
    ws = tmp_path / "ws"
    setup_line(ws, tiny_model_dir)
    code, _, err = clt("--workspace", ws, "serve", "nosuch", "--port", "0")
    assert code == 2 and "nosuch has no champion" in err


def test_clt_serve_says_when_the_port_is_taken(clt, tmp_path, tiny_model_dir):
    ws = tmp_path / "ws"
    setup_line(ws, tiny_model_dir)
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = clt("--workspace", ws, "serve", MODEL, "--port", port, "--threads", "1")
    assert code == 2 and f"cannot listen on {HOST}:{port}" in err


@pytest.mark.parametrize("share", ["1.5", "-0.1"])
def test_clt_serve_checks_its_options(clt, share):
    code, _, err = clt("serve", MODEL, "--challenger-share", share)
    assert code == 2 and "challenger-share" in err
