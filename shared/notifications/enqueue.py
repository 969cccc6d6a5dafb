"""Asking for mail: a ``Notifications`` row holds the content, the queue message only its key."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from shared.domain.report import ReportRow
from shared.notifications.store import PARTNER_KINDS, NotificationRow, NotificationStore
from shared.notifications.webhook import target_id
from shared.platform.settings import NOTIFICATIONS_QUEUE, WEBHOOKS_QUEUE
from shared.platform.storage import (
    Storage,
)
from shared.platform.timeutil import iso, utcnow
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


MAX_LIST = 200  # entries per list inside one message (a queue message holds at most 64 KB)


async def enqueue_notification(
    storage: Storage, kind: str, key: str, data: dict[str, Any], tenant_id: str | None = None
) -> None:
    """Store the notification (its content, once per key) and queue its key. The queue message is only a
    key: anyone able to write to the queue could otherwise mail anyone from NOTIFY_SENDER."""
    if len(json.dumps(data, ensure_ascii=False).encode("utf-8")) > 60_000:
        raise ValueError(f"notification {key} is too large ({kind})")
    await NotificationStore(storage).create(
        NotificationRow(key=key, kind=kind, tenant_id=tenant_id or "", data=data)
    )
    body = {"v": 2, "key": key, "idempotencyKey": key, "kind": kind, "tenantId": tenant_id}
    await storage.queue(NOTIFICATIONS_QUEUE).send_message(
        json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    )


def _clip(items: list[Any]) -> tuple[list[Any], int]:
    return items[:MAX_LIST], max(0, len(items) - MAX_LIST)


async def enqueue_customer_warning(services: Services, row: ReportRow, stretch: str, remove_on: str) -> bool:
    customer, _ = await RelationshipStore(services.storage).load_customer(row["tenantId"])
    data = {
        "tenantId": row["tenantId"],
        "customerName": (customer.display_name if customer else "") or row["displayName"],
        "domain": customer.default_domain if customer else "",
        "culture": customer.culture if customer else "",
        "recipients": list(customer.contacts) if customer else [],
        "removeOn": remove_on,
        "inactiveDays": row["inactiveForAtLeastDays"],
        "lastSignInAt": row.get("lastSignInAt"),
        "dap": any(r["type"] == "DAP" for r in row["relationships"]),
        "gdap": [
            {"displayName": r.get("displayName") or r["id"], "roles": list(r.get("roles", []))}
            for r in row["relationships"]
            if r["type"] == "GDAP"
        ],
    }
    key = f"customer-warning:{row['tenantId']}:{stretch}"
    await enqueue_notification(services.storage, "customer-warning", key, data, row["tenantId"])
    return True


WEBHOOK_KIND = (
    "webhook"  # the Notifications row of one webhook delivery (shared.notifications.webhook_worker)
)


def webhook_delivery_key(url: str, key: str) -> str:
    """A delivery's key: the event's key for this target, so that each target gets each event once."""
    return f"webhook:{target_id(url)}:{key}"


async def enqueue_webhook(services: Services, kind: str, key: str, data: dict[str, Any]) -> bool:
    """Queue a partner alert, warning or digest for ``ALERT_WEBHOOK_URL`` (nothing when it is empty):
    its content in a ``Notifications`` row keyed per target and event (created once), its key on the
    ``webhooks`` queue. The queue is the mail's twin, not the mail's: a webhook that fails holds up no mail."""
    url = services.settings.alert_webhook_url
    if not url or kind not in PARTNER_KINDS:
        return False
    delivery = webhook_delivery_key(url, key)
    content = {"kind": kind, "key": key, "at": iso(utcnow()), "data": data}
    if len(json.dumps(content, ensure_ascii=False).encode("utf-8")) > 60_000:
        raise ValueError(f"webhook event {key} is too large ({kind})")
    await NotificationStore(services.storage).create(
        NotificationRow(key=delivery, kind=WEBHOOK_KIND, tenant_id="", data=content)
    )
    # Sent even when the row existed: a crash between the two writes must not lose the message; a
    # delivery that finds the row sent sends nothing.
    await services.storage.queue(WEBHOOKS_QUEUE).send_message(
        json.dumps({"v": 1, "key": delivery}, ensure_ascii=False, separators=(",", ":"))
    )
    return True


async def enqueue_partner(
    services: Services, kind: str, key: str, data: dict[str, Any], *, webhook: bool = True
) -> bool:
    """Partner-admin mail, and the same event to the webhook when one is set (``webhook``); no mail when
    NOTIFY_PARTNER_ADDRESSES is empty (the Actions row stays). Whether anything was queued."""
    queued = await enqueue_webhook(services, kind, key, data) if webhook else False
    if not services.settings.notify_partner_addresses:
        log.info("%s %s: NOTIFY_PARTNER_ADDRESSES is empty; not mailed", kind, key)
        return queued
    await enqueue_notification(
        services.storage, kind, key, {**data, "recipients": list(services.settings.notify_partner_addresses)}
    )
    return True


async def enqueue_partner_alert(
    services: Services, alert: str, key: str, data: dict[str, Any], *, webhook: bool = True
) -> bool:
    return await enqueue_partner(
        services, "partner-alert", f"alert:{key}", {"alert": alert, **data}, webhook=webhook
    )


async def enqueue_partner_warning(services: Services, key: str, customers: list[dict[str, Any]]) -> bool:
    listed, more = _clip(customers)
    return await enqueue_partner(services, "partner-warning", key, {"customers": listed, "more": more})


async def enqueue_partner_digest(services: Services, key: str, summary: dict[str, Any]) -> bool:
    return await enqueue_partner(services, "partner-digest", key, {"summary": summary})
