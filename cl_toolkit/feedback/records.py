"""Checking and normalising one prediction or feedback event before it is stored.

Shared by the Python API, `clt feedback import|log|rate` and the annotation import, so
every way in applies the same rules. Errors are RecordError(message, key).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

from cl_toolkit.core.timefmt import format_timestamp, utc_now
from cl_toolkit.feedback.redact import redact
from cl_toolkit.feedback.schema import SOURCES

MAX_ID_CHARS = 256
THUMBS = (-1, 0, 1)
# metadata keys that get their own column; the rest stay in the metadata JSON
COLUMN_KEYS = ("domain", "confidence", "latency_ms", "quality_score")
ROW_KEYS = frozenset({"request_id", "timestamp", "input", "output", "model_version", "metadata",
                      "user_feedback", *COLUMN_KEYS})
_CANONICAL_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
# UTC times to whole seconds or milliseconds: the usual log format, converted without
# the cost of a timezone round trip
_UTC_TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{3})?(?:Z|\+00:00)\Z")
_META_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, allow_nan=False)


class RecordError(ValueError):
    """One field of one record is wrong."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


now_timestamp = utc_now  # the store's timestamps are the toolkit's one format


def normalize_timestamp(value, key: str = "timestamp") -> str:
    """An ISO 8601 string, epoch seconds or datetime, as the store's timestamp text."""
    if isinstance(value, str) and _CANONICAL_TS.match(value):
        return value
    try:
        if isinstance(value, str) and (m := _UTC_TS.match(value)):
            datetime.fromisoformat(m[1])  # checks the date and time exist
            return f"{m[1]}{m[2] or '.000'}Z"
        if isinstance(value, datetime):
            return format_timestamp(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return format_timestamp(datetime.fromtimestamp(value, UTC))
        if isinstance(value, str):
            return format_timestamp(datetime.fromisoformat(value.strip()))
    except (ValueError, OverflowError, OSError):
        pass
    raise RecordError(f"not an ISO 8601 time: {value!r}", key)


def _text(value, key: str, *, required: bool, max_chars: int | None = None) -> str | None:
    if type(value) is str and value and not value.isspace() and (
            max_chars is None or len(value) <= max_chars):
        return value  # the common case, checked cheaply
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise RecordError("must be a non-empty string" if required else "must be a string", key)
    if max_chars and len(value) > max_chars:
        raise RecordError(f"longer than {max_chars} characters", key)
    return value


def _number(value, key: str, low: float | None = None, high: float | None = None):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"must be a number, got {value!r}", key)
    try:
        value = float(value)
    except OverflowError:
        raise RecordError("number too large", key) from None
    if not math.isfinite(value):
        raise RecordError(f"must be a finite number, got {value!r}", key)
    if (low is not None and value < low) or (high is not None and value > high):
        raise RecordError(f"{value!r} is out of range [{low}, {high}]", key)
    return value


def _choice(value, key: str, allowed: tuple) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or value not in allowed:
        raise RecordError(f"{value!r} is not one of {', '.join(map(str, allowed))}", key)
    return int(value)


def check_prediction(request_id, input, output, model_version, *, timestamp=None, domain=None,
                     confidence=None, latency_ms=None, quality_score=None, metadata=None,
                     now: str | None = None) -> tuple:
    """A prediction as the tuple of the predictions table's columns, in order."""
    if metadata is not None and not isinstance(metadata, dict):
        raise RecordError("must be an object", "metadata")
    return (
        _text(request_id, "request_id", required=True, max_chars=MAX_ID_CHARS),
        normalize_timestamp(timestamp) if timestamp is not None else (now or now_timestamp()),
        _text(input, "input", required=True),
        _text(output, "output", required=True),
        _text(model_version, "model_version", required=True, max_chars=MAX_ID_CHARS),
        _text(domain, "domain", required=False, max_chars=MAX_ID_CHARS),
        _number(confidence, "confidence", 0.0, 1.0),
        _number(latency_ms, "latency_ms", 0.0),
        _number(quality_score, "quality_score"),
        _metadata_json(metadata),
    )


