"""What a removal request would do, before anyone confirms it: per customer, the relationships and roles
it removes (REMOVAL_SCOPE), who is e-mailed, and what should make the person asking think twice.

The portal's confirmation shows this; nothing is written. The same checks as
:func:`shared.removals.request.request_removals` decide what is refused, so that what the dialog
promises is what the request does.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from shared.domain.roles import role_name
from shared.exclusions.store import ExclusionStore
from shared.platform.settings import GUID_RE
from shared.relationships.store import RelationshipStore
from shared.removals.request import in_scope
from shared.removals.store import PUBLIC_STATUS, RemovalStore

if TYPE_CHECKING:
    from shared.services import Services

# Inactive for fewer days than this is "active" (docs/definitions.md section 1: the "active" bucket).
ACTIVE_BELOW_DAYS = 30


async def preview_removals(services: Services, tenant_ids: list[str]) -> dict[str, Any]:
    """Raises ValueError for an id that is not a GUID or when no evaluation is stored (nothing read)."""
    wanted: list[str] = []
    for raw in tenant_ids:
        tenant = str(raw).strip().lower()
        if not GUID_RE.match(tenant):
            raise ValueError(f"{raw!r} is not a tenant id")
        if tenant not in wanted:
            wanted.append(tenant)
    await services.storage.ensure()
    latest = await services.evaluations.latest()
    if latest is None:
        raise ValueError("no evaluation has been stored yet; run the audit first")
    settings = services.settings
    rows = {str(r["tenantId"]).lower(): r for r in latest.report["customers"]}
    customers = RelationshipStore(services.storage)
    removals = RemovalStore(services.storage)
    exclusions = ExclusionStore(services.storage)

    async def one(tenant: str) -> dict[str, Any]:
        row = rows.get(tenant)
        if row is None:
            return {
                "tenantId": tenant,
                "displayName": "",
                "refused": "notMonitored",
                "removes": [],
                "recipients": [],
                "warnings": [],
            }
        (customer, _), pending, exclusion = await asyncio.gather(
            customers.load_customer(tenant), removals.pending_for(tenant), exclusions.get(tenant)
        )
        removes = [
            {
                "type": r["type"],
                "id": r["id"],
                "displayName": r.get("displayName", ""),
                "roles": list(r.get("roles", [])),
                "roleNames": [role_name(x) for x in r.get("roles", [])],
            }
            for r in in_scope(list(row.get("relationships", [])), settings.removal_scope)
        ]
        warnings = []
        if int(row.get("inactiveForAtLeastDays") or 0) < ACTIVE_BELOW_DAYS:
            warnings.append("active")
        if int(row.get("agentsSignedInLastDay") or 0) > 0:
            warnings.append("signedInLastDay")
        if row.get("recommendation") != "remove":
            warnings.append("notRecommended")
        if row.get("excluded") or tenant in settings.excluded_tenants or exclusion is not None:
            warnings.append("excluded")
        refused = None
        if not removes:
            refused = "nothingInScope"
        under_way = None
        if pending is not None:
            under_way = {"id": pending.id, "status": PUBLIC_STATUS[pending.status]}
        recipients = list(customer.contacts) if customer is not None and settings.notify_customers else []
        return {
            "tenantId": tenant,
            "displayName": str(row.get("displayName", "")),
            "inactiveForAtLeastDays": int(row.get("inactiveForAtLeastDays") or 0),
            "recommendation": row.get("recommendation"),
            "refused": refused,
            "underWay": under_way,
            "removes": removes,
            "recipients": recipients,
            "warnings": warnings,
        }

    found = await asyncio.gather(*(one(t) for t in wanted))
    return {
        "evaluationId": latest.id,
        "scope": list(settings.removal_scope),
        "notifyCustomers": settings.notify_customers,
        "customers": list(found),
    }
