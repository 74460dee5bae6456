"""A small client for OpenAI-compatible chat endpoints, on the standard library only;
shared by `clt synth` and the judge scorer.

The API key is read from the environment variable the caller names, when a request is
sent, and is never returned, logged or written: error texts go through secrets.redact
with the key itself masked too. Transient failures (connection errors, timeouts, HTTP
408/409/429/5xx) are retried a bounded number of times with exponential backoff,
honouring Retry-After up to the cap; any other HTTP error fails at once. A 200 whose
body is not a chat completion raises MalformedReply: callers report it and go on.

Where the key may go: plain ``http://`` is accepted only for a loopback host (127.0.0.0/8,
::1, localhost), anything else must be ``https://`` (refused before any connection is
attempted), and a URL carrying credentials (user info, a ``token``/``key``/``sig``/
``password`` query parameter) is refused: the key belongs in the environment. Redirects
are never followed: a 3xx is an error naming where it pointed, so a redirect cannot carry
the Authorization header to another host (the header is also marked not to be repeated on
a redirect). One setting bounds the time: ``timeout_s`` (default DEFAULT_TIMEOUT_S,
`--timeout` on the command line) limits connecting and every wait for bytes, and a reply
still arriving when it has passed is abandoned (a timeout, retried like one), so an attempt
takes at most about twice the timeout however slowly a server sends.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from cl_toolkit.core.errors import BadInput, CltError
from cl_toolkit.core.secret_scan import redact

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
# URLError (refused, unreachable), TimeoutError and ConnectionError are all OSErrors
TRANSIENT = (OSError, http.client.HTTPException)
MAX_REPLY_BYTES = 8 << 20
EXCERPT_CHARS = 200
_SECRET_WORDS = ("token", "key", "sig", "password", "secret")
DEFAULT_TIMEOUT_S = 120.0  # the one default: per request, connect to last byte
_READ_CHUNK = 64 << 10


class EndpointError(CltError):
    """The endpoint refused, or kept failing after every retry (exit 1)."""


class MalformedReply(Exception):
    """A reply that is not what was asked for; the run reports it and goes on."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask: an OpenAI-compatible base URL (``https://host/v1``)."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = DEFAULT_TIMEOUT_S
    attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def __post_init__(self):
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput(f"--base-url {public_url(self.base_url)!r} is not an http(s) URL")
        carried = ["user info"] if parts.username or parts.password else []
        carried += [f"query parameter {k!r}" for k, _ in parse_qsl(parts.query, True)
                    if any(word in k.lower() for word in _SECRET_WORDS)]
        if carried:
            raise BadInput(f"--base-url {public_url(self.base_url)!r} carries credentials "
                           f"({', '.join(carried)}): give the key in the environment variable "
                           f"--api-key-env names ({self.api_key_env}) instead")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise BadInput(f"--base-url {public_url(self.base_url)!r}: plain http is accepted only "
                           "for a loopback host (the API key would cross the network unencrypted); "
                           "use https://")
        if not self.model.strip():
            raise BadInput("--model must name a model")
        if self.attempts < 1 or self.timeout_s <= 0 or self.backoff_s < 0:
            raise BadInput("need attempts >= 1, timeout > 0 and backoff >= 0")

    def describe(self) -> dict:
        """What a manifest may record: the URL without credentials, and the model."""
        return {"base_url": public_url(self.base_url), "model": self.model}

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def scrub(self, text: str) -> str:
        """`text` with the API key and anything else credential-like masked."""
        key = self._key()
        return redact(text.replace(key, "[REDACTED]") if key else text)


