"""Removals: requests (portal or policy), the removal queue worker, and the append-only ``Actions`` trail.

A removal is one customer's delegated admin access going away: DAP through the Partner Center
``PATCH`` and every active GDAP relationship through a terminate request (docs/definitions.md sections 4, 6).

Exactly-once towards Microsoft, on an at-least-once queue:

* every removal has a ``Removals`` row whose id is the message's idempotency key;
* the row moves ``queued -> requesting -> requested | completed | skipped | failed`` with
  ETag-conditional writes, and each relationship inside it ``pending -> requesting -> requested |
  completed | skipped``; "requesting" is written *before* the service is called;
* a delivery that finds the removal past ``requesting`` calls nothing; one that finds it
  ``requesting`` under another worker's live lease backs off (:class:`RemovalBusy`) -- a working
  delivery keeps its lease alive however long Microsoft throttles it (:class:`HeldRemoval`); one that finds an
  abandoned ``requesting`` (a crash between the write and the call) re-reads the live state and
  decides from it (a relationship already ``terminationRequested`` *is* requested).

The live state is re-read before anything is removed: a customer that is excluded now, whose
relationships are no longer active, that got a new relationship, or that an agent signed in to since
the evaluation is skipped with its reason, never removed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.exclusions.store import ExclusionStore
from shared.notifications.enqueue import enqueue_partner_alert
from shared.notifications.store import mail_broken
from shared.platform.actions import record_action, record_unreadable
from shared.platform.lease import lease_live
from shared.platform.queues import MAX_ATTEMPTS, DrainResult, drain_poison, drain_queue
from shared.platform.retry import UpstreamError
from shared.platform.settings import REMOVALS_QUEUE
from shared.platform.storage import (
    ConflictingWrite,
    get_or_none,
    shard_of,
)
from shared.platform.telemetry import EVENT_POISON_MESSAGE, track_event
from shared.platform.timeutil import iso, parse_optional, utcnow
from shared.relationships.store import RelationshipStore
from shared.removals.live import (
    GDAP_DONE,
    GDAP_REQUESTED,
    LiveState,
    gdap_by_id,
    live_state,
    save_dap_disabled,
)
from shared.removals.notice import enqueue_customer_removal_notice
from shared.removals.store import (
    FINISHED,
    HeldRemoval,
    Removal,
    RemovalBusy,
    RemovalNotYet,
    RemovalStore,
    lease_end,
)

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

MAIL_RETRY_SECONDS = 900  # a removal waiting for mail to work again looks again after this long


# --- executing removals (the queue worker) ----------------------------------------------------------


async def handle_removal_message(
    services: Services, body: bytes | str, *, message_id: str, dequeue_count: int = 1
) -> str:
    """The removal queue function's work for one message. Raises to have the queue retry it."""
    await services.storage.ensure()
    message = parse_message(body)
    return await execute_removal(
        services, str(message["removalId"]), owner=message_id or uuid.uuid4().hex, attempt=dequeue_count
    )


def parse_message(body: bytes | str) -> dict[str, Any]:
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
    message = json.loads(text)
    if not isinstance(message, dict) or not isinstance(message.get("removalId"), str):
        raise ValueError(f"not a removal message: {text[:200]!r}")
    return message


async def execute_removal(services: Services, removal_id: str, *, owner: str, attempt: int = 1) -> str:
    """Run one removal to a finished state, exactly once towards Microsoft. Returns the status."""
    store = RemovalStore(services.storage)
    for _ in range(5):
        removal = await store.get(removal_id)
        if removal is None:
            raise LookupError(f"removal {removal_id} does not exist")
        if removal.status in FINISHED:
            log.info("removal %s is already %s; nothing to do", removal_id, removal.status)
            return removal.status
        if removal.status == "queued":
            await _wait_for_the_log(services, removal)
            await _wait_for_mail(services, removal)
        now = utcnow()
        if (
            removal.status == "requesting"
            and removal.lease_owner != owner
            and removal.lease_until is not None
            and removal.lease_until > now
        ):
            raise RemovalBusy(
                f"removal {removal_id} is being executed by another delivery",
                (removal.lease_until - now).total_seconds(),
            )
        removal.status, removal.lease_owner, removal.lease_until = "requesting", owner, lease_end(now)
        removal.attempts += 1
        try:
            await store.replace(removal)
        except ConflictingWrite:
            continue
        break
    else:
        raise RemovalBusy(f"removal {removal_id} keeps changing under this delivery", 5.0)
    try:
        async with HeldRemoval(services.storage, removal).kept() as held:
            return await _execute(services, held, removal)
    except Exception as exc:
        await _attempt_failed(services, store, removal, exc, attempt)
        raise


