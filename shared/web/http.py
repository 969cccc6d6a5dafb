"""What every HTTP route shares: errors, body and parameter parsing, role guards, the per-app state
and the services behind a request."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from fastapi import Depends, Request
from fastapi import Query as FastApiQuery
from fastapi.responses import JSONResponse, Response

from shared.evaluation.formats import CSV_BOM
from shared.platform.timeutil import iso, parse_iso
from shared.services import Services
from shared.web.auth import (
    GRANT_ROLE,
    LOCAL_OPERATOR,
    PRINCIPAL_HEADER,
    READ_ROLE,
    REMOVE_ROLE,
    Principal,
    parse_principal,
    principal_header_trusted,
)
from shared.web.catalog import CustomerIndex
from shared.web.security import (
    HostsProvider,
    app_service_hosts,
    cross_site_reason,
    is_json_content_type,
)

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


MAX_BODY_BYTES = 64 * 1024


INDEX_RECHECK_SECONDS = 2.0


ServicesProvider = Callable[[], Awaitable[Services]]


class ApiError(Exception):
    """An answer other than success: always JSON ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"code": self.code, "message": self.message, **self.details}
        headers = (
            {"WWW-Authenticate": 'EasyAuth realm="Delegated Admin Monitor"'} if self.status == 401 else None
        )
        return JSONResponse({"error": error}, status_code=self.status, headers=headers)


@dataclass
class WebConfig:
    services: ServicesProvider
    local_operator: bool = False
    # Whether X-MS-CLIENT-PRINCIPAL can be believed; asked per request (see auth.principal_header_trusted).
    trust_principal_header: Callable[[], bool] = principal_header_trusted
    # serve: no queue trigger runs locally, so the app drains the removal queue itself.
    drain_removals: bool = False
    on_shutdown: Callable[[], Awaitable[None]] | None = None
    # The host names served (DNS-rebinding guard); None: not checked. In Azure, WEBSITE_HOSTNAME and
    # ALLOWED_HOSTS; for serve, the address it listens on.
    allowed_hosts: HostsProvider = app_service_hosts


@dataclass
class WebState:
    config: WebConfig
    index: CustomerIndex | None = None
    index_checked: float = 0.0
    index_loop: int = 0
    drain_wakeup: asyncio.Event | None = None


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def current_principal(request: Request) -> Principal | None:
    config = web_state(request).config
    if config.local_operator:
        return LOCAL_OPERATOR
    if not config.trust_principal_header():
        return None
    return parse_principal(request.headers.get(PRINCIPAL_HEADER))


class Requires:
    """Dependency: the caller's principal, which must hold ``role`` (401 without one, 403 without the role)."""

    def __init__(self, role: str) -> None:
        self.role = role

    async def __call__(self, request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            raise ApiError(401, "unauthenticated", "sign in first: no valid X-MS-CLIENT-PRINCIPAL")
        if not principal.has(self.role):
            raise ApiError(403, "forbidden", f"the app role {self.role} is required")
        return principal


reader = Depends(Requires(READ_ROLE))


remover = Depends(Requires(REMOVE_ROLE))


granter = Depends(Requires(GRANT_ROLE))


async def json_body(request: Request) -> dict[str, Any]:
    """The body of a state change: same-site, JSON only, an object, at most 64 KB."""
    reason = cross_site_reason(request, request.app.state.web.config.allowed_hosts())
    if reason is not None:
        raise ApiError(403, "crossSiteRequest", f"cross-site requests cannot change anything ({reason})")
    if not is_json_content_type(request.headers.get("content-type")):
        raise ApiError(415, "unsupportedMediaType", "the body must be JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ApiError(413, "bodyTooLarge", f"the body must be at most {MAX_BODY_BYTES} bytes")
    # Read as it arrives and stop past the limit: a chunked body declares no length up front.
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "bodyTooLarge", f"the body must be at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested thousands deep
        raise ApiError(400, "malformedJson", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "malformedBody", "the body must be a JSON object")
    return body


def parse_guid(value: str, what: str = "tenantId") -> str:
    if not isinstance(value, str) or not GUID.fullmatch(value):
        raise ApiError(400, "invalidTenantId", f"{what} must be a tenant id (GUID)")
    return value.lower()


MISSING_STORAGE = ("TableNotFound", "QueueNotFound")


def storage_missing(exc: ResourceNotFoundError) -> bool:
    """A table or queue that is not there (the Tables SDK leaves ``error_code`` empty for its OData
    errors, so the code is read from the message too)."""
    code = str(getattr(exc, "error_code", "") or "")
    return code in MISSING_STORAGE or any(name in str(exc) for name in MISSING_STORAGE)


EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)


LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)


