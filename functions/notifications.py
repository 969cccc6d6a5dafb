"""Notification queue triggers: send one mail per message (idempotent); record poison messages."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.notifications import NOTIFICATIONS_QUEUE, handle_notification_message, handle_notification_poison
from shared.removals import Busy, defer_message
from shared.runtime import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("notifications")
@bp.queue_trigger(arg_name="msg", queue_name="notifications", connection="AzureWebJobsStorage")
async def notifications(msg: func.QueueMessage) -> None:
    services = await get_services()
    try:
        status = await handle_notification_message(services, msg.get_body(), message_id=msg.id or "",
                                                   dequeue_count=msg.dequeue_count or 1)
    except Busy as busy:  # not a failure: sent again for later, the host's retry budget untouched
        await defer_message(services.storage, NOTIFICATIONS_QUEUE, msg.get_body(), busy.retry_after)
        log.info("notification message %s deferred: %s", msg.id, busy)
        return
    log.info("notification message %s: %s", msg.id, status)


@bp.function_name("notifications_poison")
@bp.queue_trigger(arg_name="msg", queue_name="notifications-poison", connection="AzureWebJobsStorage")
async def notifications_poison(msg: func.QueueMessage) -> None:
    services = await get_services()
    await handle_notification_poison(services, msg.get_body())
    log.error("notification message %s was set aside after repeated failures", msg.id)
