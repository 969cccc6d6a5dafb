"""Notifications: mail to customers and partner admins through Graph ``sendMail`` (docs/definitions.md section 4).

Every mail is a small JSON message on the ``notifications`` queue with an idempotency key. The worker
writes a ``Notifications`` state row (``queued -> sending -> sent | skipped | failed``, ETag-conditional)
*before* it calls ``sendMail``; a delivery that finds the key ``sent`` sends nothing, one that finds it
``sending`` under another delivery's live lease backs off. (A crash after Graph accepted the mail
and before the row says ``sent`` sends it once more when the same message is retried: the only
window in which a mail can go out twice; Graph offers no idempotent send.)

Templates are Jinja2 under ``shared/notifications/templates/<language>/`` (HTML autoescaped, plain text beside
it); the customer's language comes from the billing-profile culture (``ja-*`` -> Japanese, anything
else -> English). Subjects are forced onto one line: a customer name cannot inject mail headers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.notifications.enqueue import enqueue_notification, enqueue_partner_alert
from shared.notifications.mail import language_of, render, require_sender, valid_address
from shared.notifications.store import (
    CUSTOMER_KINDS,
    MAIL_REFUSED,
    PARTNER_KINDS,
    HeldNotification,
    NotificationRow,
    NotificationStore,
    mark_mail_broken,
    mark_mail_working,
)
from shared.platform.actions import record_action, record_unreadable
from shared.platform.lease import lease_live
from shared.platform.queues import Busy, DrainResult, drain_poison, drain_queue
from shared.platform.retry import UpstreamError
from shared.platform.settings import NOTIFICATIONS_QUEUE, Settings
from shared.platform.state import partner_state
from shared.platform.storage import (
    ConflictingWrite,
)
from shared.platform.telemetry import EVENT_POISON_MESSAGE, track_event
from shared.platform.timeutil import utcnow
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)


class NotificationBusy(Busy):
    """Another delivery is sending this notification."""


# --- sending (the queue worker) -----------------------------------------------------------------------


def parse_message(body: bytes | str) -> dict[str, Any]:
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
    message = json.loads(text)
    if (
        not isinstance(message, dict)
        or not isinstance(message.get("key"), str)
        or message.get("kind") not in CUSTOMER_KINDS + PARTNER_KINDS
        or not isinstance(message.get("data", {}), dict)
    ):
        raise ValueError(f"not a notification message: {text[:200]!r}")
    return message


async def partner_name(services: Services) -> str:
    state = partner_state(services.storage)
    cached = await state.get("partner", "displayName")
    if cached:
        return cached
    try:
        name = await services.graph.partner_display_name()
    except Exception:  # a name is nice to have; the mail goes out without it
        log.warning("could not read the partner's name", exc_info=True)
        return ""
    if name:
        await state.set("partner", "displayName", name)
    return name


async def handle_notification_message(
    services: Services, body: bytes | str, *, message_id: str, dequeue_count: int = 1
) -> str:
    """The notification queue function's work for one message. Raises to have the queue retry it."""
    await services.storage.ensure()
    message = parse_message(body)
    return await send_notification(
        services, message, owner=message_id or uuid.uuid4().hex, attempt=dequeue_count
    )


async def send_now(
    services: Services, kind: str, key: str, data: dict[str, Any], tenant_id: str | None = None
) -> tuple[str, NotificationRow | None]:
    """A mail the caller waits for (a GDAP invitation, the daily GDAP digest), on the one mail path: stored
    and queued like every notification, then sent in this process under the row's lease -- once per key;
    a failure leaves the queued message to the notifications function's retries. (status, row)."""
    await enqueue_notification(services.storage, kind, key, data, tenant_id)
    message = {"v": 2, "key": key, "kind": kind, "tenantId": tenant_id}
    status = await send_notification(services, message, owner=f"now-{uuid.uuid4().hex}")
    return status, await NotificationStore(services.storage).get(key)


