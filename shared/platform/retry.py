"""Retry policy shared by the Graph and Partner Center clients.

Status-code retries (429 and 5xx with Retry-After) happen inside the HTTP pipelines; this module
covers what those pipelines do not: a connection reset, a timeout, a truncated body.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import httpx

T = TypeVar("T")
log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# 500 and 502 may come after a change took effect (the service failed while answering): a terminate
# request, a DAP PATCH or a sendMail resent on them could act twice. They are retried for reads only;
# 429, 503 and 504 say the request was not processed and are retried for every method.
READ_ONLY_RETRY_STATUSES = frozenset({500, 502})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def may_retry(method: str, status: int) -> bool:
    """Whether a request answered ``status`` may be sent again without risking a second effect."""
    if status not in RETRY_STATUSES:
        return False
    return status not in READ_ONLY_RETRY_STATUSES or method.upper() in SAFE_METHODS


MAX_RETRY_AFTER_SECONDS = 180.0


class UpstreamError(RuntimeError):
    """A Microsoft service still failed after retries. The CLI maps this to exit code 3."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header: an integer, a decimal, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_seconds(attempt: int, base: float) -> float:
    return min(30.0, base * (2**attempt)) + random.uniform(0, base)


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TransportError,  # resets, timeouts, truncated bodies (RemoteProtocolError)
    json.JSONDecodeError,
)


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = 4,
    base_delay: float = 0.5,
) -> T:
    """Run ``operation``, retrying transport-level faults with exponential backoff."""
    for attempt in range(attempts):
        try:
            return await operation()
        except TRANSIENT_ERRORS as exc:
            if attempt == attempts - 1:
                raise UpstreamError(f"{what}: {type(exc).__name__}: {exc}") from exc
            delay = backoff_seconds(attempt, base_delay)
            log.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


# Failures before the request left this machine: safe to send again, whatever the method.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


async def send_with_retries(
    send: Callable[[], Awaitable[httpx.Response]],
    *,
    method: str,
    what: str,
    ok: tuple[int, ...],
    max_retries: int,
    retry_base: float,
) -> httpx.Response:
    """One REST call (``send`` makes a fresh request each attempt, e.g. with a fresh token): the
    response once its status is in ``ok``, or the last one that is not (the caller says what it means).

    Network failures and throttling/5xx answers are retried with backoff, honouring ``Retry-After`` up to
    :data:`MAX_RETRY_AFTER_SECONDS`; a change that may have reached the service (its answer timed out or
    was cut) is not sent again blindly: :class:`UpstreamError`, and the caller re-reads the live state."""
    for attempt in range(max_retries + 1):
        try:
            response = await send()
            await response.aread()
        except httpx.TransportError as exc:
            if attempt == max_retries or (method != "GET" and not isinstance(exc, NOT_SENT)):
                raise UpstreamError(f"{what}: {type(exc).__name__}: {exc}") from exc
            await asyncio.sleep(backoff_seconds(attempt, retry_base))
            continue
        if response.status_code in ok:
            return response
        if may_retry(method, response.status_code) and attempt < max_retries:
            delay = retry_after_seconds(response.headers.get("Retry-After"))
            if delay is None:
                delay = backoff_seconds(attempt, retry_base)
            if delay < MAX_RETRY_AFTER_SECONDS:
                log.warning("%s answered %s; retrying in %.1fs", what, response.status_code, delay)
                await asyncio.sleep(delay)
                continue
        return response
    raise AssertionError("unreachable")
