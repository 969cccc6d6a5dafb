"""Queue mechanics shared by every queue worker: work that is busy or must wait is deferred without
spending the host's retry budget, and an in-process drain that does what the Functions host does
(CLI cycle, demo, ``serve``, tests)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.platform.storage import (
    Storage,
)

log = logging.getLogger(__name__)


MAX_ATTEMPTS = 5  # host.json extensions.queues.maxDequeueCount


class Busy(RuntimeError):
    """Another delivery holds the work item's lease; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def handle_or_defer(
    storage: Storage, queue_name: str, body: bytes, message_id: str, handle: Callable[[], Awaitable[str]]
) -> str:
    """A queue function's work for one message: ``handle()``, or, when the work is busy or must wait
    (:class:`Busy`), the message sent again for later -- ending normally, so that the host's retry
    budget is not spent on what is no failure."""
    try:
        return await handle()
    except Busy as busy:
        await defer_message(storage, queue_name, body, busy.retry_after)
        log.info("%s message %s deferred: %s", queue_name, message_id, busy)
        return "deferred"


async def defer_message(storage: Storage, queue_name: str, body: bytes | str, seconds: float) -> None:
    """Send the message again, invisible for ``seconds``: how a queue function puts off work that is
    not a failure (another delivery holds it, or it must wait) without spending the host's retry
    budget (a raised exception counts towards maxDequeueCount and ends in the poison queue)."""
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
    await storage.queue(queue_name).send_message(
        text, visibility_timeout=max(1, min(int(seconds) + 1, 7 * 24 * 3600))
    )


@dataclass
class DrainResult:
    processed: int = 0
    poisoned: list[str] = field(default_factory=list)  # message bodies moved to the poison queue
    errors: list[BaseException] = field(default_factory=list)  # the last error of each poisoned message
    deferred: int = 0  # messages left for later (another delivery holds the lease)


Handler = Callable[[bytes, str, int], Awaitable[Any]]


PoisonHandler = Callable[[bytes], Awaitable[None]]


PROCESSING_VISIBILITY = 300  # seconds a received message stays invisible while it is worked on


async def drain_queue(
    storage: Storage,
    name: str,
    handler: Handler,
    *,
    max_messages: int | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    retry_base: float = 0.05,
) -> DrainResult:
    """What the Functions host does for a queue trigger, in-process: run ``handler`` for every message,
    retry a failing one (backoff) up to ``max_attempts`` deliveries, then move it to ``<name>-poison``."""
    queue = storage.queue(name)
    poison = storage.queue(f"{name}-poison")
    result = DrainResult()
    while max_messages is None or result.processed < max_messages:
        message = await queue.receive_message(visibility_timeout=PROCESSING_VISIBILITY)
        if message is None:
            break
        content = message.content if isinstance(message.content, str) else str(message.content)
        body = content.encode("utf-8")
        try:
            await handler(body, str(message.id), int(message.dequeue_count or 1))
        except Busy as exc:
            # Not a failure: the holder finishes it, and this delivery then finds nothing to do.
            await queue.update_message(message, visibility_timeout=max(1, int(exc.retry_after) + 1))
            result.deferred += 1
            continue
        except Exception as exc:
            attempts = int(message.dequeue_count or 1)
            if attempts >= max_attempts:
                log.error(
                    "%s: message %s failed %d times; moving it to %s-poison: %s",
                    name,
                    message.id,
                    attempts,
                    name,
                    exc,
                )
                await poison.send_message(content)
                await queue.delete_message(message)
                result.poisoned.append(content)
                result.errors.append(exc)
                result.processed += 1
            else:
                log.warning("%s: message %s failed (attempt %d): %s", name, message.id, attempts, exc)
                await asyncio.sleep(min(2.0, retry_base * 2 ** (attempts - 1)))
                await queue.update_message(message, visibility_timeout=0)
            continue
        await queue.delete_message(message)
        result.processed += 1
    return result


async def drain_poison(storage: Storage, name: str, handler: PoisonHandler) -> int:
    """Run the poison-queue function's work for every message in ``<name>-poison``."""
    queue = storage.queue(f"{name}-poison")
    handled = 0
    while True:
        message = await queue.receive_message(visibility_timeout=PROCESSING_VISIBILITY)
        if message is None:
            return handled
        content = message.content if isinstance(message.content, str) else str(message.content)
        await handler(content.encode("utf-8"))
        await queue.delete_message(message)
        handled += 1
