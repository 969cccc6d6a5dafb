"""Sign-in ingestion: the partner tenant's cross-tenant sign-in log into Table Storage.

What is kept, per customer and UTC day (``SignInDays``, PK = day, RK = customer tenant): the
qualifying sign-ins packed as (microsecond of day, agent index) pairs, the day's distinct agents and
its count and last time. That is everything the report needs, exact for any ``asOf`` (the last-24h
window and the last sign-in at or before ``asOf``), at a fraction of the rows of the raw log.

Idempotence without storing sign-in ids: the log is read in time slices [start, end]; a slice's
result *replaces* that time range of each day entity (events before and after it are kept). Reading
the same range twice, or resuming after a crash, therefore gives the same entities, and a late log
entry that appears on a re-read (the overlap window) is added exactly once. Coverage grows only
after a slice is fully read and written, so it never claims more than was read.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import UpdateMode

from shared.domain.rules import qualifies
from shared.microsoft.graph import GraphClient, parse_sign_in_time
from shared.platform.sharding import key_range_filter
from shared.platform.state import Coverage, StateStore
from shared.platform.storage import (
    Storage,
    check_key,
    get_or_none,
    partition,
    query_all,
    shard_of,
    upsert_all,
)
from shared.platform.timeutil import DAY, day_key, day_start, iso, parse_day_key, parse_optional

log = logging.getLogger(__name__)

EVENT = struct.Struct("<QH")  # microsecond of day (bit 63: non-interactive), agent index
NON_INTERACTIVE_BIT = 1 << 63  # events stored before non-interactive sign-ins were read have it clear
INTERACTIVE, NON_INTERACTIVE = 0, 1
KIND_NAMES = ("interactive", "nonInteractive")  # the report's lastSignInKind, by kind number
EVENTS_PER_CHUNK = 6000  # 60 KB: under the 64 KB limit of a binary property
MAX_CHUNKS = 15  # keeps an entity under 1 MB
TICK = timedelta(microseconds=1)
# Slices read at once. Graph serves the sign-in log 5 requests / 10 s per tenant (shared.platform.ratelimit
# paces the requests), so more slices in flight would only queue on the limiter; 4 keeps a page
# request ready whenever the window opens while one slice's writes are in progress.
SLICE_CONCURRENCY = 4


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
            log.warning("%s on %s: %d sign-ins, keeping the latest %d", tenant_id, day_key(self.day),
                        len(events), EVENTS_PER_CHUNK * MAX_CHUNKS)
            events = events[-EVENTS_PER_CHUNK * MAX_CHUNKS:]
        entity: dict[str, Any] = {
            "PartitionKey": day_key(self.day), "RowKey": tenant_id,
            "Count": len(self.events), "Agents": json.dumps(self.agents),
            "LastAt": iso(self.last) if self.last else "",
        }
        for n in range(0, len(events), EVENTS_PER_CHUNK):
            chunk = events[n:n + EVENTS_PER_CHUNK]
            entity[f"Ev{n // EVENTS_PER_CHUNK}"] = b"".join(
                EVENT.pack(t | (NON_INTERACTIVE_BIT if k else 0), i) for t, i, k in chunk)
        return entity

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> DayActivity:
        import json

        activity = cls(parse_day_key(entity["PartitionKey"]), agents=json.loads(entity.get("Agents") or "[]"))
        n = 0
        while f"Ev{n}" in entity:
            data = bytes(entity[f"Ev{n}"])
            activity.events.extend((t & ~NON_INTERACTIVE_BIT, i, 1 if t & NON_INTERACTIVE_BIT else 0)
                                   for t, i in EVENT.iter_unpack(data))
            n += 1
        return activity


async def day_entities(storage: Storage, day: datetime, shard: str | None = None,
                       select: list[str] | None = None) -> list[dict[str, Any]]:
    """The ``SignInDays`` entities of one UTC day -- of one customer shard only, if given (a RowKey
    range). Every reader of the table goes through here, so the day's layout is known in one place."""
    table = storage.table("SignInDays")
    if shard is None:
        return await partition(table, day_key(day), select)
    query, params = key_range_filter("RowKey", shard)
    return [e async for e in query_all(table, f"PartitionKey eq @pk and {query}", {"pk": day_key(day), **params},
                                       select)]