async def _wait_for_the_log(services: Services, removal: Removal) -> None:
    """Raise :class:`RemovalNotYet` until Microsoft's clock is SIGNIN_LOG_LATENCY_MINUTES past the
    decision: Entra writes sign-ins to its log minutes late (Microsoft published 2 minutes at the 95th
    and 5 at the 99th percentile, https://learn.microsoft.com/azure/active-directory/reports-monitoring/
    reference-reports-latencies), and the last check must see every sign-in made before the decision."""
    latency = timedelta(minutes=services.settings.signin_log_latency_minutes)
    decided = removal.decided_at or removal.baseline or removal.requested_at
    if latency <= timedelta(0):
        return
    wait = decided + latency - await services.now()
    if wait > timedelta(0):
        raise RemovalNotYet(
            f"removal {removal.id} waits {int(wait.total_seconds())} s for the sign-in log to settle",
            wait.total_seconds(),
        )


async def _wait_for_mail(services: Services, removal: Removal) -> None:
    """No customer loses access without being told: while mail cannot be sent, a removal whose
    customer is to be notified waits (RemovalNotYet) instead of starting."""

    if not (removal.customer_notified and services.settings.notify_customers):
        return
    broken = await mail_broken(services)
    if broken:
        raise RemovalNotYet(
            f"removal {removal.id} waits: customer notices cannot be sent ({broken[:200]})",
            MAIL_RETRY_SECONDS,
        )


async def _attempt_failed(
    services: Services, store: RemovalStore, removal: Removal, exc: BaseException, attempt: int
) -> None:
    """Release the lease (a retry resumes at once) and write the failure down; never hides ``exc``."""
    detail = f"attempt {attempt}: {type(exc).__name__}: {exc}"
    try:
        fresh = await store.get(removal.id)
        if fresh is not None and fresh.status == "requesting" and fresh.lease_owner == removal.lease_owner:
            fresh.lease_until, fresh.last_error = utcnow() - timedelta(seconds=1), detail
            await store.replace(fresh)
        await record_action(
            services.storage,
            **removal.trail(),
            action="removal.attempt",
            result="error",
            detail=detail,
        )
    except Exception:
        log.exception("removal %s: could not record the failed attempt", removal.id)


async def _skip(services: Services, store: RemovalStore, removal: Removal, reason: str) -> str:
    await record_action(
        services.storage,
        **removal.trail(),
        action="removal.skipped",
        result="skipped",
        detail=reason,
        action_id=f"{removal.id}:skipped",
    )
    for rel in removal.relationships:
        if rel["state"] == "pending":
            rel["state"] = "skipped"
    removal.status, removal.status_reason, removal.lease_owner = "skipped", reason, ""
    await store.replace(removal)
    log.info("removal %s (%s) skipped: %s", removal.id, removal.tenant_id, reason)
    return "skipped"


