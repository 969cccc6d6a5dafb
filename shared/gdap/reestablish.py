"""Re-establishing a removed customer's access: refused while the customer still has active delegated admin
access, the open request when there is one, else a new request (:func:`shared.gdap.requests.request_gdap`)
from the template used before: the recorded request's, else the template whose roles best match the last
relationship's, never one with Global Administrator by guesswork."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.domain.models import DAP_ROLES, GLOBAL_ADMINISTRATOR, Customer, Relationship
from shared.gdap.base import GdapError, record_gdap_action, tenant_id_of
from shared.gdap.catalog import RoleCatalog
from shared.gdap.requests import known_customer, request_gdap
from shared.gdap.store import GdapRequest, GdapRequestStore
from shared.gdap.templates import RoleTemplate

if TYPE_CHECKING:
    from shared.services import Services


async def _choose(
    services: Services, catalog: RoleCatalog, tenant_id: Any
) -> tuple[str, Customer, list[Relationship], GdapRequest | None, RoleTemplate | None, str]:
    """What re-establishing would use: refused while access is active, or when there is nothing to
    re-establish; the open request when there is one; else the template used before and why."""
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
        return tenant, customer, rels, pending, catalog.templates.get(pending.template), "pendingRequest"
    template, basis = template_used_before(catalog.templates, rows, rels)
    if template is None:
        raise GdapError(
            f"{customer.display_name or tenant} had no delegated admin access to re-establish: "
            "use Request GDAP",
            status=409,
            code="nothingToReestablish",
        )
    return tenant, customer, rels, None, template, basis


def role_plan(rels: list[Relationship], requested: list[str], template_name: str) -> dict[str, Any]:
    """The roles held before (the newest relationship's; DAP's Global Administrator and Helpdesk
    Administrator) against the roles a re-establish asks for: kept, added, and each dropped one with
    why (``globalAdministrator``: never asked for again by re-establishing, a relationship with it
    cannot auto-extend; ``notInTemplate``: the template does not include it)."""
    previous = _newest(rels)
    held = [
        r.lower()
        for r in (DAP_ROLES if previous and previous.type == "DAP" else previous.roles if previous else [])
    ]
    asked = [r.lower() for r in requested]
    dropped = []
    for role in held:
        if role in asked:
            continue
        if role == GLOBAL_ADMINISTRATOR:
            dropped.append(
                {
                    "role": role,
                    "reason": "globalAdministrator",
                    "detail": "Global Administrator is never asked for again by re-establishing: a "
                    "relationship with it cannot auto-extend; request it separately (onboarding) if needed",
                }
            )
        else:
            dropped.append(
                {
                    "role": role,
                    "reason": "notInTemplate",
                    "detail": f"the template {template_name} does not include this role",
                }
            )
    return {
        "previous": None
        if previous is None
        else {
            "type": previous.type,
            "relationshipId": previous.id,
            "displayName": previous.display_name,
            "status": previous.status,
            "roles": held,
        },
        "requestedRoles": asked,
        "keptRoles": [r for r in held if r in asked],
        "addedRoles": [r for r in asked if r not in held],
        "droppedRoles": dropped,
        "keepsEveryRole": not dropped,
    }


def _newest(rels: list[Relationship]) -> Relationship | None:
    """The newest relationship that held access (DAP, or GDAP once activated): a request that was
    never approved held nothing."""
    held = [r for r in rels if r.type == "DAP" or r.established_at is not None]
    return max(
        held,
        key=lambda r: r.established_at or r.created_at or datetime(1970, 1, 1, tzinfo=UTC),
        default=None,
    )


async def reestablish_preview(services: Services, catalog: RoleCatalog, tenant_id: Any) -> dict[str, Any]:
    """What :func:`reestablish` would do for a customer, changing nothing: the template and why, the
    roles held before and those requested, and which are dropped and why."""
    tenant, customer, rels, pending, template, basis = await _choose(services, catalog, tenant_id)
    requested = list(pending.roles) if pending is not None else list(template.roles if template else [])
    name = pending.template if pending is not None else template.name if template else ""
    return {
        "tenantId": tenant,
        "customerName": customer.display_name,
        "basis": basis,
        "template": name,
        "pendingRequest": pending.relationship_id if pending is not None else None,
        **role_plan(rels, requested, name),
    }


async def reestablish(
    services: Services, catalog: RoleCatalog, tenant_id: Any, *, actor: str, notify_customer: bool = False
) -> tuple[dict[str, Any], bool]:
    """A new request for a customer whose access was removed, from the template used before
    (the recorded request; else the template whose roles best match the last relationship's,
    never one with Global Administrator by guesswork). The answer says which roles held before the
    request keeps and which it drops, and why (``droppedRoles``)."""
    tenant, _, rels, pending, template, basis = await _choose(services, catalog, tenant_id)
    if pending is not None:
        return {
            **pending.to_json(),
            "basis": "pendingRequest",
            **role_plan(rels, list(pending.roles), pending.template),
        }, False
    assert template is not None  # _choose refuses when there is none
    result, created = await request_gdap(
        services,
        catalog,
        tenant,
        template.name,
        requested_by=actor,
        notify_customer=notify_customer,
        source="reestablish",
    )
    plan = role_plan(rels, list(template.roles), template.name)
    if created:
        dropped = ", ".join(d["role"] for d in plan["droppedRoles"])
        await record_gdap_action(
            services.storage,
            tenant,
            actor,
            "gdap.reestablish",
            "created",
            result["id"],
            f"template {template.name} ({basis})"
            + (f"; roles not requested again: {dropped}" if dropped else ""),
        )
    return {**result, "basis": basis, **plan}, created


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