async def send_notification(
    services: Services, message: dict[str, Any], *, owner: str, attempt: int = 1
) -> str:
    store = NotificationStore(services.storage)
    key, kind = str(message["key"]), str(message["kind"])
    tenant = str(message.get("tenantId") or "")
    for _ in range(5):
        row = await store.get(key)
        if row is None or row.kind != kind:
            # Not queued by this product (a forged or mangled message): nothing is mailed.
            detail = f"refused a {kind} message for {key!r}: no such notification was queued"
            await record_action(
                services.storage,
                tenant_id=tenant or None,
                actor="system",
                action="notification.refused",
                result="refused",
                detail=detail[:1000],
                action_id=f"notification-refused:{hashlib.sha256(key.encode()).hexdigest()[:32]}",
            )
            log.warning("%s", detail)
            return "refused"
        if row.status in ("sent", "skipped"):
            log.info("notification %s already %s; not sent again", key, row.status)
            if row.status == "sent":  # idempotent: the sending delivery may have died before recording it
                await _record_sent(services, row, dict(row.data or message.get("data") or {}))
            return row.status
        now = utcnow()
        if row.status == "sending" and row.lease_owner != owner and row.lease_until and row.lease_until > now:
            raise NotificationBusy(
                f"notification {key} is being sent by another delivery",
                (row.lease_until - now).total_seconds(),
            )
        row.status, row.lease_owner, row.lease_until = "sending", owner, now + LEASE
        row.attempts += 1
        try:
            await store.replace(row)
        except ConflictingWrite:
            continue
        break
    else:
        raise NotificationBusy(f"notification {key} keeps changing under this delivery", 5.0)
    try:
        async with HeldNotification(services.storage, row, LEASE).kept() as held:
            status = await _send(services, held, row, message)
    except Exception as exc:
        try:
            row.lease_until, row.error = utcnow() - timedelta(seconds=1), f"attempt {attempt}: {exc}"
            await store.replace(row)
            if isinstance(exc, UpstreamError) and exc.status in MAIL_REFUSED:
                await mark_mail_broken(services, f"{exc}")
        except Exception:
            log.exception("notification %s: could not record the failed attempt", key)
        raise
    if status == "sent":
        await mark_mail_working(services)
    return status


# Every name a template may test, so that StrictUndefined flags only real template mistakes.
CONTEXT_DEFAULTS: dict[str, Any] = {
    "more": 0,
    "domain": "",
    "lastSignInAt": None,
    "inactiveDays": 0,
    "dap": False,
    "gdap": [],
    "source": "policy",
    "customers": [],
    "candidates": 0,
    "limit": 0,
    "lastSuccess": None,
    "hours": 0,
    "error": "",
    "queue": "",
    "removalId": "",
    "displayName": "",
    "tenantId": "",
    "detail": "",
    "attempts": 5,
    "count": 0,
    "coverageFrom": None,
    "asOf": None,
    "alert": "",
}


def _context(
    kind: str, data: dict[str, Any], *, partner: str, contact: str, settings: Settings
) -> dict[str, Any]:
    return {
        **CONTEXT_DEFAULTS,
        "removeAfterDays": settings.remove_after_days,
        "recommendAfterDays": settings.recommend_after_days,
        **data,
        "kind": kind,
        "partnerName": partner,
        "contact": contact,
    }


async def _send(
    services: Services, store: NotificationStore, row: NotificationRow, message: dict[str, Any]
) -> str:
    settings = services.settings
    # The stored content, never the message's (a row written before content was stored: the message's).
    kind, data = row.kind, dict(row.data if row.data is not None else message.get("data") or {})
    sender = require_sender(settings)
    wanted = await _recipients(services, kind, row.tenant_id, data)
    recipients = [a for a in dict.fromkeys(wanted) if valid_address(a)]
    language = (
        language_of(data.get("culture")) if kind in CUSTOMER_KINDS else settings.notify_partner_language
    )
    tenant = row.tenant_id or None
    if not recipients:
        row.status, row.lease_owner, row.error = "skipped", "", f"no valid recipient among {wanted!r}"
        await record_action(
            services.storage,
            tenant_id=tenant,
            actor="system",
            action=f"notification.{kind}",
            result="skipped",
            detail=row.error,
            action_id=f"notification:{row.key}:skipped",
        )
        await store.replace(row)
        return "skipped"
    rendered = render(
        kind,
        language,
        _context(kind, data, partner=await partner_name(services), contact=sender, settings=settings),
    )
    await services.graph.send_mail(sender, recipients, rendered.subject, rendered.text, rendered.html)
    row.status, row.lease_owner, row.sent_at = "sent", "", utcnow()
    row.subject, row.recipients, row.error = rendered.subject, recipients, ""
    # "sent" first: a crash after Graph took the mail sends it again only within this one write. The
    # action record follows; a redelivery that finds "sent" writes it if the crash came in between.
    await store.replace(row)
    await _record_sent(services, row, data)
    return "sent"