async def _prechecks(services: Services, removal: Removal, live: LiveState) -> str | None:
    """The reason to skip the whole removal, or None to go ahead (docs/definitions.md section 4)."""
    settings = services.settings
    if removal.source == "policy" and removal.tenant_id in settings.excluded_tenants:
        return "excluded: the customer is in EXCLUDED_TENANTS now"
    if removal.source == "policy":
        # An exclusion added in the portal after the evaluation still stops the policy.
        exclusion = await ExclusionStore(services.storage).get(removal.tenant_id)
        if exclusion is not None:
            return f"excluded: {exclusion.by or 'someone'} excluded the customer at {iso(exclusion.at) if exclusion.at else ''}"
    active = [r for r in removal.relationships if live.status_of(r) == "active"]
    if not active:
        states = ", ".join(
            f"{r['type']} {r.get('displayName') or r['id']}: {live.status_of(r)}"
            for r in removal.relationships
        )
        return f"no longer active ({states})"
    wanted = {s.lower() for s in removal.scope}
    known = {r["id"] for r in removal.relationships if r["type"] == "GDAP"}
    if "gdap" in wanted:
        fresh = [r for r in live.gdap.values() if r.active and r.id not in known]
        if fresh:
            return "a new relationship was established since the evaluation: " + ", ".join(
                r.display_name or r.id for r in fresh
            )
    if removal.baseline is not None:
        # The store first: it may hold a sign-in that Graph no longer serves (an older decision, a
        # sign-in ingested since); then Graph, both kinds, read until a sign-in turns up or pages end.
        stored = await get_or_none(
            services.storage.table("LastSignIns"), shard_of(removal.tenant_id), removal.tenant_id
        )
        stored_at = parse_optional(stored.get("LastAt")) if stored else None
        if stored_at is not None and stored_at >= removal.baseline:
            return (
                f"signed in since: the store holds a sign-in at {iso(stored_at)} "
                f"(after {iso(removal.baseline)})"
            )
        found = await services.graph.latest_sign_in(
            removal.tenant_id, removal.baseline, await services.partner_tenant_id()
        )
        if found is not None:
            kind = "non-interactive" if found.get("kind") == "nonInteractive" else "interactive"
            return (
                f"signed in since: an agent signed in at {found.get('createdDateTime')} "
                f"({kind}, after {iso(removal.baseline)})"
            )
    return None


async def _execute(services: Services, store: RemovalStore, removal: Removal) -> str:
    live = await live_state(services, removal)
    started = any(r["state"] != "pending" for r in removal.relationships) or any(
        a["state"] != "pending" for a in removal.azure_roles or []
    )
    if not started:
        reason = await _prechecks(services, removal, live)
        if reason is not None:
            return await _skip(services, store, removal, reason)
    if "azure" in removal.scope:
        # Azure first: with DAP and GDAP gone the partner may no longer reach the tenant (shared.azure_roles.removal).
        from shared.azure_roles.removal import remove_azure_roles

        await remove_azure_roles(services, store, removal)
    # DAP first: it is the broadest access (Global Administrator). One relationship failing does not
    # hold back the others; the failure is raised afterwards so that the queue retries what is left.
    failures: list[UpstreamError] = []
    for rel in sorted(removal.relationships, key=lambda r: (r["type"] != "DAP", r["id"])):
        if rel["state"] in ("pending", "requesting"):
            try:
                await _remove_one(services, store, removal, rel, live)
            except UpstreamError as exc:
                failures.append(exc)
    if failures:
        raise failures[0]
    states = {r["state"] for r in removal.relationships}
    # Azure role assignments deleted count as removed access: the customer is told even when every
    # relationship turned out to be gone already.
    azure_removed = any(a["state"] == "removed" for a in removal.azure_roles or [])
    if states <= {"skipped"} and not azure_removed:
        return await _skip(
            services,
            store,
            removal,
            "; ".join(
                f"{r['type']} {r.get('displayName') or r['id']}: {r.get('note') or 'skipped'}"
                for r in removal.relationships
            )
            or "nothing to remove",
        )
    final = "requested" if "requested" in states else "completed"
    if removal.customer_notified and services.settings.notify_customers and not removal.notice_queued:
        # Enqueued before the final write: a crash in between re-sends the same key, which dedupes.

        await enqueue_customer_removal_notice(services, removal)
        removal.notice_queued = True
    await record_action(
        services.storage,
        **removal.trail(),
        action=f"removal.{final}",
        result=final,
        detail="; ".join(
            f"{r['type']} {r.get('displayName') or r['id']}: {r['state']}" for r in removal.relationships
        ),
        action_id=f"{removal.id}:{final}",
    )
    removal.status, removal.lease_owner, removal.status_reason = final, "", ""
    removal.last_error = ""
    await store.replace(removal)
    return final


