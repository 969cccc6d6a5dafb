"""Removal queue triggers: execute one removal per message; record and alert on poison messages.

Messages are plain JSON (host.json: messageEncoding none). An exception leaves the message to the
host, which retries it (maxDequeueCount 5) and then moves it to ``removals-poison``. A removal that is
busy (another delivery holds it) or must wait (the sign-in log's latency) is not a failure: the message
is sent again, invisible until then, and this delivery ends normally.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.platform.queues import handle_or_defer
from shared.removals.worker import REMOVALS_QUEUE, handle_removal_message, handle_removal_poison
from shared.runtime import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("removals")
@bp.queue_trigger(arg_name="msg", queue_name="removals", connection="AzureWebJobsStorage")
async def removals(msg: func.QueueMessage) -> None:
    services = await get_services()
    status = await handle_or_defer(
        services.storage,
        REMOVALS_QUEUE,
        msg.get_body(),
        msg.id or "",
        lambda: handle_removal_message(
            services, msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1
        ),
    )
    log.info("removal message %s: %s", msg.id, status)


@bp.function_name("removals_poison")
@bp.queue_trigger(arg_name="msg", queue_name="removals-poison", connection="AzureWebJobsStorage")
async def removals_poison(msg: func.QueueMessage) -> None:
    services = await get_services()
    await handle_removal_poison(services, msg.get_body())
    log.error("removal message %s was set aside after repeated failures", msg.id)
