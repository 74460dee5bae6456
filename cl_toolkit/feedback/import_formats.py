"""What `clt feedback import` reads besides its own rows: other row shapes, CSV and Parquet,
`--map`, a default version and the timezone of naive timestamps.

Every row, whatever file it came from, is turned into the feedback row of docs/formats.md
before `records.py` checks it, so one set of rules judges them all. Three shapes are told
apart row by row (`shape_of`):

- ``feedback``: the toolkit's own row (`input`, `output`, `model_version`, ...);
- ``guide``: the feedback collector of the continual-learning guide: `prompt`, `response`,
  `rating`, `correction`, `timestamp` (naive, `datetime.now().isoformat()`) and the version
  in `metadata.model_version`; a row without an `id` gets one from its content, so
  importing it again is still a no-op;
- ``openai``: a chat-completions log, `{"request": {...}, "response": {...}}` or the two
  merged: the last user message in, `choices[0].message.content` out, `model`
  (`LINE@VERSION` as `clt serve` answers, or any name) and `created` (epoch seconds).

CSV and Parquet rows come through `tables.py` (`table=True`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.feedback.records import COLUMN_KEYS, RecordError
from cl_toolkit.feedback.tables import FEEDBACK_FIELDS, coerce, table_row

REQUIRED = ("request_id", "input", "output", "model_version")
# the names other logs use for a required field: a missing field's error suggests the --map
ALIASES = {
    "request_id": ("request_id", "id", "interaction_id", "requestId", "uuid", "log_id"),
    "input": ("input", "prompt", "question", "query", "user_message", "instruction"),
    "output": ("output", "response", "answer", "completion", "prediction", "content"),
    "model_version": ("model_version", "version", "modelVersion", "model"),
}
MAP_KEYS = frozenset({*REQUIRED, "timestamp", *COLUMN_KEYS, *FEEDBACK_FIELDS})
_MISSING = object()


class NaiveTimestamp(RecordError):
    """A timestamp without an offset and no --timezone to read it in: stops the import."""


@dataclass
class ImportOptions:
    """How rows that are not the toolkit's own are read (all optional)."""

    maps: dict[str, tuple[str, ...]] = field(default_factory=dict)  # KEY -> PATH parts
    model_version: str | None = None  # for rows that have none
    timezone: str | None = None  # IANA name naive timestamps are read in

    def __post_init__(self):
        self._zone = zone(self.timezone) if self.timezone else None


@dataclass
class RowCounts:
    """What the conversion did, over every row."""

    shapes: dict = field(default_factory=dict)  # shape -> rows
    localized: int = 0  # rows with a naive timestamp read in --timezone
    defaulted_version: int = 0  # rows given --model-version


