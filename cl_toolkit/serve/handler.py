"""HTTP routes: POST /v1/chat/completions (plain and streamed), POST /v1/feedback,
GET /v1/models and GET /health, with OpenAI-style error bodies.

Every answer queues its prediction before the client can see the answer's end, so
feedback sent right after an answer always finds its row.

Ids and feedback: every answer's id is issued by the server; the client's X-Request-Id is
kept as `client_request_id` (and routes the request), OpenAI's `user` as `end_user`. Each
answer carries a feedback token (the HMAC of its id: cl_toolkit.feedback.tokens), and
/v1/feedback takes feedback only with it; the store records it with source "api".

The handler runs in the server's worker pool on a request the front end has already read
whole (cl_toolkit.serve.server.FrontEnd): `rfile` holds exactly that request.
"""

from __future__ import annotations

import hmac
import json
import os
import sys
import time
import traceback
from functools import partial
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from cl_toolkit.core.errors import BadInput
from cl_toolkit.serve.engine import Completion, Served, Stream, complete, encode
from cl_toolkit.serve.protocol import (
    ApiError,
    ChatRequest,
    chunk_body,
    client_reference,
    completion_body,
    error_body,
    new_request_id,
    parse_chat,
    parse_feedback,
    parse_json,
    sse,
    usage,
)
from cl_toolkit.serve.writer import Prediction, UnknownRequest

API_SOURCE = "api"  # the store's source for feedback posted to /v1/feedback: unverified


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; streams use chunked transfer encoding
    server_version = "clt-serve"
    body_discarded = False  # set by the front end: an over-limit body was read away already
    must_close = False  # set by the front end: nothing after this request can be trusted

    def log_message(self, format, *args) -> None:
        pass  # the feedback store is the request log

    def _handle(self) -> None:
        self._body_read = False
        app = self.server.app
        path = urlsplit(self.path).path.rstrip("/") or "/"
        try:
            methods = self.routes.get(path)
            if methods is None:
                raise ApiError(404, f"Unknown request URL: {self.command} {path}", code="unknown_url")
            if self.command not in methods:
                raise ApiError(405, f"{path} takes {', '.join(methods)}, not {self.command}",
                               code="method_not_allowed")
            if app.settings.api_key and path != "/health":
                self._authorize(app.settings.api_key)
            methods[self.command](self, app)
        except ApiError as e:
            self.send_json(e.status, e.body(), {"Allow": ", ".join(methods)} if e.status == 405 else {})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):  # the client went, or stopped reading
            self.close_connection = True
        except Exception as e:  # an answer for the client, the details for the operator
            print(f"clt serve: {self.command} {path} failed: {type(e).__name__}: {e}", file=sys.stderr)
            if os.environ.get("CLT_DEBUG"):
                traceback.print_exc()
            self.send_json(500, error_body("The server had an error while processing your request.",
                                           type="server_error"))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _authorize(self, key: str) -> None:
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            raise ApiError(401, "Incorrect or missing API key (Authorization: Bearer KEY).",
                           code="invalid_api_key")

    def body(self) -> bytes:
        """The request body, within the size limit (413 beyond it)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ApiError(411, "Send a Content-Length; chunked request bodies are not accepted.")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise ApiError(411, "A Content-Length header is required.")
        if not (raw.isascii() and raw.isdigit()):
            raise ApiError(400, "Content-Length must be a whole number of bytes.")
        limit = self.server.app.settings.max_body_bytes
        if int(raw) > limit:
            self._body_read = self.body_discarded
            raise ApiError(413, f"The request body is {raw} bytes; the limit is {limit}.",
                           code="request_too_large")
        data = self.rfile.read(int(raw))  # the front end buffered it whole
        self._body_read = True
        if len(data) < int(raw):
            self.close_connection = True
            raise ApiError(400, "The request body ended before its Content-Length.")
        return data

    def _unread_body(self) -> bool:
        return not self._body_read and self.headers.get("Content-Length", "0") not in ("", "0")

    def send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
        if self._unread_body() or self.must_close:
            self.close_connection = True  # the unread body would be taken for the next request
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def send_chunk(self, data: bytes) -> None:
        """One piece of a chunked response; b"" ends it."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


