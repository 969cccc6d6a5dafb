"""The queue triggers every area registers alike: a work queue whose busy work is deferred
(:func:`shared.platform.queues.handle_or_defer`), and a poison queue whose messages are handed to the
area's handler and logged as set aside. Each area names its functions, queues and handlers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import azure.functions as func

from shared.platform.queues import handle_or_defer
from shared.runtime import get_services
from shared.services import Services

CONNECTION = "AzureWebJobsStorage"

MessageHandler = Callable[..., Awaitable[str]]  # (services, body, *, message_id, dequeue_count) -> status
PoisonHandler = Callable[[Services, bytes], Awaitable[None]]


def register_deferring_trigger(
    bp: func.Blueprint, name: str, queue_name: str, handle: MessageHandler, what: str, log: logging.Logger
) -> None:
    """``name`` on ``queue_name``: ``handle`` each message, or defer it when it is busy or must wait."""

    @bp.function_name(name)
    @bp.queue_trigger(arg_name="msg", queue_name=queue_name, connection=CONNECTION)
    async def trigger(msg: func.QueueMessage) -> None:
        services = await get_services()
        status = await handle_or_defer(
            services.storage,
            queue_name,
            msg.get_body(),
            msg.id or "",
            lambda: handle(
                services, msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1
            ),
        )
        log.info("%s %s: %s", what, msg.id, status)


def register_poison_trigger(
    bp: func.Blueprint, name: str, queue_name: str, handle: PoisonHandler, what: str, log: logging.Logger
) -> None:
    """``name`` on ``queue_name`` (a ``-poison`` queue): ``handle`` each message and log it as set aside."""

    @bp.function_name(name)
    @bp.queue_trigger(arg_name="msg", queue_name=queue_name, connection=CONNECTION)
    async def poison(msg: func.QueueMessage) -> None:
        services = await get_services()
        await handle(services, msg.get_body())
        log.error("%s %s was set aside after repeated failures", what, msg.id)
