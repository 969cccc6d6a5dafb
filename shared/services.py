"""One place that builds the clients (one of each per process) and runs the product's jobs.

Timer, queue and HTTP functions and the command line all go through :class:`Services`, so the
command line does exactly what the functions do.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from shared.audit import EvaluationStore, compute_report, policy_from_settings
from shared.graph import GraphClient
from shared.identity import graph_credential, partner_center_credential
from shared.partner_center import PartnerCenterClient
from shared.ratelimit import SlidingWindowLimiter
from shared.relationships import RelationshipSync
from shared.settings import Settings
from shared.signins import SignInIngestion
from shared.state import StateStore
from shared.storage import Storage
from shared.telemetry import EVENT_INGESTION_COMPLETED, EVENT_INGESTION_FAILED, track_event
from shared.timeutil import utcnow

log = logging.getLogger(__name__)


class Services:
    def __init__(self, settings: Settings, *, max_retries: int = 5) -> None:
        self.settings = settings
        self.storage = Storage(settings)
        fast = bool(settings.emulator_url)  # the emulator answers Retry-After: no extra base delay
        # The emulator has no rate limit; Graph has one for the sign-in log (shared.ratelimit).
        self.graph = GraphClient(settings.graph_root, graph_credential(settings),
                                 retry_delay=0.0 if fast else 3.0, max_retries=max_retries,
                                 sign_in_limiter=None if fast else SlidingWindowLimiter())
        self.partner_center: PartnerCenterClient | None = None
        if settings.dap_enabled:
            self.partner_center = PartnerCenterClient(
                settings.partner_center_root, settings.customer_admin_root, partner_center_credential(settings),
                retry_base=0.2 if fast else 1.0, max_retries=max_retries)
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

    async def ingest_sign_ins(self, as_of: datetime) -> dict[str, Any]:
        await self.storage.ensure()
        try:
            result = await self.ingestion(await self.partner_tenant_id()).run(as_of)
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

    async def audit(self, as_of: datetime, *, store: bool = True) -> dict[str, Any]:
        """Sync, ingest up to as_of, compute; removes nothing."""
        await self.sync_relationships(as_of)
        await self.ingest_sign_ins(as_of)
        report = await self.report(as_of)
        if store:
            await self.evaluations.save(report)
        return report
