"""The Partner Center App+User credential: access tokens are cached until they near their expiry (MSAL
redeems a refresh token at the identity provider on every call), the rotated refresh token replaces
the old one and is written to Key Vault (the emulator's vault route), and a refusal is one clear
PermissionError."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import httpx
import pytest
import time_machine

from shared.microsoft.partner_center import PartnerCenterClient
from shared.platform.identity import (
    EARLY_REFRESH_SECONDS,
    PARTNER_CENTER_SCOPE,
    REFRESH_TOKEN_LIFETIME_SECONDS,
    KeyVaultSecret,
    RefreshTokenCredential,
    StaticTokenCredential,
    partner_center_credential,
)
from shared.platform.settings import SettingsError
from tests.conftest import load_example, settings_with


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
            return {
                "error": "invalid_grant",
                "error_description": "AADSTS700082: The refresh token has expired",
            }
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


# --- the rotated refresh token is kept in Key Vault ------------------------------------------------

SECRET = "partner-center-refresh-token"


def vault_credential(
    emulator: Any, token_in_setting: str = "refresh-setting"
) -> tuple[RefreshTokenCredential, IdentityProvider, KeyVaultSecret]:
    store = KeyVaultSecret(f"{emulator.url}/keyvault/secrets/{SECRET}", StaticTokenCredential())
    made = RefreshTokenCredential(
        "6513270e-269e-4d37-b2a7-4de452e6b438", "app", "secret", token_in_setting, store
    )
    provider = IdentityProvider()
    made._app = provider
    return made, provider, store


def vault_versions(emulator: Any) -> list[str]:
    return [
        entry["body"]["value"]
        for entry in emulator.log()
        if entry["method"] == "PUT" and entry["path"].endswith(f"/secrets/{SECRET}")
    ]


def test_the_rotated_refresh_token_is_written_to_key_vault_and_read_back_after_a_restart(
    emulator: Any,
) -> None:
    made, provider, store = vault_credential(emulator)
    store.set("refresh-deployed")  # what the deployment wrote; the app setting's reference may be a day older
    with time_machine.travel("2026-11-21T00:00:00Z", tick=False) as clock:
        made.get_token(PARTNER_CENTER_SCOPE)
        assert provider.calls == ["refresh-deployed"]  # the vault's newest, not the app setting's
        assert store.get() == "refresh-1"
        clock.shift(3600)
        made.get_token(PARTNER_CENTER_SCOPE)
    assert store.get() == "refresh-2" and vault_versions(emulator) == [
        "refresh-deployed",
        "refresh-1",
        "refresh-2",
    ]
    # A new process (a restart, a second instance) starts from the newest version.
    again, provider_again, _ = vault_credential(emulator)
    provider_again.calls = []
    again.get_token(PARTNER_CENTER_SCOPE)
    assert provider_again.calls == ["refresh-2"]


def test_a_stored_version_carries_the_refresh_tokens_lifetime_as_its_expiry(emulator: Any) -> None:
    made, _, store = vault_credential(emulator)
    made.get_token(PARTNER_CENTER_SCOPE)
    bundle = httpx.get(store.url, params={"api-version": "7.4"}, headers={"Authorization": "Bearer x"}).json()
    assert bundle["value"] == "refresh-1"
    assert abs(bundle["attributes"]["exp"] - (time.time() + REFRESH_TOKEN_LIFETIME_SECONDS)) < 120


def test_a_vault_that_refuses_the_write_leaves_the_token_working_and_says_so(
    emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = load_example()
    scenario["missingPermissions"] = ["Key Vault Secrets Officer"]
    emulator.post_scenario(scenario)
    made, provider, store = vault_credential(emulator)
    with caplog.at_level(logging.ERROR, logger="shared.platform.identity"):
        assert made.get_token(PARTNER_CENTER_SCOPE).token == "access-1"
    assert made.unsaved and "ForbiddenByRbac" in made.unsaved
    assert "not saved to Key Vault" in caplog.text
    assert store.get() is None  # the reader role still reads; nothing was written


def test_a_vault_that_cannot_be_read_falls_back_to_the_app_setting(emulator: Any) -> None:
    scenario = load_example()
    scenario["missingPermissions"] = ["Key Vault Secrets Officer", "Key Vault Secrets User"]
    emulator.post_scenario(scenario)
    made, provider, _ = vault_credential(emulator, token_in_setting="refresh-setting")
    made.get_token(PARTNER_CENTER_SCOPE)
    assert provider.calls == ["refresh-setting"]


def test_the_vault_route_wants_a_token_and_an_api_version(emulator: Any) -> None:
    url = f"{emulator.url}/keyvault/secrets/{SECRET}"
    unauthenticated = httpx.get(url, params={"api-version": "7.4"})
    assert unauthenticated.status_code == 401 and "resource=" in unauthenticated.headers["WWW-Authenticate"]
    assert httpx.get(url, headers={"Authorization": "Bearer x"}).status_code == 400
    missing = httpx.get(url, params={"api-version": "7.4"}, headers={"Authorization": "Bearer x"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SecretNotFound"


def test_the_secret_uri_setting_is_checked_and_builds_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="PARTNER_CENTER_REFRESH_TOKEN_SECRET_URI"):
        settings_with(PARTNER_CENTER_REFRESH_TOKEN_SECRET_URI="https://kv.vault.azure.net/keys/x")
    settings = settings_with(
        PARTNER_CENTER_REFRESH_TOKEN_SECRET_URI="https://kv-dam-x.vault.azure.net/secrets/partner-center-refresh-token",
        PARTNER_CENTER_APP_ID="app",
        PARTNER_CENTER_APP_SECRET="s",
        PARTNER_CENTER_REFRESH_TOKEN="r",
        PARTNER_TENANT_ID="6513270e-269e-4d37-b2a7-4de452e6b438",
        EMULATOR_URL="",
    )
    made = partner_center_credential(settings)
    assert isinstance(made, RefreshTokenCredential) and isinstance(made._store, KeyVaultSecret)
    assert made._store.url == "https://kv-dam-x.vault.azure.net/secrets/partner-center-refresh-token"
    assert made._store._scope == "https://vault.azure.net/.default"
