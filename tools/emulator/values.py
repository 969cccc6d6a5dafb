"""Values in scenarios and request bodies: ISO 8601 timestamps and durations, role lists, stable ids and
Graph-shaped etags."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from .errors import bad_request
from .filters import FilterError, format_timestamp, parse_timestamp

NAMESPACE = uuid.UUID("8f0d5a1e-5b7c-4a43-9a55-2d3c4e1f7a10")


def ts(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def parse_time(value: Any, what: str = "timestamp") -> datetime:
    if not isinstance(value, str):
        raise bad_request(f"'{what}' must be an ISO 8601 timestamp.")
    try:
        return parse_timestamp(value)
    except FilterError as exc:
        raise bad_request(f"'{what}' is not a valid ISO 8601 timestamp: {value!r}.") from exc


def parse_optional_time(value: Any, what: str) -> datetime | None:
    return None if value in (None, "") else parse_time(value, what)


_DURATION_RE = re.compile(
    r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: Any) -> timedelta:
    """ISO 8601 duration (``P730D``, ``P2Y``, ``PT6H``, ``PT0S``); years count 365 days, months 30."""
    if not isinstance(value, str):
        raise bad_request(f"'{value}' is not a valid ISO 8601 duration.")
    m = _DURATION_RE.match(value.strip().upper())
    if not m or value.strip().upper() in ("P", "PT"):
        raise bad_request(f"'{value}' is not a valid ISO 8601 duration.")
    y, mo, w, d, h, mi, s = m.groups()
    return timedelta(
        days=int(y or 0) * 365 + int(mo or 0) * 30 + int(w or 0) * 7 + int(d or 0),
        hours=int(h or 0),
        minutes=int(mi or 0),
        seconds=float(s or 0),
    )


def make_etag(seed: str) -> str:
    """An opaque weak etag shaped like Graph's: ``W/"<base64 of a quoted guid-like value>"``."""
    h = hashlib.sha1(seed.encode()).hexdigest()
    inner = f"'\"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}\"'"
    return 'W/"' + base64.b64encode(inner.encode()).decode() + '"'


def stable_guid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def role_list(value: Any, what: str) -> list[str]:
    """Roles from a scenario list of ids or the wire ``{"unifiedRoles": [{"roleDefinitionId"}]}``."""
    if isinstance(value, dict):
        value = value.get("unifiedRoles")
        if not isinstance(value, list):
            raise bad_request(f"'{what}.unifiedRoles' is required.")
        value = [r.get("roleDefinitionId") if isinstance(r, dict) else r for r in value]
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise bad_request(f"'{what}' must list role definition ids.")
    seen: list[str] = []
    for r in value:
        if r.lower() not in (s.lower() for s in seen):
            seen.append(r)
    return seen


def lower_set(values: Iterable[str]) -> set[str]:
    return {v.lower() for v in values}
