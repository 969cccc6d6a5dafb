"""Microsoft Graph: the partner's organization, the sign-in log, GDAP (delegatedAdminRelationships with
their requests, operations and access assignments; delegatedAdminCustomers), contracts, groups, users and
sendMail; and what Graph answers instead of the resource (429 on the sign-in log, 403 for a missing
application permission or licence)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .entities import SimAccessAssignment, SimCustomer, SimRelationship
from .errors import bad_request, not_found
from .estate import SimEstate
from .filter_checks import parse_filter_or_400
from .filters import FilterError, conjunction, evaluate
from .signin_wire import BETA_FIELDS, V1_FIELDS
from .values import stable_guid
from .wire import (
    GRAPH_CONTENT_TYPE,
    Handler,
    apply_select,
    body_json,
    capped,
    collection,
    decode_token,
    empty,
    encode_token,
    estate,
    graph_error,
    graph_json,
    missing_permissions,
    next_link,
    offset_page,
    origin,
    page_size,
    query_params,
    select_fields,
)

SIGNIN_PAGE_MAX = 1000
GDAP_PAGE_MAX = 300


# --------------------------------------------------------------------------------------------------
# The partner's organization and the sign-in log


async def get_organization(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    domains = [
        {
            "capabilities": "Email, OfficeCommunicationsOnlineService",
            "isDefault": i == 0,
            "isInitial": d.endswith(".onmicrosoft.com"),
            "name": d,
            "type": "Managed",
        }
        for i, d in enumerate(e.partner_domains)
    ]
    org = {
        "id": e.partner_tenant_id,
        "displayName": e.partner_display_name,
        "verifiedDomains": domains,
        "tenantType": "AAD",
        "countryLetterCode": "JP",
        "partnerTenantType": "resellerPartnerDelegatedAdmin",
    }
    return collection(request, "organization", [org], None)


async def list_signins(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    beta = request["version"] == "beta"
    params = query_params(request)
    top = capped(request, page_size(params, SIGNIN_PAGE_MAX, SIGNIN_PAGE_MAX))
    order = params.get("orderby", "").strip().lower()
    if order and re.sub(r"\s+", " ", order) not in ("createddatetime desc", "createddatetime"):
        raise bad_request(
            f"Invalid $orderby '{params['orderby']}': only 'createdDateTime desc' is supported."
        )
    fields = select_fields(params, BETA_FIELDS if beta else V1_FIELDS, "microsoft.graph.signIn")
    query = e.signin_filter(params.get("filter"), beta)
    upper = query.upper
    if params.get("skiptoken"):
        token = decode_token(params["skiptoken"])
        if not isinstance(token, dict) or not isinstance(token.get("k"), str):
            raise bad_request("The $skiptoken is invalid or expired.")
        upper = min(upper, token["k"])
    rows, more = e.signins.scan_desc(query.lower, upper, query.event_types, query.predicate, top)
    if fields is None:
        items = ",".join([e.signin_json(r, beta) for r in rows])
    else:
        items = ",".join([e.signin_select_json(r, beta, fields) for r in rows])
    link = next_link(request, {"skiptoken": encode_token({"k": rows[-1].key})}) if more and rows else None
    context = "auditLogs/signIns" + (f"({','.join(fields)})" if fields else "")
    head = json.dumps(f"{origin(request)}/{request['version']}/$metadata#{context}", ensure_ascii=False)
    tail = f',"@odata.nextLink":{json.dumps(link)}' if link else ""
    body = f'{{"@odata.context":{head},"value":[{items}]{tail}}}'
    return web.Response(body=body.encode(), headers={"Content-Type": GRAPH_CONTENT_TYPE})


async def get_signin(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    lower, upper = e.retention_bounds()
    row = e.signins.find(m["id"], lower, upper)
    if row is None:
        raise not_found(f"Sign-in '{m['id']}' was not found.", "Request_ResourceNotFound")
    beta = request["version"] == "beta"
    item = e.signin_wire(row, beta)
    item["@odata.context"] = f"{origin(request)}/{request['version']}/$metadata#auditLogs/signIns/$entity"
    return graph_json(item)


# --------------------------------------------------------------------------------------------------
# GDAP: delegatedAdminRelationships, their requests, operations and access assignments


def _rel_url(request: web.Request, rel: SimRelationship, *tail: str) -> str:
    base = f"{origin(request)}/{request['version']}/tenantRelationships/delegatedAdminRelationships/{rel.id}"
    return "/".join([base, *tail])


def _entity(
    request: web.Request,
    context: str,
    item: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"@odata.context": f"{origin(request)}/{request['version']}/$metadata#{context}/$entity", **item}
    return graph_json(body, status, headers)


REL_FIELDS = (
    "id",
    "displayName",
    "duration",
    "status",
    "autoExtendDuration",
    "createdDateTime",
    "lastModifiedDateTime",
    "activatedDateTime",
    "endDateTime",
    "customer",
    "accessDetails",
)


async def list_relationships(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    params = query_params(request)
    top = capped(request, page_size(params, GDAP_PAGE_MAX, GDAP_PAGE_MAX))
    filt = parse_filter_or_400(params.get("filter"))
    fields = select_fields(params, REL_FIELDS, "microsoft.graph.delegatedAdminRelationship")
    after: tuple[str, str] | None = None
    if params.get("skiptoken"):
        token = decode_token(params["skiptoken"])
        if not isinstance(token, list) or len(token) != 2:
            raise bad_request("The $skiptoken is invalid or expired.")
        after = (str(token[0]), str(token[1]))
    rels, cursor = e.list_relationships(filt, top, after)
    link = next_link(request, {"skiptoken": encode_token(list(cursor))}) if cursor else None
    extra = None
    if params.get("count", "").lower() == "true":
        all_rels, _ = e.list_relationships(filt, 10**9, None)
        extra = {"@odata.count": len(all_rels)}
    return collection(
        request,
        "tenantRelationships/delegatedAdminRelationships",
        [apply_select(r.wire(), fields) for r in rels],
        link,
        extra,
    )


async def get_relationship(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    rel = estate(request).get_relationship(m["rid"])
    fields = select_fields(query_params(request), REL_FIELDS, "microsoft.graph.delegatedAdminRelationship")
    return _entity(
        request, "tenantRelationships/delegatedAdminRelationships", apply_select(rel.wire(), fields)
    )


async def create_relationship(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    rel = estate(request).create_relationship(body_json(request))
    return _entity(
        request,
        "tenantRelationships/delegatedAdminRelationships",
        rel.wire(),
        201,
        {"Location": _rel_url(request, rel)},
    )


async def patch_relationship(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    rel, op = estate(request).update_relationship(
        m["rid"], body_json(request), request.headers.get("If-Match")
    )
    if op is not None:
        return empty(202, {"Location": _rel_url(request, rel, "operations", op.id), "Retry-After": "10"})
    return _entity(request, "tenantRelationships/delegatedAdminRelationships", rel.wire())


async def delete_relationship(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    estate(request).delete_relationship(m["rid"], request.headers.get("If-Match"))
    return empty(204)


async def create_request(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    req = e.create_request(m["rid"], body_json(request))
    rel = e.get_relationship(m["rid"])
    ctx = f"tenantRelationships/delegatedAdminRelationships('{rel.id}')/requests"
    return _entity(request, ctx, req.wire(), 201, {"Location": _rel_url(request, rel, "requests", req.id)})


def _part_context(m: dict[str, str], part: str) -> str:
    """The @odata.context of one relationship's ``requests``, ``operations`` or ``accessAssignments``."""
    return f"tenantRelationships/delegatedAdminRelationships('{m['rid']}')/{part}"


