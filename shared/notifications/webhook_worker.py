"""Webhook deliveries: the ``webhooks`` queue's work, the mail path's twin (shared.notifications.worker).

Each partner alert, warning and digest queued while ``ALERT_WEBHOOK_URL`` is set has one ``Notifications``
row per target (``webhook:<target>:<event key>``, kind ``webhook``): ``queued -> sending -> sent |
skipped | failed``, written ETag-conditionally under a lease *before* the POST, so a redelivery finds
``sent`` and posts nothing (at most once per key and target, as mail; a crash between the target's
answer and the row's ``sent`` is the one window for a second POST, and the JSON body's ``id`` lets a
receiver drop it). The outcome goes where the mail's goes: that row and the ``Actions`` trail
(``webhook.<kind>``).

Retries: 408/425/429/5xx and transport faults are retried within the delivery (Retry-After honoured,
shared.notifications.webhook), then by the queue (``maxDequeueCount``), then the poison queue marks the
delivery ``failed``. A Retry-After longer than a delivery waits defers the message for that long. Any
other 4xx is the target refusing for good: ``failed`` at once, not retried. Either way the partner
admins are told by mail only, and nothing here touches the mail: a dead webhook never holds up a mail,
never marks mail broken, never stops a removal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.notifications.enqueue import WEBHOOK_KIND, enqueue_partner_alert
from shared.notifications.mail import render
from shared.notifications.store import HeldNotification, NotificationRow, NotificationStore
from shared.notifications.webhook import (
    MAX_WAIT_SECONDS,
    Event,
    Outcome,
    body_of,
    facts_of,
    labels,
    portal_link,
    post,
    target_host,
    target_id,
)
from shared.platform.actions import record_action, record_unreadable
from shared.platform.lease import lease_live
from shared.platform.queues import Busy, drain_poison, drain_queue
from shared.platform.settings import WEBHOOKS_QUEUE, SettingsError
from shared.platform.storage import ConflictingWrite
from shared.platform.telemetry import EVENT_POISON_MESSAGE, track_event
from shared.platform.timeutil import iso, utcnow

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)  # a delivery may wait for Retry-After up to a minute per attempt
MAX_DELIVERIES = 8  # deliveries of one event (deferrals included) before it is given up


class WebhookBusy(Busy):
    """Another delivery is posting this event, or the target asked for a longer wait."""


class WebhookRetry(RuntimeError):
    """The target did not take the event now (429, 5xx, unreachable): the queue tries again."""


def parse_webhook_message(body: bytes | str) -> str:
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
    message = json.loads(text)
    if (
        not isinstance(message, dict)
        or not isinstance(message.get("key"), str)
        or not message["key"].startswith("webhook:")
    ):
        raise ValueError(f"not a webhook message: {text[:200]!r}")
    return str(message["key"])


async def handle_webhook_message(
    services: Services, body: bytes | str, *, message_id: str, dequeue_count: int = 1
) -> str:
    """The webhooks queue function's work for one message. Raises to have the queue retry it."""
    await services.storage.ensure()
    key = parse_webhook_message(body)
    return await send_webhook(services, key, owner=message_id or uuid.uuid4().hex, attempt=dequeue_count)


async def event_of(services: Services, row: NotificationRow) -> Event:
    """The stored event as people read it: the partner mail's subject and text (same templates, the
    partner admins' language), a few facts and the portal link."""
    from shared.notifications.worker import _context, partner_name

    settings = services.settings
    content = row.data or {}
    kind, data = str(content.get("kind", "")), dict(content.get("data") or {})
    language = settings.notify_partner_language
    context = _context(
        kind, data, partner=await partner_name(services), contact=settings.notify_sender, settings=settings
    )
    rendered = render(kind, language, context)
    return Event(
        kind=kind,
        key=str(content.get("key", "")),
        time=str(content.get("at") or iso(utcnow())),
        subject=rendered.subject,
        text=rendered.text,
        facts=facts_of(kind, data, language),
        link=portal_link(settings),
        data=data,
        language=language,
    )


def _target_of(key: str) -> str:
    return key.split(":", 2)[1] if key.count(":") >= 2 else ""


