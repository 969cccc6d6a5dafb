"""Credentials: managed identity in Azure, App+User for Partner Center, a fixed token for the emulator."""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import AccessToken

from shared.settings import Settings, SettingsError

DEVELOPMENT_TOKEN = "development-token"  # noqa: S105 - the emulator accepts any bearer token
PARTNER_CENTER_SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
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
        import msal  # azure-identity's own dependency

        self._app = msal.ConfidentialClientApplication(
            client_id, client_credential=client_secret,
            authority=f"https://login.microsoftonline.com/{tenant_id or 'organizations'}")
        self._refresh_token = refresh_token
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            result = self._app.acquire_token_by_refresh_token(self._refresh_token, scopes=list(scopes))
        if "access_token" not in result:
            raise PermissionError(f"Partner Center token refused: {result.get('error_description', result)}")
        if result.get("refresh_token"):
            self._refresh_token = result["refresh_token"]
        return AccessToken(result["access_token"], int(time.time()) + int(result.get("expires_in", 3600)))


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
