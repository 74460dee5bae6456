"""Times and time windows in the feedback store's format (ISO 8601 UTC with milliseconds
and a Z, so text order is time order), and the loop's interval."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback.records import (
    RecordError,
    format_timestamp,
    normalize_timestamp,
    now_timestamp,
)

_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Window:
    """[start, end) in store time."""

    start: str
    end: str

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end}


def to_store_time(value, what: str = "time") -> str:
    """Any ISO 8601 time or date (a date is its midnight, UTC) in the store's format."""
    try:
        return normalize_timestamp(value)
    except RecordError:
        raise BadInput(f"{what}: not an ISO 8601 date or time: {value!r}") from None


def at_or_now(value: str | None) -> str:
    """--at TIME, or the current time."""
    return to_store_time(value, "--at") if value else now_timestamp()


def parse_time(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def shift(ts: str, days: float) -> str:
    """ts moved by a number of days (negative: back)."""
    return format_timestamp(parse_time(ts) + timedelta(days=days))


def days_between(earlier: str, later: str) -> float:
    return (parse_time(later) - parse_time(earlier)).total_seconds() / 86400


def parse_window(text: str, option: str) -> Window:
    """START..END as a window. A date END means the whole day (up to the next midnight);
    a time END is exclusive."""
    start, sep, end = (text or "").partition("..")
    if not sep or not start.strip() or not end.strip():
        raise BadInput(f"{option}: expected START..END (ISO dates or times), got {text!r}")
    lo = to_store_time(start.strip(), option)
    hi = to_store_time(end.strip(), option)
    if _DATE.match(end.strip()):
        hi = shift(hi, 1)
    if lo >= hi:
        raise BadInput(f"{option}: {text!r} is empty (START must come before END)")
    return Window(lo, hi)


def parse_interval(text: str) -> float:
    """'90s', '15m', '1h', '1d' as seconds."""
    m = _INTERVAL.match((text or "").strip())
    if not m or float(m[1]) <= 0:
        raise BadInput(f"--interval: expected a number and a unit s, m, h or d (e.g. 1h), got {text!r}")
    return float(m[1]) * _UNIT_S[m[2]]
