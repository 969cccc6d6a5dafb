"""HTTP surface of the emulator: the route table, faults, authentication and dispatch.

Routing is done here (one catch-all aiohttp route and a case-insensitive table) because Graph treats
paths case-insensitively and answers unknown routes with its own JSON error shape.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, unquote_plus

from aiohttp import web

from .control_api import (
    ctl_add_faults,
    ctl_approve,
    ctl_archive,
    ctl_clear_faults,
    ctl_clock,
    ctl_customer_actions,
    ctl_health,
    ctl_list_faults,
    ctl_log,
    ctl_scenario,
    ctl_signins,
    ctl_state,
)
from .errors import EmulatorError
from .estate import build_estate
from .faults import Fault
from .graph_api import (
    GRAPH_LISTS,
    create_assignment,
    create_relationship,
    create_request,
    delete_assignment,
    delete_relationship,
    get_assignment,
    get_contract,
    get_dac,
    get_group,
    get_operation,
    get_organization,
    get_relationship,
    get_request,
    get_signin,
    get_user,
    group_members,
    list_assignments,
    list_contracts,
    list_dac,
    list_groups,
    list_operations,
    list_relationships,
    list_requests,
    list_signins,
    patch_assignment,
    patch_relationship,
    refusal,
    remove_group_member,
    send_mail,
)
from .keyvault_api import challenge, kv_secret
from .partner_center_api import (
    ca_delegated_admin_customers,
    pc_billing,
    pc_get_customer,
    pc_list_customers,
    pc_patch_customer,
    pc_relationships,
)
from .resource_manager_api import ROUTES as RESOURCE_MANAGER_ROUTES
from .wire import (
    GRAPH_CONTENT_TYPE,
    RUNTIME,
    Handler,
    Runtime,
    caller_app_id,
    collection,
    decode_token,
    encode_token,
    graph_error,
    next_link,
    pc_error,
    pc_json,
    query_params,
    raw_query,
)

API_PREFIXES = ("/v1.0/", "/beta/", "/partnercenter/", "/customeradmin/", "/keyvault/", "/arm/")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}

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
    (
        "GET",
        _V + rf"/groups/(?P<id>{_SEG})/(?:transitiveMembers|members)(?:/microsoft\.graph\.user)?",
        group_members,
    ),
    ("DELETE", _V + rf"/groups/(?P<id>{_SEG})/members/(?P<member>{_SEG})/\$ref", remove_group_member),
    ("GET", _V + rf"/groups/(?P<id>{_SEG})", get_group),
    ("GET", _V + r"/groups", list_groups),
    ("GET", _V + rf"/users/(?P<id>{_SEG})", get_user),
    ("POST", _V + rf"/users/(?P<id>{_SEG})/(?:microsoft\.graph\.)?sendMail", send_mail),
    ("GET", r"/partnercenter/v1/customers", pc_list_customers),
    ("GET", r"/partnercenter/v1/relationships", pc_relationships),
    ("GET", rf"/partnercenter/v1/customers/(?P<id>{_SEG})", pc_get_customer),
    ("PATCH", rf"/partnercenter/v1/customers/(?P<id>{_SEG})", pc_patch_customer),
    ("GET", rf"/partnercenter/v1/customers/(?P<id>{_SEG})/profiles/billing", pc_billing),
    ("GET", r"/customeradmin/v1/delegatedAdminCustomers", ca_delegated_admin_customers),
    ("GET", rf"/keyvault/secrets/(?P<name>{_SEG})(?:/(?P<secret_version>{_SEG}))?", kv_secret),
    ("PUT", rf"/keyvault/secrets/(?P<name>{_SEG})", kv_secret),
    *RESOURCE_MANAGER_ROUTES,
    ("GET", r"/_emulator/log", ctl_log),
    ("GET", r"/_emulator/state", ctl_state),
    ("POST", r"/_emulator/scenario", ctl_scenario),
    ("POST", r"/_emulator/clock", ctl_clock),
    ("POST", r"/_emulator/signIns", ctl_signins),
    ("GET", r"/_emulator/faults", ctl_list_faults),
    ("POST", r"/_emulator/faults", ctl_add_faults),
    ("DELETE", r"/_emulator/faults", ctl_clear_faults),
    ("POST", rf"/_emulator/approve/(?P<rid>{_SEG})", ctl_approve),
    ("POST", r"/_emulator/customerActions", ctl_customer_actions),
    ("POST", r"/_emulator/archive", ctl_archive),
    ("GET", r"/_emulator/health", ctl_health),
]
_COMPILED = [
    (method, re.compile(pattern + r"/?", re.IGNORECASE), handler) for method, pattern, handler in ROUTES
]


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
    # The caller's identity (the token's appid), not the token itself.
    return {
        "method": request.method,
        "path": request.path,
        "body": body,
        "headers": headers,
        "appId": caller_app_id(request),
    }


def _error_response(request: web.Request, exc: EmulatorError) -> web.Response:
    if request.path.lower().startswith("/partnercenter/"):
        resp = pc_error(exc.status, exc.code, exc.message)
        resp.headers.update(exc.headers)
        return resp
    return graph_error(request, exc.status, exc.code, exc.message, exc.headers)


async def _serve_fault(
    request: web.Request, fault: Fault, dispatch: Callable[[], Awaitable[web.StreamResponse]]
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
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": full.headers.get("Content-Type", GRAPH_CONTENT_TYPE)}
        )
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
    request["version"] = (
        version.lower() if version else ("beta" if path.lower().startswith("/beta") else "v1.0")
    )

    async def run() -> web.StreamResponse:
        if handler is None:
            if other:
                raise EmulatorError(405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed.")
            raise EmulatorError(
                400, "BadRequest", f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'."
            )
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
    fault = next(
        (f for f in rt.estate.faults if f.matches(method, path, is_list) and not f.let_through()), None
    )
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
        entry["status"] = resp.status
        _stamp(request, resp)
        return resp

    auth = request.headers.get("Authorization", "")
    if path.startswith("/keyvault/") and (not auth.startswith("Bearer ") or not auth[7:].strip()):
        resp = challenge()
    elif not auth.startswith("Bearer ") or not auth[7:].strip():
        resp = graph_error(
            request,
            401,
            "InvalidAuthenticationToken",
            "Access token is empty." if not auth else "Access token validation failure.",
        )
    else:
        refused = refusal(request, rt.estate, handler)
        resp = refused if refused is not None else await guarded()
    entry["status"] = resp.status
    _stamp(request, resp)
    return resp


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
    pieces = [
        piece
        for piece in raw_query(request).split("&")
        if piece and unquote_plus(piece.partition("=")[0]).lstrip("$").lower() != "skiptoken"
    ]
    if isinstance(data["resume"], str):
        pieces.append(f"$skiptoken={quote(data['resume'], safe='')}")
    request["raw_query"] = "&".join(pieces)


def _empty_page(request: web.Request, context: str) -> web.Response:
    """200, no items, and an @odata.nextLink that resumes the same query where this page stood."""
    resume = query_params(request).get("skiptoken")
    token = encode_token({"resume": resume, "n": request["request_id"][:8]})
    return collection(request, context, [], next_link(request, {"skiptoken": token}))


def create_app(scenario: dict[str, Any]) -> web.Application:
    """The emulator as an aiohttp application over ``scenario`` (a parsed scenario document)."""
    app = web.Application(client_max_size=4 * 1024**3)
    app[RUNTIME] = Runtime(build_estate(scenario))
    app.router.add_route("*", "/{tail:.*}", dispatch_all)
    return app
