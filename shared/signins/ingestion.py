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
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from azure.data.tables import UpdateMode

from shared.domain.rules import qualifies
from shared.microsoft.graph import GraphClient, parse_sign_in_time
from shared.platform.retry import UpstreamError
from shared.platform.state import ConcurrentRunError, Coverage, StateStore
from shared.platform.storage import (
    Storage,
    query_all,
    shard_of,
    upsert_all,
)
from shared.platform.telemetry import EVENT_INGESTION_COMPLETED, EVENT_INGESTION_FAILED, track_event
from shared.platform.timeutil import CLOCK, day_start, iso, parse_optional, utcnow
from shared.signins.activity import KIND_NAMES, TICK, DayActivity, day_entities
from shared.signins.agents import AgentDirectory
from shared.signins.archive import SignInArchive

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

# Slices read at once. Graph serves the sign-in log 5 requests / 10 s per tenant (shared.platform.ratelimit
# paces the requests), so more slices in flight would only queue on the limiter; 4 keeps a page
# request ready whenever the window opens while one slice's writes are in progress.
SLICE_CONCURRENCY = 4


class SignInSource(Protocol):
    """Where the partner's sign-ins are read: the Graph log, or the archive (shared.signins.archive)."""

    async def held(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The parts of [start, end] the source can show completely."""
        ...

    def sign_ins(self, start: datetime, end: datetime) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
        """(kind, raw sign-ins) batches; at least every sign-in created in [start, end]."""
        ...


class GraphSignIns:
    """The Graph sign-in log: within its retention it holds everything. Both kinds of user sign-in are
    activity; the log lists each only when asked for it by name, so a stretch is read once per kind."""

    def __init__(self, graph: GraphClient) -> None:
        self.graph = graph

    async def held(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        return [(start, end)]

    async def sign_ins(
        self, start: datetime, end: datetime
    ) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
        for kind, kind_name in enumerate(KIND_NAMES):
            async for page in self.graph.sign_in_pages(start, end, kind_name):
                yield kind, page


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


class SignInIngestion:
    def __init__(
        self,
        storage: Storage,
        graph: GraphClient,
        *,
        partner_tenant: str,
        backfill_days: int,
        overlap_minutes: int,
        slice_hours: int,
        source: SignInSource | None = None,
    ) -> None:
        self.storage = storage
        self.graph = graph
        self.source: SignInSource = source or GraphSignIns(graph)
        self.partner_tenant = partner_tenant.lower()
        self.backfill = timedelta(days=backfill_days)
        self.overlap = timedelta(minutes=overlap_minutes)
        self.slice_hours = slice_hours
        self.state = StateStore(storage)
        self.agents = AgentDirectory(storage)

    def pieces(
        self,
        coverage: Coverage,
        as_of: datetime,
        now: datetime | None = None,
        floor: datetime | None = None,
        overlap: timedelta | None = None,
    ) -> list[tuple[datetime, datetime]]:
        """The parts of [now - backfill, as_of] the store does not hold yet, as slices (``as_of`` <=
        ``now``, Microsoft's present; without ``now``, ``as_of`` is the present).

        The floor is counted from the present, never from ``as_of``: the log serves only its retention
        back from now, so a window older than that cannot be read and is never recorded as read.
        The newest gap starts ``overlap`` earlier, so entries Entra writes late are picked up; gaps
        left by an interrupted run (slices finish out of order) are filled on the next run.
        ``floor`` and ``overlap`` replace those (the archive's backfill: a stretch of the past, no overlap).
        """
        now = as_of if now is None else now
        if as_of > now:
            raise ValueError(f"cannot ingest up to {iso(as_of)}: the present is {iso(now)}")
        floor = now - self.backfill if floor is None else floor
        overlap = self.overlap if overlap is None else overlap
        gaps = coverage.missing(floor, as_of)
        if gaps and gaps[-1][1] == as_of and gaps[-1][0] > floor:
            gaps[-1] = (max(floor, gaps[-1][0] - overlap), as_of)
        return [piece for start, end in gaps for piece in slices(start, end, self.slice_hours)]

    async def run(
        self,
        as_of: datetime,
        stop_after_slices: int | None = None,
        concurrency: int = SLICE_CONCURRENCY,
        now: datetime | None = None,
        floor: datetime | None = None,
        overlap: timedelta | None = None,
        record_as: str | None = "signins",
        share: bool = False,
    ) -> dict[str, Any]:
        """Ingest up to ``as_of`` (<= ``now``, Microsoft's present; default ``as_of``), several slices
        at once; each finished slice is checkpointed. Only what the source holds is read and recorded
        as read (``floor``, ``overlap``: see :meth:`pieces`; ``record_as``: the run record's kind;
        ``share``: see :meth:`_checkpoint`).

        ``stop_after_slices`` simulates an interruption (tests): that many slices finish, then it stops.
        """
        coverage = await self.state.load_coverage()
        pieces = [
            held
            for start, end in self.pieces(coverage, as_of, now, floor, overlap)
            for held in await self.source.held(start, end)
        ]
        totals = {"signIns": 0, "slices": 0, "entities": 0}
        if pieces:
            last = await self._load_last_sign_ins()
            semaphore = asyncio.Semaphore(1 if stop_after_slices is not None else concurrency)
            checkpoint = asyncio.Lock()
            done: list[tuple[datetime, datetime]] = []
            held = [coverage]

            async def one(start: datetime, end: datetime) -> None:
                async with semaphore:
                    if stop_after_slices is not None and totals["slices"] >= stop_after_slices:
                        raise InterruptedError(f"stopped by request after {totals['slices']} slices")
                    read, written, newest = await self._ingest_slice(start, end)
                    async with checkpoint:  # one writer of LastSignIns and coverage at a time
                        await self._raise_last_sign_ins(last, newest)
                        done.append((start, end))
                        held[0] = await self._checkpoint(held[0], done, share)
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
        if record_as is not None:
            await self.state.record_success(record_as, as_of, result)
        return result

    async def _checkpoint(
        self, coverage: Coverage, done: list[tuple[datetime, datetime]], share: bool = False
    ) -> Coverage:
        """Add the slice just finished (``done[-1]``) to the coverage and save it; when another run saved
        it since it was read, :class:`ConcurrentRunError` (two ingestions at once: one gives way).

        ``share`` (the archive backfill, which runs long beside the ingestion timer): the other run's
        additions are taken in when none lies on a day this run wrote -- each slice lies within one day
        and rewrites only its day's entities, so the two runs' writes did not meet. When they share a
        day, one may have overwritten the other's entity: ConcurrentRunError, this run's slices unclaimed
        (a run again reads them again)."""
        coverage.add(*done[-1])
        for _ in range(5):
            try:
                await self.state.save_coverage(coverage)
                return coverage
            except ConcurrentRunError:
                if not share:
                    raise
                fresh = await self.state.load_coverage()
                theirs = [part for a, b in fresh.intervals for part in coverage.missing(a, b)]
                days = {day_start(a) for a, _ in done}
                if any(a < day + timedelta(days=1) and b >= day for a, b in theirs for day in days):
                    raise
                for start, end in done:
                    fresh.add(start, end)
                coverage = fresh
        raise ConcurrentRunError("sign-in coverage was changed by another run, again and again")

    async def _load_last_sign_ins(self) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        async for e in query_all(self.storage.table("LastSignIns")):
            at = parse_optional(e.get("LastAt"))
            if at is not None:
                out[e["RowKey"]] = at
        return out

    async def _raise_last_sign_ins(
        self, last: dict[str, datetime], newest: dict[str, tuple[datetime, int]]
    ) -> None:
        writes = []
        for tenant, (at, kind) in newest.items():
            if tenant not in last or at > last[tenant]:
                last[tenant] = at
                writes.append(
                    {
                        "PartitionKey": shard_of(tenant),
                        "RowKey": tenant,
                        "LastAt": iso(at),
                        "Kind": KIND_NAMES[kind],
                    }
                )
        await upsert_all(self.storage.table("LastSignIns"), writes, UpdateMode.REPLACE)

    async def _ingest_slice(
        self, start: datetime, end: datetime
    ) -> tuple[int, int, dict[str, tuple[datetime, int]]]:
        fresh: dict[str, DayActivity] = {}
        people: dict[str, tuple[str, str, datetime]] = {}
        day = day_start(start)
        seen: set[str] = set()
        count = 0
        # Every kind of user sign-in the source has, all read in full before anything of the slice is written.
        async for kind, page in self.source.sign_ins(start, end):
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
                    people[user_id] = (
                        str(raw.get("userPrincipalName") or ""),
                        str(raw.get("userDisplayName") or ""),
                        at,
                    )
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
        log.info(
            "sign-ins %s..%s: %d qualifying, %d day entities written",
            iso(start),
            iso(end),
            count,
            len(writes),
        )
        newest = {tenant: (a.last, a.last_kind or 0) for tenant, a in fresh.items() if a.last is not None}
        return count, len(writes), newest


CLOCK_RESOLUTION = timedelta(seconds=1)  # of the Date header (IMF-fixdate has whole seconds)


def ingestion_for(
    services: Services, partner_tenant: str, source: SignInSource | None = None
) -> SignInIngestion:
    s = services.settings
    return SignInIngestion(
        services.storage,
        services.graph,
        partner_tenant=partner_tenant,
        backfill_days=s.signin_backfill_days,
        overlap_minutes=s.signin_overlap_minutes,
        slice_hours=s.signin_slice_hours,
        source=source,
    )


def _check_host_clock(services: Services) -> None:
    skew = abs(CLOCK.host_offset)
    limit = services.settings.host_clock_max_skew_minutes
    if skew > timedelta(minutes=limit):
        raise UpstreamError(
            f"this host's clock is {skew} away from Microsoft's (the Date header of its answers), "
            f"more than HOST_CLOCK_MAX_SKEW_MINUTES ({limit}); "
            "ingestion does not run until the host's clock is corrected"
        )


async def ingest_sign_ins(services: Services, as_of: datetime, now: datetime | None = None) -> dict[str, Any]:
    """Ingest the sign-in log up to ``min(as_of, now)``: the log cannot be read past Microsoft's
    present, and its floor is the present less the backfill (never a window the log no longer
    serves, whatever ``as_of`` says)."""
    await services.storage.ensure()
    now = now or await services.now()
    _check_host_clock(services)
    if abs(as_of - now) <= CLOCK_RESOLUTION:
        now = as_of  # the Date header tells Microsoft's time to the second: this as_of is the present
    partner = await services.partner_tenant_id()
    try:
        if services.settings.signin_source == "archive":
            async with SignInArchive.from_settings(services.settings, partner) as archive:
                archive.present = now
                ingestion = ingestion_for(services, partner, archive)
                result = await ingestion.run(min(as_of, now), now=now)
                result["source"] = "archive"
                result["blobsRead"] = archive.blobs_read
            coverage = await ingestion.state.load_coverage()
            if coverage.covering(min(as_of, now)) is None:
                # Read all there was, and it does not reach the present: the export has stopped or lags.
                # Nothing is proven past its end; the evaluation alerts the partner admins and holds back.
                end = coverage.latest_end_before(min(as_of, now))
                raise UpstreamError(
                    "the sign-in archive holds nothing "
                    + (f"after {iso(end)}" if end else "for this time")
                    + ": is Entra's diagnostic setting still archiving the sign-in logs "
                    f"({', '.join(services.settings.signin_archive_containers)})?"
                )
        else:
            result = await ingestion_for(services, partner).run(min(as_of, now), now=now)
    except Exception as exc:
        track_event(EVENT_INGESTION_FAILED, {"reason": f"{type(exc).__name__}: {exc}"[:500]})
        raise
    lag = (utcnow() - as_of).total_seconds() / 60
    track_event(
        EVENT_INGESTION_COMPLETED,
        {"signIns": result["signIns"], "slices": result["slices"], "lagMinutes": round(max(0.0, lag), 1)},
    )
    return result


async def backfill_from_archive(
    services: Services, start: datetime, end: datetime | None = None
) -> dict[str, Any]:
    """Import [start, end) (default: up to now) of the sign-in archive into the same aggregates as the
    Graph log. Only what the store does not hold yet is read (never what Graph already read), per
    stretch checkpointed: an interrupted backfill goes on where it stopped, a repeated one reads
    nothing. The coverage grows by exactly the hours the archive holds; the rest is listed as gaps."""
    from shared.platform.settings import SettingsError

    settings = services.settings
    if not settings.signin_archive_connection:
        raise SettingsError(
            "SIGNIN_ARCHIVE_CONNECTION is not set: name the account the sign-in archive is in"
        )
    await services.storage.ensure()
    now = await services.now()
    _check_host_clock(services)
    end = now if end is None else end
    if end > now:
        raise SettingsError(f"the backfill cannot end after the present ({iso(now)}): {iso(end)}")
    if start >= end:
        raise SettingsError(f"the backfill must start before it ends: {iso(start)} is not before {iso(end)}")
    end -= TICK  # [start, end): the instant ``end`` belongs to the hour after, which is not asked for
    partner = await services.partner_tenant_id()
    ingestion = ingestion_for(services, partner)
    async with SignInArchive.from_settings(settings, partner) as archive:
        ingestion.source = archive
        try:
            result = await ingestion.run(
                end, now=end, floor=start, overlap=timedelta(0), record_as=None, share=True
            )
        except ConcurrentRunError as exc:
            track_event(EVENT_INGESTION_FAILED, {"source": "archive", "reason": str(exc)})
            raise UpstreamError(f"{exc}: run the backfill again, it goes on where it stopped") from exc
        except Exception as exc:
            track_event(
                EVENT_INGESTION_FAILED, {"source": "archive", "reason": f"{type(exc).__name__}: {exc}"[:500]}
            )
            raise
        coverage = await ingestion.state.load_coverage()
        gaps = coverage.missing(start, end)
        missing = await archive.missing_hours(start, end)
        result.update(
            {
                "source": "archive",
                "from": iso(start),
                "to": iso(end + TICK),
                "blobsRead": archive.blobs_read,
                "gaps": [[iso(a), iso(b)] for a, b in gaps],
                "missingHours": missing,
                "coverage": [[iso(a), iso(b)] for a, b in coverage.intervals],
            }
        )
    await ingestion.state.record_success("signinArchive", await services.now(), result)
    track_event(
        EVENT_INGESTION_COMPLETED,
        {"source": "archive", "signIns": result["signIns"], "slices": result["slices"], "gaps": len(gaps)},
    )
    return result


async def archive_status(services: Services) -> dict[str, Any]:
    """What the store holds of the sign-in log and where it came from: the coverage, the archive's
    settings and the last backfill (CLI ``archive status``, ``GET /api/signins/coverage``)."""
    settings = services.settings
    state = StateStore(services.storage)
    coverage = await state.load_coverage()
    at, last = await state.last_success("signinArchive")
    graph_at, _ = await state.last_success("signins")
    return {
        "source": settings.signin_source,
        "archive": {
            "configured": bool(settings.signin_archive_connection),
            "containers": list(settings.signin_archive_containers),
            "quietHours": settings.signin_archive_quiet_hours,
        },
        "coverage": [[iso(a), iso(b)] for a, b in coverage.intervals],
        "lastIngestionAt": iso(graph_at) if graph_at else None,
        "lastBackfill": (
            {
                "at": iso(at),
                **{
                    k: last.get(k)
                    for k in ("from", "to", "signIns", "slices", "blobsRead", "gaps", "missingHours")
                },
            }
            if at
            else None
        ),
    }
