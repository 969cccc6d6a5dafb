"""Global Administrator in GDAP relationships: removing it from an active relationship in one action (a
``PATCH`` of ``accessDetails`` with ``If-Match``, which Microsoft may answer with a long-running operation,
kept in ``GdapOperations``), confirming such a removal from the relationship itself (never assumed from
the operation's status), and the list of active relationships that still hold it, each with its removal
(pending, or failed with the reason)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from shared.domain.models import GLOBAL_ADMINISTRATOR, Relationship
from shared.domain.rules import includes_global_administrator
from shared.gdap.base import CONCURRENCY, GdapError, record_gdap_action, relationship_id_of
from shared.gdap.store import GdapOperation, GdapOperationStore
from shared.platform.retry import UpstreamError
from shared.platform.storage import Storage
from shared.platform.timeutil import iso_optional, utcnow
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.microsoft.graph import GraphClient
    from shared.services import Services


async def remove_global_admin(
    services: Services, relationship_id: Any, *, actor: str, wait: bool = False
) -> dict[str, Any]:
    """Remove Global Administrator from an active relationship (PATCH with If-Match; the service
    applies it as a long-running operation, confirmed by the follow-up or, with ``wait``, here)."""
    await services.storage.ensure()
    rid = relationship_id_of(relationship_id)
    for op in await GdapOperationStore(services.storage).for_relationship(rid):
        if op.state == "requested":  # asked for already: follow that one
            if wait:
                await _wait(services, op)
            return _ga_result(op)
    for _ in range(4):
        rel = await services.graph.get_relationship(rid)
        if rel is None:
            raise GdapError(f"no GDAP relationship {rid}", status=404, code="unknownRelationship")
        if not includes_global_administrator(rel.roles):
            return {
                **_head(rid, rel),
                "result": "unchanged",
                "reason": "does not include Global Administrator",
                "rolesAfter": list(rel.roles),
            }
        if rel.status != "active":
            raise GdapError(
                f"Global Administrator can be removed only while the relationship is active "
                f"(it is {rel.status})",
                status=409,
                code="notActive",
            )
        remaining = _without_global_administrator(rel.roles)
        if not remaining:
            raise GdapError(
                "Global Administrator is the relationship's only role: terminate the relationship instead",
                status=409,
                code="onlyGlobalAdministrator",
            )
        try:
            updated, location = await services.graph.update_relationship(rid, rel.etag or "", roles=remaining)
        except UpstreamError as exc:
            if exc.status == 412:
                continue  # changed since it was read: read it again
            if exc.status == 409:
                location = await _pending_update(services.graph, rid)
                if location is None:
                    raise
                updated = None
            else:
                raise
        break
    else:
        raise UpstreamError(f"PATCH {rid}: the relationship kept changing (412)", status=412)
    if not location:  # applied at once
        return await _completed(services, rid, rel, updated, actor)
    op = await _requested(services, rid, rel, remaining, location, actor)
    if wait:
        await _wait(services, op)
    return _ga_result(op)


def _without_global_administrator(roles: list[str]) -> list[str]:
    return [r for r in roles if r.lower() != GLOBAL_ADMINISTRATOR]


def _head(rid: str, rel: Relationship) -> dict[str, Any]:
    return {"relationshipId": rid, "tenantId": rel.tenant_id, "displayName": rel.display_name}


async def _completed(
    services: Services, rid: str, rel: Relationship, updated: Relationship | None, actor: str
) -> dict[str, Any]:
    fresh = updated or await services.graph.get_relationship(rid) or rel
    await RelationshipStore(services.storage).keep_seen(fresh)
    await record_gdap_action(
        services.storage,
        rel.tenant_id,
        actor,
        "gdap.removeGlobalAdministrator",
        "completed",
        rid,
        f"{rel.display_name}: roles now {', '.join(fresh.roles)}",
    )
    return {**_head(rid, rel), "result": "completed", "rolesAfter": list(fresh.roles)}


async def _requested(
    services: Services, rid: str, rel: Relationship, remaining: list[str], location: str, actor: str
) -> GdapOperation:
    op = GdapOperation(
        tenant_id=rel.tenant_id,
        operation_id=location.rstrip("/").rsplit("/", 1)[-1],
        relationship_id=rid,
        display_name=rel.display_name,
        kind="removeGlobalAdministrator",
        requested_by=actor,
        requested_at=utcnow(),
        roles_after=remaining,
    )
    await GdapOperationStore(services.storage).save(op)
    await record_gdap_action(
        services.storage,
        rel.tenant_id,
        actor,
        "gdap.removeGlobalAdministrator",
        "requested",
        rid,
        f"{rel.display_name}: keeping {len(remaining)} role(s); operation {op.operation_id}",
        action_id=f"gdap:{op.operation_id}:requested",
    )
    return op


async def _pending_update(graph: GraphClient, rid: str) -> str | None:
    for item in await graph.list_operations(rid):
        if item.get("status") in ("notStarted", "running") and item.get("id"):
            return str(item["id"])
    return None


async def _wait(services: Services, op: GdapOperation, polls: int = 30) -> None:
    poll_seconds = float(services.settings.gdap_poll_seconds)  # when the service names no Retry-After
    for _ in range(polls):
        await follow_operation(services, op)
        if op.state != "requested":
            return
        await asyncio.sleep(poll_seconds)


def _ga_result(op: GdapOperation) -> dict[str, Any]:
    result = {"requested": "requested", "succeeded": "completed"}.get(op.state, "failed")
    return {
        "relationshipId": op.relationship_id,
        "tenantId": op.tenant_id,
        "displayName": op.display_name,
        "result": result,
        "operationId": op.operation_id,
        "operationStatus": op.status,
        "rolesAfter": list(op.roles_after),
        "reason": op.reason or None,
    }


async def follow_operation(services: Services, op: GdapOperation) -> None:
    """Read the long-running operation (longRunningOperationStatus: notStarted, running, succeeded,
    failed; learn.microsoft.com/graph/api/resources/delegatedadminrelationshipoperation). Until it ends
    the removal stays ``requested``; at the end the relationship itself is read, and the removal is
    ``succeeded`` only when Global Administrator is really gone (never assumed from the status)."""
    document = await services.graph.get_operation(op.relationship_id, op.operation_id)
    status = str((document or {}).get("status") or "notFound")
    op.status, op.updated_at = status, utcnow()
    at = str((document or {}).get("lastModifiedDateTime") or "")
    if status not in ("succeeded", "failed", "notFound"):
        op.reason = f"operation {op.operation_id} still {status}" + (f" (since {at})" if at else "")
    else:
        rel = await services.graph.get_relationship(op.relationship_id)
        still_ga = rel is None or includes_global_administrator(rel.roles)
        op.state = "succeeded" if not still_ga else "failed"
        if status == "failed":
            op.reason = (
                f"Microsoft reports operation {op.operation_id} failed"
                + (f" at {at}" if at else "")
                + ("; Global Administrator is still granted" if still_ga else "")
            )
        elif still_ga:
            op.reason = f"operation {op.operation_id} {status}, but the relationship " + (
                "no longer exists" if rel is None else "still grants Global Administrator"
            )
        else:
            op.reason = ""
        await record_gdap_action(
            services.storage,
            op.tenant_id,
            op.requested_by,
            "gdap.removeGlobalAdministrator",
            "completed" if op.state == "succeeded" else "failed",
            op.relationship_id,
            f"{op.display_name}: operation {op.operation_id} {status}"
            + (f": {op.reason}" if op.reason else ""),
            action_id=f"gdap:{op.operation_id}:{op.state}",
        )
        if rel is not None:
            await RelationshipStore(services.storage).keep_seen(rel)
    await GdapOperationStore(services.storage).save(op)


async def global_administrators(
    storage: Storage, active: list[Relationship], names: dict[str, str]
) -> list[dict[str, Any]]:
    """The active relationships holding Global Administrator, each with its removal (pending, or the
    latest one when it failed)."""
    operations = GdapOperationStore(storage)
    ops = {op.relationship_id: op for op in await operations.open_operations()}
    out = []
    for rel in sorted(active, key=lambda r: (r.tenant_id, r.id)):
        if includes_global_administrator(rel.roles):
            op = ops.get(rel.id)
            if op is None:  # a removal that failed is reported as failed, with its reason
                latest = (await operations.for_relationship(rel.id))[:1]
                op = latest[0] if latest and latest[0].state == "failed" else None
            out.append(
                {
                    "relationshipId": rel.id,
                    "tenantId": rel.tenant_id,
                    "customerName": names.get(rel.tenant_id) or rel.customer_name,
                    "displayName": rel.display_name,
                    "endsAt": iso_optional(rel.ends_at),
                    "roles": list(rel.roles),
                    "rolesAfterRemoval": _without_global_administrator(rel.roles),
                    "removal": op.to_json() if op else None,
                }
            )
    return out


MAX_RELATIONSHIPS = 100


async def remove_global_admin_many(
    services: Services, relationship_ids: Any, *, actor: str
) -> dict[str, Any]:
    """Remove Global Administrator from several relationships, with a result per relationship: the
    single removal's (``requested``, ``completed``, ``unchanged``, ``failed``), or ``refused`` with the
    reason it gives (not active, Global Administrator its only role). A relationship the store does not
    know is bad input: nothing is changed (404 ``unknownRelationship``)."""
    if not isinstance(relationship_ids, list) or not 1 <= len(relationship_ids) <= MAX_RELATIONSHIPS:
        raise GdapError(
            f"relationshipIds must list 1 to {MAX_RELATIONSHIPS} relationship ids", code="malformedBody"
        )
    ids = list(dict.fromkeys(relationship_id_of(i) for i in relationship_ids))
    await services.storage.ensure()
    estate = await RelationshipStore(services.storage).load()
    known = {r.id: r for rs in estate.relationships.values() for r in rs if r.type == "GDAP"}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise GdapError(
            f"no such GDAP relationship: {', '.join(unknown)}; nothing was changed",
            status=404,
            code="unknownRelationship",
        )
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(rid: str) -> dict[str, Any]:
        rel = known[rid]
        head = {**_head(rid, rel), "customerName": rel.customer_name or None}
        async with semaphore:
            try:
                return {**head, **await remove_global_admin(services, rid, actor=actor)}
            except GdapError as exc:
                return {**head, "result": "refused", "reason": exc.message, "code": exc.code}
            except UpstreamError as exc:
                return {**head, "result": "failed", "reason": str(exc)[:500]}

    results = list(await asyncio.gather(*(one(rid) for rid in ids)))
    counts = {
        k: sum(1 for r in results if r["result"] == k)
        for k in ("requested", "completed", "unchanged", "refused", "failed")
    }
    return {"total": len(results), **counts, "results": results}