def parse_time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        moment = parse_iso(value)
    except (ValueError, OverflowError):
        raise ApiError(400, "invalidParameter", f"{name} must be an ISO 8601 time") from None
    # Days are added to and taken from it: a moment near year 1 or 9999 would overflow into a 500.
    if not EARLIEST_TIME <= moment <= LATEST_TIME:
        raise ApiError(
            400, "invalidParameter", f"{name} must lie between {EARLIEST_TIME.year} and {LATEST_TIME.year}"
        )
    return moment


@dataclass(frozen=True)
class Whole:
    """A whole-number query parameter, documented (OpenAPI: integer, minimum, maximum) and parsed from
    this one definition. The route declares ``name: str | None = SPEC.query()`` and reads
    ``SPEC.parse(name)``, so a bad value gets the API's own 400 ``invalidParameter``."""

    name: str
    default: int
    low: int
    high: int
    description: str = ""

    def query(self) -> Any:
        return FastApiQuery(
            None,
            description=f"{self.description} (default {self.default})".strip(),
            json_schema_extra={"type": "integer", "minimum": self.low, "maximum": self.high},
        )

    def parse(self, value: str | None) -> int:
        return parse_int(value, self.name, self.default, self.low, self.high)


def choice_query(default: str | None, values: Iterable[str], description: str = "") -> Any:
    """A query parameter that takes one of ``values`` (OpenAPI enum); the route still checks it."""
    return FastApiQuery(default, description=description or None, json_schema_extra={"enum": list(values)})


def time_query(description: str) -> Any:
    """An ISO 8601 time query parameter (parsed with :func:`parse_time`)."""
    return FastApiQuery(
        None,
        description=f"{description} (ISO 8601, {EARLIEST_TIME.year} to {LATEST_TIME.year})",
        json_schema_extra={"type": "string", "format": "date-time"},
    )


def parse_int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if not re.fullmatch(r"\d{1,9}", value):
        raise ApiError(400, "invalidParameter", f"{name} must be a whole number")
    number = int(value)
    if not low <= number <= high:
        raise ApiError(400, "invalidParameter", f"{name} must be between {low} and {high}")
    return number


def json_response(content: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(content, ensure_ascii=False), status_code=status, media_type="application/json"
    )


def csv_response(body: bytes, filename: str) -> Response:
    return Response(
        CSV_BOM.encode("utf-8") + body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def services_of(request: Request) -> Services:
    return await web_state(request).config.services()


async def latest_index(request: Request) -> CustomerIndex:
    """The index of the latest stored evaluation; rebuilt only when a newer evaluation is stored."""
    state = web_state(request)
    loop = asyncio.get_running_loop()
    now = loop.time()
    if (
        state.index is not None
        and state.index_loop == id(loop)
        and now - state.index_checked < INDEX_RECHECK_SECONDS
    ):
        return state.index
    services = await services_of(request)
    stored = await services.evaluations.latest()
    if stored is None:
        raise ApiError(
            404, "noEvaluation", "no evaluation is stored yet: run the audit (POST /api/audit/run)"
        )
    if state.index is None or state.index.evaluation_id != stored.id:
        state.index = CustomerIndex(stored.id, iso(stored.created_at), stored.report)
    state.index_checked, state.index_loop = now, id(loop)
    return state.index
