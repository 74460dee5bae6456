"""The OpenAI-compatible server a router forwards to (vLLM serving the versions as LoRA
modules, or another `clt serve`): keep-alive connections over the standard library's
http.client, and every way the upstream can fail turned into an OpenAI-style ApiError.

Failures: no connection (refused, unreachable, reset) or a broken answer is 502
(`upstream_unavailable`, `upstream_error`); silence for longer than the timeout (to connect,
to the first byte, between two pieces of a stream) is 504 (`upstream_timeout`). The
upstream's own 400, 413 and 429 are the client's to see and pass through; any other status
(401, 404: the version is not loaded there, 5xx) is 502 and names the upstream's status.

A connection idle in the pool for more than IDLE_REUSE_S is closed rather than reused
(uvicorn, vLLM's server, closes idle ones after 5 s); a reused connection that turns out
closed before any answer arrived is retried once on a fresh one: the upstream never saw
that request.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from cl_toolkit.core.errors import BadInput
from cl_toolkit.registry import VersionRecord
from cl_toolkit.serve.engine import Served
from cl_toolkit.serve.protocol import ApiError

CHAT_PATH = "/chat/completions"  # under the upstream URL's path (…/v1)
IDLE_REUSE_S = 2.0
POOL_MAX = 64  # idle connections kept
MAX_ERROR_BYTES = 64 << 10  # of an upstream's error body, read to quote its message
MAX_BODY_BYTES = 64 << 20  # of an upstream's answer
MAX_LINE_BYTES = 1 << 20  # of one line of an upstream's stream
PASSED_THROUGH = {400, 413, 429}  # the upstream's statuses a client sees as they are
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def remote(rec: VersionRecord, device: str | None = None) -> Served:
    """A version the upstream serves: nothing is loaded here (the ArmWatcher's loader)."""
    return Served(rec.version, None)


def parse_upstream(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an upstream URL such as http://127.0.0.1:8001/v1;
    BadInput for anything else (credentials in the URL included: they would be printed)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    problem = ("the scheme must be http or https" if parts.scheme not in ("http", "https") else
               "it has no host" if not parts.hostname else
               "its port is not a number from 1 to 65535" if port == -1 or port == 0 else
               "put the key in --upstream-api-key (CLT_UPSTREAM_API_KEY), not in the URL"
               if parts.username or parts.password else
               "it must not have a query or fragment" if parts.query or parts.fragment else None)
    if problem:
        raise BadInput(f"--upstream {url!r}: {problem} (e.g. http://127.0.0.1:8001/v1)")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), parts.path.rstrip("/")


class Upstream:
    """Chat completions from one upstream; counts its failures for /health."""

    def __init__(self, url: str, timeout_s: float, api_key: str | None = None):
        self.scheme, self.host, self.port, path = parse_upstream(url)
        self.url, self.timeout_s, self.path = url.rstrip("/"), timeout_s, path + CHAT_PATH
        self._headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                         **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        self.errors = 0
        self.last_error: str | None = None

    def health(self) -> dict:
        return {"url": self.url, "errors": self.errors, "last_error": self.last_error}

    def failed(self, message: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = message

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """(a connection, whether it was used before)."""
        now = time.monotonic()
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()
                if now - since <= IDLE_REUSE_S:
                    return conn, True
                conn.close()
        return self._fresh(), False

    def _fresh(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=self.timeout_s)

    def _release(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        if resp.isclosed() and not resp.will_close:
            with self._lock:
                if len(self._idle) < POOL_MAX:
                    self._idle.append((conn, time.monotonic()))
                    return
        conn.close()

    def close(self) -> None:
        with self._lock:
            for conn, _ in self._idle:
                conn.close()
            self._idle.clear()

    def _send(self, data: bytes) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn, reused = self._connection()
        try:
            return conn, self._post(conn, data)
        except STALE:
            conn.close()
            if not reused:
                raise
            self.close()  # closed by the upstream while idle (or it restarted): so are the others
        except BaseException:
            conn.close()
            raise
        conn = self._fresh()  # the upstream never saw the request on the stale one
        try:
            return conn, self._post(conn, data)
        except BaseException:
            conn.close()
            raise

    def _post(self, conn: http.client.HTTPConnection, data: bytes) -> http.client.HTTPResponse:
        conn.request("POST", self.path, body=data, headers=self._headers)
        return conn.getresponse()

    @contextmanager
    def chat(self, body: dict) -> Iterator[http.client.HTTPResponse]:
        """POST a chat-completions body; yields the response once its status is 200 (read
        it inside the block, with read_json or events). ApiError for everything else."""
        try:
            conn, resp = self._send(json.dumps(body, ensure_ascii=False).encode())
        except Exception as e:
            raise self._error(e) from None
        whole = False
        try:
            if resp.status != 200:
                raise self._refusal(resp)
            yield resp
            whole = True
        finally:
            if whole:
                self._release(conn, resp)
            else:
                conn.close()

    def _read(self, read, *args) -> bytes:
        try:
            return read(*args)
        except (OSError, http.client.HTTPException) as e:
            raise self._error(e) from None

    def _error(self, e: Exception) -> ApiError:
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if isinstance(e, TimeoutError):
            return ApiError(504, f"The upstream {self.url} did not answer within {self.timeout_s:g} s.",
                            code="upstream_timeout")
        if isinstance(e, OSError | http.client.RemoteDisconnected):
            return ApiError(502, f"The upstream {self.url} is unavailable ({what}).", code="upstream_unavailable")
        return ApiError(502, f"The upstream {self.url} failed ({what}).", code="upstream_error")

    def _refusal(self, resp: http.client.HTTPResponse) -> ApiError:
        raw = self._read(resp.read, MAX_ERROR_BYTES)
        try:
            error = json.loads(raw).get("error")
        except (ValueError, AttributeError):
            error = None
        error = error if isinstance(error, dict) else {"message": error} if isinstance(error, str) else {}
        message = error.get("message") or raw[:200].decode(errors="replace").strip() or resp.reason
        if resp.status in PASSED_THROUGH:
            return ApiError(resp.status, message, param=error.get("param"), code=error.get("code"))
        hint = " (is vLLM serving this version? see `clt serve LINE --print-vllm`)" if resp.status == 404 else ""
        return ApiError(502, f"The upstream {self.url} answered {resp.status}: {message}{hint}",
                        code="upstream_error")

    def read_json(self, resp: http.client.HTTPResponse) -> dict:
        """A whole (non-streamed) answer's JSON object."""
        raw = self._read(resp.read, MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(502, f"The upstream's answer is over {MAX_BODY_BYTES} bytes.", code="upstream_error")
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(502, "The upstream's answer is not JSON.", code="upstream_error") from None
        if not isinstance(body, dict):
            raise ApiError(502, "The upstream's answer is not a JSON object.", code="upstream_error")
        return body

    def events(self, resp: http.client.HTTPResponse) -> Iterator[dict]:
        """The JSON payloads of an upstream's Server-Sent Events, up to `data: [DONE]`; a
        stream that ends without it, or sends an error, raises ApiError (one that is not a
        stream at all raises here, before anything was sent to the client)."""
        if not resp.getheader("Content-Type", "").startswith("text/event-stream"):
            raise ApiError(502, "The upstream did not stream its answer (no text/event-stream).",
                           code="upstream_error")
        return self._events(resp)

    def _events(self, resp: http.client.HTTPResponse) -> Iterator[dict]:
        while line := self._read(resp.readline, MAX_LINE_BYTES):
            if not line.startswith(b"data:"):
                continue  # blank lines, comments, event names
            data = line[5:].strip()
            if data == b"[DONE]":
                self._read(resp.read)  # the body's end: the connection can serve the next request
                return
            try:
                event = json.loads(data)
            except ValueError:
                raise ApiError(502, "The upstream's stream has a line that is not JSON.",
                               code="upstream_error") from None
            if not isinstance(event, dict) or "error" in event:
                error = event.get("error") if isinstance(event, dict) else None
                message = error.get("message") if isinstance(error, dict) else error or event
                raise ApiError(502, f"The upstream's stream failed: {message}", code="upstream_error")
            yield event
        raise ApiError(502, "The upstream's stream ended before `data: [DONE]`.", code="upstream_error")
