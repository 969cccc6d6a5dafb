"""The composition root: one place that builds the clients and stores (one of each per process).

It runs no job: jobs are functions of the package they belong to (``relationships.sync``,
``signins.ingestion``, ``evaluation.audit`` ...) and receive the :class:`Services` they use. Timer,
queue and HTTP functions and the command line build the same one, so the command line does exactly
what the functions do.
"""

from __future__ import annotations

from datetime import datetime

from shared.evaluation.store import EvaluationStore
from shared.microsoft.graph import GraphClient
from shared.microsoft.partner_center import PartnerCenterClient
from shared.microsoft.resource_manager import ResourceManagerClient
from shared.platform.identity import (
    graph_credential,
    own_identity_credential,
    partner_center_credential,
    resource_manager_configured,
    resource_manager_credential,
)
from shared.platform.ratelimit import SlidingWindowLimiter
from shared.platform.retry import UpstreamError
from shared.platform.settings import Settings, SettingsError
from shared.platform.state import partner_state
from shared.platform.storage import Storage
from shared.platform.timeutil import CLOCK


class Services:
    def __init__(self, settings: Settings, *, max_retries: int = 5) -> None:
        self.settings = settings
        if "azure" in settings.removal_scope and not resource_manager_configured(settings):
            raise SettingsError(
                "REMOVAL_SCOPE includes azure, which needs the Partner Center App+User credentials "
                "(PARTNER_CENTER_APP_ID, PARTNER_CENTER_APP_SECRET, PARTNER_CENTER_REFRESH_TOKEN)"
            )
        self.storage = Storage(settings)
        # The same policy against Microsoft and the emulator: settings (tests shorten them), no switch.
        pace = settings.sign_in_pace()  # Graph's sign-in log limit (shared.platform.ratelimit)
        delay = settings.retry_delay_ms / 1000
        self.graph = GraphClient(
            settings.graph_root,
            graph_credential(settings),
            write_credential=own_identity_credential(settings, settings.graph_write_client_id),
            mail_credential=own_identity_credential(settings, settings.mail_client_id),
            retry_delay=delay,
            max_retries=max_retries,
            sign_in_limiter=None if pace is None else SlidingWindowLimiter(*pace),
        )
        self.partner_center: PartnerCenterClient | None = None
        app_user = None
        if settings.dap_enabled:
            app_user = partner_center_credential(settings)
            self.partner_center = PartnerCenterClient(
                settings.partner_center_root,
                settings.customer_admin_root,
                app_user,
                retry_base=delay / 3,
                max_retries=max_retries,
            )
        # Azure role assignments in customer tenants: App+User, per customer tenant (docs/deploy.md).
        self.resource_manager: ResourceManagerClient | None = None
        if resource_manager_configured(settings):
            self.resource_manager = ResourceManagerClient(
                settings.resource_manager_root,
                resource_manager_credential(settings, app_user),
                retry_base=delay / 3,
                max_retries=max_retries,
            )
        self.evaluations = EvaluationStore(self.storage)
        self._partner_tenant: str | None = settings.partner_tenant_id.lower() or None

    async def __aenter__(self) -> Services:
        try:
            await self.storage.ensure()
        except BaseException:
            await self.close()  # an unreachable storage account: no client left open behind the error
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.graph.close()
        if self.partner_center is not None:
            await self.partner_center.close()
        if self.resource_manager is not None:
            await self.resource_manager.close()
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
            state = partner_state(self.storage)
            cached = await state.get("partner", "tenantId")
            if not cached:
                cached = (await self.graph.partner_tenant_id()).lower()
                await state.set("partner", "tenantId", cached)
            self._partner_tenant = cached
        return self._partner_tenant
