"""Requesting GDAP: a relationship created from a role template (a unique display name of at most 50
characters; a retried POST that had gone through is adopted), remembered in ``GdapRequests`` with its
template and resolved partner security groups, locked for approval, and the invitation link handed back
(optionally mailed, :mod:`shared.gdap.invitation`); an open request for the same customer and template is
returned instead of a second one. Also the list of requests with their age."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.domain.models import Customer, Relationship
from shared.gdap.base import GdapError, record_gdap_action, tenant_id_of
from shared.gdap.catalog import RoleCatalog
from shared.gdap.invitation import invitation_recipients, send_invitation
from shared.gdap.store import GdapRequest, GdapRequestStore, invitation_link
from shared.gdap.templates import MAX_DISPLAY_NAME, RoleTemplate
from shared.platform.retry import UpstreamError
from shared.platform.timeutil import iso, utcnow
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


async def known_customer(services: Services, tenant: str) -> tuple[Customer, list[Relationship]]:
    """The customer and its stored relationships; GdapError ``unknownCustomer`` when the sync never saw it."""
    customer, rels = await RelationshipStore(services.storage).load_customer(tenant)
    if customer is None and not rels:
        raise GdapError(
            f"{tenant} is not a known customer (not in the synced customer list)",
            status=404,
            code="unknownCustomer",
        )
    if customer is None:
        customer = Customer(tenant, next((r.customer_name for r in rels if r.customer_name), ""))
    return customer, rels


def _display_name(template: RoleTemplate, tenant: str, now: datetime) -> str:
    # Unique (the service refuses a duplicate) and at most 50 characters.
    return f"{template.name}-{tenant[:8]}-{now:%Y%m%d}-{secrets.token_hex(2)}"[:MAX_DISPLAY_NAME]


async def _create(
    services: Services, template: RoleTemplate, customer: Customer, now: datetime
) -> Relationship:
    graph = services.graph
    for _ in range(3):
        name = _display_name(template, customer.tenant_id, now)
        try:
            return await graph.create_relationship(
                display_name=name,
                duration=template.duration,
                tenant_id=customer.tenant_id,
                customer_name=customer.display_name,
                roles=list(template.roles),
                auto_extend_duration=template.auto_extend_duration,
            )
        except UpstreamError as exc:
            if exc.status != 409:
                raise
            # The name is taken: by this very request when a retried POST had gone through, else by chance.
            literal = name.replace("'", "''")
            existing = [
                r
                for r in await graph.list_relationships(f"displayName eq '{literal}'")
                if r.tenant_id == customer.tenant_id and r.status in ("created", "approvalPending")
            ]
            if existing and set(existing[0].roles) == set(template.roles):
                return existing[0]
            log.info("relationship name %s is taken; trying another", name)
    raise UpstreamError("could not find a unique relationship name in 3 attempts", status=409)


def _request_row(
    template: RoleTemplate,
    customer: Customer,
    rel: Relationship,
    groups: list[str],
    *,
    requested_by: str,
    source: str,
    now: datetime,
) -> GdapRequest:
    return GdapRequest(
        tenant_id=customer.tenant_id,
        relationship_id=rel.id,
        display_name=rel.display_name,
        customer_name=customer.display_name,
        template=template.name,
        roles=list(template.roles),
        duration=template.duration,
        auto_extend_duration=template.auto_extend_duration,
        requested_by=requested_by,
        requested_at=now,
        source=source,
        state=rel.status or "created",
        status=rel.status or "created",
        updated_at=now,
        assignments=[
            {
                "group": a.group,
                "groupId": gid,
                "roles": list(a.roles),
                "id": "",
                "status": "",
                "error": "",
            }
            for a, gid in zip(template.access_assignments, groups, strict=True)
        ],
    )


async def request_gdap(
    services: Services,
    catalog: RoleCatalog,
    tenant_id: Any,
    template_name: Any,
    *,
    requested_by: str,
    notify_customer: bool = False,
    source: str = "request",
) -> tuple[dict[str, Any], bool]:
    """Create a relationship from a template, lock it for approval, hand back the invitation link.

    Returns (the request, created now). An open request for the same customer and template is
    returned instead of a second one. Nothing is created when the template's groups cannot be
    resolved or the customer cannot be mailed although that was asked for.
    """
    await services.storage.ensure()
    requests = GdapRequestStore(services.storage)
    tenant = tenant_id_of(tenant_id)
    template = catalog.template(template_name)
    customer, _ = await known_customer(services, tenant)
    now = utcnow()
    for row in await requests.for_tenant(tenant):
        if row.template == template.name and row.open:
            return row.to_json(now), False
    recipients = invitation_recipients(services.settings, customer, tenant) if notify_customer else []
    groups = [await catalog.resolve_group(services.graph, a.group) for a in template.access_assignments]
    rel = await _create(services, template, customer, now)
    row = _request_row(template, customer, rel, groups, requested_by=requested_by, source=source, now=now)
    await requests.save(row)
    await record_gdap_action(
        services.storage,
        row.tenant_id,
        requested_by,
        "gdap.request",
        "created",
        row.relationship_id,
        f"{rel.display_name}: template {template.name}, {template.duration}, auto-extend "
        f"{template.auto_extend_duration}",
        action_id=f"gdap:{rel.id}:created",
    )
    if row.state == "created":
        try:
            await lock_for_approval(services, row, requested_by)
        except UpstreamError as exc:  # the follow-up locks it later
            row.last_error = f"lockForApproval: {exc}"
            await requests.save(row)
            log.warning("relationship %s created but not locked for approval: %s", rel.id, exc)
    rel.status = row.status
    await RelationshipStore(services.storage).keep_seen(
        rel
    )  # the customer view shows it before the next sync
    if recipients and row.state == "approvalPending":
        await send_invitation(services, catalog.templates, row, customer, recipients, requested_by)
    return row.to_json(now), True


async def lock_for_approval(services: Services, row: GdapRequest, actor: str) -> None:
    """``lockForApproval`` a ``created`` relationship, so that the customer can approve it."""
    try:
        await services.graph.request_lock_for_approval(row.relationship_id)
        status = "approvalPending"
    except UpstreamError as exc:
        if exc.status not in (400, 409):
            raise
        # Locked already (a retry after the request went through) or moved on: the relationship says.
        current = await services.graph.get_relationship(row.relationship_id)
        if current is None or current.status == "created":
            raise
        status = current.status
    row.state = row.status = status
    row.last_error, row.updated_at = "", utcnow()
    await GdapRequestStore(services.storage).save(row)
    await record_gdap_action(
        services.storage,
        row.tenant_id,
        actor,
        "gdap.lockForApproval",
        status,
        row.relationship_id,
        f"{row.display_name}: invitation {invitation_link(row.relationship_id)}",
        action_id=f"gdap:{row.relationship_id}:locked",
    )


async def pending_requests(
    services: Services, as_of: datetime | None = None, *, include_finished: bool = False
) -> dict[str, Any]:
    """The requests that are not finished (``include_finished``: all), each with its age at ``as_of``."""
    await services.storage.ensure()
    moment = as_of or utcnow()
    requests = GdapRequestStore(services.storage)
    rows = await (requests.all() if include_finished else requests.open_rows())
    return {"asOf": iso(moment), "requests": [r.to_json(moment) for r in rows]}
