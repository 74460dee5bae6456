"""`clt serve LINE --upstream URL`: the router. Each chat request is checked, given its id
and routed to an arm exactly as the built-in server does (handler.begin), then forwarded
to the upstream as `LINE-VERSION` (protocol.engine_name: vLLM's LoRA module for that
version); the answer goes back with the router's id, feedback token and fingerprint, and
is logged by the same writer (store, journal). Every other route is the built-in server's.

The forwarded body is the client's, with the checked messages, `max_tokens` capped by the
router, `temperature` and `top_p` as the built-in server reads them (greedy by default:
vLLM would sample) and, for streams, the usage asked for (the log records token counts; a
client sees the usage chunk only when it asked for it).

A failed upstream call is answered 502 or 504 (upstream.py), with the request's id in
X-Request-Id and one line on stderr naming the id, arm and version; nothing is logged into
the store, which holds answers.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from cl_toolkit.serve.engine import Completion
from cl_toolkit.serve.handler import ROUTES, Answer, Handler, begin, stream_answer
from cl_toolkit.serve.protocol import ApiError, ChatRequest, completion_body, engine_name

DROPPED = ("model", "metadata", "max_tokens", "max_completion_tokens", "stream_options", "messages")


def upstream_body(body: dict, req: ChatRequest, name: str) -> dict:
    """What the upstream is asked: the client's body for model `name` (module docstring)."""
    out = {k: v for k, v in body.items() if k not in DROPPED}
    out.update(model=name, messages=list(req.messages), max_tokens=req.max_tokens,
               temperature=req.temperature, top_p=req.top_p)
    if req.stream:
        out["stream_options"] = {"include_usage": True}
    return out


def relay_chat(h: Handler, app) -> None:
    with app.admit():
        body, _, answer = begin(h, app)
        forward = upstream_body(body, answer.req, engine_name(answer.model, answer.version))
        try:
            with app.upstream.chat(forward) as resp:
                if answer.req.stream:
                    stream_answer(h, answer, RemoteStream(app.upstream.events(resp), app, answer))
                    return
                done = completion_of(app.upstream.read_json(resp))
        except ApiError as e:
            refused(app, answer, e)
            h.send_json(e.status, e.body(), {"X-Request-Id": answer.rid})
            return
        answer.log(done)
        h.send_json(200, completion_body(answer.rid, answer.name, done.text, done.finish_reason,
                                         done.prompt_tokens, done.completion_tokens, int(answer.received),
                                         answer.token, answer.fingerprint), answer.headers)


def refused(app, answer: Answer, e: ApiError) -> None:
    """The operator's line for a request the upstream did not answer (counted in /health)."""
    line = f"{answer.rid} ({answer.arm} {answer.version}): {e.status} {e.code or ''}: {e.message}"
    if e.status >= 500:
        app.upstream.failed(line)
    print(f"clt serve: upstream refused {line}" if e.status < 500 else f"clt serve: upstream failed {line}",
          file=sys.stderr, flush=True)


def completion_of(body: dict) -> Completion:
    """The Completion in an upstream's chat.completion body (502 when it has none)."""
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("content is not text")
    except (KeyError, IndexError, TypeError) as e:
        raise ApiError(502, f"The upstream's answer has no message content ({type(e).__name__}).",
                       code="upstream_error") from None
    usage = body.get("usage") or {}
    return Completion(text, usage.get("prompt_tokens"), usage.get("completion_tokens"),
                      choice.get("finish_reason") or "stop", {"upstream_id": body.get("id")})


class RemoteStream:
    """An upstream's stream, read the way stream_answer reads the engine's Stream: pieces()
    as they arrive, then result(); the role chunk and usage chunk are the router's own."""

    def __init__(self, events: Iterator[dict], app, answer: Answer):
        self.events, self.app, self.answer = events, app, answer
        self.text, self.finish, self.usage, self.upstream_id = "", None, {}, None
        self.done = False

    def pieces(self) -> Iterator[str]:
        try:
            for event in self.events:
                self.upstream_id = self.upstream_id or event.get("id")
                self.usage = event.get("usage") or self.usage
                for choice in event.get("choices") or ():
                    self.finish = choice.get("finish_reason") or self.finish
                    if piece := (choice.get("delta") or {}).get("content"):
                        self.text += piece
                        yield piece
        except ApiError as e:  # stream_answer ends the client's stream with an error event
            refused(self.app, self.answer, e)
            raise
        self.done = True

    def result(self) -> Completion:
        if not self.done:  # the client left early: read the rest, to log the whole answer
            for _ in self.pieces():
                pass
        return Completion(self.text, self.usage.get("prompt_tokens"), self.usage.get("completion_tokens"),
                          self.finish or "stop", {"upstream_id": self.upstream_id})


class RelayHandler(Handler):
    routes = {**ROUTES, "/v1/chat/completions": {"POST": relay_chat}}