async def send_webhook(services: Services, key: str, *, owner: str, attempt: int = 1) -> str:
    settings = services.settings
    store = NotificationStore(services.storage)
    url = settings.alert_webhook_url
    for _ in range(5):
        row = await store.get(key)
        if row is None or row.kind != WEBHOOK_KIND or not row.data:
            detail = f"refused a webhook message for {key!r}: no such delivery was queued"
            await record_action(
                services.storage,
                tenant_id=None,
                actor="system",
                action="webhook.refused",
                result="refused",
                detail=detail[:1000],
                action_id=f"webhook-refused:{hashlib.sha256(key.encode()).hexdigest()[:32]}",
            )
            log.warning("%s", detail)
            return "refused"
        if row.status in ("sent", "skipped", "failed"):
            log.info("webhook delivery %s already %s; not posted again", key, row.status)
            return f"already {row.status}"
        now = utcnow()
        if row.status == "sending" and row.lease_owner != owner and row.lease_until and row.lease_until > now:
            raise WebhookBusy(
                f"webhook delivery {key} is being posted by another delivery",
                (row.lease_until - now).total_seconds(),
            )
        if not url or _target_of(key) != target_id(url):
            # The target changed (or was removed) since the event was queued: the old one is not posted to.
            row.status, row.lease_owner = "skipped", ""
            row.error = "ALERT_WEBHOOK_URL changed or was cleared after this event was queued"
            try:
                await store.replace(row)
            except ConflictingWrite:
                continue
            await _record(services, row, "skipped", row.error)
            return "skipped"
        row.status, row.lease_owner, row.lease_until = "sending", owner, now + LEASE
        row.attempts += 1
        try:
            await store.replace(row)
        except ConflictingWrite:
            continue
        break
    else:
        raise WebhookBusy(f"webhook delivery {key} keeps changing under this delivery", 5.0)
    try:
        async with HeldNotification(services.storage, row, LEASE).kept() as held:
            event = await event_of(services, row)
            outcome = await post(settings, body_of(settings, event))
            return await _settle(services, held, row, event, outcome, attempt)
    except (WebhookBusy, WebhookRetry):
        raise
    except Exception as exc:
        try:
            row.lease_until, row.error = utcnow() - timedelta(seconds=1), f"attempt {attempt}: {exc}"
            await store.replace(row)
        except Exception:
            log.exception("webhook delivery %s: could not record the failed attempt", key)
        raise


async def _settle(
    services: Services,
    store: NotificationStore,
    row: NotificationRow,
    event: Event,
    outcome: Outcome,
    attempt: int,
) -> str:
    """Write down what the target answered; raise for the queue to try again when it was "not now"."""
    where = f"{target_host(services.settings.alert_webhook_url)} ({services.settings.alert_webhook_format})"
    if outcome.result == "sent":
        row.status, row.lease_owner, row.sent_at = "sent", "", utcnow()
        row.subject, row.error = event.subject, ""
        await store.replace(row)
        await _record(services, row, "sent", f"{event.subject} -> {where}, HTTP {outcome.status}")
        return "sent"
    detail = f"{outcome.detail} after {outcome.attempts} attempt(s)"
    if outcome.result == "refused" or row.attempts >= MAX_DELIVERIES:
        row.status, row.lease_owner, row.subject, row.error = "failed", "", event.subject, detail[:4000]
        await store.replace(row)
        await _fail(services, row, detail)
        return "failed"
    row.lease_owner, row.lease_until, row.error = (
        "",
        utcnow() - timedelta(seconds=1),
        f"attempt {attempt}: {detail}",
    )
    await store.replace(row)
    if outcome.retry_after is not None and outcome.retry_after > MAX_WAIT_SECONDS:
        raise WebhookBusy(f"webhook delivery {row.key}: {detail}", outcome.retry_after)
    raise WebhookRetry(f"webhook delivery {row.key}: {detail}")


async def _record(services: Services, row: NotificationRow, result: str, detail: str) -> None:
    kind = str((row.data or {}).get("kind") or "event")
    await record_action(
        services.storage,
        tenant_id=None,
        actor="system",
        action=f"webhook.{kind}",
        result=result,
        detail=detail[:2000],
        action_id=f"{row.key}:{result}",
    )