async def _recipients(
    services: Services, kind: str, tenant_id: str, data: dict[str, Any] | None = None
) -> list[str]:
    """Who gets this kind of mail, from the settings and the store: partner admins for partner mail (an
    indirect reseller's digest: its RESELLER_DIGEST_CONTACTS), the customer's own contacts (billing
    profile) for customer mail. Never from the stored content: it names the reseller, not the addresses."""
    reseller = ((data or {}).get("summary") or {}).get("reseller") if kind == "partner-digest" else None
    if reseller:
        return list(services.settings.reseller_contacts.get(str(reseller.get("id", "")).lower(), ()))
    if kind in PARTNER_KINDS:
        return [str(a).strip() for a in services.settings.notify_partner_addresses]
    customer, _ = (
        await RelationshipStore(services.storage).load_customer(tenant_id) if tenant_id else (None, None)
    )
    return [str(a).strip() for a in (customer.contacts if customer else [])]


async def _record_sent(services: Services, row: NotificationRow, data: dict[str, Any]) -> None:
    await record_action(
        services.storage,
        tenant_id=row.tenant_id or None,
        actor="system",
        action=f"notification.{row.kind}",
        result="sent",
        detail=f"{row.subject} -> {', '.join(row.recipients or [])}",
        removal_id=str(data.get("removalId") or ""),
        action_id=f"notification:{row.key}:sent",
    )


async def handle_notification_poison(services: Services, body: bytes | str) -> None:
    """A notification the queue gave up on: mark it failed, write it down, and alert (unless it was an alert)."""
    track_event(EVENT_POISON_MESSAGE, {"queue": NOTIFICATIONS_QUEUE})
    await services.storage.ensure()
    try:
        message = parse_message(body)
    except (ValueError, UnicodeDecodeError) as exc:
        await record_unreadable(services.storage, "notification", body, exc)
        return
    key, kind = str(message["key"]), str(message["kind"])
    store = NotificationStore(services.storage)
    row = await store.get(key)
    if row is not None and row.status in ("sent", "skipped", "failed"):
        log.info("poison message for notification %s, which is %s; nothing to record", key, row.status)
        return
    if row is not None and row.status == "sending" and lease_live(row.lease_until):
        log.info("poison message for notification %s, which a live delivery is sending; left to it", key)
        return
    detail = f"{kind} {key}: gave up" + (f" ({row.error})" if row is not None and row.error else "")
    if row is not None:
        row.status, row.lease_owner = "failed", ""
        try:
            await store.replace(row)
        except ConflictingWrite:
            log.warning("notification %s changed while being marked failed", key)
    await record_action(
        services.storage,
        tenant_id=str(message.get("tenantId") or "") or None,
        actor="system",
        action=f"notification.{kind}",
        result="failed",
        detail=detail,
        action_id=f"notification:{key}:failed",
    )
    if kind != "partner-alert":  # an alert about a failed alert would fail the same way
        await enqueue_partner_alert(
            services,
            "poison",
            f"poison:notification:{key}",
            {"queue": NOTIFICATIONS_QUEUE, "detail": detail, "tenantId": message.get("tenantId")},
        )


async def drain_notifications(services: Services, max_messages: int | None = None) -> DrainResult:
    await services.storage.ensure()

    async def handle(body: bytes, message_id: str, dequeue_count: int) -> None:
        await handle_notification_message(services, body, message_id=message_id, dequeue_count=dequeue_count)

    total = DrainResult()
    # A poisoned notification enqueues an alert: drain again for it (alerts never alert about themselves).
    for _ in range(3):
        result = await drain_queue(services.storage, NOTIFICATIONS_QUEUE, handle, max_messages=max_messages)
        total.processed += result.processed
        total.deferred += result.deferred
        total.poisoned += result.poisoned
        total.errors += result.errors
        if not result.poisoned:
            break
        await drain_poison(
            services.storage, NOTIFICATIONS_QUEUE, lambda b: handle_notification_poison(services, b)
        )
    return total


async def process_notification_queue(services: Services, max_messages: int | None = None) -> int:
    """Drain the notification queue in-process. Returns messages handled."""
    return (await drain_notifications(services, max_messages)).processed
