"""Following a removal after its requests were sent: Microsoft settles terminations later, and a
removal is ``requested`` until every relationship it asked about has ended (or failed)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.notifications.enqueue import enqueue_partner_alert
from shared.platform.actions import record_action
from shared.platform.retry import UpstreamError
from shared.platform.storage import (
    ConflictingWrite,
)
from shared.platform.timeutil import iso, utcnow
from shared.relationships.store import RelationshipStore
from shared.removals.live import GDAP_DONE, GDAP_REQUESTED, gdap_by_id
from shared.removals.store import (
    Removal,
    RemovalStore,
)

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


async def get_removal(services: Services, removal_id: str) -> dict[str, Any] | None:
    """The removal's state; a ``requested`` one is advanced first by re-reading its GDAP relationships."""
    await services.storage.ensure()
    store = RemovalStore(services.storage)
    removal = await store.get(removal_id)
    if removal is None:
        return None
    if removal.status == "requested":
        try:
            removal = await refresh_removal(services, removal)
        except (UpstreamError, ConflictingWrite) as exc:
            log.warning("removal %s: could not refresh (%s); showing the stored state", removal_id, exc)
    return removal.to_json()


async def _record_termination(
    services: Services, removal: Removal, rel: dict[str, Any], action: str, result: str, step: str, note: str
) -> None:
    """The ``Actions`` row for how a requested GDAP termination ended (idempotent per ``step``)."""
    await record_action(
        services.storage,
        **removal.trail(),
        action=action,
        result=result,
        relationship_type="GDAP",
        relationship_id=rel["id"],
        action_id=f"{removal.id}:GDAP-{rel['id']}:{step}",
        detail=f"{rel.get('displayName', '')}: {note}",
    )


async def refresh_removal(services: Services, removal: Removal) -> Removal:
    """``requested`` -> ``completed`` once every requested GDAP relationship reads ``terminated``."""
    if removal.status != "requested":
        return removal
    live = await gdap_by_id(services, removal.tenant_id)
    changed = False
    now = utcnow()
    for rel in removal.relationships:
        if rel["type"] != "GDAP" or rel["state"] != "requested":
            continue
        current = live.get(rel["id"])
        status = current.status if current is not None else "notFound"
        if status != rel.get("status"):
            rel["status"] = status
            changed = True
        if status in GDAP_DONE or current is None:
            rel["state"], rel["completedAt"] = "completed", iso(now)
            changed = True
            await _record_termination(
                services,
                removal,
                rel,
                "gdap.terminated",
                "completed",
                "terminated",
                "terminated" if current else "no longer listed",
            )
        elif status not in GDAP_REQUESTED and rel.get("requestId"):
            # Neither terminating nor terminated: did Microsoft give the terminate request up? A failed
            # request leaves the relationship as it was (access kept); that is said, never assumed away.
            request = await services.graph.get_request(rel["id"], str(rel["requestId"]))
            if request is not None and str(request.get("status")) == "failed":
                rel["state"], changed = "failed", True
                rel["note"] = (
                    f"Microsoft reports the terminate request {rel['requestId']} failed; the "
                    f"relationship is {status}, so the access is kept"
                )
                await _record_termination(
                    services, removal, rel, "gdap.terminate", "failed", "failed", rel["note"]
                )
        if current is not None:
            await RelationshipStore(services.storage).keep_seen(current)
    if not changed:
        return removal
    if all(r["state"] in ("completed", "skipped") for r in removal.relationships):
        removal.status = "completed"
        await record_action(
            services.storage,
            **removal.trail(),
            action="removal.completed",
            result="completed",
            action_id=f"{removal.id}:completed",
        )
    elif all(r["state"] in ("completed", "skipped", "failed") for r in removal.relationships):
        removal.status = "failed"
        removal.status_reason = "; ".join(
            f"{r.get('displayName') or r['id']}: {r.get('note')}"
            for r in removal.relationships
            if r["state"] == "failed"
        )
        await record_action(
            services.storage,
            **removal.trail(),
            action="removal.failed",
            result="failed",
            detail=removal.status_reason,
            action_id=f"{removal.id}:failed",
        )
        await enqueue_partner_alert(
            services,
            "failed",
            f"removal-failed:{removal.id}",
            {
                "run": "removal",
                "detail": f"{removal.display_name}: {removal.status_reason}",
                "tenantId": removal.tenant_id,
                "displayName": removal.display_name,
            },
        )
    await RemovalStore(services.storage).replace(removal)
    return removal


async def refresh_requested_removals(services: Services) -> int:
    """Advance every ``requested`` removal (run by each evaluation). Returns how many completed."""
    completed = 0
    for removal in await RemovalStore(services.storage).with_status("requested"):
        try:
            after = await refresh_removal(services, removal)
        except (UpstreamError, ConflictingWrite) as exc:
            log.warning("removal %s: refresh failed: %s", removal.id, exc)
            continue
        completed += after.status == "completed"
    return completed
