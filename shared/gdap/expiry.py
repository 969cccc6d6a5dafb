"""GDAP expiry: the active relationships without auto-extend that end within 30, 7 or 1 days (the rule is
:func:`shared.domain.rules.is_expiring`), and a bulk auto-extend (``PATCH autoExtendDuration P180D`` with
``If-Match``, read again on 412) with a result per relationship and no batch limit; a relationship with
Global Administrator cannot auto-extend and is skipped."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.domain.models import Relationship
from shared.domain.rules import expires_in_days, includes_global_administrator, is_expiring
from shared.gdap.base import CONCURRENCY, GdapError, record_gdap_action, relationship_id_of
from shared.gdap.templates import AUTO_EXTEND_DURATION, duration_days
from shared.platform.retry import UpstreamError
from shared.platform.timeutil import iso, iso_optional, utcnow
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.services import Services

EXPIRY_WINDOWS = (30, 7, 1)


async def expiring_relationships(services: Services, within_days: int, as_of: datetime) -> list[Relationship]:
    """The stored relationships that expire within ``within_days`` of ``as_of``, soonest first."""
    estate = await RelationshipStore(services.storage).load()
    rels = [r for rs in estate.relationships.values() for r in rs if is_expiring(r, as_of, within_days)]
    for rel in rels:
        if not rel.customer_name and rel.tenant_id in estate.customers:
            rel.customer_name = estate.customers[rel.tenant_id].display_name
    return sorted(rels, key=lambda r: (r.ends_at or as_of, r.tenant_id, r.id))


async def expiring(
    services: Services, within_days: int = 30, as_of: datetime | None = None
) -> dict[str, Any]:
    """Active GDAP relationships without auto-extend ending within ``within_days`` (and the 30/7/1 counts)."""
    await services.storage.ensure()
    moment = as_of or utcnow()
    widest = max(within_days, *EXPIRY_WINDOWS)
    rels = await expiring_relationships(services, widest, moment)
    counts = {str(w): sum(1 for r in rels if is_expiring(r, moment, w)) for w in EXPIRY_WINDOWS}
    items = []
    for rel in rels:
        if not is_expiring(rel, moment, within_days):
            continue
        ga = includes_global_administrator(rel.roles)
        items.append(
            {
                "relationshipId": rel.id,
                "tenantId": rel.tenant_id,
                "customerName": rel.customer_name,
                "displayName": rel.display_name,
                "endsAt": iso_optional(rel.ends_at),
                "expiresInDays": expires_in_days(rel.ends_at, moment),
                "roles": list(rel.roles),
                "includesGlobalAdministrator": ga,
                "canAutoExtend": not ga,
                # Auto-extend prolongs the relationship's validity by autoExtendDuration (P180D) when
                # endDateTime is reached (https://learn.microsoft.com/graph/api/resources/delegatedadminrelationship).
                "endsAtIfExtended": None
                if ga or rel.ends_at is None
                else iso(rel.ends_at + timedelta(days=duration_days(AUTO_EXTEND_DURATION))),
                "window": next((w for w in sorted(EXPIRY_WINDOWS) if is_expiring(rel, moment, w)), None),
            }
        )
    return {"asOf": iso(moment), "within": within_days, "counts": counts, "relationships": items}


async def extend(
    services: Services,
    relationship_ids: list[str] | None = None,
    *,
    all_expiring: bool = False,
    within_days: int = 30,
    as_of: datetime | None = None,
    actor: str,
) -> dict[str, Any]:
    """Turn on auto-extend (P180D) for each relationship, with a result per relationship. No batch limit."""
    await services.storage.ensure()
    moment = as_of or utcnow()
    targets: list[tuple[str, str | None]]
    if all_expiring:
        targets = [(r.id, r.tenant_id) for r in await expiring_relationships(services, within_days, moment)]
    else:
        ids = [relationship_id_of(i) for i in relationship_ids or []]
        if not ids:
            raise GdapError("name at least one relationship, or all expiring ones", code="malformedBody")
        targets = [(i, None) for i in dict.fromkeys(ids)]
    semaphore = asyncio.Semaphore(CONCURRENCY)
    read: dict[str, Relationship] = {}  # named relationships, read once: the first attempt uses them
    if not all_expiring:
        # A relationship id that names nothing is bad input: refused before anything changes.
        async def get(rid: str) -> Relationship | None:
            async with semaphore:
                return await services.graph.get_relationship(rid)

        found = await asyncio.gather(*(get(rid) for rid, _ in targets))
        unknown = [rid for (rid, _), rel in zip(targets, found, strict=True) if rel is None]
        if unknown:
            raise GdapError(
                f"no such GDAP relationship: {', '.join(unknown)}; nothing was extended",
                status=404,
                code="relationshipNotFound",
            )
        read = {rid: rel for (rid, _), rel in zip(targets, found, strict=True) if rel is not None}

    async def one(rid: str, tenant: str | None) -> dict[str, Any]:
        async with semaphore:
            return await _extend_one(services, rid, tenant, actor, read.get(rid))

    results = await asyncio.gather(*(one(rid, tenant) for rid, tenant in targets))
    counts = {
        k: sum(1 for r in results if r["result"] == k) for k in ("extended", "unchanged", "skipped", "failed")
    }
    return {
        "asOf": iso(moment),
        "within": within_days if all_expiring else None,
        "requested": len(results),
        **counts,
        "results": list(results),
    }


def _outcome(rel_id: str, tenant: str | None, result: str, reason: str = "", **extra: Any) -> dict[str, Any]:
    return {"relationshipId": rel_id, "tenantId": tenant, "result": result, "reason": reason or None, **extra}


async def _extend_one(
    services: Services, rid: str, tenant: str | None, actor: str, first: Relationship | None = None
) -> dict[str, Any]:
    """``first``: the relationship as just read, used by the first attempt instead of reading it again."""
    graph = services.graph
    try:
        for attempt in range(3):
            rel = first if attempt == 0 and first is not None else await graph.get_relationship(rid)
            if rel is None:
                return _outcome(rid, tenant, "skipped", "the relationship no longer exists")
            tenant = rel.tenant_id
            extra = {
                "displayName": rel.display_name,
                "customerName": rel.customer_name,
                "endsAt": iso_optional(rel.ends_at),
            }
            if rel.status != "active":
                return _outcome(rid, tenant, "skipped", f"not active (status {rel.status})", **extra)
            if rel.auto_extend:
                return _outcome(
                    rid,
                    tenant,
                    "unchanged",
                    f"auto-extends already ({rel.auto_extend_duration})",
                    autoExtendDuration=rel.auto_extend_duration,
                    **extra,
                )
            if includes_global_administrator(rel.roles):
                return _outcome(
                    rid,
                    tenant,
                    "skipped",
                    "includes Global Administrator, which cannot "
                    "auto-extend: remove Global Administrator first",
                    **extra,
                )
            try:
                updated, _ = await graph.update_relationship(
                    rid, rel.etag or "", auto_extend_duration=AUTO_EXTEND_DURATION
                )
            except UpstreamError as exc:
                if exc.status == 412 and attempt < 2:
                    continue  # changed since it was read: read it again
                raise
            fresh = updated or await graph.get_relationship(rid) or rel
            await RelationshipStore(services.storage).keep_seen(fresh)
            await record_gdap_action(
                services.storage,
                tenant,
                actor,
                "gdap.extend",
                "extended",
                rid,
                f"{rel.display_name}: auto-extend {AUTO_EXTEND_DURATION} (ends "
                f"{iso_optional(rel.ends_at) or '?'})",
            )
            return _outcome(
                rid,
                tenant,
                "extended",
                "",
                autoExtendDuration=fresh.auto_extend_duration or AUTO_EXTEND_DURATION,
                **extra,
            )
        raise UpstreamError(f"PATCH {rid}: the relationship kept changing (412)", status=412)
    except UpstreamError as exc:
        await record_gdap_action(services.storage, tenant, actor, "gdap.extend", "failed", rid, str(exc))
        return _outcome(rid, tenant, "failed", str(exc)[:500])
