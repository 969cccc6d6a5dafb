"""The follow-up: ``approvalPending -> approved -> activating -> active`` happens at Microsoft when the
customer approves, and each follow-up moves every open request on one step where Microsoft has (a
``created`` one is locked for approval, an ``active`` one gets its access assignments,
:mod:`shared.gdap.assignments`; a declined or lapsed one is over), then confirms every pending Global
Administrator removal. The relationship sync timer runs it with the daily expiry digest
(:func:`run_follow_up`); ``gdap follow-up`` and the portal run it on demand."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.gdap.assignments import assign
from shared.gdap.base import ACTOR_SYSTEM, CONCURRENCY, record_gdap_action
from shared.gdap.digest import expiry_digest
from shared.gdap.global_admin import follow_operation
from shared.gdap.requests import lock_for_approval
from shared.gdap.store import GdapOperationStore, GdapRequest, GdapRequestStore
from shared.platform.retry import UpstreamError
from shared.platform.timeutil import iso, utcnow
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


async def follow_up(services: Services, now: datetime | None = None) -> dict[str, Any]:
    """Move every open request on one step where Microsoft has, and confirm pending operations.

    One relationship failing does not hold back the others; its error is kept on its row.
    """
    await services.storage.ensure()
    moment = now or utcnow()
    requests = GdapRequestStore(services.storage)
    rows = await requests.open_rows()
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(row: GdapRequest) -> dict[str, Any]:
        async with semaphore:
            try:
                await _follow_request(services, row, moment)
            except UpstreamError as exc:
                row.last_error, row.updated_at = str(exc)[:4000], moment
                await requests.save(row)
        return {
            "id": row.relationship_id,
            "tenantId": row.tenant_id,
            "state": row.state,
            "status": row.status,
            "error": row.last_error or None,
        }

    results = await asyncio.gather(*(one(r) for r in rows))
    operations = []
    for op in await GdapOperationStore(services.storage).open_operations():
        try:
            await follow_operation(services, op)
        except UpstreamError as exc:
            log.warning("operation %s: %s", op.operation_id, exc)
        operations.append(op.to_json())
    return {
        "at": iso(moment),
        "requests": list(results),
        "operations": operations,
        "errors": sum(1 for r in results if r["error"]),
    }


async def _follow_request(services: Services, row: GdapRequest, now: datetime) -> None:
    rel = await services.graph.get_relationship(row.relationship_id)
    if rel is None:
        row.state = row.status = "notFound"
        row.updated_at = now
        await GdapRequestStore(services.storage).save(row)
        await record_gdap_action(
            services.storage,
            row.tenant_id,
            ACTOR_SYSTEM,
            "gdap.request",
            "notFound",
            row.relationship_id,
            f"{row.display_name}: the relationship no longer exists",
            action_id=f"gdap:{row.relationship_id}:notFound",
        )
        return
    row.status = rel.status
    if rel.status == "created":
        await lock_for_approval(services, row, ACTOR_SYSTEM)
        return
    if rel.status in ("approvalPending", "approved", "activating"):
        row.state = rel.status
    elif rel.status == "active":
        if row.activated_at is None:
            row.activated_at = rel.established_at or now
            await record_gdap_action(
                services.storage,
                row.tenant_id,
                ACTOR_SYSTEM,
                "gdap.approved",
                "active",
                row.relationship_id,
                f"{row.display_name}: approved by the customer, active since {iso(row.activated_at)}",
                action_id=f"gdap:{row.relationship_id}:active",
            )
        rel.access_assignments = await assign(services, row)
    else:  # declined, lapsed or ended before it was set up: the request is over
        row.state = rel.status
        await record_gdap_action(
            services.storage,
            row.tenant_id,
            ACTOR_SYSTEM,
            "gdap.request",
            rel.status,
            row.relationship_id,
            f"{row.display_name}: {rel.status}",
            action_id=f"gdap:{row.relationship_id}:{rel.status}",
        )
    row.updated_at = now
    await GdapRequestStore(services.storage).save(row)
    await RelationshipStore(services.storage).keep_seen(rel)


async def run_follow_up(services: Services, now: datetime | None = None) -> dict[str, Any]:
    """What the relationship sync timer runs after each sync: the follow-up, then the daily expiry
    digest. Never fails the timer (the sync itself has succeeded; the next run tries again)."""
    out: dict[str, Any] = {}
    try:
        out["followUp"] = await follow_up(services, now)
        out["digest"] = await expiry_digest(services, now)
    except Exception as exc:
        log.exception("GDAP follow-up failed")
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out