def public_url(url: str) -> str:
    """`url` without user info, query or fragment, and with secrets masked."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return redact(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def is_loopback(host: str | None) -> bool:
    """True for localhost and the loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx comes back as the HTTPError it is; nothing is sent to where it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _opener(url: str):
    # loopback never goes through a proxy; other hosts honour the usual *_proxy variables
    handlers = [_NoRedirect()]
    if is_loopback(urlsplit(url).hostname):
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _read(response, deadline: float) -> bytes:
    """The body, at most MAX_REPLY_BYTES; TimeoutError once the deadline has passed. Each
    read returns what one receive brings (read1), so a server that drips bytes is cut off
    at the deadline, not when a large read is finally filled."""
    stream = getattr(response, "fp", None) if isinstance(response, urllib.error.HTTPError) else response
    read = getattr(stream, "read1", None) or response.read
    chunks, size = [], 0
    while size < MAX_REPLY_BYTES:
        if time.monotonic() > deadline:
            raise TimeoutError("the reply took longer than the timeout")
        chunk = read(min(_READ_CHUNK, MAX_REPLY_BYTES - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _post(endpoint: Endpoint, url: str, body: bytes) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    if key := endpoint._key():  # never repeated on a redirect (none is followed anyway)
        request.add_unredirected_header("Authorization", f"Bearer {key}")
    deadline = time.monotonic() + endpoint.timeout_s
    try:
        with _opener(url).open(request, timeout=endpoint.timeout_s) as response:
            return response.status, _lower(response.headers), _read(response, deadline)
    except urllib.error.HTTPError as e:  # a status, not a transport failure
        with e:
            return e.code, _lower(e.headers or {}), _read(e, deadline)


def _lower(headers) -> dict:
    return {k.lower(): v for k, v in headers.items()}


def _delay(endpoint: Endpoint, attempt: int, retry_after: str | None) -> float:
    delay = endpoint.backoff_s * 2 ** (attempt - 1)
    if retry_after and retry_after.strip().isdigit():
        delay = max(delay, float(retry_after))
    return min(delay, endpoint.max_backoff_s)


def _content(data: bytes) -> str:
    try:
        reply = json.loads(data)
        content = reply["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise MalformedReply(f"not a chat completion: {data[:EXCERPT_CHARS]!r}") from None
    if not isinstance(content, str):
        raise MalformedReply("the reply's message content is not text")
    return content


def chat(endpoint: Endpoint, messages: list[dict], *, temperature: float = 0.0,
         max_tokens: int = 1024, seed: int | None = None) -> str:
    """The assistant's reply text to `messages`; EndpointError or MalformedReply."""
    url = endpoint.base_url.rstrip("/") + "/chat/completions"
    payload = {"model": endpoint.model, "messages": messages, "temperature": temperature,
               "max_tokens": max_tokens}
    if seed is not None:
        payload["seed"] = seed
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    for attempt in range(1, endpoint.attempts + 1):
        retry_after = None
        try:
            status, headers, data = _post(endpoint, url, body)
        except TRANSIENT as e:
            failure = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        else:
            if 200 <= status < 300:
                try:
                    return _content(data)
                except MalformedReply as e:
                    raise MalformedReply(endpoint.scrub(str(e))) from None
            excerpt = " ".join(data[:EXCERPT_CHARS].decode("utf-8", "replace").split())
            failure = f"HTTP {status}: {excerpt}"
            if 300 <= status < 400:
                where = headers.get("location")
                raise EndpointError(endpoint.scrub(
                    f"{public_url(url)}: HTTP {status} redirect"
                    f"{f' to {public_url(where)}' if where else ''} not followed (it could take "
                    "the API key elsewhere); give the final URL as --base-url"))
            if status not in RETRY_STATUS:
                raise EndpointError(endpoint.scrub(f"{public_url(url)}: {failure}"))
            retry_after = headers.get("retry-after")
        if attempt == endpoint.attempts:
            raise EndpointError(endpoint.scrub(
                f"{public_url(url)}: gave up after {attempt} attempts; last: {failure}"))
        time.sleep(_delay(endpoint, attempt, retry_after))
    raise AssertionError("unreachable: the last attempt returns or raises")
