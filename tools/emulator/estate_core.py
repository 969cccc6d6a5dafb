"""What every part of the simulated estate shares: the clock, the partner tenant's directory, the
customers and GDAP relationships, the etag sequence and the durations of asynchronous changes.

The parts (:mod:`.gdap_relationships`, :mod:`.gdap_assignments`, :mod:`.signin_wire`, :mod:`.signin_query`,
:mod:`.outbox`, :mod:`.dap`) are mixins over :class:`SimEstateCore`; :class:`tools.emulator.estate.SimEstate`
combines them and loads a scenario into the attributes declared here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .entities import SimCustomer, SimRelationship
from .filters import format_timestamp
from .scenario import DEFAULT_ASYNC_DURATIONS
from .signin_log import SignInLog
from .values import make_etag, parse_duration


class SimEstateCore:
    """The state the mixins read and write (``SimEstate`` sets it from the scenario), and their helpers."""

    now: datetime
    retention_days: float
    latency_seconds: float
    partner_tenant_id: str
    partner_display_name: str
    sender_mailbox: str
    groups: dict[str, dict[str, Any]]
    agents: list[dict[str, Any]]
    agents_by_id: dict[str, dict[str, Any]]
    async_durations: dict[str, str]
    expiring_window: timedelta
    customers: dict[str, SimCustomer]
    relationships: dict[str, SimRelationship]
    signins: SignInLog
    outbox: list[dict[str, Any]]

    def __init__(self) -> None:
        self._seq = 0

    @property
    def now_ts(self) -> str:
        return format_timestamp(self.now)

    def next_etag(self, entity_id: str) -> str:
        self._seq += 1
        return make_etag(f"{entity_id}:{self._seq}")

    def duration(self, kind: str, rel: SimRelationship | None = None) -> timedelta:
        """How long an asynchronous change of ``kind`` takes: the relationship's, the scenario's, the default."""
        if rel is not None and kind in rel.durations:
            return parse_duration(rel.durations[kind])
        return parse_duration(self.async_durations.get(kind, DEFAULT_ASYNC_DURATIONS[kind]))
