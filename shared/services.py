"""One place that builds the clients (one of each per process) and runs the product's jobs.

Timer, queue and HTTP functions and the command line all go through :class:`Services`, so the
command line does exactly what the functions do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.evaluation.report import compute_report, policy_from_settings
from shared.evaluation.store import EvaluationStore
from shared.microsoft.graph import GraphClient
from shared.microsoft.partner_center import PartnerCenterClient
from shared.platform.identity import graph_credential, partner_center_credential
from shared.platform.ratelimit import SlidingWindowLimiter
from shared.platform.retry import UpstreamError
from shared.platform.settings import Settings
from shared.platform.state import StateStore
from shared.platform.storage import Storage
from shared.platform.telemetry import EVENT_INGESTION_COMPLETED, EVENT_INGESTION_FAILED, track_event
from shared.platform.timeutil import CLOCK, iso, utcnow
from shared.relationships.sync import RelationshipSync
from shared.signins.ingestion import SignInIngestion

CLOCK_RESOLUTION = timedelta(seconds=1)  # of the Date header (IMF-fixdate has whole seconds)
# How far an asOf may lie from Microsoft's present and still be the present (clock skew, a run's length).
AS_OF_SKEW = timedelta(minutes=5)


class FutureAsOfError(ValueError):
    """An ``asOf`` later than Microsoft's present: time that has not happened cannot be audited."""

    def __init__(self, as_of: datetime, now: datetime) -> None:
        super().__init__(f"--as-of {iso(as_of)} lies in the future (Microsoft's clock says {iso(now)}); "
                         "only the present or the past can be audited")


class Services:
    def __init__(self, settings: Settings, *, max_retries: int = 5) -> None:
        self.settings = settings
        self.storage = Storage(settings)
        # The same policy against Microsoft and the emulator: settings (tests shorten them), no switch.
        pace = settings.sign_in_pace()  # Graph's sign-in log limit (shared.platform.ratelimit)
        delay = settings.retry_delay_ms / 1000
        self.graph = GraphClient(settings.graph_root, graph_credential(settings),
                                 retry_delay=delay, max_retries=max_retries,
                                 sign_in_limiter=None if pace is None else SlidingWindowLimiter(*pace))
        self.partner_center: PartnerCenterClient | None = None
        if settings.dap_enabled:
            self.partner_center = PartnerCenterClient(
                settings.partner_center_root, settings.customer_admin_root, partner_center_credential(settings),
                retry_base=delay / 3, max_retries=max_retries)
        self.evaluations = EvaluationStore(self.storage)
        self._partner_tenant: str | None = settings.partner_tenant_id.lower() or None

    async def __aenter__(self) -> Services:
        await self.storage.ensure()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.graph.close()
        if self.partner_center is not None:
            await self.partner_center.close()
        await self.storage.close()

    async def now(self) -> datetime:
        """The present by Microsoft's clock (:data:`shared.platform.timeutil.CLOCK`), asked afresh: one light
        Graph request whose ``Date`` header sets the clock. Triggers, workers and the command line
        start their jobs here, so a job never runs on a stale or host-only idea of the present."""
        await self.graph.ping()
        if not CLOCK.observed:
            raise UpstreamError("Microsoft Graph sent no Date header: the present cannot be told")
        return CLOCK.now()

    async def partner_tenant_id(self) -> str:
        if self._partner_tenant is None:
            state = StateStore(self.storage)
            cached = await state.get_value("partner", "tenantId")
            if not cached:
                cached = (await self.graph.partner_tenant_id()).lower()
                await state.set_value("partner", "tenantId", cached)
            self._partner_tenant = cached
        return self._partner_tenant

    async def sync_relationships(self, now: datetime) -> dict[str, Any]:
        await self.storage.ensure()
        return await RelationshipSync(self.storage, self.graph, self.partner_center).run(now)

    def ingestion(self, partner_tenant: str) -> SignInIngestion:
        s = self.settings
        return SignInIngestion(self.storage, self.graph, partner_tenant=partner_tenant,
                               backfill_days=s.signin_backfill_days, overlap_minutes=s.signin_overlap_minutes,
                               slice_hours=s.signin_slice_hours)

    async def ingest_sign_ins(self, as_of: datetime, now: datetime | None = None) -> dict[str, Any]:
        """Ingest the sign-in log up to ``min(as_of, now)``: the log cannot be read past Microsoft's
        present, and its floor is the present less the backfill (never a window the log no longer
        serves, whatever ``as_of`` says)."""
        await self.storage.ensure()
        now = now or await self.now()
        skew = abs(CLOCK.host_offset)
        if skew > timedelta(minutes=self.settings.host_clock_max_skew_minutes):
            raise UpstreamError(f"this host's clock is {skew} away from Microsoft's (the Date header of its answers), "
                                f"more than HOST_CLOCK_MAX_SKEW_MINUTES ({self.settings.host_clock_max_skew_minutes}); "
                                "ingestion does not run until the host's clock is corrected")
        if abs(as_of - now) <= CLOCK_RESOLUTION:
            now = as_of  # the Date header tells Microsoft's time to the second: this as_of is the present
        try:
            result = await self.ingestion(await self.partner_tenant_id()).run(min(as_of, now), now=now)
        except Exception as exc:
            track_event(EVENT_INGESTION_FAILED, {"reason": f"{type(exc).__name__}: {exc}"[:500]})
            raise
        lag = (utcnow() - as_of).total_seconds() / 60
        track_event(EVENT_INGESTION_COMPLETED, {"signIns": result["signIns"], "slices": result["slices"],
                                                "lagMinutes": round(max(0.0, lag), 1)})
        return result

    async def report(self, as_of: datetime) -> dict[str, Any]:
        """The report from what the store holds now."""
        await self.storage.ensure()
        return await compute_report(self.storage, as_of=as_of, partner_tenant_id=await self.partner_tenant_id(),
                                    policy=policy_from_settings(self.settings))

    async def audit(self, as_of: datetime, *, store: bool = True, now: datetime | None = None) -> dict[str, Any]:
        """Sync, ingest up to ``min(as_of, now)``, compute; removes nothing.

        Only an audit of the present is stored as the latest evaluation: a past ``as_of`` is a what-if
        from the store, and a future one is refused (:class:`FutureAsOfError`) before anything is
        written. ``now``: Microsoft's present, if the caller has just asked for it."""
        now = now or await self.now()
        if as_of > now + AS_OF_SKEW:
            raise FutureAsOfError(as_of, now)
        await self.sync_relationships(now)
        await self.ingest_sign_ins(as_of, now)
        report = await self.report(as_of)
        if store and abs(as_of - now) <= AS_OF_SKEW:
            await self.evaluations.save(report)
        return report