def slices(start: datetime, end: datetime, hours: int) -> list[tuple[datetime, datetime]]:
    """[start, end] cut at multiples of ``hours`` (UTC); each piece stays within one day."""
    out: list[tuple[datetime, datetime]] = []
    step = timedelta(hours=hours)
    cursor = start
    while cursor <= end:
        boundary = day_start(cursor) + step * ((cursor - day_start(cursor)) // step + 1)
        piece_end = min(end, boundary - TICK)
        out.append((cursor, piece_end))
        cursor = boundary
    return out


class AgentDirectory:
    """Who the partner's agents are, as the sign-in log names them (``Agents`` table, PK ``agents``,
    RK user id): the user principal name and display name beside each id, for the portal and API.

    Ingestion records the names of every agent it meets, keeping the newest seen (a renamed agent
    takes its new name; an older slice read later does not bring the old one back).
    """

    PARTITION = "agents"

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Agents")
        self._known: dict[str, tuple[str, str, datetime]] | None = None
        self._lock = asyncio.Lock()

    async def learn(self, people: dict[str, tuple[str, str, datetime]]) -> int:
        """Store the names of ``people`` (user id -> (UPN, display name, seen at)) that are new or newer
        than stored; the table is read once per directory. Returns how many rows were written."""
        async with self._lock:
            if self._known is None:
                self._known = {}
                async for e in query_all(self.table, "PartitionKey eq @pk", {"pk": self.PARTITION}):
                    seen = parse_optional(e.get("SeenAt")) or datetime(1970, 1, 1, tzinfo=UTC)
                    self._known[e["RowKey"]] = (str(e.get("UserPrincipalName") or ""),
                                                str(e.get("DisplayName") or ""), seen)
            writes = {}
            for user_id, (upn, name, at) in people.items():
                if not (upn or name) or not _valid_key(user_id):
                    continue
                known = self._known.get(user_id)
                if known is None or ((upn, name) != known[:2] and at > known[2]):
                    writes[user_id] = (upn, name, at)
            await upsert_all(self.table, [
                {"PartitionKey": self.PARTITION, "RowKey": user_id, "UserPrincipalName": upn[:1000],
                 "DisplayName": name[:1000], "SeenAt": iso(at)} for user_id, (upn, name, at) in writes.items()],
                UpdateMode.REPLACE)
            self._known.update(writes)
            return len(writes)

    async def names(self, user_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """(UPN, display name) of the given agents that are known."""
        ids = [u for u in dict.fromkeys(user_ids) if _valid_key(u)]
        rows = await asyncio.gather(*(get_or_none(self.table, self.PARTITION, u) for u in ids))
        return {u: (str(r.get("UserPrincipalName") or ""), str(r.get("DisplayName") or ""))
                for u, r in zip(ids, rows, strict=True) if r is not None}


def _valid_key(value: str) -> bool:
    try:
        check_key(value)
    except ValueError:
        return False
    return True


class SignInIngestion:
    def __init__(self, storage: Storage, graph: GraphClient, *, partner_tenant: str, backfill_days: int,
                 overlap_minutes: int, slice_hours: int) -> None:
        self.storage = storage
        self.graph = graph
        self.partner_tenant = partner_tenant.lower()
        self.backfill = timedelta(days=backfill_days)
        self.overlap = timedelta(minutes=overlap_minutes)
        self.slice_hours = slice_hours
        self.state = StateStore(storage)
        self.agents = AgentDirectory(storage)

    def pieces(self, coverage: Coverage, as_of: datetime, now: datetime | None = None) -> list[tuple[datetime, datetime]]:
        """The parts of [now - backfill, as_of] the store does not hold yet, as slices (``as_of`` <=
        ``now``, Microsoft's present; without ``now``, ``as_of`` is the present).

        The floor is counted from the present, never from ``as_of``: the log serves only its retention
        back from now, so a window older than that cannot be read and is never recorded as read.
        The newest gap starts ``overlap`` earlier, so entries Entra writes late are picked up; gaps
        left by an interrupted run (slices finish out of order) are filled on the next run.
        """
        now = as_of if now is None else now
        if as_of > now:
            raise ValueError(f"cannot ingest up to {iso(as_of)}: the present is {iso(now)}")
        floor = now - self.backfill
        gaps: list[tuple[datetime, datetime]] = []
        cursor = floor
        for start, end in coverage.intervals:
            if end < cursor:
                continue
            if start > as_of:
                break
            if start > cursor:
                gaps.append((cursor, start - TICK))
            cursor = max(cursor, end + TICK)
        if cursor <= as_of:
            gaps.append((cursor, as_of))
        if gaps and gaps[-1][1] == as_of and gaps[-1][0] > floor:
            gaps[-1] = (max(floor, gaps[-1][0] - self.overlap), as_of)
        return [piece for start, end in gaps for piece in slices(start, end, self.slice_hours)]

    async def run(self, as_of: datetime, stop_after_slices: int | None = None,
                  concurrency: int = SLICE_CONCURRENCY, now: datetime | None = None) -> dict[str, Any]:
        """Ingest up to ``as_of`` (<= ``now``, Microsoft's present; default ``as_of``), several slices
        at once; each finished slice is checkpointed.

        ``stop_after_slices`` simulates an interruption (tests): that many slices finish, then it stops.
        """
        coverage = await self.state.load_coverage()
        pieces = self.pieces(coverage, as_of, now)
        totals = {"signIns": 0, "slices": 0, "entities": 0}
        if pieces:
            last = await self._load_last_sign_ins()
            semaphore = asyncio.Semaphore(1 if stop_after_slices is not None else concurrency)
            checkpoint = asyncio.Lock()

            async def one(start: datetime, end: datetime) -> None:
                async with semaphore:
                    if stop_after_slices is not None and totals["slices"] >= stop_after_slices:
                        raise InterruptedError(f"stopped by request after {totals['slices']} slices")
                    read, written, newest = await self._ingest_slice(start, end)
                    async with checkpoint:  # one writer of LastSignIns and coverage at a time
                        await self._raise_last_sign_ins(last, newest)
                        coverage.add(start, end)
                        await self.state.save_coverage(coverage)
                        totals["signIns"] += read
                        totals["entities"] += written
                        totals["slices"] += 1

            # Newest slices first: the activity that decides "active" lands first, coverage grows back
            # from asOf (a partial run already proves a stretch ending at asOf), and LastSignIns is
            # raised once per customer rather than once per slice. The interruption hook (tests) reads
            # in log order, one slice at a time.
            order = pieces if stop_after_slices is not None else pieces[::-1]
            results = await asyncio.gather(*(one(a, b) for a, b in order), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
        window = [iso(pieces[0][0]), iso(pieces[-1][1])] if pieces else None
        result = {"asOf": iso(as_of), "window": window, **totals}
        await self.state.record_success("signins", as_of, result)
        return result

    async def _load_last_sign_ins(self) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        async for e in query_all(self.storage.table("LastSignIns")):
            at = parse_optional(e.get("LastAt"))
            if at is not None:
                out[e["RowKey"]] = at
        return out

    async def _raise_last_sign_ins(self, last: dict[str, datetime], newest: dict[str, tuple[datetime, int]]) -> None:
        writes = []
        for tenant, (at, kind) in newest.items():
            if tenant not in last or at > last[tenant]:
                last[tenant] = at
                writes.append({"PartitionKey": shard_of(tenant), "RowKey": tenant, "LastAt": iso(at),
                               "Kind": KIND_NAMES[kind]})
        await upsert_all(self.storage.table("LastSignIns"), writes, UpdateMode.REPLACE)

    async def _ingest_slice(self, start: datetime, end: datetime
                            ) -> tuple[int, int, dict[str, tuple[datetime, int]]]:
        fresh: dict[str, DayActivity] = {}
        people: dict[str, tuple[str, str, datetime]] = {}
        day = day_start(start)
        seen: set[str] = set()
        count = 0
        # Both kinds of user sign-in are activity; the log lists each only when asked for it by name, so
        # the slice is read once per kind, both in full before anything of the slice is written.
        for kind, kind_name in enumerate(KIND_NAMES):
            async for page in self.graph.sign_in_pages(start, end, kind_name):
                for raw in page:
                    sign_in_id = str(raw.get("id") or "")
                    if not sign_in_id or sign_in_id in seen or not qualifies(raw, self.partner_tenant):
                        continue
                    at = parse_sign_in_time(raw.get("createdDateTime"))
                    if at is None or not start <= at <= end:
                        continue
                    seen.add(sign_in_id)
                    tenant = str(raw["resourceTenantId"]).lower()
                    activity = fresh.get(tenant)
                    if activity is None:
                        activity = fresh[tenant] = DayActivity(day)
                    user_id = str(raw.get("userId") or "")
                    activity.add(at, user_id, kind)
                    if user_id and (user_id not in people or at > people[user_id][2]):
                        people[user_id] = (str(raw.get("userPrincipalName") or ""),
                                           str(raw.get("userDisplayName") or ""), at)
                    count += 1
        table = self.storage.table("SignInDays")
        existing = {e["RowKey"]: DayActivity.from_entity(e) for e in await day_entities(self.storage, day)}
        writes = []
        for tenant in set(fresh) | set(existing):
            if tenant in existing:
                merged = existing[tenant]
                before = (list(merged.agents), list(merged.events))
                merged.replace_range(start, end, fresh.get(tenant))
                if (merged.agents, merged.events) == before:
                    continue
            else:
                merged = fresh[tenant]
                merged.replace_range(start, end, DayActivity(day, list(merged.agents), list(merged.events)))
            writes.append(merged.to_entity(tenant))
        await upsert_all(table, writes, UpdateMode.REPLACE)
        await self.agents.learn(people)
        log.info("sign-ins %s..%s: %d qualifying, %d day entities written", iso(start), iso(end), count, len(writes))
        newest = {tenant: (a.last, a.last_kind or 0) for tenant, a in fresh.items() if a.last is not None}
        return count, len(writes), newest


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
    last_sign_in_kind: str | None = None  # "interactive" | "nonInteractive" (KIND_NAMES)


class ActivityReader:
    """Per-customer activity at ``as_of`` from the stored aggregates: O(customers + 2 days)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.shard: str | None = None

    async def read(self, as_of: datetime, tenants: Iterable[str], coverage_start: datetime | None,
                   shard: str | None = None) -> dict[str, Activity]:
        """``shard``: the tenants all belong to that shard; only its partitions and key ranges are read."""
        self.shard = shard
        wanted = set(tenants)
        result = {t: Activity() for t in wanted}
        last: dict[str, datetime] = {}
        kinds: dict[str, str] = {}
        query, params = key_range_filter("PartitionKey", shard) if shard is not None else ("", {})
        async for e in query_all(self.storage.table("LastSignIns"), query or None, params or None):
            at = parse_optional(e.get("LastAt"))
            if at is not None and e["RowKey"] in wanted:
                last[e["RowKey"]] = at
                # rows written before non-interactive sign-ins were read have no Kind: interactive
                kinds[e["RowKey"]] = str(e.get("Kind") or KIND_NAMES[INTERACTIVE])
        today = day_start(as_of)
        # The two days that the (as_of - 24h, as_of] window touches, read at once.
        days: dict[str, list[DayActivity]] = defaultdict(list)
        for entities in await asyncio.gather(*(self._day(day) for day in (today, today - DAY))):
            for entity in entities:
                if entity["RowKey"] in wanted:
                    days[entity["RowKey"]].append(DayActivity.from_entity(entity))
        for tenant, activities in days.items():
            (result[tenant].sign_ins_last_day, result[tenant].agents_last_day,
             result[tenant].non_interactive_last_day) = last_day_counts(activities, as_of)
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

    async def _scan_back(self, as_of: datetime, tenants: set[str], result: dict[str, Activity],
                         floor: datetime | None) -> None:
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
                    result[tenant].last_sign_in_at, result[tenant].last_sign_in_kind = latest[0], KIND_NAMES[latest[1]]
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
                out.append({"day": day_key(day), "signIns": len(activity.events),
                            "nonInteractiveSignIns": sum(kind for _, _, kind in activity.events),
                            "agents": activity.agents, "lastAt": iso(activity.last) if activity.last else None})
            day += DAY
        return out