async def _set_state(
    store: RemovalStore,
    removal: Removal,
    rel: dict[str, Any],
    state: str,
    note: str = "",
    status: str | None = None,
) -> None:
    rel["state"] = state
    if note:
        rel["note"] = note
    if status is not None:
        rel["status"] = status
    if state in ("requested", "completed"):
        rel.setdefault("requestedAt", iso(utcnow()))
    if state == "completed":
        rel["completedAt"] = iso(utcnow())
    await store.replace(removal)


async def _remove_one(
    services: Services, store: RemovalStore, removal: Removal, rel: dict[str, Any], live: LiveState
) -> None:
    status = live.status_of(rel)
    what = "dap.disable" if rel["type"] == "DAP" else "gdap.terminate"
    action_base = f"{removal.id}:{rel['type']}-{rel['id']}"

    async def outcome(state: str, note: str, detail: str) -> None:
        await record_action(
            services.storage,
            **removal.trail(),
            action=what,
            result=state,
            detail=detail,
            relationship_type=rel["type"],
            relationship_id=rel["id"],
            action_id=f"{action_base}:{state}",
        )
        await _set_state(store, removal, rel, state, note, status)

    label = rel.get("displayName") or rel["id"]
    if status != "active":
        if rel["state"] == "requesting":
            # Resuming after a crash between "requesting" and the call: the live state says whether it went out.
            if rel["type"] == "DAP" and status == "disabled":
                await outcome("completed", "DAP disabled", f"{label}: found disabled on resume")
                return
            if rel["type"] == "GDAP" and status in GDAP_REQUESTED:
                await outcome("requested", f"status {status}", f"{label}: found {status} on resume")
                return
            if rel["type"] == "GDAP" and status in GDAP_DONE:
                await outcome("completed", "terminated", f"{label}: found terminated on resume")
                return
        note = f"no longer active (status {status})"
        await outcome("skipped", note, f"{label}: {note}")
        return

    # The state row says "requesting" before the service is called (exactly once across deliveries).
    await _set_state(store, removal, rel, "requesting")
    if rel["type"] == "DAP":
        await _disable_dap(services, removal, rel, outcome)
    else:
        await _terminate_gdap(services, removal, rel, outcome)


Outcome = Callable[[str, str, str], Awaitable[None]]


async def _disable_dap(services: Services, removal: Removal, rel: dict[str, Any], outcome: Outcome) -> None:
    pc = services.partner_center
    if pc is None:
        await outcome("skipped", "DAP is not managed here (DAP_ENABLED=false)", "DAP_ENABLED=false")
        return
    try:
        await pc.disable_dap(removal.tenant_id)
    except UpstreamError as exc:
        if exc.status == 404:
            await outcome("skipped", "the customer no longer exists in Partner Center", str(exc))
            return
        # Anything else (a 412 included) is retried by the queue, which re-reads the live state first.
        raise
    rel["status"] = "disabled"
    await outcome(
        "completed",
        "DAP disabled",
        "Admin Agents (Global Administrator) and Helpdesk Agents (Helpdesk Administrator) removed",
    )
    await save_dap_disabled(services, removal.tenant_id)


async def _terminate_gdap(
    services: Services, removal: Removal, rel: dict[str, Any], outcome: Outcome
) -> None:
    label = rel.get("displayName") or rel["id"]
    for _ in range(3):
        try:
            request_id = await services.graph.request_termination(rel["id"])
        except UpstreamError as exc:
            if exc.status == 409:
                rel["status"] = "terminationRequested"
                await outcome("requested", "already being terminated", f"{label}: {exc}")
                await _store_gdap_status(services, removal.tenant_id, rel["id"])
                return
            if exc.status == 404:
                rel["status"] = "notFound"
                await outcome("skipped", "the relationship no longer exists", f"{label}: {exc}")
                return
            if exc.status == 412:
                current = (await gdap_by_id(services, removal.tenant_id)).get(rel["id"])
                if current is not None and current.status == "active":
                    continue
                status = current.status if current is not None else "notFound"
                rel["status"] = status
                if status in GDAP_REQUESTED or status in GDAP_DONE:
                    await outcome(
                        "requested" if status in GDAP_REQUESTED else "completed",
                        f"status {status}",
                        f"{label}: {status} after 412",
                    )
                else:
                    await outcome("skipped", f"no longer active (status {status})", f"{label}: {exc}")
                return
            raise
        rel["status"] = "terminationRequested"
        rel["requestId"] = request_id
        await outcome("requested", "terminate requested", f"{label}: terminate request {request_id}")
        await _store_gdap_status(services, removal.tenant_id, rel["id"])
        return
    raise UpstreamError(f"terminate {rel['id']}: precondition kept failing", status=412)


