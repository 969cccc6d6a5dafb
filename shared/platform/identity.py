"""Credentials: managed identity in Azure, App+User for Partner Center, a fixed token for the emulator."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from azure.core.credentials import AccessToken

from shared.platform.settings import Settings, SettingsError

DEVELOPMENT_TOKEN = "development-token"  # the emulator accepts any bearer token
GRAPH_AUDIENCE = "https://graph.microsoft.com"
PARTNER_CENTER_SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
EARLY_REFRESH_SECONDS = 300  # a cached access token is renewed this long before it expires
CUSTOMER_ADMIN_SCOPE = "https://api.partnercustomeradministration.microsoft.com/.default"
# Key Vault's data plane (https://learn.microsoft.com/rest/api/keyvault/secrets/set-secret/set-secret):
# GET/PUT {vault}/secrets/{name}?api-version=7.4, OAuth scope https://vault.azure.net/.default (the
# sovereign clouds have their own vault suffix and audience).
KEY_VAULT_API_VERSION = "7.4"
KEY_VAULT_AUDIENCES = {
    ".vault.azure.cn": "https://vault.azure.cn/.default",
    ".vault.usgovcloudapi.net": "https://vault.usgovcloudapi.net/.default",
    ".vault.microsoftazure.de": "https://vault.microsoftazure.de/.default",
}
KEY_VAULT_SCOPE = "https://vault.azure.net/.default"
# Entra ID refresh tokens are valid for 90 days of inactivity; each rotated one starts that count again
# (https://learn.microsoft.com/entra/identity-platform/refresh-tokens#token-lifetime). The stored
# version carries the date as its expiry, which the vault shows and Azure Monitor can alert on.
REFRESH_TOKEN_LIFETIME_SECONDS = 90 * 24 * 3600

log = logging.getLogger(__name__)


class SecretStore(Protocol):
    def get(self) -> str | None: ...

    def set(self, value: str) -> None: ...


class KeyVaultSecret:
    """One Key Vault secret read and written through the data plane with the app's identity.

    ``secret_uri`` is the version-less secret identifier (``https://<vault>.vault.azure.net/secrets/<name>``).
    A read answers the newest version; a write adds a version. Synchronous: it is called from the
    credential, which runs in a worker thread."""

    def __init__(self, secret_uri: str, credential: Any, *, timeout: float = 30.0) -> None:
        parts = urlsplit(secret_uri.strip())
        segments = [s for s in parts.path.split("/") if s]
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or len(segments) < 2
            or segments[-2].lower() != "secrets"
        ):
            raise SettingsError(
                f"PARTNER_CENTER_REFRESH_TOKEN_SECRET_URI must be a Key Vault secret URI "
                f"(https://<vault>.vault.azure.net/secrets/<name>), not {secret_uri!r}"
            )
        self.url = f"{parts.scheme}://{parts.netloc}/{'/'.join(segments)}"
        host = parts.hostname or ""
        self._scope = next(
            (scope for suffix, scope in KEY_VAULT_AUDIENCES.items() if host.endswith(suffix)), KEY_VAULT_SCOPE
        )
        self._credential = credential
        self._timeout = timeout

    def _call(self, method: str, body: dict[str, Any] | None = None) -> httpx.Response:
        token = self._credential.get_token(self._scope).token
        response = httpx.request(
            method,
            self.url,
            params={"api-version": KEY_VAULT_API_VERSION},
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=self._timeout,
        )
        return response

    def get(self) -> str | None:
        """The newest version's value; None when the secret does not exist."""
        response = self._call("GET")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise PermissionError(
                f"Key Vault {self.url}: GET answered {response.status_code} {_vault_error(response)}"
            )
        return str(response.json().get("value") or "") or None

    def set(self, value: str) -> None:
        expires = int(time.time()) + REFRESH_TOKEN_LIFETIME_SECONDS
        response = self._call(
            "PUT",
            {"value": value, "contentType": "text/plain", "attributes": {"enabled": True, "exp": expires}},
        )
        if response.status_code != 200:
            raise PermissionError(
                f"Key Vault {self.url}: PUT answered {response.status_code} {_vault_error(response)}"
            )


def _vault_error(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return response.text[:200]
    inner = (error.get("innererror") or {}).get("code")
    return " ".join(str(part) for part in (error.get("code"), inner, error.get("message")) if part)


def development_token(client_id: str = "") -> str:
    """The emulator's bearer token for an identity: unsigned, a JWT whose ``appid`` claim names the client
    id (as Entra ID's access tokens do), so the emulator can refuse what that identity was not granted
    (its scenario's "identities"); no client id: the plain development token."""
    if not client_id:
        return DEVELOPMENT_TOKEN

    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'appid': client_id, 'aud': GRAPH_AUDIENCE})}."


