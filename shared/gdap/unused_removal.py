"""Removing access assignments nobody uses, several at once, with a result per assignment.

An assignment is removed only when the least-privilege report (:mod:`shared.gdap.least_privilege`)
proves it unused at ``as_of`` (the evaluation the portal shows) *and* no partner agent signed in to that
customer since then (Graph's sign-in log, both kinds, read right before): anything else is refused with
its reason, never removed. The assignment is then read live and deleted with ``If-Match`` (Microsoft
requires it and answers 204; the assignment goes through ``deleting`` to ``deleted``:
https://learn.microsoft.com/graph/api/delegatedadminaccessassignment-delete). One that is ``deleting``
or ``deleted`` already is reported ``unchanged``: a repeated request sends nothing."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.domain.models import Relationship
from shared.gdap.base import CONCURRENCY, GdapError, record_gdap_action, relationship_id_of
from shared.gdap.least_privilege import least_privilege
from shared.platform.retry import UpstreamError
from shared.platform.timeutil import iso
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.services import Services

MAX_ASSIGNMENTS = 100
GONE = ("deleting", "deleted")


def assignment_targets(value: Any) -> list[tuple[str, str]]:
    """``[{"relationshipId", "assignmentId"}, ...]`` (1 to 100, duplicates once); else GdapError."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ASSIGNMENTS:
        raise GdapError(
            f"assignments must list 1 to {MAX_ASSIGNMENTS} access assignments", code="malformedBody"
        )
    out: list[tuple[str, str]] = []
    for item in value:
        if not isinstance(item, dict):
            raise GdapError(
                'every assignment is {"relationshipId": ..., "assignmentId": ...}', code="malformedBody"
            )
        pair = (relationship_id_of(item.get("relationshipId")), relationship_id_of(item.get("assignmentId")))
        if pair not in out:
            out.append(pair)
    return out


async def remove_unused_assignments(
    services: Services,
    assignments: Any,
    *,
    actor: str,
    as_of: datetime,
    window_days: int = 90,
) -> dict[str, Any]:
    """Delete each named access assignment that is proven unused; a result per assignment
    (``requested``, ``unchanged``, ``refused`` with the reason, ``failed``). An assignment the store does
    not know is bad input: nothing is removed (404 ``unknownAssignment``)."""
    targets = assignment_targets(assignments)
    await services.storage.ensure()
    estate = await RelationshipStore(services.storage).load()
    rels = {r.id: r for rs in estate.relationships.values() for r in rs if r.type == "GDAP"}
    unknown = [
        f"{rid}/{aid}"
        for rid, aid in targets
        if rid not in rels or not any(a.id == aid for a in rels[rid].access_assignments)
    ]
    if unknown:
        raise GdapError(
            f"no such access assignment: {', '.join(unknown)}; nothing was removed",
            status=404,
            code="unknownAssignment",
        )
    report = await least_privilege(services, as_of, window_days)
    unused = {(u["relationshipId"], u["assignmentId"]): u for u in report["unusedAssignments"]}
    partner = await services.partner_tenant_id()
    semaphore = asyncio.Semaphore(CONCURRENCY)
    signed_in: dict[str, asyncio.Task[dict[str, Any] | None]] = {}

    def since_evidence(tenant: str) -> asyncio.Task[dict[str, Any] | None]:
        # One sign-in log query per customer, shared by its assignments.
        if tenant not in signed_in:
            signed_in[tenant] = asyncio.ensure_future(services.graph.latest_sign_in(tenant, as_of, partner))
        return signed_in[tenant]

    async def one(rid: str, aid: str) -> dict[str, Any]:
        rel = rels[rid]
        flagged = unused.get((rid, aid))
        head = _head(rel, aid, flagged)
        stored = next(a for a in rel.access_assignments if a.id == aid)
        if stored.status in GONE:  # asked for already: nothing is sent twice
            return {**head, "result": "unchanged", "reason": f"being removed already ({stored.status})"}
        if flagged is None:
            return {
                **head,
                "result": "refused",
                "reason": f"not proven unused: a member of the group signed in to this customer within "
                f"{window_days} days, the evidence is shorter than the minimum, or the assignment is not active",
            }
        async with semaphore:
            try:
                hit = await since_evidence(rel.tenant_id)
                if hit is not None:
                    return {
                        **head,
                        "result": "refused",
                        "reason": f"a partner agent signed in to this customer at {hit.get('createdDateTime')}, "
                        f"after the evidence ({iso(as_of)}): run the audit again",
                    }
                return await _delete(services, rel, aid, head, actor)
            except UpstreamError as exc:
                await record_gdap_action(
                    services.storage,
                    rel.tenant_id,
                    actor,
                    "gdap.removeAccessAssignment",
                    "failed",
                    rid,
                    f"{rel.display_name}: assignment {aid}: {exc}",
                )
                return {**head, "result": "failed", "reason": str(exc)[:500]}

    results = list(await asyncio.gather(*(one(rid, aid) for rid, aid in targets)))
    counts = {
        k: sum(1 for r in results if r["result"] == k)
        for k in ("requested", "unchanged", "refused", "failed")
    }
    return {
        "asOf": iso(as_of),
        "windowDays": window_days,
        "total": len(results),
        **counts,
        "results": results,
    }