def _metadata_json(metadata: dict | None) -> str | None:
    if not metadata:
        return None
    try:  # strict JSON, so SQL json_extract() can read every row
        return _META_JSON.encode(metadata)
    except (TypeError, ValueError) as e:
        raise RecordError(f"not storable as JSON ({e})", "metadata") from None


def check_feedback(request_id, *, rating=None, thumbs=None, correction=None, notes=None,
                   source="user", timestamp=None, now: str | None = None) -> tuple | None:
    """A feedback event as the feedback table's columns, or None when it says nothing."""
    if source not in SOURCES:
        raise RecordError(f"{source!r} is not one of {', '.join(SOURCES)}", "source")
    row = (
        _text(request_id, "request_id", required=True, max_chars=MAX_ID_CHARS),
        source,
        _choice(rating, "rating", (1, 2, 3, 4, 5)),
        _choice(thumbs, "thumbs", THUMBS),
        _text(correction, "correction", required=False) or None,
        _text(notes, "notes", required=False) or None,
        normalize_timestamp(timestamp) if timestamp is not None else (now or now_timestamp()),
    )
    return None if row[2:6] == (None, None, None, None) else row


def _redact_value(value, counts):
    if isinstance(value, str):
        return redact(value, counts)
    if isinstance(value, list):
        return [_redact_value(v, counts) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v, counts) for k, v in value.items()}
    return value


def redact_prediction(row: tuple, counts=None) -> tuple:
    """A checked prediction row with PII redacted from its input, output and every string
    in its metadata (the conversation included); the other columns are kept."""
    metadata = row[9]
    if metadata is not None:
        metadata = _META_JSON.encode(_redact_value(json.loads(metadata), counts))
    return (*row[:2], redact(row[2], counts), redact(row[3], counts), *row[4:9], metadata)


def redact_feedback(row: tuple, counts=None) -> tuple:
    """A checked feedback row with PII redacted from its correction and notes."""
    return (*row[:4], *(None if v is None else redact(v, counts) for v in row[4:6]), row[6])


def split_metadata(row: dict) -> tuple[dict, dict]:
    """Column fields (top level or in metadata, top level wins) and the remaining metadata:
    the metadata's other keys plus any unknown top-level keys, so nothing logged is lost."""
    meta = row.get("metadata")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise RecordError("must be an object", "metadata")
    columns = {k: row.get(k, meta.get(k)) for k in COLUMN_KEYS}
    rest = {k: v for k, v in meta.items() if k not in COLUMN_KEYS}
    if not row.keys() <= ROW_KEYS:
        rest.update((k, v) for k, v in row.items() if k not in ROW_KEYS)
    return columns, rest


def records_from_import_row(row, now: str) -> tuple[tuple, tuple | None]:
    """One import line (already parsed) as a predictions row and an optional feedback row."""
    if not isinstance(row, dict):
        raise RecordError(f"a line must be a JSON object, got {type(row).__name__}")
    columns, rest = split_metadata(row)
    prediction = check_prediction(
        row.get("request_id"), row.get("input"), row.get("output"), row.get("model_version"),
        timestamp=row.get("timestamp"), metadata=rest, now=now, **columns,
    )
    fb = row.get("user_feedback")
    if fb is None:
        return prediction, None
    if not isinstance(fb, dict):
        raise RecordError("must be an object", "user_feedback")
    unknown = set(fb) - {"rating", "thumbs", "correction", "notes", "source", "timestamp"}
    if unknown:
        raise RecordError(f"unknown keys {sorted(unknown)}", "user_feedback")
    try:
        feedback = check_feedback(
            prediction[0], rating=fb.get("rating"), thumbs=fb.get("thumbs"),
            correction=fb.get("correction"), notes=fb.get("notes"),
            source=fb.get("source", "user"), timestamp=fb.get("timestamp", prediction[1]),
        )
    except RecordError as e:
        raise RecordError(str(e), f"user_feedback.{e.key}") from None
    return prediction, feedback
