"""Azure Resource Manager, in a customer tenant: the subscriptions the partner sees there and the Azure
role assignments its principals hold on them, over httpx.

Removing DAP or GDAP does not end Azure access: the partner's Admin Agents group appears in a customer
tenant as a *foreign principal* (principal type ``ForeignGroup``) that is Owner of the Azure CSP
subscriptions the partner provisioned, and only deleting that role assignment ends it
(https://learn.microsoft.com/partner-center/customers/reinstate-csp, "Reinstate admin privileges
for a customer's Azure CSP subscriptions"). The calls, as documented:

* Subscriptions - List: ``GET /subscriptions?api-version=2022-12-01``, paged with ``nextLink``
  (https://learn.microsoft.com/rest/api/resources/subscriptions/list);
* Role Assignments - List For Subscription: ``GET /subscriptions/{id}/providers/Microsoft.Authorization/
  roleAssignments?api-version=2022-04-01`` -- without ``$filter`` every assignment in the subscription,
  at, above and below its scope; paged with ``nextLink``
  (https://learn.microsoft.com/rest/api/authorization/role-assignments/list-for-subscription);
* Role Definitions - Get: ``GET {roleDefinitionId}?api-version=2022-04-01``, ``properties.roleName``
  (https://learn.microsoft.com/rest/api/authorization/role-definitions/get);
* Role Assignments - Delete: ``DELETE {roleAssignmentId}?api-version=2022-04-01`` answers 200 with the
  deleted assignment, or 204 when it was already deleted or does not exist
  (https://learn.microsoft.com/rest/api/authorization/role-assignments/delete).

Tokens: one per customer tenant (Resource Manager only serves a tenant's subscriptions to a token issued
by that tenant), asked of ``credential`` with azure-core's ``tenant_id`` keyword
(``shared.platform.identity.resource_manager_credential``).
Retries as the Partner Center client does: 429 and 503/504 for every method, 500/502 for reads only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from shared.platform.retry import UpstreamError, send_with_retries
from shared.platform.timeutil import observe_response_date

log = logging.getLogger(__name__)

RESOURCE_MANAGER_SCOPE = "https://management.azure.com/user_impersonation"
SUBSCRIPTIONS_API_VERSION = "2022-12-01"
AUTHORIZATION_API_VERSION = "2022-04-01"
MAX_PAGES = 1000  # a guard against a service whose nextLink never ends


@dataclass
class Subscription:
    subscription_id: str
    display_name: str
    state: str
    tenant_id: str


@dataclass
class RoleAssignment:
    id: str  # the full resource id: {scope}/providers/Microsoft.Authorization/roleAssignments/{name}
    subscription_id: str
    scope: str
    role_definition_id: str  # the full resource id of the role definition
    principal_id: str
    principal_type: str


class ResourceManagerClient:
    def __init__(
        self,
        root: str,
        credential: Any,
        *,
        max_retries: int = 5,
        retry_base: float = 1.0,
        timeout: float = 60.0,
    ) -> None:
        self.root = root.rstrip("/")
        self._credential = credential
        self._max_retries = max_retries
        self._retry_base = retry_base
        self._role_names: dict[str, str] = {}
        self._http = httpx.AsyncClient(timeout=timeout, event_hooks={"response": [observe_response_date]})

    async def close(self) -> None:
        await self._http.aclose()

    async def _token(self, tenant_id: str) -> str:
        get_token = self._credential.get_token
        if asyncio.iscoroutinefunction(get_token):
            result = await get_token(RESOURCE_MANAGER_SCOPE, tenant_id=tenant_id)
        else:
            result = await asyncio.to_thread(get_token, RESOURCE_MANAGER_SCOPE, tenant_id=tenant_id)
        return str(result.token)

    async def request(
        self, method: str, url: str, *, tenant_id: str, ok: tuple[int, ...] = (200,)
    ) -> httpx.Response:
        """One call with retries; the response when its status is in ``ok``, else :class:`UpstreamError`."""
        what = f"{method} {url.split('?')[0]}"

        async def send() -> httpx.Response:
            headers = {
                "Authorization": f"Bearer {await self._token(tenant_id)}",
                "Accept": "application/json",
            }
            return await self._http.request(method, url, headers=headers)

        response = await send_with_retries(
            send, method=method, what=what, ok=ok, max_retries=self._max_retries, retry_base=self._retry_base
        )
        if response.status_code in ok:
            return response
        code, message = _error(response)
        raise UpstreamError(
            f"{what}: Resource Manager answered {response.status_code} {code} {message}".strip(),
            status=response.status_code,
            code=code or None,
        )

    async def _pages(self, url: str, tenant_id: str) -> list[dict[str, Any]]:
        """Every item of a list, following ``nextLink`` (absolute, as Resource Manager sends it) to the end."""
        out: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            response = await self.request("GET", url, tenant_id=tenant_id)
            try:
                page = response.json()
            except ValueError as exc:
                raise UpstreamError(f"GET {url.split('?')[0]}: answered malformed JSON") from exc
            out.extend(item for item in page.get("value") or [] if isinstance(item, dict))
            following = page.get("nextLink")
            if not following:
                return out
            url = str(following)
        raise UpstreamError(f"GET {url.split('?')[0]}: more than {MAX_PAGES} pages")

    async def list_subscriptions(self, tenant_id: str) -> list[Subscription]:
        """The subscriptions of ``tenant_id`` the partner's token sees there."""
        items = await self._pages(
            f"{self.root}/subscriptions?api-version={SUBSCRIPTIONS_API_VERSION}", tenant_id
        )
        out = []
        for item in items:
            sid = str(item.get("subscriptionId") or "").lower()
            home = str(item.get("tenantId") or "").lower()
            if sid and (not home or home == tenant_id.lower()):
                out.append(
                    Subscription(sid, str(item.get("displayName") or ""), str(item.get("state") or ""), home)
                )
        return out

    async def list_role_assignments(self, tenant_id: str, subscription_id: str) -> list[RoleAssignment]:
        """Every role assignment in the subscription (its own scope, its resource groups and resources)."""
        items = await self._pages(
            f"{self.root}/subscriptions/{quote(subscription_id)}/providers/Microsoft.Authorization/"
            f"roleAssignments?api-version={AUTHORIZATION_API_VERSION}",
            tenant_id,
        )
        out = []
        for item in items:
            props = item.get("properties") or {}
            if not item.get("id") or not props.get("principalId"):
                continue
            out.append(
                RoleAssignment(
                    id=str(item["id"]),
                    subscription_id=subscription_id,
                    scope=str(props.get("scope") or ""),
                    role_definition_id=str(props.get("roleDefinitionId") or ""),
                    principal_id=str(props["principalId"]).lower(),
                    principal_type=str(props.get("principalType") or ""),
                )
            )
        return out

    async def role_name(self, tenant_id: str, role_definition_id: str) -> str:
        """The role's name (``Owner``, ``Contributor`` ...); the definition's GUID when it cannot be read."""
        guid = role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()
        if guid in self._role_names:
            return self._role_names[guid]
        try:
            response = await self.request(
                "GET",
                f"{self.root}{_path(role_definition_id)}?api-version={AUTHORIZATION_API_VERSION}",
                tenant_id=tenant_id,
            )
            name = str(((response.json() or {}).get("properties") or {}).get("roleName") or guid)
        except (UpstreamError, ValueError) as exc:
            log.warning("role definition %s: %s", role_definition_id, exc)
            return guid
        self._role_names[guid] = name
        return name

    async def delete_role_assignment(self, tenant_id: str, assignment_id: str) -> bool:
        """Delete one role assignment: True when this call deleted it (200), False when it no longer
        existed (204). Anything else (403 AuthorizationFailed, 409 ScopeLocked ...) raises."""
        response = await self.request(
            "DELETE",
            f"{self.root}{_path(assignment_id)}?api-version={AUTHORIZATION_API_VERSION}",
            tenant_id=tenant_id,
            ok=(200, 204),
        )
        return response.status_code == 200


def _path(resource_id: str) -> str:
    return "/" + quote(resource_id.strip("/"), safe="/")


def _error(response: httpx.Response) -> tuple[str, str]:
    try:
        data = response.json()
    except ValueError:
        return "", response.text[:200]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", ""
