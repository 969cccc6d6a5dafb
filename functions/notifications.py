"""Notification queue triggers: send one mail per message (idempotent); record poison messages."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.notifications.worker import (
    NOTIFICATIONS_QUEUE,
    handle_notification_message,
    handle_notification_poison,
)
from shared.platform.queues import handle_or_defer
from shared.runtime import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("notifications")
@bp.queue_trigger(arg_name="msg", queue_name="notifications", connection="AzureWebJobsStorage")
async def notifications(msg: func.QueueMessage) -> None:
    services = await get_services()
    status = await handle_or_defer(
        services.storage,
        NOTIFICATIONS_QUEUE,
        msg.get_body(),
        msg.id or "",
        lambda: handle_notification_message(
            services, msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1
        ),
    )
    log.info("notification message %s: %s", msg.id, status)


@bp.function_name("notifications_poison")
@bp.queue_trigger(arg_name="msg", queue_name="notifications-poison", connection="AzureWebJobsStorage")
async def notifications_poison(msg: func.QueueMessage) -> None:
    services = await get_services()
    await handle_notification_poison(services, msg.get_body())
    log.error("notification message %s was set aside after repeated failures", msg.id)
