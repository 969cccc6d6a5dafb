"""A lease kept alive while its holder works: the one heartbeat of removals and notifications.

A delivery that holds a row's lease (``lease_until``) renews it every quarter of the lease for as long
as it works, so that a Microsoft call held up by throttling (the SDKs honour ``Retry-After`` for
minutes) never lets the lease lapse under a live worker and hand the row to a second delivery. Writes
and renewals take turns (one ETag chain, :attr:`Heartbeat.turn`); a renewal moves only the lease's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from shared.platform.storage import ConflictingWrite
from shared.platform.timeutil import utcnow

log = logging.getLogger(__name__)


def lease_live(lease_until: datetime | None) -> bool:
    """Whether a lease that ends at ``lease_until`` is still held (its holder may be working now)."""
    return lease_until is not None and lease_until > utcnow()


class Heartbeat:
    """``renew()`` every ``every()`` seconds inside :meth:`kept`; ``renew`` returns False when there is
    nothing left to keep. A renewal that finds the row taken over ends the heartbeat (the holder's
    next write fails); any other error is retried at the next beat, well inside the lease."""

    def __init__(self, what: str, every: Callable[[], float], renew: Callable[[], Awaitable[bool]]) -> None:
        self.what = what
        self.every = every
        self.renew = renew
        self.turn = asyncio.Lock()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.every())
            try:
                async with self.turn:
                    if not await self.renew():
                        return
            except ConflictingWrite:
                log.warning("%s: the lease was taken over; the next write of this delivery fails", self.what)
                return
            except Exception as exc:
                log.warning("%s: could not renew the lease: %s", self.what, exc)

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        beat = asyncio.create_task(self._beat())
        try:
            yield
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
