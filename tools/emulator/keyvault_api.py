"""A Key Vault's secrets data plane: set a secret (a new version), get the newest or a given version,
RBAC refusals, and the 401 challenge of a request without a token."""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

from .wire import body_json, estate, missing_permissions, origin, pc_json, query_params

# Key Vault secrets (data plane): https://learn.microsoft.com/rest/api/keyvault/secrets/set-secret/set-secret
# and .../get-secret/get-secret. The vault is served under /keyvault/; a secret identifier is
# {vault}/secrets/{name}[/{version}], api-version is required, a PUT adds a version and answers the
# SecretBundle, a GET without version answers the newest, an unknown name is 404 SecretNotFound.
KEY_VAULT_SECRET_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
KEY_VAULT_READER = "Key Vault Secrets User"
KEY_VAULT_OFFICER = "Key Vault Secrets Officer"


def vault_error(status: int, code: str, message: str, inner: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return pc_json({"error": error}, status)


def _vault_bundle(request: web.Request, name: str, version: dict[str, Any]) -> dict[str, Any]:
    return {
        "value": version["value"],
        "contentType": version.get("contentType"),
        "id": f"{origin(request)}/keyvault/secrets/{name}/{version['version']}",
        "attributes": version["attributes"],
    }


async def kv_secret(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    if not query_params(request).get("api-version"):
        return vault_error(
            400, "BadParameter", "The request URI must contain the api-version query parameter."
        )
    e = estate(request)
    name = m["name"]
    missing = missing_permissions(request, e)
    writing = request.method.upper() == "PUT"
    action = "setSecret/action" if writing else "getSecret/action"
    if (KEY_VAULT_OFFICER.lower() in missing and writing) or (
        KEY_VAULT_OFFICER.lower() in missing and KEY_VAULT_READER.lower() in missing
    ):
        return vault_error(
            403,
            "Forbidden",
            "Caller is not authorized to perform action on resource. "
            f"Action: 'Microsoft.KeyVault/vaults/secrets/{action}'",
            "ForbiddenByRbac",
        )
    if not KEY_VAULT_SECRET_NAME.fullmatch(name):
        return vault_error(400, "BadParameter", f"The secret name '{name}' is not valid.")
    versions = e.vault.setdefault(name.lower(), []) if writing else e.vault.get(name.lower(), [])
    if writing:
        body = body_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            return vault_error(400, "BadParameter", "Property 'value' is required.")
        stamp = int(e.now.timestamp())
        attributes = {"enabled": True, "created": stamp, "updated": stamp, "recoveryLevel": "Recoverable"}
        given: dict[str, Any] = body["attributes"] if isinstance(body.get("attributes"), dict) else {}
        if isinstance(given.get("exp"), int):
            attributes["exp"] = given["exp"]
        versions.append(
            {
                "version": uuid.uuid4().hex,
                "value": body["value"],
                "contentType": body.get("contentType"),
                "attributes": attributes,
            }
        )
        return pc_json(_vault_bundle(request, name, versions[-1]))
    wanted = m.get("secret_version")
    found = [v for v in versions if wanted is None or v["version"] == wanted]
    if not found:
        return vault_error(
            404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
        )
    return pc_json(_vault_bundle(request, name, found[-1]))


def challenge() -> web.Response:
    """Key Vault's answer to a request without a token."""
    # Key Vault's challenge: 401 naming the authority and resource to get a token for.
    resp = vault_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
    resp.headers["WWW-Authenticate"] = (
        'Bearer authorization="https://login.microsoftonline.com/common", resource="https://vault.azure.net"'
    )
    return resp
