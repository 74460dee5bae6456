"""The one timestamp format of the toolkit: ISO 8601 UTC with milliseconds and a Z
(`2026-12-01T21:30:00.123Z`), so that text order is time order everywhere: the feedback
store, the registry, stamps, gate and evaluation results, reports."""

from __future__ import annotations

from datetime import UTC, datetime


def format_timestamp(dt: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z; naive times are taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def utc_now() -> str:
    """The current time in the toolkit's timestamp format."""
    return format_timestamp(datetime.now(UTC))


def from_epoch(seconds: float) -> str:
    """Epoch seconds in the toolkit's timestamp format."""
    return format_timestamp(datetime.fromtimestamp(seconds, UTC))