def _head(rel: Relationship, aid: str, flagged: dict[str, Any] | None) -> dict[str, Any]:
    assignment = next((a for a in rel.access_assignments if a.id == aid), None)
    return {
        "relationshipId": rel.id,
        "assignmentId": aid,
        "tenantId": rel.tenant_id,
        "relationshipName": rel.display_name,
        "groupId": assignment.group_id if assignment else None,
        "groupName": flagged.get("groupName") if flagged else None,
        "roles": list(assignment.roles) if assignment else [],
    }


async def _delete(
    services: Services, rel: Relationship, aid: str, head: dict[str, Any], actor: str
) -> dict[str, Any]:
    graph = services.graph
    for attempt in range(3):
        live = await graph.get_access_assignment(rel.id, aid)
        status = str((live or {}).get("status") or "")
        if live is None or status in GONE:
            await _keep_seen(services, rel)
            return {
                **head,
                "result": "unchanged",
                "reason": "removed already"
                if live is None or status == "deleted"
                else "being removed already",
            }
        if status != "active":
            return {**head, "result": "refused", "reason": f"not active (status {status})"}
        # In the trail before the request: a crash between the two leaves the attempt on record (the
        # next attempt reads the assignment ``deleting`` and sends nothing).
        await record_gdap_action(
            services.storage,
            rel.tenant_id,
            actor,
            "gdap.removeAccessAssignment",
            "requesting",
            rel.id,
            f"{rel.display_name}: group {head['groupName'] or head['groupId']}: removing {', '.join(head['roles'])}",
            action_id=f"gdap:{aid}:removeRequesting",
        )
        try:
            await graph.delete_access_assignment(rel.id, aid, str(live.get("@odata.etag") or ""))
        except UpstreamError as exc:
            if exc.status in (409, 412) and attempt < 2:
                continue  # changed or being removed since it was read: read it again
            raise
        await record_gdap_action(
            services.storage,
            rel.tenant_id,
            actor,
            "gdap.removeAccessAssignment",
            "requested",
            rel.id,
            f"{rel.display_name}: group {head['groupName'] or head['groupId']} loses "
            f"{', '.join(head['roles'])} (unused)",
            action_id=f"gdap:{aid}:removeRequested",
        )
        await _keep_seen(services, rel)
        return {**head, "result": "requested", "reason": None}
    raise UpstreamError(f"DELETE {rel.id}/accessAssignments/{aid}: the assignment kept changing", status=412)


async def _keep_seen(services: Services, rel: Relationship) -> None:
    """Store the relationship's assignments as now read, so the report stops listing a removed one."""
    fresh = await services.graph.get_relationship(rel.id)
    if fresh is None:
        return
    fresh.customer_name = fresh.customer_name or rel.customer_name
    fresh.access_assignments = await services.graph.list_access_assignments(rel.id)
    await RelationshipStore(services.storage).keep_seen(fresh)
