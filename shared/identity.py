"""Credentials: managed identity in Azure, App+User for Partner Center, a fixed token for the emulator."""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import AccessToken

from shared.settings import Settings, SettingsError

DEVELOPMENT_TOKEN = "development-token"  # noqa: S105 - the emulator accepts any bearer token
PARTNER_CENTER_SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
EARLY_REFRESH_SECONDS = 300  # a cached access token is renewed this long before it expires
CUSTOMER_ADMIN_SCOPE = "https://api.partnercustomeradministration.microsoft.com/.default"


class StaticTokenCredential:
    """A TokenCredential that always answers the same token (emulator only)."""

    def __init__(self, token: str = DEVELOPMENT_TOKEN) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


class RefreshTokenCredential:
    """App+User credential for the Partner Center APIs that refuse app-only tokens (DAP).

    The refresh token is issued once by a partner admin consenting the app (docs/deploy.md) and is
    kept in Key Vault; MSAL redeems it for the scope asked and caches the access tokens.
    """

    def __init__(self, tenant_id: str, client_id: str, client_secret: str, refresh_token: str) -> None:
        self._authority = f"https://login.microsoftonline.com/{tenant_id or 'organizations'}"
        self._client_id, self._client_secret = client_id, client_secret
        self._app: Any = None  # MSAL's client, made on first use (it reads the authority's metadata)
        self._refresh_token = refresh_token
        self._lock = threading.Lock()
        self._tokens: dict[str, AccessToken] = {}

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """An access token for ``scopes``, from the cache while it has more than five minutes left.

        MSAL documents ``acquire_token_by_refresh_token`` as always going to the identity provider (it
        is meant for migrating a refresh token, not for every call), so the access token is kept here
        until it nears its expiry; the refresh token it returns (rotated) replaces the old one."""
        key = " ".join(sorted(scopes))
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.expires_on - time.time() > EARLY_REFRESH_SECONDS:
                return cached
            if self._app is None:
                import msal  # azure-identity's own dependency

                self._app = msal.ConfidentialClientApplication(
                    self._client_id, client_credential=self._client_secret, authority=self._authority)
            result = self._app.acquire_token_by_refresh_token(self._refresh_token, scopes=list(scopes))
            if "access_token" not in result:
                raise PermissionError(f"Partner Center token refused: {result.get('error_description', result)}")
            if result.get("refresh_token"):
                self._refresh_token = result["refresh_token"]
            token = AccessToken(result["access_token"], int(time.time()) + int(result.get("expires_in", 3600)))
            self._tokens[key] = token
            return token


def graph_credential(settings: Settings) -> Any:
    if settings.emulator_url:
        return StaticTokenCredential()
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None)


def partner_center_credential(settings: Settings) -> Any:
    if settings.emulator_url:
        return StaticTokenCredential()
    missing = [name for name, value in (
        ("PARTNER_CENTER_APP_ID", settings.partner_center_app_id),
        ("PARTNER_CENTER_APP_SECRET", settings.partner_center_app_secret),
        ("PARTNER_CENTER_REFRESH_TOKEN", settings.partner_center_refresh_token)) if not value]
    if missing:
        raise SettingsError(
            f"DAP needs Partner Center App+User credentials: set {', '.join(missing)} (or DAP_ENABLED=false)")
    return RefreshTokenCredential(settings.partner_tenant_id, settings.partner_center_app_id,
                                  settings.partner_center_app_secret, settings.partner_center_refresh_token)


def storage_credential(settings: Settings) -> Any:
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None)
