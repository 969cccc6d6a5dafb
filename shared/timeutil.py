"""UTC time helpers. Every time in the product is an aware UTC datetime."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

DAY = timedelta(days=1)
_FRACTION = re.compile(r"\.(\d+)")


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_iso(value: str) -> datetime:
    """Parse an ISO 8601 timestamp as Graph and Partner Center write it (up to 7 fractional digits, Z).

    A value without an offset is taken as UTC. Raises ValueError on anything else.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty timestamp")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python accepts at most 6 fractional digits; Graph sends 7.
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_optional(value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    return parse_iso(value)


def iso(value: datetime) -> str:
    """Canonical output form: second precision unless there are fractions, always Z."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0") + "Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_optional(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


def graph_literal(value: datetime) -> str:
    """An unquoted DateTimeOffset literal for a Graph $filter (7 fractional digits)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}0Z"


def day_start(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def day_key(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d")


def parse_day_key(key: str) -> datetime:
    return datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=UTC)


def whole_days(delta: timedelta) -> int:
    """floor(delta / 1 day), also for negative deltas."""
    return delta // DAY
