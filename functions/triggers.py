"""The triggers every area registers alike. A timer runs the area's work with the process's services on
a schedule its setting names. A queue trigger hands one message to the area's handler with the
services and logs the outcome; work queues whose busy work is deferred
(:func:`shared.platform.queues.handle_or_defer`) and poison queues (messages set aside) are two kinds
of it. Each area names its functions, schedules, queues, handlers and log lines."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import azure.functions as func

from shared.platform.queues import handle_or_defer
from shared.runtime import get_services
from shared.services import Services

CONNECTION = "AzureWebJobsStorage"

Outcome = TypeVar("Outcome")
MessageHandler = Callable[..., Awaitable[str]]  # (services, body, *, message_id, dequeue_count) -> status
PoisonHandler = Callable[[Services, bytes], Awaitable[None]]


def register_timer_trigger(
    bp: func.Blueprint, name: str, schedule_setting: str, run: Callable[[Services], Awaitable[None]]
) -> None:
    """``name`` on the schedule the setting ``schedule_setting`` holds (not run on start-up): ``run``."""

    @bp.function_name(name)
    @bp.timer_trigger(
        arg_name="timer", schedule=f"%{schedule_setting}%", run_on_startup=False, use_monitor=True
    )
    async def trigger(timer: func.TimerRequest) -> None:
        await run(await get_services())


def register_queue_trigger(
    bp: func.Blueprint,
    name: str,
    queue_name: str,
    handle: Callable[[Services, func.QueueMessage], Awaitable[Outcome]],
    report: Callable[[func.QueueMessage, Outcome], None],
) -> None:
    """``name`` on ``queue_name``: ``handle`` each message, then ``report`` what came of it."""

    @bp.function_name(name)
    @bp.queue_trigger(arg_name="msg", queue_name=queue_name, connection=CONNECTION)
    async def trigger(msg: func.QueueMessage) -> None:
        services = await get_services()
        report(msg, await handle(services, msg))


def register_deferring_trigger(
    bp: func.Blueprint, name: str, queue_name: str, handle: MessageHandler, what: str, log: logging.Logger
) -> None:
    """``name`` on ``queue_name``: ``handle`` each message, or defer it when it is busy or must wait."""

    def handle_or_defer_message(services: Services, msg: func.QueueMessage) -> Awaitable[str]:
        return handle_or_defer(
            services.storage,
            queue_name,
            msg.get_body(),
            msg.id or "",
            lambda: handle(
                services, msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1
            ),
        )

    def report(msg: func.QueueMessage, status: str) -> None:
        log.info("%s %s: %s", what, msg.id, status)

    register_queue_trigger(bp, name, queue_name, handle_or_defer_message, report)


def register_poison_trigger(
    bp: func.Blueprint, name: str, queue_name: str, handle: PoisonHandler, what: str, log: logging.Logger
) -> None:
    """``name`` on ``queue_name`` (a ``-poison`` queue): ``handle`` each message and log it as set aside."""

    def report(msg: func.QueueMessage, _: None) -> None:
        log.error("%s %s was set aside after repeated failures", what, msg.id)

    register_queue_trigger(
        bp, name, queue_name, lambda services, msg: handle(services, msg.get_body()), report
    )
