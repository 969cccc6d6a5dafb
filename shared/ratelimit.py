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
import time
from collections import deque
from collections.abc import Callable

SIGNIN_MAX_REQUESTS = 5  # per app per tenant ...
SIGNIN_WINDOW_SECONDS = 10.0  # ... per this many seconds (Graph throttling limits, identity reports)


class SlidingWindowLimiter:
    """``await limiter.acquire()`` before each request: at most ``max_requests`` starts per window."""

    def __init__(self, max_requests: int = SIGNIN_MAX_REQUESTS, per_seconds: float = SIGNIN_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_requests < 1 or per_seconds <= 0:
            raise ValueError("max_requests >= 1 and per_seconds > 0 are required")
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self._clock = clock
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()
        self.waited = 0.0  # total seconds spent waiting (telemetry, benchmarks)

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: requests start in the order they asked
            while True:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self.per_seconds:
                    self._starts.popleft()
                if len(self._starts) < self.max_requests:
                    self._starts.append(now)
                    return
                delay = self.per_seconds - (now - self._starts[0])
                self.waited += delay
                await asyncio.sleep(delay)
