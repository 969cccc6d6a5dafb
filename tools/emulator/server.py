"""HTTP surface of the emulator: Microsoft Graph, Partner Center, and the ``/_emulator`` control API.

Routing is done here (one catch-all aiohttp route and a case-insensitive table) because Graph treats
paths case-insensitively and answers unknown routes with its own JSON error shape.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, unquote_plus

from aiohttp import web

from .filters import Compare, FilterError, Node, conjunction, evaluate, parse_filter
from .state import (
    BETA_FIELDS,
    V1_FIELDS,
    AccessAssignment,
    Customer,
    EmulatorError,
    Estate,
    Fault,
    Relationship,
    bad_request,
    decode_token,
    encode_token,
    load_scenario_text,
    not_found,
    stable_guid,
)

GRAPH_CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
PC_CONTENT_TYPE = "application/json; charset=utf-8"
API_PREFIXES = ("/v1.0/", "/beta/", "/partnercenter/", "/customeradmin/", "/keyvault/")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
SIGNIN_PAGE_MAX = 1000
GDAP_PAGE_MAX = 300
DAC_PAGE_MAX = 300
PC_PAGE_MAX = 500
_NO_BODY = object()

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


@dataclass
class Runtime:
    estate: Estate
    log: list[dict[str, Any]] = field(default_factory=list)  # mutating requests
    all_requests: list[dict[str, Any]] = field(default_factory=list)  # every API request


RUNTIME = web.AppKey("runtime", Runtime)


# --------------------------------------------------------------------------------------------------
# Response helpers


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def graph_json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    hdrs = {"Content-Type": GRAPH_CONTENT_TYPE, **(headers or {})}
    return web.Response(body=_dumps(obj), status=status, headers=hdrs)


def pc_json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, headers={"Content-Type": PC_CONTENT_TYPE})


def graph_error(request: web.Request, status: int, code: str, message: str,
                headers: dict[str, str] | None = None, inner_extra: dict[str, str] | None = None) -> web.Response:
    inner = {
        **(inner_extra or {}),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request.get("request_id", ""),
        "client-request-id": request.get("client_request_id", ""),
    }
    return graph_json({"error": {"code": code, "message": message, "innerError": inner}}, status, headers)


def pc_error(status: int, code: str, message: str) -> web.Response:
    numeric = int(code) if code.isdigit() else status
    name = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            409: "Conflict"}.get(status, "ServerError")
    return pc_json({"code": numeric, "description": message, "errorName": name}, status)


def empty(status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers or {})


def estate(request: web.Request) -> Estate:
    return request.app[RUNTIME].estate


def origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def body_json(request: web.Request) -> Any:
    raw = request.get("raw_body", b"")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("The request body is not valid JSON.") from exc


# --------------------------------------------------------------------------------------------------
# Query handling


def raw_query(request: web.Request) -> str:
    """The query string handlers see: the request's own, unless a resume token was unwrapped (``_resume``)."""
    query = request.get("raw_query")
    return query if isinstance(query, str) else request.rel_url.raw_query_string


def query_params(request: web.Request) -> dict[str, str]:
    """Decoded query parameters keyed by lower-case name without the leading ``$``."""
    out: dict[str, str] = {}
    for piece in raw_query(request).split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        out[unquote_plus(key).lstrip("$").lower()] = unquote_plus(value)
    return out


def next_link(request: web.Request, replace: dict[str, str]) -> str:
    """The request's own absolute URL with some query options replaced (others kept verbatim)."""
    names = {k.lower() for k in replace}
    kept = []
    for piece in raw_query(request).split("&"):
        if not piece:
            continue
        key = unquote_plus(piece.partition("=")[0]).lstrip("$").lower()
        if key not in names:
            kept.append(piece)
    kept.extend(f"${k}={v}" for k, v in replace.items())
    path = request.raw_path.split("?", 1)[0]
    return f"{origin(request)}{path}?{'&'.join(kept)}"


def capped(request: web.Request, size: int) -> int:
    """A page size under a ``pageSize`` fault's cap (set by ``dispatch_all`` for the request it matched)."""
    cap = request.get("page_cap")
    return min(size, cap) if isinstance(cap, int) else size


def page_size(params: dict[str, str], default: int, maximum: int, name: str = "top") -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_request(f"Invalid value '{raw}' for ${name}: an integer is expected.") from exc
    if value < 1 or value > maximum:
        raise bad_request(f"Invalid page size specified: '{value}'. Must be between 1 and {maximum} inclusive.")
    return value


def parse_filter_or_400(text: str | None) -> Node | None:
    if not text:
        return None
    try:
        return parse_filter(text)
    except FilterError as exc:
        msg = str(exc)
        raise bad_request(msg if msg.startswith("Invalid filter clause") else f"Invalid filter clause: {msg}") from exc


def select_fields(params: dict[str, str], allowed: tuple[str, ...] | list[str], type_name: str) -> list[str] | None:
    raw = params.get("select")
    if not raw:
        return None
    canon = {f.lower(): f for f in allowed}
    out = []
    for name in (p.strip() for p in raw.split(",")):
        if not name:
            continue
        f = canon.get(name.lower())
        if f is None:
            raise bad_request(f"Could not find a property named '{name}' on type '{type_name}'.")
        if f not in out:
            out.append(f)
    return out


