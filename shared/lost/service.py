"""Noticing lost access after a relationship sync, and listing it (``GET /api/lost-access``).

Each ending the store recorded goes ``noticed -> classified -> done``, every step idempotent, so a run
that dies half-way is finished by the next sync: explained (who ended it, when), written to the trail
once (its action id), the partner admins alerted once (the alert's key), then marked done. Endings this
product made (a removal that requested or completed it) are marked done and are not lost access."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.lost.causes import PRODUCT, infer_cause
from shared.lost.store import LostAccess, LostAccessStore
from shared.notifications.digests import digest_marked, mark_digest
from shared.notifications.enqueue import enqueue_partner_alert
from shared.platform.actions import record_action
from shared.platform.state import StateStore
from shared.platform.storage import get_or_none, shard_of
from shared.platform.timeutil import iso, parse_optional
from shared.relationships.store import RelationshipStore
from shared.removals.store import Removal

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

ACTOR = "system"
DIGEST_KIND = "lostAccess"  # Digests partition: lost access a partner digest listed
ACTED = ("requesting", "requested", "completed")  # a removal's relationship states that sent a request


async def product_removal(services: Services, row: LostAccess) -> str | None:
    """The id of this product's removal that asked Microsoft to end this relationship, if any. A DAP removal
    counts only if it was requested after this DAP was established (DAP can be granted again)."""
    async for e in services.storage.table("Removals").query_entities(
        "TenantId eq @t", parameters={"t": row.tenant_id}
    ):
        removal = Removal.from_entity(dict(e), None)
        if row.type == "DAP" and row.established_at is not None and removal.requested_at < row.established_at:
            continue
        for rel in removal.relationships:
            if (
                rel.get("type") == row.type
                and rel.get("id") == row.relationship_id
                and rel.get("state") in ACTED
            ):
                return removal.id
    return None


async def last_sign_in(services: Services, tenant_id: str) -> datetime | None:
    stored = await get_or_none(services.storage.table("LastSignIns"), shard_of(tenant_id), tenant_id)
    return parse_optional(stored.get("LastAt")) if stored else None


async def last_activity(services: Services, row: LostAccess, signed_in: datetime | None) -> datetime | None:
    """What the store proves of the partner's last use before the end: as ``inactiveForAtLeastDays``
    counts it, the latest of the last sign-in, the establishment and the start of the stored log. With
    neither a sign-in nor a stored log nothing is proven (None)."""
    coverage = await StateStore(services.storage).load_coverage()
    starts = [start for start, _ in coverage.intervals if start <= row.seen_at]
    logged = max(starts) if starts else None
    if signed_in is None and logged is None:
        return None
    moments = [t for t in (signed_in, row.established_at, logged) if t is not None and t <= row.seen_at]
    return max(moments, default=None)


async def classify(services: Services, store: LostAccessStore, row: LostAccess) -> None:
    removal = await product_removal(services, row)
    signed_in = await last_sign_in(services, row.tenant_id)
    activity = await last_activity(services, row, signed_in)
    cause = infer_cause(row.ending(), product_removal=removal, last_activity=activity)
    row.cause, row.detail, row.ended_at = cause.cause, cause.detail, cause.ended_at
    row.last_sign_in_at, row.removal_id = signed_in, removal or ""
    await store.classify(row)


def _label(row: LostAccess) -> str:
    return "DAP" if row.type == "DAP" else f"GDAP {row.display_name or row.relationship_id}"


async def announce(services: Services, row: LostAccess) -> bool:
    """The trail row and the partner admins' alert, each once (action id, alert key). False when the alert
    cannot go out yet (partner admins named but no NOTIFY_SENDER): it stays to be sent by a later sync."""
    await record_action(
        services.storage,
        tenant_id=row.tenant_id,
        actor=ACTOR,
        action="access.lost",
        result=row.cause,
        reason=f"{_label(row)}: {row.before} -> {row.after}",
        detail=f"{_label(row)} ended {iso(row.ended_at or row.seen_at)}: {row.detail}",
        relationship_type=row.type,
        relationship_id=row.relationship_id,
        action_id=f"lost:{row.id}",
        at=row.seen_at,
    )
    settings = services.settings
    if settings.notify_partner_addresses and not settings.notify_sender:
        log.warning("lost access %s: NOTIFY_SENDER is not set; the alert waits for it", row.id)
        return False
    await enqueue_partner_alert(
        services,
        "lostAccess",
        f"lost-access:{row.id}",
        {
            "tenantId": row.tenant_id,
            "displayName": row.customer_name,
            "relationshipType": row.type,
            "relationshipName": row.display_name,
            "cause": row.cause,
            "endedAt": iso(row.ended_at or row.seen_at),
            "lastSignInAt": iso(row.last_sign_in_at) if row.last_sign_in_at else None,
            "detail": row.detail,
        },
    )
    return True


async def notice_lost_access(services: Services) -> dict[str, Any]:
    """Explain, write down and announce every ending not yet done. Returns what it did."""
    store = LostAccessStore(services.storage)
    lost: list[str] = []
    product = 0
    for state in ("noticed", "classified"):
        for row in await store.in_state(state):
            if row.state == "noticed":
                await classify(services, store, row)
            if row.cause == PRODUCT:
                product += 1
            elif await announce(services, row):
                lost.append(row.id)
            else:
                continue  # stays "classified": announced by a later sync
            await store.done(row)
    if lost:
        log.info("lost access noticed: %s", ", ".join(lost))
    return {"lostAccess": len(lost), "removedByProduct": product}


async def list_lost_access(services: Services) -> list[dict[str, Any]]:
    """Lost access, newest first, each with whether the customer still has other active access now."""
    await services.storage.ensure()
    rows = [r for r in await LostAccessStore(services.storage).all() if r.lost]
    rows.sort(key=lambda r: (r.ended_at or r.seen_at, r.id), reverse=True)
    relationships = RelationshipStore(services.storage)
    active: dict[str, bool] = {}
    out = []
    for row in rows:
        if row.tenant_id not in active:
            _, rels = await relationships.load_customer(row.tenant_id)
            active[row.tenant_id] = any(r.active for r in rels)
        out.append({**row.to_json(), "stillActive": active[row.tenant_id]})
    return out


async def lost_for_digest(services: Services) -> list[dict[str, Any]]:
    """Lost access no partner digest has listed yet (oldest first), in the digest's shape."""
    rows = [r for r in await LostAccessStore(services.storage).all() if r.lost and r.state == "done"]
    out = []
    for row in sorted(rows, key=lambda r: (r.ended_at or r.seen_at, r.id)):
        if not await digest_marked(services.storage, DIGEST_KIND, row.id):
            out.append(
                {
                    "id": row.id,
                    "tenantId": row.tenant_id,
                    "displayName": row.customer_name,
                    "what": _label(row),
                    "cause": row.cause,
                    "endedAt": iso(row.ended_at or row.seen_at),
                }
            )
    return out


async def mark_lost_in_digest(services: Services, ids: list[str]) -> None:
    for name in ids:
        await mark_digest(services.storage, DIGEST_KIND, name)