class StaticTokenCredential:
    """A TokenCredential that always answers the same token (emulator only)."""

    def __init__(self, token: str = DEVELOPMENT_TOKEN) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


class RefreshTokenCredential:
    """App+User credential for the Partner Center APIs that refuse app-only tokens (DAP).

    The refresh token is issued once by a partner admin consenting the app (docs/deploy.md) and is
    kept in Key Vault; MSAL redeems it for the scope asked and caches the access tokens. Each
    redemption answers a new refresh token: with a ``store`` (the vault's secret) the newest one is
    read from it on first use -- an app setting's Key Vault reference is resolved at start-up and
    cached for up to a day -- and every rotated one is written back, so the token the app holds is
    always the youngest and its 90-day lifetime keeps moving while the app runs.
    """

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        store: SecretStore | None = None,
    ) -> None:
        self._authority = f"https://login.microsoftonline.com/{tenant_id or 'organizations'}"
        self._client_id, self._client_secret = client_id, client_secret
        self._app: Any = None  # MSAL's client, made on first use (it reads the authority's metadata)
        self._apps: dict[str, Any] = {}  # MSAL's clients of other tenants' authorities (tenant_id=)
        self._refresh_token = refresh_token
        self._store = store
        self._loaded = store is None
        self._lock = threading.Lock()
        self._tokens: dict[str, AccessToken] = {}
        self.unsaved: str | None = None  # why the latest rotated token could not be stored, if it could not

    def _load(self) -> None:
        """Prefer the vault's newest version over the (possibly day-old) app setting."""
        self._loaded = True
        assert self._store is not None
        try:
            stored = self._store.get()
        except (PermissionError, httpx.HTTPError) as exc:
            log.error(
                "Partner Center refresh token: cannot read it from Key Vault (%s); using the app setting", exc
            )
            return
        if stored:
            self._refresh_token = stored

    def _save(self, refresh_token: str) -> None:
        assert self._store is not None
        try:
            self._store.set(refresh_token)
        except (PermissionError, httpx.HTTPError) as exc:
            # The token in memory still works; the one in the vault keeps its own 90 days. Loud, not fatal.
            self.unsaved = str(exc)
            log.error("Partner Center refresh token rotated but not saved to Key Vault: %s", exc)
        else:
            self.unsaved = None

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """An access token for ``scopes``, from the cache while it has more than five minutes left.

        MSAL documents ``acquire_token_by_refresh_token`` as always going to the identity provider (it
        is meant for migrating a refresh token, not for every call), so the access token is kept here
        until it nears its expiry; the refresh token it returns (rotated) replaces the old one."""
        # ``tenant_id`` (azure-core's keyword): the token is issued by that tenant's authority -- a customer
        # tenant for Resource Manager -- from the same refresh token, which stays one rotating chain.
        tenant = str(kwargs.get("tenant_id") or "")
        authority = f"https://login.microsoftonline.com/{tenant}" if tenant else self._authority
        key = tenant + "|" + " ".join(sorted(scopes))
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.expires_on - time.time() > EARLY_REFRESH_SECONDS:
                return cached
            if not self._loaded:
                self._load()
            app = self._apps.get(authority) if tenant else self._app
            if app is None:
                import msal  # azure-identity's own dependency

                app = msal.ConfidentialClientApplication(
                    self._client_id, client_credential=self._client_secret, authority=authority
                )
                if tenant:
                    self._apps[authority] = app
                else:
                    self._app = app
            result = app.acquire_token_by_refresh_token(self._refresh_token, scopes=list(scopes))
            if "access_token" not in result:
                raise PermissionError(
                    f"Partner Center token refused: {result.get('error_description', result)}"
                )
            rotated = result.get("refresh_token")
            if rotated and rotated != self._refresh_token:
                self._refresh_token = rotated
                if self._store is not None:
                    self._save(rotated)
            token = AccessToken(
                result["access_token"], int(time.time()) + int(result.get("expires_in", 3600))
            )
            self._tokens[key] = token
            return token