def apply_select(item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if fields is None:
        return item
    return {k: v for k, v in item.items() if k.startswith("@") or k == "id" or k in fields}


def offset_page(request: web.Request, params: dict[str, str], items: list[Any], default: int, maximum: int,
                ) -> tuple[list[Any], str | None]:
    top = capped(request, page_size(params, default, maximum))
    start = 0
    if params.get("skiptoken"):
        token = decode_token(params["skiptoken"])
        if not isinstance(token, dict) or not isinstance(token.get("o"), int):
            raise bad_request("The $skiptoken is invalid or expired.")
        start = token["o"]
    page = items[start:start + top]
    link = None
    if start + top < len(items):
        link = next_link(request, {"skiptoken": encode_token({"o": start + top})})
    return page, link


def collection(request: web.Request, context: str, items: list[Any], link: str | None,
               extra: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"@odata.context": f"{origin(request)}/{request['version']}/$metadata#{context}"}
    if extra:
        body.update(extra)
    body["value"] = items
    if link:
        body["@odata.nextLink"] = link
    return graph_json(body)


# --------------------------------------------------------------------------------------------------
# Graph handlers


async def get_organization(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    domains = [{"capabilities": "Email, OfficeCommunicationsOnlineService", "isDefault": i == 0,
                "isInitial": d.endswith(".onmicrosoft.com"), "name": d, "type": "Managed"}
               for i, d in enumerate(e.partner_domains)]
    org = {"id": e.partner_tenant_id, "displayName": e.partner_display_name, "verifiedDomains": domains,
           "tenantType": "AAD", "countryLetterCode": "JP", "partnerTenantType": "resellerPartnerDelegatedAdmin"}
    return collection(request, "organization", [org], None)


async def list_signins(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    beta = request["version"] == "beta"
    params = query_params(request)
    top = capped(request, page_size(params, SIGNIN_PAGE_MAX, SIGNIN_PAGE_MAX))
    order = params.get("orderby", "").strip().lower()
    if order and re.sub(r"\s+", " ", order) not in ("createddatetime desc", "createddatetime"):
        raise bad_request(f"Invalid $orderby '{params['orderby']}': only 'createdDateTime desc' is supported.")
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


def _rel_url(request: web.Request, rel: Relationship, *tail: str) -> str:
    base = f"{origin(request)}/{request['version']}/tenantRelationships/delegatedAdminRelationships/{rel.id}"
    return "/".join([base, *tail])


def _entity(request: web.Request, context: str, item: dict[str, Any], status: int = 200,
            headers: dict[str, str] | None = None) -> web.Response:
    body = {"@odata.context": f"{origin(request)}/{request['version']}/$metadata#{context}/$entity", **item}
    return graph_json(body, status, headers)


REL_FIELDS = ("id", "displayName", "duration", "status", "autoExtendDuration", "createdDateTime",
              "lastModifiedDateTime", "activatedDateTime", "endDateTime", "customer", "accessDetails")


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
    return collection(request, "tenantRelationships/delegatedAdminRelationships",
                      [apply_select(r.wire(), fields) for r in rels], link, extra)


async def get_relationship(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    rel = estate(request).get_relationship(m["rid"])
    fields = select_fields(query_params(request), REL_FIELDS, "microsoft.graph.delegatedAdminRelationship")
    return _entity(request, "tenantRelationships/delegatedAdminRelationships", apply_select(rel.wire(), fields))


async def create_relationship(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    rel = estate(request).create_relationship(body_json(request))
    return _entity(request, "tenantRelationships/delegatedAdminRelationships", rel.wire(), 201,
                   {"Location": _rel_url(request, rel)})


async def patch_relationship(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    rel, op = estate(request).update_relationship(m["rid"], body_json(request), request.headers.get("If-Match"))
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


async def list_requests(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    reqs = [r.wire() for r in e.list_requests(m["rid"])]
    page, link = offset_page(request, query_params(request), reqs, GDAP_PAGE_MAX, GDAP_PAGE_MAX)
    return collection(request, f"tenantRelationships/delegatedAdminRelationships('{m['rid']}')/requests", page, link)


async def get_request(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    req = estate(request).get_request(m["rid"], m["sub"])
    return _entity(request, f"tenantRelationships/delegatedAdminRelationships('{m['rid']}')/requests", req.wire())


async def list_operations(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    ops = [o.wire() for o in estate(request).list_operations(m["rid"])]
    page, link = offset_page(request, query_params(request), ops, GDAP_PAGE_MAX, GDAP_PAGE_MAX)
    return collection(request, f"tenantRelationships/delegatedAdminRelationships('{m['rid']}')/operations",
                      page, link)


async def get_operation(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    op = estate(request).get_operation(m["rid"], m["sub"])
    return _entity(request, f"tenantRelationships/delegatedAdminRelationships('{m['rid']}')/operations", op.wire())


def _aa_context(m: dict[str, str]) -> str:
    return f"tenantRelationships/delegatedAdminRelationships('{m['rid']}')/accessAssignments"


async def list_assignments(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    items = [a.wire() for a in estate(request).list_assignments(m["rid"])]
    page, link = offset_page(request, query_params(request), items, GDAP_PAGE_MAX, GDAP_PAGE_MAX)
    return collection(request, _aa_context(m), page, link)


async def get_assignment(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    aa = estate(request).get_assignment(m["rid"], m["sub"])
    return _entity(request, _aa_context(m), aa.wire())


def _aa_url(request: web.Request, rel_id: str, aa: AccessAssignment) -> str:
    return (f"{origin(request)}/{request['version']}/tenantRelationships/delegatedAdminRelationships/"
            f"{rel_id}/accessAssignments/{aa.id}")


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


def _dac_wire(c: Customer) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.delegatedAdminCustomer", "id": c.tenant_id, "tenantId": c.tenant_id,
            "displayName": c.display_name}


async def list_dac(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    items = [_dac_wire(c) for c in estate(request).delegated_admin_customers()]
    page, link = offset_page(request, query_params(request), items, GDAP_PAGE_MAX, GDAP_PAGE_MAX)
    return collection(request, "tenantRelationships/delegatedAdminCustomers", page, link)


async def get_dac(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    for c in estate(request).delegated_admin_customers():
        if c.tenant_id.lower() == m["id"].lower():
            return _entity(request, "tenantRelationships/delegatedAdminCustomers", _dac_wire(c))
    raise not_found(f"The delegated admin customer '{m['id']}' was not found.")


def _contract(c: Customer) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.contract", "id": stable_guid("contract", c.tenant_id),
            "deletedDateTime": None, "contractType": "ResellerPartner", "customerId": c.tenant_id,
            "defaultDomainName": c.default_domain, "displayName": c.display_name}


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


def _user(agent: dict[str, Any]) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.user", "id": agent["id"],
            "userPrincipalName": agent["userPrincipalName"], "displayName": agent["displayName"],
            "mail": agent["userPrincipalName"]}


async def group_members(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    members = [_user(a) for a in estate(request).group_members(m["id"])]
    params = query_params(request)
    fields = select_fields(params, ("id", "userPrincipalName", "displayName", "mail"), "microsoft.graph.user")
    page, link = offset_page(request, params, [apply_select(u, fields) for u in members], 100, 999)
    return collection(request, "directoryObjects", page, link)


GROUP_FILTERABLE = ("id", "displayname", "securityenabled", "mailenabled")


def _group(group: dict[str, Any]) -> dict[str, Any]:
    return {"id": group["id"], "displayName": group["displayName"], "securityEnabled": True, "mailEnabled": False}


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
    fields = select_fields(params, ("id", "displayName", "securityEnabled", "mailEnabled"), "microsoft.graph.group")
    page, link = offset_page(request, params, [apply_select(g, fields) for g in groups], 100, 999)
    return collection(request, "groups", page, link)


async def get_group(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    group = e.groups.get(m["id"].lower())
    if group is None:
        raise not_found(f"Resource '{m['id']}' does not exist or one of its queried reference-property objects "
                        "are not present.", "Request_ResourceNotFound")
    return _entity(request, "groups", _group(group))


async def get_user(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    key = m["id"].lower()
    for a in e.agents:
        if key in (a["id"].lower(), a["userPrincipalName"].lower()):
            return _entity(request, "users", {k: v for k, v in _user(a).items() if k != "@odata.type"})
    if key == e.sender_mailbox.lower():
        return _entity(request, "users", {"id": stable_guid("mailbox", key), "userPrincipalName": e.sender_mailbox,
                                          "displayName": e.sender_mailbox, "mail": e.sender_mailbox})
    raise not_found(f"Resource '{m['id']}' does not exist or one of its queried reference-property objects are "
                    "not present.", "Request_ResourceNotFound")


async def send_mail(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    estate(request).send_mail(m["id"], body_json(request))
    return empty(202)


# --------------------------------------------------------------------------------------------------
# Partner Center


def pc_customer(c: Customer) -> dict[str, Any]:
    return {
        "id": c.tenant_id,
        "commerceId": c.commerce_id,
        "companyProfile": {"tenantId": c.tenant_id, "domain": c.default_domain, "companyName": c.display_name,
                           "attributes": {"objectType": "CustomerCompanyProfile"}},
        "relationshipToPartner": "reseller",
        "allowDelegatedAccess": bool(c.dap and c.dap.get("enabled")),
        "links": {"self": {"uri": f"/v1/customers/{c.tenant_id}", "method": "GET", "headers": []}},
        "attributes": {"objectType": "Customer"},
    }


_ADDRESSES = {
    "ja": {"country": "JP", "region": "Tokyo", "city": "Chiyoda-ku", "addressLine1": "1-1-1 Marunouchi",
           "postalCode": "100-0005", "phoneNumber": "+81-3-0000-0000"},
    "de": {"country": "DE", "region": "Berlin", "city": "Berlin", "addressLine1": "Unter den Linden 1",
           "postalCode": "10117", "phoneNumber": "+49-30-000000"},
    "fr": {"country": "FR", "region": "Ile-de-France", "city": "Paris", "addressLine1": "1 Rue de Rivoli",
           "postalCode": "75001", "phoneNumber": "+33-1-00-00-00-00"},
    "en": {"country": "US", "region": "WA", "city": "Redmond", "addressLine1": "1 Microsoft Way",
           "postalCode": "98052", "phoneNumber": "+1-425-000-0000"},
}


def pc_billing_profile(c: Customer) -> dict[str, Any]:
    email = c.contacts[0] if c.contacts else None
    local = (email or "billing").split("@", 1)[0]
    parts = [p for p in re.split(r"[._\-+]", local) if p] or ["Billing"]
    first, last = parts[0].capitalize(), (parts[1].capitalize() if len(parts) > 1 else "Contact")
    language = c.culture.split("-", 1)[0].lower() or "en"
    address = dict(_ADDRESSES.get(language, _ADDRESSES["en"]))
    if c.culture.lower() == "en-gb":
        address.update(country="GB", region="London", city="London", addressLine1="1 Victoria Street",
                       postalCode="SW1H 0ET", phoneNumber="+44-20-0000-0000")
    address.update(firstName=first, lastName=last)
    etag = hashlib.sha1(f"{c.tenant_id}|{email}|{c.culture}".encode()).hexdigest()
    return {
        "id": stable_guid("billing", c.tenant_id),
        "firstName": first,
        "lastName": last,
        "email": email,
        "culture": c.culture,
        "language": language,
        "companyName": c.display_name,
        "defaultAddress": address,
        "links": {"self": {"uri": f"/v1/customers/{c.tenant_id}/profiles/billing", "method": "GET", "headers": []}},
        "attributes": {"etag": etag, "objectType": "CustomerBillingProfile"},
    }


def _pc_customer_or_404(request: web.Request, tenant_id: str) -> Customer:
    c = estate(request).customer(tenant_id)
    if c is None:
        raise EmulatorError(404, "2000", f"Customer {tenant_id} was not found.")
    return c


async def pc_list_customers(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    params = query_params(request)
    size_raw = params.get("size")
    start = 0
    size: int | None = None
    token = request.headers.get("MS-ContinuationToken")
    if token:
        data = decode_token(token)
        if not isinstance(data, dict) or not isinstance(data.get("o"), int):
            raise EmulatorError(400, "2001", "The continuation token is invalid.")
        start, size = data["o"], int(data.get("s") or PC_PAGE_MAX)
    if size_raw:
        try:
            size = int(size_raw)
        except ValueError as exc:
            raise EmulatorError(400, "2001", f"Invalid size '{size_raw}'.") from exc
        if not 1 <= size <= PC_PAGE_MAX:
            raise EmulatorError(400, "2001", f"The size must be between 1 and {PC_PAGE_MAX}.")
    size = size or PC_PAGE_MAX
    customers = list(e.customers.values())
    page = customers[start:start + size]
    body: dict[str, Any] = {"totalCount": len(page), "items": [pc_customer(c) for c in page], "links": {}}
    if start + size < len(customers):
        body["links"]["next"] = {
            "uri": f"/v1/customers?size={size}", "method": "GET",
            "headers": [{"key": "MS-ContinuationToken", "value": encode_token({"o": start + size, "s": size})}],
        }
    body["links"]["self"] = {"uri": f"/v1/customers?size={size}", "method": "GET", "headers": []}
    body["attributes"] = {"objectType": "Collection"}
    return pc_json(body)


async def pc_get_customer(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    return pc_json(pc_customer(_pc_customer_or_404(request, m["id"])))


async def pc_billing(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    return pc_json(pc_billing_profile(_pc_customer_or_404(request, m["id"])))


async def pc_patch_customer(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    _pc_customer_or_404(request, m["id"])
    try:
        body = body_json(request)
    except EmulatorError as exc:
        raise EmulatorError(400, "2001", exc.message) from exc
    c = estate(request).disable_dap(m["id"], body)
    return pc_json(pc_customer(c))


async def ca_delegated_admin_customers(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    """Partner Center's ``delegatedAdminCustomers`` (CustomerServiceAdminApi), paged by the caller with
    ``$top`` (at most 300) and ``$skip``; the documented response carries ``value`` (and ``@odata.count``
    with ``$count=true``) but no ``@odata.nextLink``
    (https://learn.microsoft.com/partner-center/developer/list-delegated-admin-customers). The documentation
    names no default page size; a request without ``$top`` gets the maximum, 300."""
    e = estate(request)
    params = query_params(request)
    top = page_size(params, DAC_PAGE_MAX, DAC_PAGE_MAX)
    try:
        skip = int(params.get("skip") or 0)
    except ValueError as exc:
        raise bad_request("Invalid $skip.") from exc
    if skip < 0:
        raise bad_request("Invalid $skip.")
    wanted: bool | None = None
    filt = parse_filter_or_400(params.get("filter"))
    if filt is not None:
        if not (isinstance(filt, Compare) and filt.key == "dapenabled" and filt.op == "eq"
                and isinstance(filt.value, bool)):
            raise bad_request("Invalid filter clause: only 'dapEnabled eq true|false' is supported.")
        wanted = filt.value
    items = []
    for c in e.customers.values():
        if c.dap is None or (wanted is not None and bool(c.dap.get("enabled")) != wanted):
            continue
        agents, count, ga, latest = e.qualifying_stats(c.tenant_id)
        items.append({
            "id": c.tenant_id, "customerTenantId": c.tenant_id, "organizationDisplayName": c.display_name,
            "partnerAgentCount": agents, "partnerSignInCount": count, "globalAdminSignInCount": ga,
            "dapEnabled": bool(c.dap.get("enabled")), "startDateTime": c.dap.get("startDateTime"),
            "endDateTime": c.dap.get("endDateTime"), "lastSignInDateTime": latest,
        })
    page = items[skip:skip + top]
    body: dict[str, Any] = {"value": page}
    if params.get("count", "").lower() == "true":
        body["@odata.count"] = len(items)
    return pc_json(body)


# --------------------------------------------------------------------------------------------------
# Emulator control


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


async def ctl_log(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    rt = _runtime(request)
    every = request.query.get("all", "").lower() in ("1", "true")
    return pc_json(rt.all_requests if every else rt.log)


async def ctl_state(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    include = request.query.get("signIns", "true").lower() not in ("false", "0", "no")
    if not include or len(e.signins) < 50_000:
        return pc_json(e.scenario(include_signins=include))
    # Large estates: stream the sign-ins instead of building one huge string.
    head = e.scenario(include_signins=False)
    resp = web.StreamResponse(headers={"Content-Type": PC_CONTENT_TYPE})
    await resp.prepare(request)
    prefix = _dumps(head)[:-1] + b',"signIns":['
    await resp.write(prefix)
    rows = e.signins.rows
    for start in range(0, len(rows), 20_000):
        chunk = b",".join(_dumps(e.signin_scenario(r)) for r in rows[start:start + 20_000])
        await resp.write((b"," if start else b"") + chunk)
    await resp.write(b"]}")
    await resp.write_eof()
    return resp


async def ctl_scenario(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    raw = request.get("raw_body", b"")
    gc.disable()
    try:
        scenario = load_scenario_text(raw or b"{}")
    finally:
        gc.enable()
    rt = _runtime(request)
    rt.estate = build_estate(scenario)
    del scenario
    rt.log.clear()
    rt.all_requests.clear()
    return pc_json({"ok": True, "customers": len(rt.estate.customers), "signIns": len(rt.estate.signins)})


async def ctl_clock(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    e.set_clock(body_json(request))
    return pc_json({"now": e.now_ts})


async def ctl_signins(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    raw = request.get("raw_body", b"")
    items = load_scenario_text(b'{"signIns":' + raw + b"}")["signIns"] if raw else None
    added = estate(request).add_signins(items)
    return pc_json({"added": added, "total": len(estate(request).signins)})


async def ctl_add_faults(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    body = body_json(request)
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list):
        raise bad_request("Body must be an array of faults.")
    e = estate(request)
    e.faults.extend(Fault.parse(f) for f in body)
    return pc_json([f.scenario() for f in e.faults])


async def ctl_list_faults(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    return pc_json([f.scenario() for f in estate(request).faults])


async def ctl_clear_faults(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    estate(request).faults.clear()
    return pc_json([])


async def ctl_approve(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    rel = estate(request).approve(m["rid"], body_json(request))
    return pc_json(rel.wire())


async def ctl_health(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    return pc_json({"ok": True, "now": e.now_ts, "signIns": len(e.signins), "customers": len(e.customers)})


# --------------------------------------------------------------------------------------------------
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
    return {"value": version["value"], "contentType": version.get("contentType"),
            "id": f"{origin(request)}/keyvault/secrets/{name}/{version['version']}",
            "attributes": version["attributes"]}


async def kv_secret(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    if not query_params(request).get("api-version"):
        return vault_error(400, "BadParameter", "The request URI must contain the api-version query parameter.")
    e = estate(request)
    name = m["name"]
    missing = {p.lower() for p in e.missing_permissions}
    writing = request.method.upper() == "PUT"
    action = "setSecret/action" if writing else "getSecret/action"
    if (KEY_VAULT_OFFICER.lower() in missing and writing) or \
            (KEY_VAULT_OFFICER.lower() in missing and KEY_VAULT_READER.lower() in missing):
        return vault_error(403, "Forbidden", "Caller is not authorized to perform action on resource. "
                           f"Action: 'Microsoft.KeyVault/vaults/secrets/{action}'", "ForbiddenByRbac")
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
        versions.append({"version": uuid.uuid4().hex, "value": body["value"],
                         "contentType": body.get("contentType"), "attributes": attributes})
        return pc_json(_vault_bundle(request, name, versions[-1]))
    wanted = m.get("secret_version")
    found = [v for v in versions if wanted is None or v["version"] == wanted]
    if not found:
        return vault_error(404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault.")
    return pc_json(_vault_bundle(request, name, found[-1]))


# --------------------------------------------------------------------------------------------------
# Routing

_V = r"/(?P<version>v1\.0|beta)"
_REL = _V + r"/tenantRelationships/delegatedAdminRelationships"
_SEG = r"[^/]+"

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", _V + r"/organization", get_organization),
    ("GET", _V + r"/auditLogs/signIns", list_signins),
    ("GET", _V + rf"/auditLogs/signIns/(?P<id>{_SEG})", get_signin),
    ("GET", _REL, list_relationships),
    ("POST", _REL, create_relationship),
    ("GET", _REL + rf"/(?P<rid>{_SEG})", get_relationship),
    ("PATCH", _REL + rf"/(?P<rid>{_SEG})", patch_relationship),
    ("DELETE", _REL + rf"/(?P<rid>{_SEG})", delete_relationship),
    ("GET", _REL + rf"/(?P<rid>{_SEG})/requests", list_requests),
    ("POST", _REL + rf"/(?P<rid>{_SEG})/requests", create_request),
    ("GET", _REL + rf"/(?P<rid>{_SEG})/requests/(?P<sub>{_SEG})", get_request),
    ("GET", _REL + rf"/(?P<rid>{_SEG})/operations", list_operations),
    ("GET", _REL + rf"/(?P<rid>{_SEG})/operations/(?P<sub>{_SEG})", get_operation),
    ("GET", _REL + rf"/(?P<rid>{_SEG})/accessAssignments", list_assignments),
    ("POST", _REL + rf"/(?P<rid>{_SEG})/accessAssignments", create_assignment),
    ("GET", _REL + rf"/(?P<rid>{_SEG})/accessAssignments/(?P<sub>{_SEG})", get_assignment),
    ("PATCH", _REL + rf"/(?P<rid>{_SEG})/accessAssignments/(?P<sub>{_SEG})", patch_assignment),
    ("DELETE", _REL + rf"/(?P<rid>{_SEG})/accessAssignments/(?P<sub>{_SEG})", delete_assignment),
    ("GET", _V + r"/tenantRelationships/delegatedAdminCustomers", list_dac),
    ("GET", _V + rf"/tenantRelationships/delegatedAdminCustomers/(?P<id>{_SEG})", get_dac),
    ("GET", _V + r"/contracts", list_contracts),
    ("GET", _V + rf"/contracts/(?P<id>{_SEG})", get_contract),
    ("GET", _V + rf"/groups/(?P<id>{_SEG})/(?:transitiveMembers|members)(?:/microsoft\.graph\.user)?", group_members),
    ("GET", _V + rf"/groups/(?P<id>{_SEG})", get_group),
    ("GET", _V + r"/groups", list_groups),
    ("GET", _V + rf"/users/(?P<id>{_SEG})", get_user),
    ("POST", _V + rf"/users/(?P<id>{_SEG})/(?:microsoft\.graph\.)?sendMail", send_mail),
    ("GET", r"/partnercenter/v1/customers", pc_list_customers),
    ("GET", rf"/partnercenter/v1/customers/(?P<id>{_SEG})", pc_get_customer),
    ("PATCH", rf"/partnercenter/v1/customers/(?P<id>{_SEG})", pc_patch_customer),
    ("GET", rf"/partnercenter/v1/customers/(?P<id>{_SEG})/profiles/billing", pc_billing),
    ("GET", r"/customeradmin/v1/delegatedAdminCustomers", ca_delegated_admin_customers),
    ("GET", rf"/keyvault/secrets/(?P<name>{_SEG})(?:/(?P<secret_version>{_SEG}))?", kv_secret),
    ("PUT", rf"/keyvault/secrets/(?P<name>{_SEG})", kv_secret),
    ("GET", r"/_emulator/log", ctl_log),
    ("GET", r"/_emulator/state", ctl_state),
    ("POST", r"/_emulator/scenario", ctl_scenario),
    ("POST", r"/_emulator/clock", ctl_clock),
    ("POST", r"/_emulator/signIns", ctl_signins),
    ("GET", r"/_emulator/faults", ctl_list_faults),
    ("POST", r"/_emulator/faults", ctl_add_faults),
    ("DELETE", r"/_emulator/faults", ctl_clear_faults),
    ("POST", rf"/_emulator/approve/(?P<rid>{_SEG})", ctl_approve),
    ("GET", r"/_emulator/health", ctl_health),
]
_COMPILED = [(method, re.compile(pattern + r"/?", re.IGNORECASE), handler) for method, pattern, handler in ROUTES]

SIGNIN_HANDLERS: set[Handler] = {list_signins, get_signin}

# Graph GET list routes (what "empty" and "pageSize" faults touch) and the @odata.context of their pages.
GRAPH_LISTS: dict[Handler, Callable[[dict[str, str]], str]] = {
    list_signins: lambda m: "auditLogs/signIns",
    list_relationships: lambda m: "tenantRelationships/delegatedAdminRelationships",
    list_requests: lambda m: f"tenantRelationships/delegatedAdminRelationships('{m['rid']}')/requests",
    list_operations: lambda m: f"tenantRelationships/delegatedAdminRelationships('{m['rid']}')/operations",
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
_GDAP_READERS: tuple[Handler, ...] = (list_relationships, get_relationship, list_requests, get_request,
                                      list_operations, get_operation, list_assignments, get_assignment,
                                      list_dac, get_dac)
_GDAP_WRITERS: tuple[Handler, ...] = (create_relationship, patch_relationship, delete_relationship,
                                      create_request, create_assignment, patch_assignment, delete_assignment)
REQUIRED_PERMISSIONS: dict[Handler, frozenset[str]] = {
    list_signins: frozenset({AUDIT_LOG_READ}),
    get_signin: frozenset({AUDIT_LOG_READ}),
    **{h: frozenset({GDAP_READ, GDAP_WRITE}) for h in _GDAP_READERS},
    **{h: frozenset({GDAP_WRITE}) for h in _GDAP_WRITERS},
    send_mail: frozenset({MAIL_SEND}),
    group_members: frozenset({GROUP_MEMBER_READ}),
    get_group: frozenset({GROUP_MEMBER_READ}),
    list_groups: frozenset({GROUP_MEMBER_READ}),
}


def _resolve(method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
    """(handler, path params, path-known-for-another-method)."""
    other = False
    for route_method, regex, handler in _COMPILED:
        m = regex.fullmatch(path)
        if m:
            if route_method == method or (method == "HEAD" and route_method == "GET"):
                return handler, {k: v for k, v in m.groupdict().items() if v is not None}, False
            other = True
    return None, {}, other


def _is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def _log_entry(request: web.Request, raw: bytes) -> dict[str, Any]:
    body: Any = None
    if raw:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = raw.decode("utf-8", "replace")
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
    return {"method": request.method, "path": request.path, "body": body, "headers": headers}


def _error_response(request: web.Request, exc: EmulatorError) -> web.Response:
    if request.path.lower().startswith("/partnercenter/"):
        resp = pc_error(exc.status, exc.code, exc.message)
        resp.headers.update(exc.headers)
        return resp
    return graph_error(request, exc.status, exc.code, exc.message, exc.headers)


async def _serve_fault(request: web.Request, fault: Fault, dispatch: Callable[[], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
    transport = request.transport
    if fault.kind == "reset":
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError  # nothing more to send on this connection
    if fault.kind == "timeout":
        await asyncio.sleep(fault.delay_seconds)
        return await dispatch()
    if fault.kind == "truncate":
        full = await dispatch()
        body = full.body if isinstance(full, web.Response) and isinstance(full.body, bytes) else b"{}"
        resp = web.StreamResponse(status=200, headers={"Content-Type": full.headers.get("Content-Type",
                                                                                         GRAPH_CONTENT_TYPE)})
        resp.content_length = len(body)
        _stamp(request, resp)
        await resp.prepare(request)
        await resp.write(body[: max(1, len(body) // 2)])
        if transport is not None:
            await asyncio.sleep(0.01)
            transport.close()
        raise asyncio.CancelledError
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    code, message = {
        429: ("TooManyRequests", "Too many requests. Please retry again later."),
        503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry again later."),
        504: ("GatewayTimeout", "The gateway timed out."),
        500: ("InternalServerError", "An internal server error occurred."),
        502: ("BadGateway", "Bad gateway."),
    }.get(fault.status, ("Fault", f"Injected fault {fault.status}."))
    return graph_error(request, fault.status, code, message, headers)


def _stamp(request: web.Request, resp: web.StreamResponse) -> None:
    # Microsoft's services send their clock in the Date header (RFC 9110 5.6.7 IMF-fixdate); the product
    # takes "now" from it, so the emulator sends its own clock, not the host's.
    resp.headers["Date"] = format_datetime(request.app[RUNTIME].estate.now.astimezone(UTC), usegmt=True)
    resp.headers["request-id"] = request["request_id"]
    resp.headers["client-request-id"] = request["client_request_id"]


async def dispatch_all(request: web.Request) -> web.StreamResponse:
    request["request_id"] = str(uuid.uuid4())
    request["client_request_id"] = request.headers.get("client-request-id") or request["request_id"]
    path = request.path
    method = request.method.upper()
    raw = await request.read() if request.can_read_body else b""
    request["raw_body"] = raw
    rt = request.app[RUNTIME]
    handler, params, other = _resolve(method, path)
    version = params.get("version")
    request["version"] = version.lower() if version else ("beta" if path.lower().startswith("/beta") else "v1.0")

    async def run() -> web.StreamResponse:
        if handler is None:
            if other:
                raise EmulatorError(405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed.")
            raise EmulatorError(400, "BadRequest", f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'.")
        return await handler(request, params)

    async def guarded() -> web.StreamResponse:
        try:
            return await run()
        except EmulatorError as exc:
            return _error_response(request, exc)

    resp: web.StreamResponse
    if not _is_api(path):
        if handler is None:
            resp = pc_json({"error": f"unknown emulator route {method} {path}"}, 404)
        else:
            resp = await guarded()
        _stamp(request, resp)
        return resp

    entry = _log_entry(request, raw)
    is_list = method in ("GET", "HEAD") and handler in GRAPH_LISTS
    if is_list:
        _resume(request)
    fault = next((f for f in rt.estate.faults if f.matches(method, path, is_list) and not f.let_through()), None)
    if fault is not None:
        fault.consume()
        entry["fault"] = fault.label
    rt.all_requests.append(entry)
    if method in MUTATING:
        rt.log.append(entry)
    if fault is not None and fault.page_size is not None:
        request["page_cap"] = fault.page_size  # served normally below, in short pages
    elif fault is not None:
        if fault.empty and handler is not None:
            resp = _empty_page(request, GRAPH_LISTS[handler](params))
        else:
            resp = await _serve_fault(request, fault, guarded)
        _stamp(request, resp)
        return resp

    auth = request.headers.get("Authorization", "")
    if path.startswith("/keyvault/") and (not auth.startswith("Bearer ") or not auth[7:].strip()):
        # Key Vault's challenge: 401 naming the authority and resource to get a token for.
        resp = vault_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
        resp.headers["WWW-Authenticate"] = ('Bearer authorization="https://login.microsoftonline.com/common", '
                                            'resource="https://vault.azure.net"')
    elif not auth.startswith("Bearer ") or not auth[7:].strip():
        resp = graph_error(request, 401, "InvalidAuthenticationToken",
                           "Access token is empty." if not auth else "Access token validation failure.")
    else:
        refusal = _refusal(request, rt.estate, handler)
        resp = refusal if refusal is not None else await guarded()
    _stamp(request, resp)
    return resp


def _refusal(request: web.Request, e: Estate, handler: Handler | None) -> web.Response | None:
    """What Graph answers instead of the resource: throttling (429), then a missing permission or licence
    (403); None to serve the request."""
    if handler in SIGNIN_HANDLERS and e.throttle is not None:
        wait = e.throttle.admit(time.monotonic())
        if wait is not None:
            # Graph's 429 (https://learn.microsoft.com/graph/throttling#sample-response): code TooManyRequests
            # and a Retry-After in seconds -- whole seconds here, at least 1: until the oldest admitted request
            # leaves the window.
            return graph_error(request, 429, "TooManyRequests", "Please retry again later.",
                               {"Retry-After": str(max(1, math.ceil(wait)))},
                               {"code": "429", "message": "Please retry after", "status": "429"})
    required = REQUIRED_PERMISSIONS.get(handler) if handler is not None else None
    if required:
        missing = {p.lower() for p in e.missing_permissions}
        if all(p.lower() in missing for p in required):
            return _permission_refusal(request, handler)
    if handler in SIGNIN_HANDLERS and not e.signin_log_licensed:
        # "You must have a Microsoft Entra ID P1 or P2 license to download sign-in logs using the Microsoft
        # Graph API" (signIn resource, https://learn.microsoft.com/graph/api/resources/signin); a tenant
        # without one is answered this 403 (microsoftgraph/microsoft-graph-docs#4336, msgraph-sdk-dotnet#1006).
        return graph_error(request, 403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                           "Neither tenant is B2C or tenant doesn't have premium license")
    return None


def _permission_refusal(request: web.Request, handler: Handler | None) -> web.Response:
    """The 403 of a route whose application permission is not granted, as each service words it."""
    if handler in SIGNIN_HANDLERS:
        # The reporting API names the missing permission (microsoftgraph/microsoft-graph-explorer-v4#3165,
        # microsoftgraph/microsoft-graph-docs-contrib#8997) instead of the directory's Authorization_RequestDenied.
        return graph_error(request, 403, "Authentication_MSGraphPermissionMissing",
                           f"Calling principal does not have required MSGraph permissions {AUDIT_LOG_READ}")
    if handler is send_mail:
        # Exchange Online answers sendMail (e.g. microsoftgraph/microsoft-graph-docs#10880).
        return graph_error(request, 403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    return graph_error(request, 403, "Authorization_RequestDenied",
                       "Insufficient privileges to complete the operation.")


def _resume(request: web.Request) -> None:
    """Unwrap the ``$skiptoken`` of a nextLink handed out with an empty page: the list handler then sees the
    query that page interrupted (with its own skiptoken, or none)."""
    token = query_params(request).get("skiptoken")
    if not token:
        return
    try:
        data = decode_token(token)
    except EmulatorError:
        return
    if not isinstance(data, dict) or "resume" not in data:
        return
    pieces = [piece for piece in raw_query(request).split("&")
              if piece and unquote_plus(piece.partition("=")[0]).lstrip("$").lower() != "skiptoken"]
    if isinstance(data["resume"], str):
        pieces.append(f"$skiptoken={quote(data['resume'], safe='')}")
    request["raw_query"] = "&".join(pieces)


def _empty_page(request: web.Request, context: str) -> web.Response:
    """200, no items, and an @odata.nextLink that resumes the same query where this page stood."""
    resume = query_params(request).get("skiptoken")
    token = encode_token({"resume": resume, "n": request["request_id"][:8]})
    return collection(request, context, [], next_link(request, {"skiptoken": token}))


def build_estate(scenario: dict[str, Any]) -> Estate:
    """Build the estate without the cyclic GC repeatedly walking a million fresh sign-ins, then move
    everything built so far out of the GC's way (a full collection over 1M rows stalls for seconds)."""
    gc.disable()
    try:
        result = Estate(scenario)
    finally:
        gc.enable()
    gc.freeze()
    return result


def create_app(scenario: dict[str, Any]) -> web.Application:
    """The emulator as an aiohttp application over ``scenario`` (a parsed scenario document)."""
    app = web.Application(client_max_size=4 * 1024**3)
    app[RUNTIME] = Runtime(build_estate(scenario))
    app.router.add_route("*", "/{tail:.*}", dispatch_all)
    return app
