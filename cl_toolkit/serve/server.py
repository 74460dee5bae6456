"""The server: settings, start-up (registry arms, store writer, HTTP on loopback by
default), admission of requests, and a clean shutdown that loses no logged row.

Connections: one selector thread accepts them and reads every request whole under one
deadline before anything admits it; a bounded pool of worker threads answers complete
requests (see FrontEnd). Slow or idle clients therefore hold a buffer, never a worker, and
never count against `max_pending`.

Shutdown order: refuse new requests (503) and stop accepting connections, wait for the
requests in flight to finish (each queues its prediction before it answers), stop the
registry watcher, then drain the writer's queue into the store.
"""

from __future__ import annotations

import io
import ipaddress
import json
import queue
import selectors
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.progress import Bar, clock
from cl_toolkit.feedback.tokens import FeedbackTokens
from cl_toolkit.serve.arms import ArmWatcher
from cl_toolkit.serve.engine import load_version
from cl_toolkit.serve.protocol import ApiError, error_body
from cl_toolkit.serve.upstream import Upstream, remote
from cl_toolkit.serve.writer import DEFAULT_QUEUE, StoreWriter, WriterStats

SHUTDOWN_WAIT_S = 60.0  # the longest a shutdown waits for requests in flight
MAX_HEADER_BYTES = 64 << 10  # request line and headers; more gets 431
DISCARD_MAX_BYTES = 16 << 20  # a refused body up to this size is read and dropped
READ_BLOCK = 64 << 10
EXTRA_WORKERS = 4  # workers beyond max_pending: /health and /v1/models answer while busy
LINGER_S = 2.0  # a refused connection is read and dropped this long after its answer


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
    max_connections: int = 512  # open connections at once; more get 503 and are closed
    request_timeout_s: float = 30.0  # a request (line, headers and body) arrives whole within this, else 408
    idle_timeout_s: float = 60.0  # a keep-alive connection without a request is closed after this
    write_timeout_s: float = 30.0  # a client that reads none of the answer for this long is dropped
    workers: int | None = None  # answering threads (default max_pending + 4)
    reload_interval: float = 2.0  # seconds between looks at the registry's aliases
    queue_size: int = DEFAULT_QUEUE  # predictions waiting for the store before answers wait
    api_key: str | None = None  # when set, requests need `Authorization: Bearer KEY`
    workspace: Path | None = None  # default: $CLT_HOME
    upstream: str | None = None  # an OpenAI-compatible URL (vLLM, …/v1): forward there, load nothing here
    upstream_timeout_s: float = 60.0  # the longest the upstream may be silent (connect, first byte, pieces)
    upstream_api_key: str | None = None  # sent to the upstream as `Authorization: Bearer KEY`


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SocketWriter:
    """The handler's wfile: every write goes straight to the socket (under its timeout)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass


@dataclass
class _Conn:
    """One open connection while the front end owns it."""

    sock: socket.socket
    address: tuple
    buf: bytearray
    deadline: float  # monotonic: idle deadline between requests, one total deadline within one
    reading: bool = False  # the first byte of a request has arrived
    head_end: int = -1  # where the request's body starts, once its header is complete
    need: int = 0  # bytes of the whole request (header and body) still to be buffered
    discard: int = 0  # refused body bytes still to be read and dropped
    close_after: bool = False  # the request cannot be followed on this connection
    dropped_body: bool = False  # the body was over the limit and read away unbuffered


def _status_bytes(status: int, reason: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nServer: clt-serve\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data


class FrontEnd:
    """Connections and requests in one selector thread; requests run in a bounded pool.

    The selector thread accepts connections (at most `max_connections` open; more get 503
    and are closed), and reads each request whole (request line, headers and body) under
    one deadline from its first byte; a connection with no request for `idle_timeout_s` is
    closed, one whose request is not complete within `request_timeout_s` gets 408. Only a
    complete request reaches a worker, so slow clients hold a buffer, never a thread. A
    worker runs the handler (streams included) and writes the answer with a write timeout,
    then gives a keep-alive connection back to the selector thread.
    """

    def __init__(self, address: tuple[str, int], handler_class, app: ChatServer):
        s = app.settings
        self.app, self.handler_class = app, handler_class
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(address)
            self.listener.listen(min(s.max_connections, socket.SOMAXCONN))
        except OSError:
            self.listener.close()
            raise
        self.listener.setblocking(False)
        self.server_address = self.listener.getsockname()
        self.workers = s.workers or s.max_pending + EXTRA_WORKERS
        self.max_queued = self.workers + s.max_pending  # complete requests waiting or running
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._returned: deque[_Conn] = deque()  # keep-alive connections workers hand back
        self._lock = threading.Lock()
        self._conns: dict[int, _Conn] = {}  # fd -> connections the selector thread reads
        self._lingering: dict[int, tuple[socket.socket, float]] = {}  # refused, answered, draining
        self._open = 0  # connections open: read by the selector thread or served by a worker
        self._queued = 0  # requests handed to the pool and not finished
        self._work: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._pool = [threading.Thread(target=self._worker, name=f"clt-serve-worker-{i}", daemon=True)
                      for i in range(self.workers)]

    @property
    def open_connections(self) -> int:
        return self._open

    # --- the selector thread ------------------------------------------------------------
    def start(self) -> None:
        """Start the workers, then the selector thread."""
        for t in self._pool:
            t.start()
        threading.Thread(target=self.serve_forever, name="clt-serve-http", daemon=True).start()

    def serve_forever(self) -> None:
        self._selector.register(self.listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select(self._next_timeout()):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._take_back()
                    elif key.data == "linger":
                        self._drain(key.fileobj)
                    else:
                        self._read(key.data)
                self._expire()
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            for sock, _ in list(self._lingering.values()):
                sock.close()
            self._selector.close()
            self._stopped.set()

    def _next_timeout(self) -> float:
        deadlines = [c.deadline for c in self._conns.values()] + [d for _, d in self._lingering.values()]
        if not deadlines:
            return 0.5
        soonest = min(deadlines)
        return max(0.0, min(0.5, soonest - time.monotonic()))

    def _accept(self) -> None:
        s = self.app.settings
        for _ in range(64):  # a burst at a time; the rest on the next turn
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: leave them in the backlog for now
                return
            sock.setblocking(False)
            with self._lock:
                full = self._open >= s.max_connections
                if not full:
                    self._open += 1
            if full:
                self._refuse(sock, 503, "Service Unavailable",
                             f"{s.max_connections} connections are open; retry shortly", "too_many_connections")
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._watch(_Conn(sock, address, bytearray(), time.monotonic() + s.idle_timeout_s))

    def _watch(self, conn: _Conn) -> None:
        self._conns[conn.sock.fileno()] = conn
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)
        if conn.buf:  # a pipelined request arrived with the last one
            self._parse(conn)

    def _unwatch(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def _close(self, conn: _Conn) -> None:
        self._unwatch(conn)
        with self._lock:  # counted out first: whoever sees the close sees the count
            self._open -= 1
        conn.sock.close()

    def _refuse(self, sock: socket.socket, status: int, reason: str, message: str, code: str | None) -> None:
        """Answer from the selector thread (best effort, never blocking), then close after a
        lingering read: closing with unread bytes would reset the connection, and a reset
        can make the client lose the answer itself."""
        try:
            sock.send(_status_bytes(status, reason, error_body(message, code=code, type=(
                "rate_limit_error" if status == 429 else "invalid_request_error"))))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if len(self._lingering) >= self.app.settings.max_connections:
            sock.close()
            return
        self._lingering[sock.fileno()] = (sock, time.monotonic() + LINGER_S)
        self._selector.register(sock, selectors.EVENT_READ, "linger")

    def _drain(self, sock: socket.socket) -> None:
        try:
            if sock.recv(READ_BLOCK):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._unlinger(sock)

    def _unlinger(self, sock: socket.socket) -> None:
        self._lingering.pop(sock.fileno(), None)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _fail(self, conn: _Conn, status: int, reason: str, message: str, code: str | None = None) -> None:
        self._unwatch(conn)
        with self._lock:
            self._open -= 1
        self._refuse(conn.sock, status, reason, message, code)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(READ_BLOCK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        if conn.discard:
            dropped = min(conn.discard, len(data))
            conn.discard -= dropped
            data = data[dropped:]
            if conn.discard == 0:
                conn.buf += data
                self._dispatch(conn)
                return
            if not data:
                return
        conn.buf += data
        self._parse(conn)

    def _parse(self, conn: _Conn) -> None:
        s = self.app.settings
        if not conn.reading:
            conn.reading = True
            conn.deadline = time.monotonic() + s.request_timeout_s
        if conn.head_end < 0:
            end = conn.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(conn.buf) > MAX_HEADER_BYTES:
                    self._fail(conn, 431, "Request Header Fields Too Large",
                               f"The request line and headers exceed {MAX_HEADER_BYTES} bytes.")
                return
            conn.head_end = end + 4
            if not self._size_body(conn, bytes(conn.buf[:end])):
                return
        if conn.discard:
            dropped = min(conn.discard, len(conn.buf) - conn.head_end)
            conn.discard -= dropped
            del conn.buf[conn.head_end:conn.head_end + dropped]
            if conn.discard:
                return
        if len(conn.buf) >= conn.need:
            self._dispatch(conn)

    def _size_body(self, conn: _Conn, head: bytes) -> bool:
        """From the header: how much body to buffer (or drop). False when already refused."""
        lengths, chunked = [], False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                lengths.append(value.strip())
            elif name == b"transfer-encoding":
                chunked = True
        limit = self.app.settings.max_body_bytes
        conn.need = conn.head_end
        if chunked or len(set(lengths)) > 1:
            conn.close_after = True  # the handler refuses it (411 / 400); nothing after it is trusted
            return True
        if not lengths or not (lengths[0].isascii() and lengths[0].isdigit()):
            conn.close_after = bool(lengths)
            return True
        size = int(lengths[0])
        if size <= limit:
            conn.need = conn.head_end + size
        elif size <= DISCARD_MAX_BYTES:
            conn.discard = size  # read and drop it, so the client reads our 413, not a reset
            conn.dropped_body = True
        else:
            conn.close_after = True  # 413, then the connection closes unread
        return True

    def _dispatch(self, conn: _Conn) -> None:
        """Hand a complete request to the pool (429 when the pool's queue is full)."""
        self._unwatch(conn)
        request, conn.buf = bytes(conn.buf[:conn.need]), conn.buf[conn.need:]
        with self._lock:
            full = self._queued >= self.max_queued
            if not full:
                self._queued += 1
        if full:
            with self._lock:
                self._open -= 1
            self._refuse(conn.sock, 429, "Too Many Requests",
                         f"{self._queued} requests are waiting; retry shortly", "too_many_requests")
            return
        self._work.put((conn, request))

    def _take_back(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._returned:
            conn = self._returned.popleft()
            conn.sock.setblocking(False)
            self._watch(conn)

    def _expire(self) -> None:
        now = time.monotonic()
        for sock in [s for s, d in self._lingering.values() if d <= now]:
            self._unlinger(sock)
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            if conn.reading:
                self._fail(conn, 408, "Request Timeout", f"The request did not arrive within "
                           f"{self.app.settings.request_timeout_s:g} s.", "request_timeout")
            else:
                self._close(conn)

    # --- the pool -----------------------------------------------------------------------
    def _worker(self) -> None:
        while (item := self._work.get()) is not None:
            conn, request = item
            try:
                keep = self._serve(conn, request)
            except Exception as e:  # never lose a worker
                print(f"clt serve: connection failed: {type(e).__name__}: {e}", file=sys.stderr)
                keep = False
            finally:
                with self._lock:
                    self._queued -= 1
            if keep and not self._stopping.is_set():
                conn.reading, conn.head_end, conn.need, conn.discard = False, -1, 0, 0
                conn.close_after = conn.dropped_body = False
                conn.deadline = time.monotonic() + self.app.settings.idle_timeout_s
                self._returned.append(conn)
                try:
                    self._wake_w.send(b"x")
                except OSError:
                    pass
            else:
                with self._lock:
                    self._open -= 1
                conn.sock.close()

    def _serve(self, conn: _Conn, request: bytes) -> bool:
        """Run the handler on one complete request; whether the connection may continue."""
        conn.sock.settimeout(self.app.settings.write_timeout_s)
        h = self.handler_class.__new__(self.handler_class)
        h.request, h.client_address, h.server = conn.sock, conn.address, self
        h.connection = conn.sock
        h.rfile, h.wfile = io.BytesIO(request), _SocketWriter(conn.sock)
        h.body_discarded, h.must_close = conn.dropped_body, conn.close_after
        h.close_connection = True
        try:
            h.handle_one_request()
        except OSError:
            return False
        return not (h.close_connection or conn.close_after)

    def shutdown(self) -> None:
        """Stop accepting and reading; requests already handed to the pool still finish."""
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._stopped.wait(timeout=10)

    def server_close(self) -> None:
        for _ in self._pool:
            self._work.put(None)
        self.listener.close()
        self._wake_r.close()
        self._wake_w.close()


def _announcing(loader: Callable, bar: Bar) -> Callable:
    """`loader`, naming on the bar what it loads (the first load also imports torch)."""
    def load(rec, device):
        what = "base model + adapter" if rec.adapter_dir else "model"
        bar.update(phase=f"loading {rec.model} {rec.version} ({what})")
        return loader(rec, device)
    return load


class ChatServer:
    """One model line served over HTTP. start(), then shutdown() (or serve_until_signal())."""

    def __init__(self, settings: ServeSettings, *, loader: Callable = load_version):
        self.settings = settings
        self.upstream = Upstream(settings.upstream, settings.upstream_timeout_s, settings.upstream_api_key) \
            if settings.upstream else None
        if self.upstream:
            loader = remote  # the upstream holds the weights
        self.watcher = ArmWatcher(settings.workspace, settings.model, share=settings.challenger_share,
                                  salt=settings.salt, device=settings.device,
                                  interval=settings.reload_interval, loader=loader)
        self.writer = StoreWriter(settings.workspace, settings.queue_size)
        self.httpd: FrontEnd | None = None
        self.tokens: FeedbackTokens | None = None
        self.closing = False
        self.started_at = time.time()
        self._inflight = 0
        self._idle = threading.Condition()
        self._threads_before: int | None = None

    def start(self) -> ChatServer:
        """Load the arms, open the store, bind, and serve in a background thread; what it is
        doing goes to stderr as it goes (the first load imports torch: seconds of silence else)."""
        with Bar(f"starting clt serve {self.settings.model}", heartbeat=True, phase_lines=True) as bar:
            self._start(bar)
            bar.finish(f"ready in {clock(bar.elapsed())} ({bar.phase})")
        return self

    def _start(self, bar: Bar) -> None:
        from cl_toolkit.serve.handler import Handler

        if self.upstream:
            from cl_toolkit.serve.relay import RelayHandler as Handler
        self._set_threads(self.settings.threads)
        loader = self.watcher.loader
        if not self.upstream:
            self.watcher.loader = _announcing(loader, bar)
        try:
            bar.update(phase="opening the feedback store")
            self.tokens = FeedbackTokens.for_workspace(self.settings.workspace)
            bar.update(phase="reading the registry")
            self.watcher.load()
            self.writer.start()
        except BaseException:
            self._set_threads(self._threads_before)
            raise
        finally:
            self.watcher.loader = loader
        bar.update(phase=f"listening on {self.settings.host}:{self.settings.port}")
        try:
            self.httpd = FrontEnd((self.settings.host, self.settings.port), Handler, self)
        except OSError as e:
            self.writer.close()
            self._set_threads(self._threads_before)
            raise BadInput(f"cannot listen on {self.settings.host}:{self.settings.port}: {e.strerror}") from None
        self.httpd.start()
        self.watcher.start()
        bar.update(phase="serving " + ", ".join(f"{arm} {v}" for arm, v in self.watcher.current.versions.items() if v)
                   + (f" from {self.upstream.url}" if self.upstream else ""))

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
        if self.upstream:
            self.upstream.close()
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