def _aa_context(m: dict[str, str]) -> str:
    return _part_context(m, "accessAssignments")


def _part_handlers(
    part: str,
    list_items: Callable[[SimEstate, str], list[Any]],
    get_item: Callable[[SimEstate, str, str], Any],
) -> tuple[Handler, Handler]:
    """GET of one relationship's ``part`` (a page, offset paging) and GET of one of them (``sub``)."""

    async def list_part(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
        items = [x.wire() for x in list_items(estate(request), m["rid"])]
        page, link = offset_page(request, query_params(request), items, GDAP_PAGE_MAX, GDAP_PAGE_MAX)
        return collection(request, _part_context(m, part), page, link)

    async def get_part(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
        item = get_item(estate(request), m["rid"], m["sub"])
        return _entity(request, _part_context(m, part), item.wire())

    return list_part, get_part


list_requests, get_request = _part_handlers("requests", SimEstate.list_requests, SimEstate.get_request)
list_operations, get_operation = _part_handlers(
    "operations", SimEstate.list_operations, SimEstate.get_operation
)
list_assignments, get_assignment = _part_handlers(
    "accessAssignments", SimEstate.list_assignments, SimEstate.get_assignment
)


def _aa_url(request: web.Request, rel_id: str, aa: SimAccessAssignment) -> str:
    return (
        f"{origin(request)}/{request['version']}/tenantRelationships/delegatedAdminRelationships/"
        f"{rel_id}/accessAssignments/{aa.id}"
    )


async def create_assignment(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    aa = estate(request).create_assignment(m["rid"], body_json(request))
    return _entity(request, _aa_context(m), aa.wire(), 201, {"Location": _aa_url(request, m["rid"], aa)})


async def patch_assignment(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    aa, op = e.update_assignment(m["rid"], m["sub"], body_json(request), request.headers.get("If-Match"))
    if op is None:
        return _entity(request, _aa_context(m), aa.wire())
    rel = e.get_relationship(m["rid"])
    return empty(202, {"Location": _rel_url(request, rel, "operations", op.id), "Retry-After": "10"})


async def delete_assignment(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    estate(request).delete_assignment(m["rid"], m["sub"], request.headers.get("If-Match"))
    return empty(204)


# --------------------------------------------------------------------------------------------------
# delegatedAdminCustomers and contracts


def _dac_wire(c: SimCustomer) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.delegatedAdminCustomer",
        "id": c.tenant_id,
        "tenantId": c.tenant_id,
        "displayName": c.display_name,
    }


async def list_dac(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    items = [_dac_wire(c) for c in estate(request).delegated_admin_customers()]
    page, link = offset_page(request, query_params(request), items, GDAP_PAGE_MAX, GDAP_PAGE_MAX)
    return collection(request, "tenantRelationships/delegatedAdminCustomers", page, link)


async def get_dac(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    for c in estate(request).delegated_admin_customers():
        if c.tenant_id.lower() == m["id"].lower():
            return _entity(request, "tenantRelationships/delegatedAdminCustomers", _dac_wire(c))
    raise not_found(f"The delegated admin customer '{m['id']}' was not found.")


def _contract(c: SimCustomer) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.contract",
        "id": stable_guid("contract", c.tenant_id),
        "deletedDateTime": None,
        "contractType": "ResellerPartner",
        "customerId": c.tenant_id,
        "defaultDomainName": c.default_domain,
        "displayName": c.display_name,
    }


async def list_contracts(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    items = [_contract(c) for c in estate(request).customers.values()]
    page, link = offset_page(request, query_params(request), items, 100, 999)
    return collection(request, "contracts", page, link)


async def get_contract(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    for c in estate(request).customers.values():
        item = _contract(c)
        if m["id"].lower() in (item["id"], c.tenant_id.lower()):
            return _entity(request, "contracts", item)
    raise not_found(f"Resource '{m['id']}' does not exist.", "Request_ResourceNotFound")


# --------------------------------------------------------------------------------------------------
# The partner's directory (users, groups) and sendMail


def _user(agent: dict[str, Any]) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.user",
        "id": agent["id"],
        "userPrincipalName": agent["userPrincipalName"],
        "displayName": agent["displayName"],
        "mail": agent["userPrincipalName"],
    }


async def group_members(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    members = [_user(a) for a in estate(request).group_members(m["id"])]
    params = query_params(request)
    fields = select_fields(params, ("id", "userPrincipalName", "displayName", "mail"), "microsoft.graph.user")
    page, link = offset_page(request, params, [apply_select(u, fields) for u in members], 100, 999)
    return collection(request, "directoryObjects", page, link)


async def remove_group_member(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    """``DELETE /groups/{id}/members/{memberId}/$ref``: 204 No Content, 404 when the user is not a
    direct member (https://learn.microsoft.com/graph/api/group-delete-members)."""
    estate(request).remove_group_member(m["id"], m["member"])
    return empty(204)


GROUP_FILTERABLE = ("id", "displayname", "securityenabled", "mailenabled")


def _group(group: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": group["id"],
        "displayName": group["displayName"],
        "securityEnabled": True,
        "mailEnabled": False,
    }


async def list_groups(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    """``GET /groups``: the partner tenant's groups, with ``$filter`` (e.g. ``displayName eq '...'``),
    ``$select``, ``$top`` (up to 999) and ``@odata.nextLink`` paging."""
    params = query_params(request)
    filt = parse_filter_or_400(params.get("filter"))
    if filt is not None:
        try:
            clauses = conjunction(filt)
        except FilterError as exc:
            raise bad_request(str(exc)) from exc
        if any(clause.key not in GROUP_FILTERABLE for clause in clauses):
            raise bad_request("Invalid filter clause: unsupported property for groups.")
    groups = [_group(g) for g in estate(request).groups.values()]
    if filt is not None:
        groups = [g for g in groups if evaluate(filt, {k.lower(): v for k, v in g.items()}.get)]
    fields = select_fields(
        params, ("id", "displayName", "securityEnabled", "mailEnabled"), "microsoft.graph.group"
    )
    page, link = offset_page(request, params, [apply_select(g, fields) for g in groups], 100, 999)
    return collection(request, "groups", page, link)


async def get_group(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    group = e.groups.get(m["id"].lower())
    if group is None:
        raise not_found(
            f"Resource '{m['id']}' does not exist or one of its queried reference-property objects "
            "are not present.",
            "Request_ResourceNotFound",
        )
    return _entity(request, "groups", _group(group))


async def get_user(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    key = m["id"].lower()
    for a in e.agents:
        if key in (a["id"].lower(), a["userPrincipalName"].lower()):
            return _entity(request, "users", {k: v for k, v in _user(a).items() if k != "@odata.type"})
    if key == e.sender_mailbox.lower():
        return _entity(
            request,
            "users",
            {
                "id": stable_guid("mailbox", key),
                "userPrincipalName": e.sender_mailbox,
                "displayName": e.sender_mailbox,
                "mail": e.sender_mailbox,
            },
        )
    raise not_found(
        f"Resource '{m['id']}' does not exist or one of its queried reference-property objects are "
        "not present.",
        "Request_ResourceNotFound",
    )


async def send_mail(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    estate(request).send_mail(m["id"], body_json(request))
    return empty(202)


# --------------------------------------------------------------------------------------------------
# What Graph answers instead of the resource

SIGNIN_HANDLERS: set[Handler] = {list_signins, get_signin}

# Graph GET list routes (what "empty" and "pageSize" faults touch) and the @odata.context of their pages.
GRAPH_LISTS: dict[Handler, Callable[[dict[str, str]], str]] = {
    list_signins: lambda m: "auditLogs/signIns",
    list_relationships: lambda m: "tenantRelationships/delegatedAdminRelationships",
    list_requests: lambda m: _part_context(m, "requests"),
    list_operations: lambda m: _part_context(m, "operations"),
    list_assignments: _aa_context,
    list_dac: lambda m: "tenantRelationships/delegatedAdminCustomers",
    list_contracts: lambda m: "contracts",
    group_members: lambda m: "directoryObjects",
    list_groups: lambda m: "groups",
}

# Application permissions the emulator models (scenario "missingPermissions" names the ones the app lacks)
# and the routes that need one of them: the sign-in log -- AuditLog.Read.All; delegatedAdminRelationship
# reads -- DelegatedAdminRelationship.Read.All or ReadWrite.All, writes -- ReadWrite.All; sendMail --
# Mail.Send; groups -- GroupMember.Read.All (the least privileged of the permissions Graph documents).
AUDIT_LOG_READ = "AuditLog.Read.All"
GDAP_READ = "DelegatedAdminRelationship.Read.All"
GDAP_WRITE = "DelegatedAdminRelationship.ReadWrite.All"
MAIL_SEND = "Mail.Send"
GROUP_MEMBER_READ = "GroupMember.Read.All"
GROUP_MEMBER_WRITE = "GroupMember.ReadWrite.All"
_GDAP_READERS: tuple[Handler, ...] = (
    list_relationships,
    get_relationship,
    list_requests,
    get_request,
    list_operations,
    get_operation,
    list_assignments,
    get_assignment,
    list_dac,
    get_dac,
)
_GDAP_WRITERS: tuple[Handler, ...] = (
    create_relationship,
    patch_relationship,
    delete_relationship,
    create_request,
    create_assignment,
    patch_assignment,
    delete_assignment,
)
REQUIRED_PERMISSIONS: dict[Handler, frozenset[str]] = {
    list_signins: frozenset({AUDIT_LOG_READ}),
    get_signin: frozenset({AUDIT_LOG_READ}),
    **{h: frozenset({GDAP_READ, GDAP_WRITE}) for h in _GDAP_READERS},
    **{h: frozenset({GDAP_WRITE}) for h in _GDAP_WRITERS},
    send_mail: frozenset({MAIL_SEND}),
    group_members: frozenset({GROUP_MEMBER_READ}),
    get_group: frozenset({GROUP_MEMBER_READ}),
    list_groups: frozenset({GROUP_MEMBER_READ}),
    remove_group_member: frozenset({GROUP_MEMBER_WRITE}),
}


def refusal(request: web.Request, e: SimEstate, handler: Handler | None) -> web.Response | None:
    """What Graph answers instead of the resource: throttling (429), then a missing permission or licence
    (403); None to serve the request."""
    if handler in SIGNIN_HANDLERS and e.throttle is not None:
        wait = e.throttle.admit(time.monotonic())
        if wait is not None:
            # Graph's 429 (https://learn.microsoft.com/graph/throttling#sample-response): code TooManyRequests
            # and a Retry-After in seconds -- whole seconds here, at least 1: until the oldest admitted request
            # leaves the window.
            return graph_error(
                request,
                429,
                "TooManyRequests",
                "Please retry again later.",
                {"Retry-After": str(max(1, math.ceil(wait)))},
                {"code": "429", "message": "Please retry after", "status": "429"},
            )
    required = REQUIRED_PERMISSIONS.get(handler) if handler is not None else None
    if required:
        missing = missing_permissions(request, e)
        if all(p.lower() in missing for p in required):
            return _permission_refusal(request, handler)
    if handler in SIGNIN_HANDLERS and not e.signin_log_licensed:
        # "You must have a Microsoft Entra ID P1 or P2 license to download sign-in logs using the Microsoft
        # Graph API" (signIn resource, https://learn.microsoft.com/graph/api/resources/signin); a tenant
        # without one is answered this 403 (microsoftgraph/microsoft-graph-docs#4336, msgraph-sdk-dotnet#1006).
        return graph_error(
            request,
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        )
    return None


def _permission_refusal(request: web.Request, handler: Handler | None) -> web.Response:
    """The 403 of a route whose application permission is not granted, as each service words it."""
    if handler in SIGNIN_HANDLERS:
        # The reporting API names the missing permission (microsoftgraph/microsoft-graph-explorer-v4#3165,
        # microsoftgraph/microsoft-graph-docs-contrib#8997) instead of the directory's Authorization_RequestDenied.
        return graph_error(
            request,
            403,
            "Authentication_MSGraphPermissionMissing",
            f"Calling principal does not have required MSGraph permissions {AUDIT_LOG_READ}",
        )
    if handler is send_mail:
        # Exchange Online answers sendMail (e.g. microsoftgraph/microsoft-graph-docs#10880).
        return graph_error(
            request, 403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
        )
    return graph_error(
        request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )
