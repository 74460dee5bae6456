"""Keep tokens and keys out of everything we write: rendered configs, manifests, logs.

Three checks, each reporting where (file, line, key) and why, never the value itself:
keys that only ever hold a credential (`SECRET_KEYS`), values that look like one
(`SECRET_VALUE`, the values of the environment's secret variables), and URLs that carry
one: user-info (`https://user:pass@host`) or a secret-looking query parameter
(`?token=...`, `sig`, `key`, `password`, ...). `scan_document` runs them over a file's raw
text, comments included, and over its parsed data."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlsplit

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.yamlio import format_key

# Keys that only ever hold a credential.
SECRET_KEYS = {"hf_token", "hub_token", "wandb_api_key", "comet_api_key", "mlflow_tracking_token",
               "api_key", "openai_api_key", "aws_secret_access_key", "password", "secret"}
# Values that look like a credential whatever key holds them.
SECRET_VALUE = re.compile(
    r"\bhf_[A-Za-z0-9]{30,}\b|\bsk-[A-Za-z0-9_-]{20,}\b|\bAKIA[0-9A-Z]{16}\b|\bghp_[A-Za-z0-9]{30,}\b"
    r"|\bgithub_pat_[A-Za-z0-9_]{30,}\b|\bglpat-[A-Za-z0-9_-]{20,}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}"
    r"|\bAIza[0-9A-Za-z_-]{35}\b|\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"
)
_SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|ACCESS_KEY|_KEY$", re.I)
# a URL anywhere in a string: scheme://... up to whitespace or a quote
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# query parameter names, split at - _ . and lower-cased, that say the value is a credential
SECRET_PARAMS = {"token", "key", "apikey", "sig", "signature", "password", "passwd", "pwd", "secret",
                 "credential", "credentials", "auth", "authorization", "session", "jwt"}

WHY_KEY = "credentials do not belong in recipes or profiles; use the environment"
WHY_VALUE = "this value looks like a token or key; it would be written to disk"
WHY_USERINFO = "a URL must not carry a password or user name (user-info); use the environment"
WHY_QUERY = "a URL must not carry a token, key or signature in its query; use the environment"


def env_secret_values() -> list[str]:
    """Values of environment variables whose names say they are credentials."""
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]


def _secret_param(name: str) -> bool:
    parts = [p for p in re.split(r"[-_.\[\]]+", name.lower()) if p]
    return any(p in SECRET_PARAMS for p in parts) or name.lower().replace("-", "_") in SECRET_KEYS


def url_problem(text: str) -> str | None:
    """Why a URL inside `text` carries a credential, or None."""
    for match in _URL.finditer(text):
        try:
            parts = urlsplit(match.group(0))
        except ValueError:
            continue
        if "@" in parts.netloc:
            return WHY_USERINFO
        query = parts.query + ("&" + parts.fragment if "=" in parts.fragment else "")
        if any(value and _secret_param(name) for name, value in parse_qsl(query, keep_blank_values=True)):
            return WHY_QUERY
    return None


def value_problem(text: str, env_values: list[str] | None = None) -> str | None:
    """Why the string `text` holds a credential, or None."""
    env_values = env_secret_values() if env_values is None else env_values
    if SECRET_VALUE.search(text) or any(s in text for s in env_values):
        return WHY_VALUE
    return url_problem(text)


def find_secrets(obj, path: tuple = ()) -> list[tuple[tuple, str]]:
    """(key path, reason) for every secret-looking key or value in a nested structure."""
    return _find(obj, path, env_secret_values())


def _find(obj, path: tuple, env_values: list[str]) -> list[tuple[tuple, str]]:
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).lower() in SECRET_KEYS and v not in (None, "", False, True):
                found.append(((*path, k), WHY_KEY))
            else:
                found.extend(_find(v, (*path, k), env_values))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            found.extend(_find(v, (*path, i), env_values))
    elif isinstance(obj, str):
        why = value_problem(obj, env_values)
        if why:
            found.append((path, why))
    return found


def _dotted(path) -> str:
    return format_key(path)


def scan_text(text: str, fname: str, key_at_line=None) -> list[Problem]:
    """A problem for every line of raw text (comments included) that holds a credential.
    `key_at_line(line) -> str | None` names the key written on that line, when known."""
    env_values = env_secret_values()
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        why = value_problem(line, env_values)
        if why:
            problems.append(Problem(fname, why, number, key_at_line(number) if key_at_line else None))
    return problems


def scan_document(text: str | None, data, lines, fname: str, prefix: tuple = ()) -> list[Problem]:
    """Every credential in a YAML document: in its parsed data (file, line, key) and in its
    raw text, comments included (the lines the data scan did not already report).
    `lines` is yamlio's LineMap for `data`; `prefix` is prepended to key paths."""
    problems = [Problem(fname, why, lines.line_for(p) if lines is not None else None, _dotted((*prefix, *p)) or None)
                for p, why in find_secrets(data)]
    if text is not None:
        seen = {p.line for p in problems}
        by_line = {}
        for path, line in (lines or {}).items():
            if path and (line not in by_line or len(path) > len(by_line[line])):
                by_line[line] = path
        problems += [p for p in scan_text(text, fname, lambda n: _dotted((*prefix, *by_line[n])) if n in by_line else None)
                     if p.line not in seen]
    return problems


def refuse_secrets(obj, fname: str) -> None:
    """BadInput if a structure about to be written holds a credential."""
    found = find_secrets(obj)
    if found:
        raise BadInput([Problem(fname, why, key=_dotted(p)) for p, why in found])


_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"<>]*@")
_QUERY_VALUE = re.compile(r"([?&#;]([A-Za-z0-9_.\[\]-]+)=)([^&#\s'\"<>]*)")


def redact(text: str) -> str:
    """Mask credential-looking values, URL user-info and secret query values, and env
    secrets in free text (logs, error messages)."""
    for value in env_secret_values():
        text = text.replace(value, "[REDACTED]")
    text = SECRET_VALUE.sub("[REDACTED]", text)
    text = _USERINFO.sub(r"\1[REDACTED]@", text)
    return _QUERY_VALUE.sub(lambda m: m.group(1) + "[REDACTED]" if _secret_param(m.group(2)) else m.group(0), text)


def redact_problems(problems: list[Problem]) -> list[Problem]:
    """The same problems with every message and key passed through `redact`."""
    return [Problem(p.file, redact(p.message), p.line, redact(p.key) if p.key else p.key) for p in problems]
