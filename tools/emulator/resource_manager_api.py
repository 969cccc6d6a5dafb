"""Azure Resource Manager in the customers' tenants: the subscriptions a token's tenant holds and the Azure
role assignments on them, with the wire format Microsoft documents.

* ``GET /subscriptions?api-version=2022-12-01``
  (https://learn.microsoft.com/rest/api/resources/subscriptions/list);
* ``GET /subscriptions/{id}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01``
  [``&$filter=principalId eq '{id}'``] (https://learn.microsoft.com/rest/api/authorization/role-assignments/list-for-subscription);
* ``GET {scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}?api-version=2022-04-01``
  (https://learn.microsoft.com/rest/api/authorization/role-definitions/get);
* ``DELETE {scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01``:
  200 with the deleted assignment, 204 when it does not exist
  (https://learn.microsoft.com/rest/api/authorization/role-assignments/delete).

Lists page with an absolute ``nextLink`` (``$skipToken``). ``api-version`` is required (400
``MissingApiVersionParameter``); a subscription the token's tenant does not hold is 404
``SubscriptionNotFound``; a subscription marked ``"denied"`` answers 403 ``AuthorizationFailed``; an
assignment marked ``"locked"`` cannot be deleted (409 ``ScopeLocked``). Served under ``/arm``.

Scenario (additive), per customer::

    "azureSubscriptions": [{"subscriptionId": GUID, "displayName": str, "state": "Enabled",
                            "denied": false,
                            "roleAssignments": [{"name": GUID, "roleDefinitionId": GUID,
                                                 "principalId": GUID, "principalType": "ForeignGroup",
                                                 "scope": "/subscriptions/..." (default: the subscription),
                                                 "locked": false}]}]
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from .errors import EmulatorError
from .wire import decode_token, encode_token, estate, origin, pc_json, query_params

SUBSCRIPTIONS_API_VERSION = "2022-12-01"
AUTHORIZATION_API_VERSIONS = {"2022-04-01", "2020-10-01-preview", "2015-07-01"}
PAGE_SIZE = 2  # small pages, so that every list is read through its nextLink
ROOT = "/arm"
# Built-in role definitions (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
BUILT_IN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}


def _token_tenant(request: web.Request) -> str:
    token = request.headers.get("Authorization", "")[7:].strip()
    parts = token.split(".")
    if len(parts) == 3:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            claims = {}
        if isinstance(claims, dict) and claims.get("tid"):
            return str(claims["tid"]).lower()
    raise EmulatorError(
        401, "InvalidAuthenticationToken", "The access token is invalid: it names no tenant (tid)."
    )


def _api_version(request: web.Request, allowed: set[str]) -> None:
    version = query_params(request).get("api-version")
    if not version:
        raise EmulatorError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version not in allowed:
        raise EmulatorError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are '{', '.join(sorted(allowed))}'.",
        )


def _subscriptions(request: web.Request) -> list[dict[str, Any]]:
    return estate(request).azure_subscriptions.get(_token_tenant(request), [])


def _subscription(request: web.Request, sid: str) -> dict[str, Any]:
    for s in _subscriptions(request):
        if s["subscriptionId"].lower() == sid.lower():
            if s.get("denied"):
                raise EmulatorError(
                    403,
                    "AuthorizationFailed",
                    f"The client does not have authorization to perform action over scope '/subscriptions/{sid}'.",
                )
            return s
    raise EmulatorError(404, "SubscriptionNotFound", f"The subscription '{sid}' could not be found.")


def _page(request: web.Request, items: list[dict[str, Any]]) -> web.Response:
    params = query_params(request)
    start = 0
    if params.get("skiptoken"):
        start = int(decode_token(params["skiptoken"]).get("skip", 0))
    body: dict[str, Any] = {"value": items[start : start + PAGE_SIZE]}
    if start + PAGE_SIZE < len(items):
        kept = [
            piece
            for piece in request.rel_url.raw_query_string.split("&")
            if piece and not piece.lower().startswith(("$skiptoken=", "%24skiptoken="))
        ]
        kept.append(f"$skipToken={encode_token({'skip': start + PAGE_SIZE})}")
        body["nextLink"] = f"{origin(request)}{request.path}?{'&'.join(kept)}"
    return pc_json(body)


def _assignment_wire(s: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
    scope = a.get("scope") or f"/subscriptions/{s['subscriptionId']}"
    return {
        "id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{a['name']}",
        "name": a["name"],
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": f"/subscriptions/{s['subscriptionId']}/providers/Microsoft.Authorization/"
            f"roleDefinitions/{a['roleDefinitionId']}",
            "principalId": a["principalId"],
            "principalType": a.get("principalType") or "ForeignGroup",
            "scope": scope,
            "condition": None,
            "conditionVersion": None,
            "createdOn": a.get("createdOn") or "2024-01-01T00:00:00.0000000Z",
            "updatedOn": a.get("createdOn") or "2024-01-01T00:00:00.0000000Z",
            "createdBy": None,
            "updatedBy": None,
            "delegatedManagedIdentityResourceId": None,
            "description": None,
        },
    }


async def arm_list_subscriptions(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    _api_version(request, {SUBSCRIPTIONS_API_VERSION, "2020-01-01", "2021-01-01"})
    tenant = _token_tenant(request)
    items = [
        {
            "id": f"/subscriptions/{s['subscriptionId']}",
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
            "subscriptionId": s["subscriptionId"],
            "tenantId": tenant,
            "displayName": s.get("displayName") or s["subscriptionId"],
            "state": s.get("state") or "Enabled",
            "subscriptionPolicies": {"quotaId": "CSP_2015-05-01", "spendingLimit": "Off"},
        }
        for s in _subscriptions(request)
    ]
    return _page(request, items)


async def arm_list_role_assignments(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    _api_version(request, AUTHORIZATION_API_VERSIONS)
    s = _subscription(request, params["sid"])
    items = [_assignment_wire(s, a) for a in s.get("roleAssignments") or []]
    wanted = query_params(request).get("filter", "")
    if wanted:
        text = wanted.strip()
        if text.lower().startswith("principalid eq "):
            principal = text[len("principalid eq ") :].strip().strip("'").lower()
            items = [i for i in items if i["properties"]["principalId"].lower() == principal]
        elif text.lower() != "atscope()":
            raise EmulatorError(400, "UnsupportedQuery", f"The filter '{text}' is not supported.")
    return _page(request, items)


async def arm_get_role_definition(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    _api_version(request, AUTHORIZATION_API_VERSIONS)
    guid = params["rdid"].lower()
    name = BUILT_IN_ROLES.get(guid)
    if name is None:
        raise EmulatorError(
            404, "RoleDefinitionDoesNotExist", "The specified role definition does not exist."
        )
    return pc_json(
        {
            "id": f"{params.get('scope') or ''}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            "name": guid,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {"roleName": name, "type": "BuiltInRole", "description": "", "permissions": []},
        }
    )


async def arm_delete_role_assignment(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    _api_version(request, AUTHORIZATION_API_VERSIONS)
    s = _subscription(request, params["sid"])
    assignments = s.get("roleAssignments") or []
    for index, a in enumerate(assignments):
        if a["name"].lower() == params["name"].lower():
            if a.get("locked"):
                raise EmulatorError(
                    409,
                    "ScopeLocked",
                    "The scope cannot perform delete operation because following scope(s) are locked: "
                    f"'/subscriptions/{s['subscriptionId']}'.",
                )
            wire = _assignment_wire(s, a)
            del assignments[index]
            return pc_json(wire)
    return web.Response(status=204)


_SUB = ROOT + r"/subscriptions/(?P<sid>[^/]+)"
_SCOPE = r"(?P<scope>/subscriptions/[^?]*?)"
ROUTES = [
    ("GET", ROOT + r"/subscriptions", arm_list_subscriptions),
    ("GET", _SUB + r"/providers/Microsoft\.Authorization/roleAssignments", arm_list_role_assignments),
    (
        "GET",
        ROOT + _SCOPE + r"/providers/Microsoft\.Authorization/roleDefinitions/(?P<rdid>[^/]+)",
        arm_get_role_definition,
    ),
    (
        "DELETE",
        ROOT + r"(?=/subscriptions/(?P<sid>[^/]+))/subscriptions/[^?]*?/providers/Microsoft\.Authorization/"
        r"roleAssignments/(?P<name>[^/]+)",
        arm_delete_role_assignment,
    ),
]