def zone(name: str) -> ZoneInfo:
    """An IANA timezone, or BadInput saying what is wrong."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"--timezone {name!r} is not a timezone: give an IANA name such as "
                       "UTC, Europe/Berlin or America/New_York") from None


def parse_maps(specs) -> dict[str, tuple[str, ...]]:
    """--map KEY=PATH values as KEY -> path parts (`a.b.0.c` or `a.b[0].c`)."""
    maps, problems = {}, []
    for spec in specs or ():
        key, sep, path = spec.partition("=")
        key, path = key.strip(), path.strip()
        if not sep or not path or key not in MAP_KEYS:
            problems.append(Problem(file="--map", key=key or None, message=(
                f"{spec!r}: give KEY=PATH, KEY one of {', '.join(sorted(MAP_KEYS))}, PATH a "
                "dotted path into the row (e.g. model_version=meta.ver)")))
            continue
        maps[key] = tuple(p for p in re.split(r"\.|\[(\d+)\]", path) if p)
    if problems:
        raise BadInput(problems)
    return maps


def get_path(row, parts: tuple[str, ...]):
    """The value at a dotted path (list items by index), or _MISSING."""
    value = row
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def shape_of(row: dict) -> str:
    """feedback, guide or openai: which kind of log a row is."""
    if "choices" in row or isinstance(row.get("response"), dict) or isinstance(row.get("request"), dict):
        return "openai"
    if "prompt" in row and "response" in row and "input" not in row:
        return "guide"
    return "feedback"


def _guide(row: dict) -> dict:
    meta = dict(row.get("metadata") or {}) if isinstance(row.get("metadata"), dict) else row.get("metadata")
    out = {k: v for k, v in row.items()
           if k not in ("prompt", "response", "id", "metadata", *FEEDBACK_FIELDS)}
    out["input"], out["output"] = row.get("prompt"), row.get("response")
    rid = row.get("id", row.get("interaction_id"))
    if rid is None:  # the content is the identity: importing the same log again adds nothing
        digest = hashlib.sha256(json.dumps([str(row.get("timestamp")), out["input"], out["output"]],
                                           ensure_ascii=False).encode("utf-8", "surrogatepass"))
        rid = f"guide-{digest.hexdigest()[:24]}"
    out["request_id"] = rid
    if isinstance(meta, dict) and "model_version" in meta and "model_version" not in row:
        out["model_version"] = meta.pop("model_version")
    if meta is not None:
        out["metadata"] = meta
    fb = {k: row[k] for k in FEEDBACK_FIELDS if row.get(k) is not None}
    if fb:
        out["user_feedback"] = fb
    return out


def _text_of(content):
    if isinstance(content, list):  # content parts: the text ones, joined
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(t for t in texts if isinstance(t, str)) or None
    return content


def _openai(row: dict) -> dict:
    req = row["request"] if isinstance(row.get("request"), dict) else row
    resp = row["response"] if isinstance(row.get("response"), dict) else row
    messages = req.get("messages") if isinstance(req.get("messages"), list) else []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    output = get_path(resp, ("choices", "0", "message", "content"))
    model = resp.get("model", req.get("model"))
    line, at, version = model.rpartition("@") if isinstance(model, str) else ("", "", model)
    meta = dict(req["metadata"]) if isinstance(req.get("metadata"), dict) else {}
    if isinstance(row.get("metadata"), dict) and row is not req:
        meta.update(row["metadata"])
    if model is not None:
        meta["model"] = line if at else model
    if len(messages) > 1:  # as `clt serve` keeps it: the input is the last user turn
        meta["messages"] = messages
    if (finish := get_path(resp, ("choices", "0", "finish_reason"))) not in (_MISSING, None):
        meta["finish_reason"] = finish
    out = {"request_id": resp.get("id", row.get("request_id")),
           "timestamp": resp.get("created", row.get("timestamp")),
           "input": _text_of(users[-1].get("content")) if users else None,
           "output": None if output is _MISSING else _text_of(output),
           "model_version": version or None, "metadata": meta}
    if isinstance(row.get("user_feedback"), dict):
        out["user_feedback"] = row["user_feedback"]
    return {k: v for k, v in out.items() if v is not None}


SHAPES = {"feedback": lambda row: row, "guide": _guide, "openai": _openai}


def _localize(value, key: str, tz: ZoneInfo | None):
    """A naive ISO string or datetime as an aware ISO string in `tz`; others unchanged."""
    if isinstance(value, str):
        if value.endswith("Z"):  # the usual case, without parsing
            return value, False
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            return value, False  # records.py says what is wrong with it
    elif isinstance(value, datetime):
        dt = value
    else:
        return value, False
    if dt.tzinfo is not None:
        return value, False
    if tz is None:
        raise NaiveTimestamp(
            f"naive timestamp {str(value)!r} (no UTC offset): pass --timezone ZONE to say "
            "where it was logged (an IANA name such as UTC or Europe/Berlin)", key)
    return dt.replace(tzinfo=tz).isoformat(), True


def _hint(key: str, row: dict) -> str:
    found = [p for p in _paths(row) if p.rsplit(".", 1)[-1] in ALIASES[key] and p != key]
    fix = f"pass --map {key}={found[0]}" if found else f"pass --map {key}=PATH"
    if key == "model_version":
        fix += " (or --model-version V for rows that have none)"
    where = f"found `{found[0]}`" if found else f"keys here: {', '.join(sorted(row)) or 'none'}"
    return f"`{key}` missing; {where}: {fix}"


def _paths(value, prefix: str = "", depth: int = 0) -> Iterator[str]:
    if isinstance(value, dict) and depth < 4:
        for k, v in value.items():
            path = f"{prefix}{k}"
            yield path
            yield from _paths(v, path + ".", depth + 1)


def to_feedback_row(row, opts: ImportOptions, counts: RowCounts, *, table: bool = False) -> dict:
    """Any row `clt feedback import` reads, as the feedback row; RecordError if it cannot be."""
    if not isinstance(row, dict):
        raise RecordError(f"a line must be a JSON object, got {type(row).__name__}")
    if table:
        row = table_row(row)
    original, mapped = row, {}
    if opts.maps:
        row, mapped = _take_mapped(row, opts.maps)
    shape = shape_of(row)
    counts.shapes[shape] = counts.shapes.get(shape, 0) + 1
    out = SHAPES[shape](row)
    if mapped:
        out = _put_mapped(dict(out), mapped)
    if out.get("model_version") is None and opts.model_version:
        out["model_version"] = opts.model_version
        counts.defaulted_version += 1
    for key in REQUIRED:
        if out.get(key) is None:
            raise RecordError(_hint(key, original), key)
    if "timestamp" in out:
        out["timestamp"], local = _localize(out["timestamp"], "timestamp", opts._zone)
        counts.localized += local
    fb = out.get("user_feedback")
    if isinstance(fb, dict) and "timestamp" in fb:
        fb["timestamp"], _ = _localize(fb["timestamp"], "user_feedback.timestamp", opts._zone)
    return out


def _take_mapped(row: dict, maps: dict) -> tuple[dict, dict]:
    """(the row without the values --map took, KEY -> value taken): a mapped field is
    stored once, in its column, not again in the metadata."""
    mapped = {}
    for key, parts in maps.items():
        value = get_path(row, parts)
        if value is _MISSING:
            continue
        mapped[key] = coerce(value, key)
        row = _without(row, parts)
    return row, mapped


def _without(node, parts: tuple[str, ...]):
    """A copy of `node` without the dict leaf at `parts` (copies only along the path)."""
    if not isinstance(node, dict) or parts[0] not in node:
        return node
    out = dict(node)
    if len(parts) == 1:
        del out[parts[0]]
    else:
        out[parts[0]] = _without(node[parts[0]], parts[1:])
        if out[parts[0]] == {}:
            del out[parts[0]]
    return out


def _put_mapped(out: dict, mapped: dict) -> dict:
    fb = out.get("user_feedback")
    fb = dict(fb) if isinstance(fb, dict) else {} if fb is None else fb  # not an object: records says so
    for key, value in mapped.items():
        if key in FEEDBACK_FIELDS and isinstance(fb, dict):
            fb[key] = value
        elif key not in FEEDBACK_FIELDS:
            out[key] = value
    if fb:
        out["user_feedback"] = fb
    return out