async def _store_gdap_status(services: Services, tenant_id: str, relationship_id: str) -> None:
    _, stored = await RelationshipStore(services.storage).load_customer(tenant_id)
    current = next((r for r in stored if r.type == "GDAP" and r.id == relationship_id), None)
    if current is not None and current.status == "active":
        current.status = "terminationRequested"
        await RelationshipStore(services.storage).keep_seen(current)


# --- poison -----------------------------------------------------------------------------------------


async def handle_removal_poison(services: Services, body: bytes | str) -> None:
    """A removal message the queue gave up on: mark the removal failed, write it down, alert."""
    track_event(EVENT_POISON_MESSAGE, {"queue": REMOVALS_QUEUE})
    await services.storage.ensure()
    try:
        message = parse_message(body)
    except (ValueError, UnicodeDecodeError) as exc:
        text = await record_unreadable(services.storage, "removal", body, exc)
        await enqueue_partner_alert(
            services,
            "poison",
            f"poison:removal:{uuid.uuid4().hex}",
            {"queue": REMOVALS_QUEUE, "detail": f"an unreadable removal message was set aside: {text[:200]}"},
        )
        return
    removal_id = str(message["removalId"])
    store = RemovalStore(services.storage)
    removal = await store.get(removal_id)
    tenant = removal.tenant_id if removal else str(message.get("tenantId") or "") or None
    if removal is not None and removal.status in FINISHED:
        # A duplicate message of a removal that did finish (or was already marked failed): nothing new.
        log.info("poison message for removal %s, which is %s; nothing to record", removal_id, removal.status)
        return
    if removal is not None and removal.status == "requesting" and lease_live(removal.lease_until):
        # A live delivery is executing it: marking it failed would abandon what that delivery is doing
        # (DAP already disabled, relationships and the notice still to come). The holder finishes it.
        log.info("poison message for removal %s, which a live delivery is executing; left to it", removal_id)
        return
    detail = f"gave up after {MAX_ATTEMPTS} attempts"
    if removal is not None:
        detail += f": {removal.last_error}" if removal.last_error else ""
        if removal.status not in FINISHED:
            removal.status, removal.status_reason, removal.lease_owner = "failed", detail, ""
            await store.replace(removal)
    await record_action(
        services.storage,
        tenant_id=tenant,
        actor=removal.actor if removal else "system",
        action="removal.failed",
        telemetry=removal.telemetry if removal else {},
        result="failed",
        reason=removal.reason if removal else "",
        detail=detail,
        removal_id=removal_id,
        action_id=f"{removal_id}:failed",
    )
    await enqueue_partner_alert(
        services,
        "poison",
        f"poison:removal:{removal_id}",
        {
            "queue": REMOVALS_QUEUE,
            "removalId": removal_id,
            "tenantId": tenant,
            "displayName": removal.display_name if removal else "",
            "detail": detail,
        },
    )


# --- draining a queue in-process (CLI cycle, demo, serve, tests) --------------------------------------


async def drain_removals(services: Services, max_messages: int | None = None) -> DrainResult:
    await services.storage.ensure()

    async def handle(body: bytes, message_id: str, dequeue_count: int) -> None:
        await handle_removal_message(services, body, message_id=message_id, dequeue_count=dequeue_count)

    result = await drain_queue(services.storage, REMOVALS_QUEUE, handle, max_messages=max_messages)
    if result.poisoned:
        await drain_poison(services.storage, REMOVALS_QUEUE, lambda b: handle_removal_poison(services, b))
    return result


async def process_removal_queue(services: Services, max_messages: int | None = None) -> int:
    """Drain the removal queue in-process (CLI cycle, demo, ``serve``, tests). Returns messages handled."""
    return (await drain_removals(services, max_messages)).processed