def graph_credential(settings: Settings, client_id: str = "") -> Any:
    """The credential of one managed identity (``client_id``; empty: the app's own, AZURE_CLIENT_ID)."""
    client_id = client_id or settings.azure_client_id
    if settings.emulator_url:
        return StaticTokenCredential(development_token(client_id))
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id or None)


def own_identity_credential(settings: Settings, client_id: str) -> Any:
    """The credential of a job's own identity (GRAPH_WRITE_CLIENT_ID, MAIL_CLIENT_ID), or None when the
    job runs as the app's (the setting is empty or names AZURE_CLIENT_ID)."""
    same = client_id in ("", settings.azure_client_id)
    return None if same else graph_credential(settings, client_id)


def tenant_development_token(tenant_id: str) -> str:
    """The emulator's bearer token for Resource Manager in one customer tenant: an unsigned JWT whose
    ``tid`` claim names the tenant that issued it, as Entra ID's access tokens do."""

    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"tid": tenant_id, "aud": "https://management.azure.com"}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class TenantDevelopmentCredential:
    """The emulator's credential for Resource Manager: a token naming the tenant asked for (``tenant_id``)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(
            tenant_development_token(str(kwargs.get("tenant_id") or "")), int(time.time()) + 3600
        )


def resource_manager_credential(settings: Settings, partner_center: Any = None) -> Any:
    """The credential for Azure Resource Manager in customer tenants, asked with ``tenant_id=``.

    Azure access of a CSP partner is its users' (members of Admin Agents, or of a GDAP group with an
    Azure role), reached through the customer tenant's own authority: the Partner Center App+User
    refresh token (the secure application model the DAP calls use) redeemed at
    ``login.microsoftonline.com/{customer tenant}`` for Resource Manager -- the same credential object
    as Partner Center's (``partner_center``) when there is one, so the refresh token stays one rotating
    chain. A managed identity cannot be issued tokens by another tenant. Against the emulator: an
    unsigned token naming the tenant."""
    if settings.emulator_url:
        return TenantDevelopmentCredential()
    return partner_center if partner_center is not None else partner_center_credential(settings)


def resource_manager_configured(settings: Settings) -> bool:
    """Whether Azure role assignments can be read: the App+User credentials are set (or the emulator)."""
    return bool(
        settings.emulator_url
        or (
            settings.partner_center_app_id
            and settings.partner_center_app_secret
            and settings.partner_center_refresh_token
        )
    )


def partner_center_credential(settings: Settings) -> Any:
    if settings.emulator_url:
        return StaticTokenCredential()
    missing = [
        name
        for name, value in (
            ("PARTNER_CENTER_APP_ID", settings.partner_center_app_id),
            ("PARTNER_CENTER_APP_SECRET", settings.partner_center_app_secret),
            ("PARTNER_CENTER_REFRESH_TOKEN", settings.partner_center_refresh_token),
        )
        if not value
    ]
    if missing:
        raise SettingsError(
            f"DAP needs Partner Center App+User credentials: set {', '.join(missing)} (or DAP_ENABLED=false)"
        )
    store = None
    if settings.partner_center_refresh_token_secret_uri:
        store = KeyVaultSecret(settings.partner_center_refresh_token_secret_uri, graph_credential(settings))
    return RefreshTokenCredential(
        settings.partner_tenant_id,
        settings.partner_center_app_id,
        settings.partner_center_app_secret,
        settings.partner_center_refresh_token,
        store,
    )


def storage_credential(settings: Settings) -> Any:
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None)