async def _fail(services: Services, row: NotificationRow, detail: str) -> None:
    """A delivery given up: in the trail, and the partner admins told by mail (never by the webhook)."""
    await _record(services, row, "failed", detail)
    kind = str((row.data or {}).get("kind") or "event")
    await enqueue_partner_alert(
        services,
        "webhook",
        f"webhook:{row.key}",
        {"queue": WEBHOOKS_QUEUE, "detail": f"{kind} {(row.data or {}).get('key', '')}: {detail}"},
        webhook=False,
    )


async def handle_webhook_poison(services: Services, body: bytes | str) -> None:
    """A delivery the queue gave up on: marked failed, written down, and mailed to the partner admins."""
    track_event(EVENT_POISON_MESSAGE, {"queue": WEBHOOKS_QUEUE})
    await services.storage.ensure()
    try:
        key = parse_webhook_message(body)
    except (ValueError, UnicodeDecodeError) as exc:
        await record_unreadable(services.storage, "webhook", body, exc)
        return
    store = NotificationStore(services.storage)
    row = await store.get(key)
    if row is None or row.kind != WEBHOOK_KIND:
        log.warning("poison message for unknown webhook delivery %s; nothing to record", key)
        return
    if row.status in ("sent", "skipped", "failed"):
        return
    if row.status == "sending" and lease_live(row.lease_until):
        log.info("poison message for webhook delivery %s, which a live delivery is posting; left to it", key)
        return
    detail = "gave up" + (f" ({row.error})" if row.error else "")
    row.status, row.lease_owner = "failed", ""
    try:
        await store.replace(row)
    except ConflictingWrite:
        log.warning("webhook delivery %s changed while being marked failed", key)
        return
    await _fail(services, row, detail)


@dataclass
class WebhookDrain:
    processed: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0

    def as_json(self) -> dict[str, int]:
        return {
            "processed": self.processed,
            "sent": self.sent,
            "failed": self.failed,
            "deferred": self.deferred,
        }


async def drain_webhooks(services: Services, max_messages: int | None = None) -> WebhookDrain:
    """The webhooks queue in-process, as its queue function takes it (CLI cycle, serve, tests)."""
    await services.storage.ensure()
    total = WebhookDrain()

    async def handle(body: bytes, message_id: str, dequeue_count: int) -> None:
        status = await handle_webhook_message(
            services, body, message_id=message_id, dequeue_count=dequeue_count
        )
        total.sent += status == "sent"
        total.failed += status == "failed"

    result = await drain_queue(services.storage, WEBHOOKS_QUEUE, handle, max_messages=max_messages)
    total.processed, total.deferred = result.processed, result.deferred
    if result.poisoned:
        total.failed += len(result.poisoned)
        await drain_poison(services.storage, WEBHOOKS_QUEUE, lambda b: handle_webhook_poison(services, b))
    return total


async def send_test(services: Services, actor: str = "system") -> dict[str, Any]:
    """``webhook test``: one test event posted now (not queued, retried as every delivery is), written
    to the trail. Raises SettingsError when no webhook is set."""
    settings = services.settings
    if not settings.alert_webhook_url:
        raise SettingsError("ALERT_WEBHOOK_URL is not set: set it to the webhook's URL to send a test")
    label = labels(settings.notify_partner_language)
    key = f"webhook-test:{uuid.uuid4().hex}"
    event = Event(
        kind="webhook-test",
        key=key,
        time=iso(utcnow()),
        subject=f"Delegated Admin Monitor: {label['test']}",
        text=label["testText"],
        facts=[(label["kind"], "webhook-test")],
        link=portal_link(settings),
        data={},
        language=settings.notify_partner_language,
    )
    outcome = await post(settings, body_of(settings, event))
    verdict = "sent" if outcome.result == "sent" else "failed"
    result: dict[str, Any] = {
        "result": verdict,
        "status": outcome.status,
        "attempts": outcome.attempts,
        "format": settings.alert_webhook_format,
        "target": target_host(settings.alert_webhook_url),
        "detail": outcome.detail,
        "id": event.id,
    }
    await record_action(
        services.storage,
        tenant_id=None,
        actor=actor,
        action="webhook.test",
        result=verdict,
        detail=f"{outcome.detail} ({settings.alert_webhook_format}, {outcome.attempts} attempt(s))"[:2000],
        action_id=key,
    )
    return result
