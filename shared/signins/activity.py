"""Per customer and day, what the sign-in log showed: packed events and counts in ``SignInDays``, and the
one reader of that layout."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.domain.report import SignInKind
from shared.platform.sharding import key_range_filter
from shared.platform.state import StateStore
from shared.platform.storage import (
    Storage,
    get_or_none,
    partition,
    query_all,
)
from shared.platform.timeutil import DAY, day_key, day_start, iso, parse_day_key, parse_optional

log = logging.getLogger(__name__)


INTERACTIVE, NON_INTERACTIVE = 0, 1
EVENT = struct.Struct("<QH")  # microsecond of day (bit 63: non-interactive), agent index


NON_INTERACTIVE_BIT = 1 << 63  # events stored before non-interactive sign-ins were read have it clear


KIND_NAMES: tuple[SignInKind, SignInKind] = (
    "interactive",
    "nonInteractive",
)  # the report's lastSignInKind, by kind number


EVENTS_PER_CHUNK = 6000  # 60 KB: under the 64 KB limit of a binary property


MAX_CHUNKS = 15  # keeps an entity under 1 MB


TICK = timedelta(microseconds=1)


@dataclass
class DayActivity:
    """One customer's qualifying sign-ins on one UTC day."""

    day: datetime
    agents: list[str] = field(default_factory=list)
    # (microsecond of day, agent index, kind: INTERACTIVE or NON_INTERACTIVE)
    events: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, at: datetime, user_id: str, kind: int = INTERACTIVE) -> None:
        try:
            index = self.agents.index(user_id)
        except ValueError:
            self.agents.append(user_id)
            index = len(self.agents) - 1
        micro = (at - self.day) // TICK
        self.events.append((micro, index, kind))

    def times(self) -> Iterable[tuple[datetime, str]]:
        for micro, index, _ in self.events:
            yield self.day + timedelta(microseconds=micro), self.agents[index]

    def kinded_times(self) -> Iterable[tuple[datetime, str, int]]:
        for micro, index, kind in self.events:
            yield self.day + timedelta(microseconds=micro), self.agents[index], kind

    def replace_range(self, start: datetime, end: datetime, fresh: DayActivity | None) -> None:
        """Drop events in [start, end] and take ``fresh``'s events (which all lie in that range)."""
        lo, hi = (start - self.day) // TICK, (end - self.day) // TICK
        kept = [(t, k, self.agents[i]) for t, i, k in self.events if not lo <= t <= hi]
        incoming = [] if fresh is None else [(t, k, fresh.agents[i]) for t, i, k in fresh.events]
        self.agents, self.events = [], []
        for micro, kind, user in sorted(kept + incoming):
            self.add(self.day + timedelta(microseconds=micro), user, kind)

    @property
    def last(self) -> datetime | None:
        if not self.events:
            return None
        return self.day + timedelta(microseconds=max(t for t, _, _ in self.events))

    @property
    def last_kind(self) -> int | None:
        """The kind of the latest sign-in (interactive wins a tie)."""
        if not self.events:
            return None
        return max(self.events, key=lambda e: (e[0], -e[2]))[2]

    def to_entity(self, tenant_id: str) -> dict[str, Any]:
        import json

        events = sorted(self.events)
        if len(events) > EVENTS_PER_CHUNK * MAX_CHUNKS:
            log.warning(
                "%s on %s: %d sign-ins, keeping the latest %d",
                tenant_id,
                day_key(self.day),
                len(events),
                EVENTS_PER_CHUNK * MAX_CHUNKS,
            )
            events = events[-EVENTS_PER_CHUNK * MAX_CHUNKS :]
        entity: dict[str, Any] = {
            "PartitionKey": day_key(self.day),
            "RowKey": tenant_id,
            "Count": len(self.events),
            "Agents": json.dumps(self.agents),
            "LastAt": iso(self.last) if self.last else "",
        }
        for n in range(0, len(events), EVENTS_PER_CHUNK):
            chunk = events[n : n + EVENTS_PER_CHUNK]
            entity[f"Ev{n // EVENTS_PER_CHUNK}"] = b"".join(
                EVENT.pack(t | (NON_INTERACTIVE_BIT if k else 0), i) for t, i, k in chunk
            )
        return entity

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> DayActivity:
        import json

        activity = cls(parse_day_key(entity["PartitionKey"]), agents=json.loads(entity.get("Agents") or "[]"))
        n = 0
        while f"Ev{n}" in entity:
            data = bytes(entity[f"Ev{n}"])
            activity.events.extend(
                (t & ~NON_INTERACTIVE_BIT, i, 1 if t & NON_INTERACTIVE_BIT else 0)
                for t, i in EVENT.iter_unpack(data)
            )
            n += 1
        return activity


async def day_entities(
    storage: Storage, day: datetime, shard: str | None = None, select: list[str] | None = None
) -> list[dict[str, Any]]:
    """The ``SignInDays`` entities of one UTC day -- of one customer shard only, if given (a RowKey
    range). Every reader of the table goes through here, so the day's layout is known in one place."""
    table = storage.table("SignInDays")
    if shard is None:
        return await partition(table, day_key(day), select)
    query, params = key_range_filter("RowKey", shard)
    return [
        e
        async for e in query_all(
            table, f"PartitionKey eq @pk and {query}", {"pk": day_key(day), **params}, select
        )
    ]