# --- routes ----------------------------------------------------------------------------------

def begin(h: Handler, app) -> tuple[dict, Served, Answer]:
    """(the request body, what answers, the Answer) for a chat request: checked, given its
    id, routed to an arm (or the version it names as LINE-VERSION)."""
    received, start = time.time(), time.perf_counter()
    ref = client_reference(h.headers.get("X-Request-Id"))
    body = parse_json(h.body())
    req = parse_chat(body, model=app.settings.model, max_tokens=app.settings.max_tokens,
                     versions=app.watcher.issued)
    rid = new_request_id()
    arms = app.watcher.current  # read once: this request is answered and logged by one pair
    if req.pinned:
        arm, (served, fingerprint) = "pinned", app.watcher.pinned(req.pinned)
    else:
        arm, served = arms.pick(ref or req.user or rid)  # a client's own key keeps its arm
        fingerprint = arms.fingerprints.get(served.version)
    return body, served, Answer(app, req, rid, arm, arms.model, served.version, received, start, ref, fingerprint)


def chat(h: Handler, app) -> None:
    with app.admit():
        _, served, answer = begin(h, app)
        req, rid, received = answer.req, answer.rid, answer.received
        prompt = encode(served.lm, req)
        if req.stream:
            stream_answer(h, answer, Stream(served, prompt, req))
            return
        done = answer.log(complete(served, prompt, req))
        h.send_json(200, completion_body(rid, answer.name, done.text, done.finish_reason, done.prompt_tokens,
                                         done.completion_tokens, int(received), answer.token,
                                         answer.fingerprint), answer.headers)


class Answer:
    """One request being answered: its identity, and the logging of its prediction."""

    def __init__(self, app, req: ChatRequest, rid: str, arm: str, model: str, version: str,
                 received: float, start: float, ref: str | None = None, fingerprint: str | None = None):
        self.app, self.req, self.rid, self.arm, self.ref = app, req, rid, arm, ref
        self.fingerprint = fingerprint  # system_fingerprint: the version's weights hash, short
        self.model, self.version, self.received, self.start = model, version, received, start
        self.name = f"{model}@{version}"
        self.token = app.tokens.sign(rid)
        self.headers = {"X-Request-Id": rid, "X-Feedback-Token": self.token, "X-Model-Version": version,
                        "X-Arm": arm}
        if ref is not None:
            self.headers["X-Client-Request-Id"] = ref

    def log(self, done: Completion, **extra) -> Completion:
        req = self.req
        meta = {k: v for k, v in req.metadata.items() if k != "domain"}
        meta.update(model=self.model, arm=self.arm, stream=req.stream, prompt_tokens=done.prompt_tokens,
                    completion_tokens=done.completion_tokens, finish_reason=done.finish_reason,
                    client_request_id=self.ref, end_user=req.user, **extra, **done.meta)
        if len(req.messages) > 1:  # the input is the last user turn; keep the whole conversation
            meta["messages"] = list(req.messages)
        latency_ms = (time.perf_counter() - self.start) * 1000
        self.app.writer.log(Prediction(self.rid, req.last_user_message, done.text, self.version,
                                       self.received, latency_ms, req.metadata.get("domain"), meta))
        return done


