"""Asking for removals (portal, API, policy): one conditional write per customer and stretch, then
the removal queue message."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.domain.report import ReportRelationship, ReportRow
from shared.notifications.mail import require_sender
from shared.platform.actions import record_action
from shared.platform.settings import GUID_RE, REMOVALS_QUEUE
from shared.platform.storage import (
    ConflictingWrite,
    Storage,
)
from shared.platform.timeutil import iso, parse_optional, utcnow
from shared.removals.store import (
    PUBLIC_STATUS,
    Removal,
    RemovalStore,
    removal_id_for,
    stretch_of,
)

if TYPE_CHECKING:
    from shared.services import Services


def in_scope(
    relationships: Sequence[ReportRelationship | dict[str, Any]], scope: tuple[str, ...] | list[str]
) -> list[dict[str, Any]]:
    """The relationships of the types in ``scope`` (REMOVAL_SCOPE), as plain dicts for the Removals row."""
    wanted = {s.lower() for s in scope}
    return [dict(r) for r in relationships if str(r.get("type", "")).lower() in wanted]


def removal_from_row(
    row: ReportRow,
    *,
    removal_id: str,
    source: str,
    requested_by: str,
    reason: str,
    customer_notified: bool,
    scope: tuple[str, ...] | list[str],
    evaluation_id: str,
    as_of: datetime | None,
    coverage_from: datetime | None,
    now: datetime,
    decided_at: datetime | None = None,
) -> Removal:
    """A queued removal for one customer row of a stored evaluation (docs/definitions.md section 3)."""
    last = parse_optional(row.get("lastSignInAt"))
    established = parse_optional(row.get("establishedAt"))
    if source == "policy":
        # Any qualifying sign-in after the evidence the decision rests on breaks the proof.
        if last is not None:
            baseline: datetime | None = last + timedelta(microseconds=1)
        else:
            candidates = [t for t in (established, coverage_from) if t is not None]
            baseline = max(candidates) if candidates else as_of
    else:
        # A person asked for this removal now (Microsoft's now, ``decided_at``): a sign-in after the
        # request means someone works there.
        baseline = decided_at or now
    decided = decided_at or (as_of if source == "policy" else None) or now
    rels = [
        {
            "type": r["type"],
            "id": r["id"],
            "displayName": r.get("displayName", ""),
            "roles": list(r.get("roles", [])),
            "state": "pending",
            "status": r.get("status", ""),
            "note": "",
        }
        for r in in_scope(list(row.get("relationships", [])), scope)
    ]
    return Removal(
        id=removal_id,
        tenant_id=str(row["tenantId"]).lower(),
        display_name=str(row.get("displayName", "")),
        source=source,
        requested_by=requested_by,
        reason=reason,
        requested_at=now,
        updated_at=now,
        customer_notified=customer_notified,
        evaluation_id=evaluation_id,
        evaluated_as_of=as_of,
        last_sign_in_at=last,
        established_at=established,
        inactive_days=int(row.get("inactiveForAtLeastDays") or 0),
        baseline=baseline,
        decided_at=decided,
        stretch=stretch_of(row),
        scope=list(scope),
        relationships=rels,
    )


def removal_message(removal: Removal) -> str:
    body = {"v": 1, "removalId": removal.id, "tenantId": removal.tenant_id, "idempotencyKey": removal.id}
    return json.dumps(body, separators=(",", ":"))


async def enqueue_removal(storage: Storage, removal: Removal, delay_seconds: int = 0) -> None:
    """One message for the removal; ``delay_seconds`` keeps it invisible that long (the log's latency)."""
    await storage.queue(REMOVALS_QUEUE).send_message(
        removal_message(removal), visibility_timeout=max(0, delay_seconds) or None
    )


async def queue_removal(services: Services, removal: Removal) -> tuple[Removal, bool]:
    """Write the row (if new) and enqueue its message. Returns (the stored removal, created).

    A removal that exists and has not been executed yet is enqueued again: a second message for the
    same id is harmless (the row decides), a lost one would leave it queued for ever.
    """
    store = RemovalStore(services.storage)
    if removal.source == "policy":
        # One removal per customer at a time. A half-done one (a worker died after removing part of the
        # access) changes the customer's establishment, hence its stretch and removal id: resume it.
        under_way = await store.pending_for(removal.tenant_id)
        if (
            under_way is not None
            and under_way.id != removal.id
            and under_way.status in ("queued", "requesting")
        ):
            await enqueue_removal(services.storage, under_way)
            await record_queued(services, under_way)
            return under_way, False
    created = await store.create(removal)
    if not created:
        existing = await store.get(removal.id)
        if existing is None:  # deleted in between: nothing sensible left to do
            raise ConflictingWrite(f"removal {removal.id} vanished")
        if existing.status in ("queued", "requesting"):
            await enqueue_removal(services.storage, existing)
        # The run that created it may have died before recording it (idempotent: found, not doubled).
        await record_queued(services, existing)
        return existing, False
    try:
        await enqueue_removal(services.storage, removal, services.settings.signin_log_latency_minutes * 60)
    except Exception as exc:
        # The row stays queued: the next evaluation (policy) or the same request again (portal)
        # enqueues it anew, and a duplicate message is harmless.
        await record_action(
            services.storage,
            **removal.trail(),
            action="removal.queued",
            result="error",
            detail=f"could not be enqueued: {type(exc).__name__}: {exc}",
        )
        raise
    await record_queued(services, removal)
    return removal, True


async def record_queued(services: Services, removal: Removal) -> None:
    await record_action(
        services.storage,
        **removal.trail(),
        action="removal.queued",
        result="queued",
        detail=", ".join(f"{r['type']} {r.get('displayName') or r['id']}" for r in removal.relationships),
        action_id=f"{removal.id}:queued",
        at=removal.requested_at,
    )


async def request_removals(
    services: Services,
    tenant_ids: list[str],
    *,
    requested_by: str,
    reason: str,
    source: str = "user",
    customer_notified: bool = True,
) -> list[dict[str, Any]]:
    """Queue the removal of each customer's delegated admin access (portal, API).

    Raises ValueError (nothing written) for a tenant id that is not under monitoring in the latest
    evaluation or has nothing to remove within ``REMOVAL_SCOPE``. A customer with a removal still
    under way gets that removal back instead of a second one.
    """

    await services.storage.ensure()
    settings = services.settings
    latest = await services.evaluations.latest()
    if latest is None:
        raise ValueError("no evaluation has been stored yet; run the audit first")
    rows = {str(r["tenantId"]).lower(): r for r in latest.report["customers"]}
    wanted: list[str] = []
    for raw in tenant_ids:
        tenant = str(raw).strip().lower()
        if not GUID_RE.match(tenant):
            raise ValueError(f"{raw!r} is not a tenant id")
        if tenant not in rows:
            raise ValueError(f"{tenant} is not under monitoring in the latest evaluation")
        if not in_scope(rows[tenant]["relationships"], settings.removal_scope):
            raise ValueError(
                f"{tenant} has no active relationship within REMOVAL_SCOPE "
                f"({','.join(settings.removal_scope)})"
            )
        if tenant not in wanted:
            wanted.append(tenant)
    if customer_notified and settings.notify_customers:
        require_sender(settings)
    store = RemovalStore(services.storage)
    await _check_manual_breaker(store, wanted, settings.max_removals_per_run)
    coverage = latest.report.get("coverage") or {}
    decided_at = await services.now()
    out = []
    for tenant in wanted:
        pending = await store.pending_for(tenant)
        if pending is not None:
            if pending.status in ("queued", "requesting"):
                await enqueue_removal(
                    services.storage, pending
                )  # heals a lost message; duplicates are no-ops
            out.append({"id": pending.id, "tenantId": tenant, "status": PUBLIC_STATUS[pending.status]})
            continue
        removal = removal_from_row(
            rows[tenant],
            removal_id=await removal_id_for(services.storage, tenant, stretch_of(rows[tenant])),
            source=source,
            requested_by=requested_by,
            reason=reason,
            customer_notified=customer_notified,
            scope=settings.removal_scope,
            evaluation_id=latest.id,
            as_of=parse_optional(latest.report.get("asOf")),
            coverage_from=parse_optional(coverage.get("from")),
            now=utcnow(),
            decided_at=decided_at,
        )
        stored, _ = await queue_removal(services, removal)
        out.append({"id": stored.id, "tenantId": tenant, "status": PUBLIC_STATUS[stored.status]})
    return out


async def _check_manual_breaker(store: RemovalStore, wanted: list[str], limit: int) -> None:
    """People's removals fall under the same circuit breaker as the policy's: at most
    MAX_REMOVALS_PER_RUN customers in any 24 hours (a slip of the select-all box, or a stolen session,
    cannot empty the estate). Customers with a removal already under way do not count again."""
    since = utcnow() - timedelta(hours=24)
    recent: set[str] = set()
    async for e in store.table.query_entities(
        "Source ne @policy and RequestedAt ge @since", parameters={"policy": "policy", "since": iso(since)}
    ):
        recent.add(str(e.get("TenantId") or ""))
    new = [t for t in wanted if t not in recent]
    if len(recent) + len(new) > limit:
        raise ValueError(
            f"circuit breaker: {len(new)} more customer(s) would make {len(recent) + len(new)} removals "
            f"requested by people in 24 hours, more than MAX_REMOVALS_PER_RUN ({limit}); nothing "
            "was queued"
        )
