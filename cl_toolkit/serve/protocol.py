"""The OpenAI chat-completions wire format, as pure functions: checking a request body into
a frozen ChatRequest, the response, chunk and error bodies, and TextCutter, which decides
how much of a growing answer may already be streamed.

Fields that change what the answer would be and that we cannot honour (n > 1, tools,
logprobs, a JSON response format) are refused with 400; other fields OpenAI clients send
by default (presence_penalty, seed, ...) are accepted and ignored.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP = 4
MAX_METADATA_KEYS = 16
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,256}\Z")  # printable ASCII, no spaces: safe in a header
MAX_JSON_DEPTH = 32  # deeper request bodies are refused (400): no request needs more
MAX_USER_CHARS = 256
THUMBS = {"up": 1, "neutral": 0, "down": -1}


class ApiError(Exception):
    """An error answered as an OpenAI error body with an HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ("server_error" if status >= 500 else "invalid_request_error")

    def body(self) -> dict:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True)
class ChatRequest:
    """A checked chat-completions request."""

    messages: tuple[dict, ...]  # {"role": system|user|assistant, "content": str}
    max_tokens: int
    temperature: float = 0.0  # 0: greedy (the default: the answers the gate measured)
    top_p: float = 1.0
    stream: bool = False
    include_usage: bool = False
    stop: tuple[str, ...] = ()
    user: str | None = None  # OpenAI `user`: logged as the end user, never used as an id
    metadata: dict = field(default_factory=dict)
    pinned: str | None = None  # the version a request named as LINE-VERSION (engine_name)

    @property
    def last_user_message(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


def parse_json(raw: bytes) -> dict:
    """The body as a JSON object, else ApiError 400 (nesting deeper than MAX_JSON_DEPTH too)."""
    try:
        body = json.loads(raw)
    except RecursionError:
        body = None
        too_deep = True
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "We could not parse the JSON body of your request.") from None
    else:
        too_deep = _depth_over(body, MAX_JSON_DEPTH)
    if too_deep:
        raise ApiError(400, f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.",
                       code="json_too_deep")
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _depth_over(value, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` deep (iterative: no recursion)."""
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def _content(value, i: int) -> str:
    """A message's text: a string, or a list of {"type": "text", "text": ...} parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                       and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    raise ApiError(400, "content must be a string or a list of text parts", param=f"messages[{i}].content")


def _messages(value) -> tuple[dict, ...]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ApiError(400, f"role must be one of {', '.join(ROLES)}", param=f"messages[{i}].role")
        out.append({"role": ROLES[m["role"]], "content": _content(m.get("content"), i)})
    if not any(m["role"] == "user" and m["content"].strip() for m in out):
        raise ApiError(400, "messages need a user message with some text", param="messages")
    return tuple(out)


def _number(body: dict, key: str, default: float, low: float, high: float, *, integer=False):
    value = body.get(key)
    if value is None:
        return default
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ApiError(400, f"{key} must be {'an integer' if integer else 'a number'} "
                            f"between {low} and {high}", param=key)
    return value


def _stop(value) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > MAX_STOP or \
            not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, f"stop must be a string or a list of up to {MAX_STOP} strings", param="stop")
    return tuple(stops)


def _metadata(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_METADATA_KEYS or \
            not all(isinstance(v, str) for v in value.values()):
        raise ApiError(400, f"metadata must be an object of up to {MAX_METADATA_KEYS} string values",
                       param="metadata")
    return dict(value)


def _refuse_unsupported(body: dict) -> None:
    if body.get("n", 1) != 1:
        raise ApiError(400, "only n=1 is supported", param="n")
    for key in ("tools", "functions"):
        if body.get(key):
            raise ApiError(400, f"{key} are not supported by this server", param=key)
    if body.get("logprobs"):
        raise ApiError(400, "logprobs are not supported by this server", param="logprobs")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type", "text") != "text"):
        raise ApiError(400, "only the text response format is supported", param="response_format")


def engine_name(model: str, version: str) -> str:
    """The name a serving engine gives one version: `LINE-VERSION`, as vLLM's LoRA module
    (`--lora-modules LINE-VERSION=PATH`). A request naming it gets exactly that version."""
    return f"{model}-{version}"


def _named_version(name, model: str, sep: str, versions: Collection[str]) -> str | None:
    if isinstance(name, str) and name.startswith(model + sep) and name[len(model) + 1:] in versions:
        return name[len(model) + 1:]
    return None


def parse_chat(body: dict, *, model: str, max_tokens: int, versions: Collection[str] = ()) -> ChatRequest:
    """Check a chat-completions body for model line `model`, named as the line, as
    `LINE@VERSION` for one of `versions` (the line's registered versions and those the
    server answered with: a client may send back the `model` it was given; the router still
    picks the arm), or as `LINE-VERSION` (engine_name: that version answers, not an arm;
    what a router in front of this server asks for). max_tokens is the
    server's cap: asking for more gets the cap, asking for nothing gets the cap."""
    name = body.get("model")
    pinned = _named_version(name, model, "-", versions)
    if name is not None and name != model and pinned is None and _named_version(name, model, "@", versions) is None:
        also = ", ".join(f"{model}@{v}" for v in sorted(versions))
        raise ApiError(404, f"The model {name!r} does not exist; this server serves {model!r}"
                            + (f" (also named {also})" if also else ""),
                       param="model", code="model_not_found")
    _refuse_unsupported(body)
    messages = _messages(body.get("messages"))
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    tokens = _number(body, key, max_tokens, 1, 2 ** 31, integer=True)
    stream = body.get("stream", False)
    options = body.get("stream_options") or {}
    user = body.get("user")
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise ApiError(400, "stream must be a boolean and stream_options an object", param="stream")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_CHARS):
        raise ApiError(400, f"user must be a string of at most {MAX_USER_CHARS} characters", param="user")
    return ChatRequest(
        messages=messages, max_tokens=min(tokens, max_tokens),
        temperature=float(_number(body, "temperature", 0.0, 0.0, 2.0)),
        top_p=float(_number(body, "top_p", 1.0, 0.0, 1.0)), stream=stream,
        include_usage=bool(options.get("include_usage")), stop=_stop(body.get("stop")),
        user=user, metadata=_metadata(body.get("metadata")), pinned=pinned)


def new_request_id() -> str:
    """Every answer's id is issued here, never taken from the client: ids cannot collide."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def client_reference(header: str | None) -> str | None:
    """The client's own X-Request-Id, checked: kept as the answer's client reference (and
    routing key), never as its id."""
    if header is None:
        return None
    if not REQUEST_ID.match(header):
        raise ApiError(400, "X-Request-Id must be 1-256 printable ASCII characters without spaces",
                       param="X-Request-Id")
    return header


def parse_feedback(body: dict, header_token: str | None = None) -> tuple[str, str | None, dict]:
    """(request id, feedback token or None, add_feedback keywords) from a /v1/feedback body;
    the token is the body's `feedback_token`, else the X-Feedback-Token header. The store
    checks the values."""
    rid = body.get("request_id", body.get("id"))
    if not isinstance(rid, str) or not REQUEST_ID.match(rid):
        raise ApiError(400, "request_id must be the id a chat completion returned", param="request_id")
    token = body.get("feedback_token", header_token)
    if token is not None and not isinstance(token, str):
        raise ApiError(400, "feedback_token must be the string a chat completion returned",
                       param="feedback_token")
    thumbs = body.get("thumbs")
    fields = {"rating": body.get("rating"), "thumbs": THUMBS.get(thumbs, thumbs) if isinstance(thumbs, str)
              else thumbs, "correction": body.get("correction"), "notes": body.get("notes")}
    if all(v is None for v in fields.values()):
        raise ApiError(400, "feedback needs a rating (1-5), thumbs (up/down), a correction or notes")
    return rid, token, fields


def completion_body(rid: str, model: str, text: str, finish: str, prompt_tokens: int,
                    completion_tokens: int, created: int | None = None, token: str | None = None,
                    fingerprint: str | None = None) -> dict:
    out = {"id": rid, "object": "chat.completion", "created": created or int(time.time()), "model": model,
           "system_fingerprint": fingerprint,
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                        "logprobs": None, "finish_reason": finish}],
           "usage": usage(prompt_tokens, completion_tokens)}
    if token is not None:
        out["feedback_token"] = token
    return out


def usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict:
    """None where the count is unknown (an upstream that sent no usage)."""
    total = None if prompt_tokens is None or completion_tokens is None else prompt_tokens + completion_tokens
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total}


def chunk_body(rid: str, model: str, created: int, delta: dict, finish: str | None = None,
               usage_: dict | None = None, token: str | None = None, fingerprint: str | None = None) -> dict:
    """One streamed chunk; a usage chunk (stream_options.include_usage) has no choices."""
    choices = [] if usage_ else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    out = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
           "system_fingerprint": fingerprint, "choices": choices}
    if usage_:
        out["usage"] = usage_
    if token is not None:
        out["feedback_token"] = token
    return out


def sse(data: dict | str) -> bytes:
    """One Server-Sent Event: `data: ...` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


class TextCutter:
    """The answer as the client sees it: stripped, cut before the first stop string.

    While the text grows, `feed` returns only what can no longer change: it holds back
    trailing whitespace and the last characters that might begin a stop string, so every
    streamed piece is a real piece of the final answer and their concatenation is it."""

    def __init__(self, stop: tuple[str, ...] = ()):
        self.stop = tuple(s for s in stop if s)
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.sent = 0
        self.stopped = False

    def _visible(self, text: str, done: bool) -> str:
        # the client sees the answer without its leading whitespace, so stop strings are
        # looked for there too (a tokenizer whose first piece is " word" must not make a
        # stop string " " cut the whole answer away)
        text = text.lstrip()
        cuts = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if cuts:
            self.stopped = True
            text = text[:min(cuts)]
        elif not done and self.hold:
            text = text[:len(text) - self.hold]
        return text.strip()

    def feed(self, text: str) -> str:
        """The new piece that may be sent now, given the whole text so far."""
        visible = self._visible(text, done=False)
        piece = visible[self.sent:]
        self.sent = max(self.sent, len(visible))
        return piece

    def finish(self, text: str) -> tuple[str, str]:
        """(the last piece to send, the final answer) once the text is complete."""
        final = self._visible(text, done=True)
        piece = final[self.sent:]
        self.sent = len(final)
        return piece, final