def stream_answer(h: Handler, answer: Answer, stream: Stream) -> None:
    """Server-Sent Events: a role chunk, content chunks as decoded, a finish chunk, an
    optional usage chunk, then `data: [DONE]`. A client that leaves still gets logged.
    `stream` is the engine's Stream, or anything with its pieces() and result()."""
    created, rid, name, token = int(answer.received), answer.rid, answer.name, answer.token
    chunk = partial(chunk_body, token=token, fingerprint=answer.fingerprint)
    h.send_response(200)
    for k, v in {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                 "Transfer-Encoding": "chunked", **answer.headers}.items():
        h.send_header(k, v)
    h.end_headers()
    gone, first_ms = False, None

    def send(data: bytes) -> None:
        nonlocal gone
        if not gone:
            try:
                h.send_chunk(data)
            except OSError:  # gone, reset, or not reading within the write timeout
                gone = h.close_connection = True

    send(sse(chunk(rid, name, created, {"role": "assistant", "content": ""})))
    try:
        for piece in stream.pieces():
            first_ms = first_ms or round((time.perf_counter() - answer.start) * 1000, 3)
            send(sse(chunk(rid, name, created, {"content": piece})))
            if gone:
                break
        done = stream.result()
    except Exception as e:  # the status line is gone: say it in the stream, then end it
        print(f"clt serve: streaming {rid} failed: {type(e).__name__}: {e}", file=sys.stderr)
        send(sse(error_body("The server had an error while generating the answer.", type="server_error")))
        send(b"")
        h.close_connection = True
        return
    answer.log(done, first_token_ms=first_ms, client_disconnected=gone)
    send(sse(chunk(rid, name, created, {}, done.finish_reason)))
    if answer.req.include_usage:
        send(sse(chunk(rid, name, created, {}, usage_=usage(done.prompt_tokens, done.completion_tokens))))
    send(sse("[DONE]"))
    send(b"")


def feedback(h: Handler, app) -> None:
    with app.admit():
        rid, token, fields = parse_feedback(parse_json(h.body()), h.headers.get("X-Feedback-Token"))
        if token is None:
            raise ApiError(401, "Feedback needs the answer's feedback_token (its body field "
                                "`feedback_token` or header X-Feedback-Token).",
                           param="feedback_token", code="missing_feedback_token")
        if not app.tokens.verify(rid, token):
            raise ApiError(403, "This feedback_token is not the one issued with this request_id.",
                           param="feedback_token", code="invalid_feedback_token")
        try:
            status = app.writer.feedback(rid, source=API_SOURCE, **fields)
        except UnknownRequest as e:
            raise ApiError(404, str(e), param="request_id", code="request_not_found") from None
        except BadInput as e:  # the store's own checks (rating 1-5, thumbs -1/0/1, ...)
            problems = "; ".join(f"{p.key}: {p.message}" if p.key else p.message for p in e.problems)
            raise ApiError(400, problems) from None
        h.send_json(200, {"object": "feedback", "request_id": rid, "status": status})


def models(h: Handler, app) -> None:
    h.send_json(200, {"object": "list", "data": [{"id": app.settings.model, "object": "model",
                                                  "created": int(app.started_at), "owned_by": "cl_toolkit"}]})


def health(h: Handler, app) -> None:
    arms, stats = app.watcher.current, app.writer.stats
    h.send_json(200, {
        "status": "closing" if app.closing else "ok", "model": app.settings.model, **arms.versions,
        "challenger_share": arms.share if arms.challenger else 0.0, "reloads": app.watcher.reloads,
        "last_error": app.watcher.last_error, "inflight": app.inflight,
        "log": {"pending": app.writer.pending, "written": stats.written, "duplicates": stats.duplicates,
                "rejected": stats.rejected, "failed": stats.failed, "journaled": stats.journaled,
                "replayed": stats.replayed, "retries": stats.retries, "journaling": app.writer.journaling},
        **({"upstream": app.upstream.health()} if app.upstream else {}),
        "uptime_s": round(time.time() - app.started_at, 3)})


ROUTES = {
    "/v1/chat/completions": {"POST": chat},
    "/v1/feedback": {"POST": feedback},
    "/v1/models": {"GET": models},
    "/health": {"GET": health},
}
Handler.routes = ROUTES  # path -> {method: route}; a subclass may answer a path its own way
