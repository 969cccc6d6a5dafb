"""The client-side pace of Graph's sign-in log (shared.platform.ratelimit): 5 requests per 10 s per tenant."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shared.platform.ratelimit import SIGNIN_MAX_REQUESTS, SIGNIN_WINDOW_SECONDS, SlidingWindowLimiter
from shared.platform.settings import Settings, SettingsError
from shared.relationships.sync import sync_relationships
from shared.services import Services
from shared.signins.ingestion import ingest_sign_ins


def test_no_window_ever_holds_more_than_the_limit() -> None:
    limiter = SlidingWindowLimiter(max_requests=5, per_seconds=0.3)
    starts: list[float] = []

    async def request() -> None:
        async with limiter.slot():
            starts.append(time.monotonic())

    async def go() -> None:
        await asyncio.gather(*(request() for _ in range(13)))

    began = time.monotonic()
    asyncio.run(go())
    assert len(starts) == 13
    assert starts[-1] - began >= 0.6 - 0.02  # 5 at once, 5 a window later, 3 two windows later
    for i, start in enumerate(starts):
        in_window = [s for s in starts[i:] if s - start < 0.3 - 0.005]
        assert len(in_window) <= 5, starts
    assert limiter.waited > 0


def test_a_slot_counts_from_the_answer_not_the_start() -> None:
    """The service counts a request when it arrives: a slow answer keeps its slot for a whole window
    after it, so the next window's first request cannot reach the service inside this window."""
    limiter = SlidingWindowLimiter(max_requests=2, per_seconds=0.2)
    starts: list[float] = []

    async def request(answer_after: float) -> None:
        async with limiter.slot():
            starts.append(time.monotonic())
            await asyncio.sleep(answer_after)

    async def go() -> None:
        await asyncio.gather(request(0.15), request(0.15), request(0.0))

    began = time.monotonic()
    asyncio.run(go())
    # The third waits for the first answers (0.15 s) plus a window (0.2 s), not just a window from the starts.
    assert starts[2] - began >= 0.35 - 0.02, starts


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0, 10)
    with pytest.raises(ValueError):
        SlidingWindowLimiter(5, 0)


def test_the_pace_is_a_setting_not_a_switch_on_the_emulator(env: dict[str, str]) -> None:
    """The same code paces the emulator and Graph: SIGNIN_PACE decides (default Graph's 5 per 10 s),
    never whether EMULATOR_URL is set."""
    assert (SIGNIN_MAX_REQUESTS, SIGNIN_WINDOW_SECONDS) == (5, 10.0)

    async def limiter_of(values: dict[str, Any]) -> Any:
        services = Services(Settings.from_env(values))
        try:
            return services.graph.sign_in_limiter
        finally:
            await services.close()

    base = {k: v for k, v in env.items() if k != "SIGNIN_PACE"}
    default = asyncio.run(limiter_of(base))
    assert isinstance(default, SlidingWindowLimiter) and (default.max_requests, default.per_seconds) == (
        5,
        10.0,
    )
    shortened = asyncio.run(limiter_of(base | {"SIGNIN_PACE": "50/0.5s"}))
    assert (shortened.max_requests, shortened.per_seconds) == (50, 0.5)
    assert asyncio.run(limiter_of(base | {"SIGNIN_PACE": "off"})) is None
    for bad in ("5", "0/10s", "five/10s", "5/0s"):
        with pytest.raises(SettingsError, match="SIGNIN_PACE"):
            Settings.from_env(base | {"SIGNIN_PACE": bad})


def test_every_sign_in_page_waits_for_the_limiter(env: dict[str, str]) -> None:
    from shared.platform.timeutil import parse_iso
    from tests.conftest import settings_with

    async def go() -> tuple[int, dict[str, Any]]:
        async with Services(settings_with()) as services:
            limiter = services.graph.sign_in_limiter = SlidingWindowLimiter(max_requests=8, per_seconds=0.2)
            acquired = 0
            original = limiter.acquire

            async def counting() -> Any:
                nonlocal acquired
                acquired += 1
                return await original()

            limiter.acquire = counting  # type: ignore[method-assign]
            await sync_relationships(services, parse_iso("2026-11-21T00:00:00Z"))
            result = await ingest_sign_ins(services, parse_iso("2026-11-21T00:00:00Z"))
            return acquired, result

    acquired, result = asyncio.run(go())
    assert result["slices"] == 31 and acquired >= 31  # one request per slice at least, each one paced
