"""The server: settings, start-up (registry arms, store writer, HTTP on loopback by
default), admission of requests, and a clean shutdown that loses no logged row.

Shutdown order: refuse new requests (503) and stop accepting connections, wait for the
requests in flight to finish (each queues its prediction before it answers), stop the
registry watcher, then drain the writer's queue into the store.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.serve.arms import ArmWatcher
from cl_toolkit.serve.engine import load_version
from cl_toolkit.serve.protocol import ApiError
from cl_toolkit.serve.writer import DEFAULT_QUEUE, StoreWriter, WriterStats

SHUTDOWN_WAIT_S = 60.0  # the longest a shutdown waits for requests in flight


@dataclass(frozen=True)
class ServeSettings:
    """How the server runs. `clt serve` takes its option defaults from here."""

    model: str  # the model line in the registry
    host: str = "127.0.0.1"  # loopback: reachable from this machine only
    port: int = 8000  # 0: any free port (the URL is printed)
    challenger_share: float = 0.1  # of requests routed to the challenger, when one is set
    salt: str = ""  # mixed into the routing hash; a new salt reshuffles who gets which arm
    device: str = "auto"  # cuda when available, else cpu
    threads: int | None = None  # torch CPU threads (tiny models are fastest on 1)
    max_tokens: int = 128  # the most new tokens an answer may have (and the default)
    max_body_bytes: int = 1 << 20  # larger request bodies are refused with 413
    max_pending: int = 64  # requests in flight at once; more get 429
    reload_interval: float = 2.0  # seconds between looks at the registry's aliases
    queue_size: int = DEFAULT_QUEUE  # predictions waiting for the store before answers wait
    api_key: str | None = None  # when set, requests need `Authorization: Bearer KEY`
    workspace: Path | None = None  # default: $CLT_HOME


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold the process open

    def __init__(self, address, handler, app: ChatServer):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, handler)


class ChatServer:
    """One model line served over HTTP. start(), then shutdown() (or serve_until_signal())."""

    def __init__(self, settings: ServeSettings, *, loader: Callable = load_version):
        self.settings = settings
        self.watcher = ArmWatcher(settings.workspace, settings.model, share=settings.challenger_share,
                                  salt=settings.salt, device=settings.device,
                                  interval=settings.reload_interval, loader=loader)
        self.writer = StoreWriter(settings.workspace, settings.queue_size)
        self.httpd: _HTTPServer | None = None
        self.closing = False
        self.started_at = time.time()
        self._inflight = 0
        self._idle = threading.Condition()
        self._threads_before: int | None = None

    def start(self) -> ChatServer:
        """Load the arms, open the store, bind, and serve in a background thread."""
        from cl_toolkit.serve.handler import Handler

        self._set_threads(self.settings.threads)
        try:
            self.watcher.load()
            self.writer.start()
        except BaseException:
            self._set_threads(self._threads_before)
            raise
        try:
            self.httpd = _HTTPServer((self.settings.host, self.settings.port), Handler, self)
        except OSError as e:
            self.writer.close()
            self._set_threads(self._threads_before)
            raise BadInput(f"cannot listen on {self.settings.host}:{self.settings.port}: {e.strerror}") from None
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                         name="clt-serve-http", daemon=True).start()
        self.watcher.start()
        return self

    def _set_threads(self, n: int | None) -> None:
        """Torch's CPU threads are per process: remember them, so shutdown can give them back."""
        if n:
            import torch

            self._threads_before = self._threads_before or torch.get_num_threads()
            torch.set_num_threads(n)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.settings.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def inflight(self) -> int:
        return self._inflight

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Count a request in flight; 503 while shutting down, 429 when too many are."""
        with self._idle:
            if self.closing:
                raise ApiError(503, "the server is shutting down", code="shutting_down")
            if self._inflight >= self.settings.max_pending:
                raise ApiError(429, f"{self._inflight} requests are in flight; retry shortly",
                               type="rate_limit_error", code="too_many_requests")
            self._inflight += 1
        try:
            yield
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def shutdown(self, wait_s: float = SHUTDOWN_WAIT_S) -> WriterStats:
        """Stop serving without losing a logged row; returns what the writer did."""
        with self._idle:
            if self.closing:
                return self.writer.stats
            self.closing = True
        self.httpd.shutdown()
        with self._idle:
            if not self._idle.wait_for(lambda: self._inflight == 0, timeout=wait_s):
                print(f"clt serve: {self._inflight} requests still running after {wait_s:.0f} s; "
                      f"their answers will not be logged", file=sys.stderr)
        self.watcher.stop()
        stats = self.writer.close()
        self.httpd.server_close()
        self._set_threads(self._threads_before)
        return stats

    def serve_until_signal(self) -> WriterStats:
        """Block until SIGINT or SIGTERM, then shut down cleanly (main thread only)."""
        stop = threading.Event()
        old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        return self.shutdown()
