"""UTC time helpers. Every time in the product is an aware UTC datetime."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

DAY = timedelta(days=1)
_FRACTION = re.compile(r"\.(\d+)")


class MicrosoftClock:
    """The product's one clock: Microsoft's, as the ``Date`` header of its responses tells it.

    Every service the product calls (Graph, Partner Center, the emulator) sends its own clock in the
    ``Date`` header (RFC 9110, section 6.6.1). The product keeps the offset of the latest such header
    from the host's clock and reads "now" as host time plus that offset, so a host clock that runs
    ahead or behind cannot move the present: coverage, the audit's ``asOf``, the timers and the
    moments removals are decided and checked read Microsoft's time. Until the first answer the offset is zero (host time); the jobs that record
    evidence ask :meth:`shared.services.Services.now`, which makes sure an answer has been seen.
    """

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._observed = False

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    @property
    def observed(self) -> bool:
        return self._observed

    @property
    def host_offset(self) -> timedelta:
        """Microsoft's clock minus the host's (positive: the host is behind)."""
        return self._offset

    def observe(self, date_header: str | None, received_at: datetime | None = None) -> None:
        """Take the ``Date`` header of one response (received at ``received_at``, host time)."""
        if not date_header:
            return
        try:
            told = parsedate_to_datetime(date_header)
        except (TypeError, ValueError, IndexError):
            return
        if told.tzinfo is None:
            told = told.replace(tzinfo=UTC)
        self._offset = told.astimezone(UTC) - (received_at or datetime.now(UTC))
        self._observed = True

    def reset(self) -> None:
        self._offset, self._observed = timedelta(0), False


CLOCK = MicrosoftClock()


def utcnow() -> datetime:
    """The host's clock: for the mechanics between this product's own processes (leases, heartbeats,
    run records, ordering). Whatever is evidence -- the audit's present, coverage, the moment a removal
    is decided or checked -- reads Microsoft's clock (:data:`CLOCK`, ``Services.now()``) instead."""
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


def days_covering(start: datetime, end: datetime) -> list[datetime]:
    """The UTC days (their midnights) from the one holding ``start`` to the one holding ``end``."""
    days = []
    day = day_start(start)
    while day <= end:
        days.append(day)
        day += DAY
    return days


def day_key(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d")


def parse_day_key(key: str) -> datetime:
    return datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=UTC)


def whole_days(delta: timedelta) -> int:
    """floor(delta / 1 day), also for negative deltas."""
    return delta // DAY


async def observe_response_date(response: Any) -> None:
    """An httpx response hook: every answer from Microsoft sets :data:`CLOCK`."""
    CLOCK.observe(response.headers.get("date"))
