"""Client-side request limit for Microsoft Graph's sign-in log.

Graph serves the identity and access reports (``/auditLogs/signIns``) at most **five requests per ten
seconds per app per tenant** (reference 5.1). Exceeding it earns 429s with Retry-After, which the
SDK's retry handler honours -- but each 429 still costs a round trip and the retries of concurrent
slices pile up. So the product paces itself: at most ``max_requests`` requests are *started* in any
window of ``per_seconds`` (a sliding window, stricter than a token bucket, which would allow a burst
of 2 x max_requests across a window boundary).

Steady state: 5 pages of up to 1,000 sign-ins per 10 s = 500 sign-ins/s, 1.8 M per hour -- the
ceiling Graph sets, far below what ingestion can process (see docs/performance.md). The limit is
per process; the sign-in log is read by the ingestion timer, a singleton, and by the removal
re-check (one request per removal), whose rare 429s the retry handler absorbs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

SIGNIN_MAX_REQUESTS = 5  # per app per tenant ...
SIGNIN_WINDOW_SECONDS = 10.0  # ... per this many seconds (Graph throttling limits, identity reports)


IN_FLIGHT_POLL = 0.005  # seconds between looks while every slot's request is still in flight


@dataclass
class Slot:
    """One request's place in the window: in flight until ``answered_at`` is set."""

    answered_at: float | None = None


class SlidingWindowLimiter:
    """``await limiter.acquire()`` before each request: at most ``max_requests`` starts per window."""

    def __init__(
        self,
        max_requests: int = SIGNIN_MAX_REQUESTS,
        per_seconds: float = SIGNIN_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_requests < 1 or per_seconds <= 0:
            raise ValueError("max_requests >= 1 and per_seconds > 0 are required")
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self._clock = clock
        self._starts: deque[Slot] = deque()
        self._lock = asyncio.Lock()
        self.waited = 0.0  # total seconds spent waiting (telemetry, benchmarks)

    async def acquire(self) -> Slot:
        """Wait for a slot; the caller reports the answer with :meth:`answered` (``slot`` context).

        A slot is held while its request is in flight and for ``per_seconds`` after its answer: the
        service counts a request when it arrives, which is after it was started, so counting from the
        start lets the next window's first request reach the service inside the previous window (a
        429 at nearly every window edge, whose SDK retry takes yet another slot)."""
        async with self._lock:  # FIFO: requests start in the order they asked
            while True:
                now = self._clock()
                while (
                    self._starts
                    and self._starts[0].answered_at is not None
                    and now - self._starts[0].answered_at >= self.per_seconds
                ):
                    self._starts.popleft()
                live = [
                    s for s in self._starts if s.answered_at is None or now - s.answered_at < self.per_seconds
                ]
                self._starts = deque(live)
                if len(live) < self.max_requests:
                    slot = Slot()
                    self._starts.append(slot)
                    return slot
                answered = [s.answered_at for s in live if s.answered_at is not None]
                delay = max(0.001, min(answered) + self.per_seconds - now) if answered else IN_FLIGHT_POLL
                self.waited += delay
                await asyncio.sleep(delay)

    def answered(self, slot: Slot) -> None:
        """The request's answer arrived (or it failed): its slot counts from now."""
        slot.answered_at = self._clock()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with limiter.slot():`` around one request."""
        taken = await self.acquire()
        try:
            yield
        finally:
            self.answered(taken)
