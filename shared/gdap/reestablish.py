"""Re-establishing a removed customer's access: refused while the customer still has active delegated admin
access, the open request when there is one, else a new request (:func:`shared.gdap.requests.request_gdap`)
from the template used before: the recorded request's, else the template whose roles best match the last
relationship's, never one with Global Administrator by guesswork."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.domain.models import DAP_ROLES, Relationship
from shared.gdap.base import GdapError, record_gdap_action, tenant_id_of
from shared.gdap.catalog import RoleCatalog
from shared.gdap.requests import known_customer, request_gdap
from shared.gdap.store import GdapRequest, GdapRequestStore
from shared.gdap.templates import RoleTemplate

if TYPE_CHECKING:
    from shared.services import Services


async def reestablish(
    services: Services, catalog: RoleCatalog, tenant_id: Any, *, actor: str, notify_customer: bool = False
) -> tuple[dict[str, Any], bool]:
    """A new request for a customer whose access was removed, from the template used before
    (the recorded request; else the template whose roles best match the last relationship's,
    never one with Global Administrator by guesswork)."""
    await services.storage.ensure()
    tenant = tenant_id_of(tenant_id)
    customer, rels = await known_customer(services, tenant)
    if any(r.active for r in rels):
        raise GdapError(
            f"{customer.display_name or tenant} still has active delegated admin access",
            status=409,
            code="stillActive",
        )
    rows = await GdapRequestStore(services.storage).for_tenant(tenant)
    pending = next((r for r in rows if r.open), None)
    if pending is not None:
        return {**pending.to_json(), "basis": "pendingRequest"}, False
    template, basis = template_used_before(catalog.templates, rows, rels)
    if template is None:
        raise GdapError(
            f"{customer.display_name or tenant} had no delegated admin access to re-establish: "
            "use Request GDAP",
            status=409,
            code="nothingToReestablish",
        )
    result, created = await request_gdap(
        services,
        catalog,
        tenant,
        template.name,
        requested_by=actor,
        notify_customer=notify_customer,
        source="reestablish",
    )
    if created:
        await record_gdap_action(
            services.storage,
            tenant,
            actor,
            "gdap.reestablish",
            "created",
            result["id"],
            f"template {template.name} ({basis})",
        )
    return {**result, "basis": basis}, created


def template_used_before(
    templates: Mapping[str, RoleTemplate], rows: list[GdapRequest], rels: list[Relationship]
) -> tuple[RoleTemplate | None, str]:
    """The template to re-establish from, and why: ``previousRequest`` or ``matchingRoles`` (none: "")."""
    for row in rows:  # newest first
        if row.template in templates:
            return templates[row.template], "previousRequest"
    past = sorted(
        rels,
        key=lambda r: r.established_at or r.created_at or datetime(1970, 1, 1, tzinfo=UTC),
        reverse=True,
    )
    candidates = [t for t in templates.values() if not t.includes_global_administrator]
    for rel in past:
        roles = {r.lower() for r in (DAP_ROLES if rel.type == "DAP" else rel.roles)}
        if not roles or not candidates:
            continue
        best = max(
            candidates,
            key=lambda t: (len(roles & set(t.roles)) / len(roles | set(t.roles)), -len(t.roles)),
        )
        if roles & set(best.roles):
            return best, "matchingRoles"
    return None, ""
