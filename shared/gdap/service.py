"""One object for the surfaces (``python -m shared.cli gdap ...``, the HTTP API ``/api/gdap/...`` and the
portal): :class:`GdapService` holds the :class:`~shared.services.Services` and the role catalog of a run
(loaded once, TemplateError when the template file is not valid) and hands each call to the function of
the module that does the work; it holds no logic of its own. Jobs that need no templates (the sync
timer's :func:`shared.gdap.follow_up.run_follow_up`) call those functions directly."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.gdap import (
    digest,
    expiry,
    follow_up,
    global_admin,
    least_privilege,
    reestablish,
    requests,
    summary,
    unused_removal,
)
from shared.gdap.catalog import role_catalog
from shared.gdap.templates import RoleTemplate

if TYPE_CHECKING:
    from shared.services import Services


class GdapService:
    def __init__(
        self,
        services: Services,
        *,
        templates: dict[str, RoleTemplate] | None = None,
        group_settings: Mapping[str, str] | None = None,
    ) -> None:
        self.services = services
        self.catalog = role_catalog(services.settings, templates=templates, group_settings=group_settings)

    def template_list(self) -> list[dict[str, Any]]:
        return self.catalog.template_list()

    async def request(
        self,
        tenant_id: Any,
        template_name: Any,
        *,
        requested_by: str,
        notify_customer: bool = False,
        source: str = "request",
    ) -> tuple[dict[str, Any], bool]:
        return await requests.request_gdap(
            self.services,
            self.catalog,
            tenant_id,
            template_name,
            requested_by=requested_by,
            notify_customer=notify_customer,
            source=source,
        )

    async def pending_requests(
        self, as_of: datetime | None = None, *, include_finished: bool = False
    ) -> dict[str, Any]:
        return await requests.pending_requests(self.services, as_of, include_finished=include_finished)

    async def reestablish(
        self, tenant_id: Any, *, actor: str, notify_customer: bool = False
    ) -> tuple[dict[str, Any], bool]:
        return await reestablish.reestablish(
            self.services, self.catalog, tenant_id, actor=actor, notify_customer=notify_customer
        )

    async def follow_up(self, now: datetime | None = None) -> dict[str, Any]:
        return await follow_up.follow_up(self.services, now)

    async def expiring(self, within_days: int = 30, as_of: datetime | None = None) -> dict[str, Any]:
        return await expiry.expiring(self.services, within_days, as_of)

    async def extend(
        self,
        relationship_ids: list[str] | None = None,
        *,
        all_expiring: bool = False,
        within_days: int = 30,
        as_of: datetime | None = None,
        actor: str,
    ) -> dict[str, Any]:
        return await expiry.extend(
            self.services,
            relationship_ids,
            all_expiring=all_expiring,
            within_days=within_days,
            as_of=as_of,
            actor=actor,
        )

    async def expiry_digest(self, as_of: datetime | None = None) -> dict[str, Any]:
        return await digest.expiry_digest(self.services, as_of)

    async def remove_global_admin(
        self, relationship_id: Any, *, actor: str, wait: bool = False
    ) -> dict[str, Any]:
        return await global_admin.remove_global_admin(self.services, relationship_id, actor=actor, wait=wait)

    async def least_privilege(self, as_of: datetime | None = None, window_days: int = 90) -> dict[str, Any]:
        return await least_privilege.least_privilege(self.services, as_of, window_days)

    async def summary(self, as_of: datetime | None = None) -> dict[str, Any]:
        return await summary.summary(self.services, as_of)

    async def remove_global_admin_many(self, relationship_ids: Any, *, actor: str) -> dict[str, Any]:
        return await global_admin.remove_global_admin_many(self.services, relationship_ids, actor=actor)

    async def remove_unused_assignments(
        self, assignments: Any, *, actor: str, as_of: datetime, window_days: int = 90
    ) -> dict[str, Any]:
        return await unused_removal.remove_unused_assignments(
            self.services, assignments, actor=actor, as_of=as_of, window_days=window_days
        )

    async def reestablish_preview(self, tenant_id: Any) -> dict[str, Any]:
        return await reestablish.reestablish_preview(self.services, self.catalog, tenant_id)
