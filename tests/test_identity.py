"""The Partner Center App+User credential: access tokens are cached until they near their expiry (MSAL
redeems a refresh token at the identity provider on every call), the rotated refresh token replaces
the old one, and a refusal is one clear PermissionError."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import time_machine

from shared.identity import EARLY_REFRESH_SECONDS, PARTNER_CENTER_SCOPE, RefreshTokenCredential
from shared.partner_center import PartnerCenterClient


class IdentityProvider:
    """Stands in for MSAL's network call only: it records what it was given and rotates tokens."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.threads: list[int] = []
        self.refuse = False

    def acquire_token_by_refresh_token(self, refresh_token: str, scopes: list[str]) -> dict[str, Any]:
        self.calls.append(refresh_token)
        self.threads.append(threading.get_ident())
        if self.refuse:
            return {"error": "invalid_grant", "error_description": "AADSTS700082: The refresh token has expired"}
        n = len(self.calls)
        return {"access_token": f"access-{n}", "refresh_token": f"refresh-{n}", "expires_in": 3600}


def credential() -> tuple[RefreshTokenCredential, IdentityProvider]:
    made = RefreshTokenCredential("6513270e-269e-4d37-b2a7-4de452e6b438", "app", "secret", "refresh-0")
    provider = IdentityProvider()
    made._app = provider  # the one network-facing object
    return made, provider


def test_access_tokens_are_cached_and_refresh_tokens_rotate() -> None:
    made, provider = credential()
    with time_machine.travel("2026-11-21T00:00:00Z", tick=False) as clock:
        first = made.get_token(PARTNER_CENTER_SCOPE)
        assert [made.get_token(PARTNER_CENTER_SCOPE).token for _ in range(5)] == ["access-1"] * 5
        assert provider.calls == ["refresh-0"] and first.token == "access-1"
        clock.shift(3600 - EARLY_REFRESH_SECONDS + 1)  # within five minutes of its expiry: renewed
        assert made.get_token(PARTNER_CENTER_SCOPE).token == "access-2"
    assert provider.calls == ["refresh-0", "refresh-1"]  # the rotated refresh token was used


def test_a_refused_refresh_token_is_one_clear_error() -> None:
    made, provider = credential()
    provider.refuse = True
    with pytest.raises(PermissionError, match="AADSTS700082"):
        made.get_token(PARTNER_CENTER_SCOPE)


def test_token_calls_run_off_the_event_loop() -> None:
    made, provider = credential()

    async def go() -> int:
        client = PartnerCenterClient("http://127.0.0.1:9", "http://127.0.0.1:9", made)
        try:
            await client._token(PARTNER_CENTER_SCOPE)
        finally:
            await client.close()
        return threading.get_ident()

    loop_thread = asyncio.run(go())
    assert provider.threads and provider.threads[0] != loop_thread