def last_day_counts(activities: Iterable[DayActivity], as_of: datetime) -> tuple[int, int, int]:
    """(sign-ins, distinct agents, non-interactive sign-ins) with as_of - 24h < createdDateTime <= as_of."""
    start = as_of - DAY
    count, non_interactive, agents = 0, 0, set()
    for activity in activities:
        for at, user, kind in activity.kinded_times():
            if start < at <= as_of:
                count += 1
                non_interactive += kind
                agents.add(user)
    return count, len(agents), non_interactive


def latest_at_or_before(activity: DayActivity, as_of: datetime) -> tuple[datetime, int] | None:
    """The latest sign-in at or before ``as_of`` and its kind (interactive wins a tie)."""
    times = [(at, -kind) for at, _, kind in activity.kinded_times() if at <= as_of]
    if not times:
        return None
    at, kind = max(times)
    return at, -kind


@dataclass
class Activity:
    last_sign_in_at: datetime | None = None
    agents_last_day: int = 0
    sign_ins_last_day: int = 0
    non_interactive_last_day: int = 0
    last_sign_in_kind: SignInKind | None = None  # KIND_NAMES


class ActivityReader:
    """Per-customer activity at ``as_of`` from the stored aggregates: O(customers + 2 days)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.shard: str | None = None

    async def read(
        self,
        as_of: datetime,
        tenants: Iterable[str],
        coverage_start: datetime | None,
        shard: str | None = None,
    ) -> dict[str, Activity]:
        """``shard``: the tenants all belong to that shard; only its partitions and key ranges are read."""
        self.shard = shard
        wanted = set(tenants)
        result = {t: Activity() for t in wanted}
        last: dict[str, datetime] = {}
        kinds: dict[str, SignInKind] = {}
        query, params = key_range_filter("PartitionKey", shard) if shard is not None else ("", {})
        async for e in query_all(self.storage.table("LastSignIns"), query or None, params or None):
            at = parse_optional(e.get("LastAt"))
            if at is not None and e["RowKey"] in wanted:
                last[e["RowKey"]] = at
                # rows written before non-interactive sign-ins were read have no Kind: interactive
                kinds[e["RowKey"]] = (
                    KIND_NAMES[1] if e.get("Kind") == KIND_NAMES[1] else KIND_NAMES[INTERACTIVE]
                )
        today = day_start(as_of)
        # The two days that the (as_of - 24h, as_of] window touches, read at once.
        days: dict[str, list[DayActivity]] = defaultdict(list)
        for entities in await asyncio.gather(*(self._day(day) for day in (today, today - DAY))):
            for entity in entities:
                if entity["RowKey"] in wanted:
                    days[entity["RowKey"]].append(DayActivity.from_entity(entity))
        for tenant, activities in days.items():
            (
                result[tenant].sign_ins_last_day,
                result[tenant].agents_last_day,
                result[tenant].non_interactive_last_day,
            ) = last_day_counts(activities, as_of)
        # Latest sign-in at or before as_of: the stored maximum, unless it lies after as_of.
        later = set()
        for tenant in wanted:
            at = last.get(tenant)
            if at is None:
                continue
            if at <= as_of:
                result[tenant].last_sign_in_at, result[tenant].last_sign_in_kind = at, kinds[tenant]
            else:
                later.add(tenant)
        if later:
            await self._scan_back(as_of, later, result, coverage_start)
        return result

    async def _scan_back(
        self, as_of: datetime, tenants: set[str], result: dict[str, Activity], floor: datetime | None
    ) -> None:
        """For an as_of in the past: walk days backwards until each customer's last sign-in is found."""
        oldest = await self._oldest_day()
        day = day_start(as_of)
        remaining = set(tenants)
        while remaining and oldest is not None and day >= oldest:
            for entity in await self._day(day):
                tenant = entity["RowKey"]
                if tenant not in remaining:
                    continue
                latest = latest_at_or_before(DayActivity.from_entity(entity), as_of)
                if latest is not None:
                    result[tenant].last_sign_in_at, result[tenant].last_sign_in_kind = (
                        latest[0],
                        KIND_NAMES[latest[1]],
                    )
                    remaining.discard(tenant)
            day -= DAY

    async def _day(self, day: datetime) -> list[dict[str, Any]]:
        return await day_entities(self.storage, day, self.shard)

    async def _oldest_day(self) -> datetime | None:
        state = await StateStore(self.storage).load_coverage()
        if not state.intervals:
            return None
        return day_start(min(s for s, _ in state.intervals))

    async def history(self, tenant_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Daily sign-ins and agents for one customer (portal detail view)."""
        table = self.storage.table("SignInDays")
        out = []
        day = day_start(start)
        while day <= end:
            entity = await get_or_none(table, day_key(day), tenant_id)
            if entity is not None:
                activity = DayActivity.from_entity(entity)
                out.append(
                    {
                        "day": day_key(day),
                        "signIns": len(activity.events),
                        "nonInteractiveSignIns": sum(kind for _, _, kind in activity.events),
                        "agents": activity.agents,
                        "lastAt": iso(activity.last) if activity.last else None,
                    }
                )
            day += DAY
        return out
