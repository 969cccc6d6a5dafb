"""The HTTP API (CONTRACTS section 7) and the portal, as one ASGI app.

The same app object runs in the function app (``functions/http_api.py`` hands every request to it
through ``func.AsgiMiddleware``), under ``python -m shared.cli serve`` (uvicorn) and in tests
(Starlette's TestClient), so there is one set of handlers and one set of rules.

Every route under ``/api/`` needs a principal holding ``Relationships.Read``; removals need
``Relationships.Remove``. The portal's static shell (``/`` and ``/static/``) holds no data and is served
to anyone, so a user without a role sees a clear message instead of a bare 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.domain.roles import role_catalog, role_name
from shared.platform.settings import SettingsError
from shared.platform.timeutil import iso, iso_optional, parse_iso, utcnow
from shared.relationships.store import RelationshipStore
from shared.services import Services
from shared.signins.ingestion import ActivityReader, AgentDirectory
from shared.web import schemas
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
from shared.web.catalog import BUCKET_FILTERS, DEFAULT_SORT, SORT_KEYS, CustomerIndex, Query, QueryError
from shared.web.runs import AuditRuns
from shared.web.security import (
    HostCheck,
    HostsProvider,
    SecurityHeaders,
    app_service_hosts,
    cross_site_reason,
    is_json_content_type,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
REMOVAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_REMOVAL_IDS = 100
MAX_BODY_BYTES = 64 * 1024
MAX_REASON = 500
INDEX_RECHECK_SECONDS = 2.0
DRAIN_INTERVAL_SECONDS = 5.0

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
        headers = {"WWW-Authenticate": 'EasyAuth realm="Delegated Admin Monitor"'} if self.status == 401 else None
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
    runs: AuditRuns = field(default_factory=AuditRuns)
    index: CustomerIndex | None = None
    index_checked: float = 0.0
    index_loop: int = 0
    drain_wakeup: asyncio.Event | None = None


def removals_module() -> ModuleType:
    """``shared.removals.worker``, imported on first use (it pulls in the mail templates)."""
    import shared.removals.worker

    return shared.removals.worker


# --- request helpers ---------------------------------------------------------------------------------

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
        raise ApiError(400, "invalidParameter", f"{name} must lie between {EARLIEST_TIME.year} and {LATEST_TIME.year}")
    return moment


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
    return Response(json.dumps(content, ensure_ascii=False), status_code=status, media_type="application/json")


def csv_response(body: bytes, filename: str) -> Response:
    return Response(b"\xef\xbb\xbf" + body, media_type="text/csv; charset=utf-8",  # BOM: Excel reads UTF-8
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


async def services_of(request: Request) -> Services:
    return await web_state(request).config.services()


async def latest_index(request: Request) -> CustomerIndex:
    """The index of the latest stored evaluation; rebuilt only when a newer evaluation is stored."""
    state = web_state(request)
    loop = asyncio.get_running_loop()
    now = loop.time()
    if state.index is not None and state.index_loop == id(loop) and now - state.index_checked < INDEX_RECHECK_SECONDS:
        return state.index
    services = await services_of(request)
    stored = await services.evaluations.latest()
    if stored is None:
        raise ApiError(404, "noEvaluation", "no evaluation is stored yet: run the audit (POST /api/audit/run)")
    if state.index is None or state.index.evaluation_id != stored.id:
        state.index = CustomerIndex(stored.id, iso(stored.created_at), stored.report)
    state.index_checked, state.index_loop = now, id(loop)
    return state.index


# --- the app -----------------------------------------------------------------------------------------

def create_app(config: WebConfig) -> FastAPI:
    state = WebState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        drainer: asyncio.Task[None] | None = None
        if config.drain_removals:
            state.drain_wakeup = asyncio.Event()
            drainer = asyncio.create_task(drain_removal_queue(state))
        try:
            yield
        finally:
            if drainer is not None:
                drainer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drainer
            await state.runs.wait()
            if config.on_shutdown is not None:
                await config.on_shutdown()

    app = FastAPI(
        title="Delegated Admin Monitor API",
        version="1.0.0",
        description=("Monitoring of DAP and GDAP delegated admin relationships: the audit report, customers, "
                     "sign-in history, actions, trends and removals. Callers are signed in through App Service "
                     "Authentication (X-MS-CLIENT-PRINCIPAL) and need the app role Relationships.Read; "
                     "removals need Relationships.Remove."),
        openapi_url=None, docs_url=None, redoc_url=None,  # served below, behind the Read role
        lifespan=lifespan,
    )
    app.state.web = state
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HostCheck, allowed=config.allowed_hosts)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "notFound", 405: "methodNotAllowed"}.get(exc.status_code, "httpError")
        return ApiError(exc.status_code, code, str(exc.detail)).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return ApiError(400, "invalidRequest", "the request is not valid").response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ResourceNotFoundError) and storage_missing(exc):
            # The tables or queues vanished under a running server (storage reset): make them again, so
            # that the next request works without a restart.
            log.warning("storage %s on %s %s: creating tables and queues again", getattr(exc, "error_code", ""), request.method,
                        request.url.path)
            try:
                services = await services_of(request)
                services.storage.forget()
                await services.storage.ensure()
            except Exception:
                log.exception("could not create the tables and queues again")
            answer = ApiError(503, "storageReset", "the storage was reset; try again").response()
            answer.headers["Retry-After"] = "1"
            return answer
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ApiError(500, "internalError", "the request failed; see the application log").response()

    register_portal(app)
    register_api(app)
    from shared.web.gdap_api import register_gdap_api  # imports this module: registered last

    register_gdap_api(app)
    return app


def register_portal(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def portal() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def register_api(app: FastAPI) -> None:
    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi(principal: Principal = reader) -> Response:
        document = app.openapi()
        components = document.setdefault("components", {})
        components["securitySchemes"] = {"easyAuth": {
            "type": "apiKey", "in": "header", "name": "X-MS-CLIENT-PRINCIPAL",
            "description": "Set by App Service Authentication (Microsoft Entra ID); app roles "
                           "Relationships.Read and Relationships.Remove"}}
        document["security"] = [{"easyAuth": []}]
        return json_response(document)

    @app.get("/api/me", tags=["portal"], summary="The signed-in user and what they may do",
             responses={200: {"model": schemas.Me}, **schemas.ERRORS})
    async def me(principal: Principal = reader) -> Response:
        return json_response({"name": principal.name, "roles": sorted(principal.roles),
                              "canRemove": principal.has(REMOVE_ROLE),
                              "canGrant": principal.has(GRANT_ROLE), "localOperator": principal.local_operator})

    @app.get("/api/roles", tags=["portal"], summary="Names of well-known Entra role definition ids (en, ja)",
             responses=schemas.ERRORS)
    async def roles(principal: Principal = reader) -> Response:
        return json_response(role_catalog())

    @app.get("/api/audit", tags=["audit"], summary="The audit report (CONTRACTS section 5) of the latest evaluation",
             responses={200: {"content": {"text/csv": {}}, "description": "the report (JSON) or CSV"},
                        **schemas.ERRORS})
    async def audit(request: Request, format: str = "json", principal: Principal = reader) -> Response:
        if format not in ("json", "csv"):
            raise ApiError(400, "invalidParameter", "format must be json or csv")
        index = await latest_index(request)
        if format == "csv":
            return csv_response(index.report_csv(), f"delegated-admin-audit-{index.head['asOf'][:10]}.csv")
        return Response(index.report_json(), media_type="application/json")

    @app.get("/api/customers", tags=["customers"], summary="Customer rows of the latest evaluation, filtered, "
             "sorted and paged", responses={200: {"model": schemas.CustomerPage}, **schemas.ERRORS})
    async def customers(request: Request, bucket: str | None = None, q: str = "", sort: str = DEFAULT_SORT,
                        page: str | None = None, pageSize: str | None = None,
                        recommendation: str | None = None, type: str | None = None, format: str = "json",
                        principal: Principal = reader) -> Response:
        if format not in ("json", "csv"):
            raise ApiError(400, "invalidParameter", "format must be json or csv")
        query = Query(bucket=bucket or None, q=q, sort=sort or DEFAULT_SORT,
                      page=parse_int(page, "page", 1, 1, 10**6),
                      page_size=parse_int(pageSize, "pageSize", 50, 1, 500),
                      recommendation=recommendation or None, relationship_type=type or None)
        try:
            query.validate()
        except QueryError as exc:
            raise ApiError(400, "invalidParameter", str(exc)) from None
        index = await latest_index(request)
        if format == "csv":
            return csv_response(index.csv(query), f"delegated-admin-customers-{index.head['asOf'][:10]}.csv")
        return Response(index.page(query), media_type="application/json")

    @app.get("/api/customers/{tenant_id}", tags=["customers"],
             summary="One customer: relationships with roles and access assignments, daily sign-ins, agents, "
                     "actions", responses={200: {"model": schemas.CustomerDetail}, **schemas.ERRORS})
    async def customer(request: Request, tenant_id: str, days: str | None = None,
                       principal: Principal = reader) -> Response:
        tenant = parse_guid(tenant_id)
        span = parse_int(days, "days", 90, 1, 400)
        services = await services_of(request)
        store = RelationshipStore(services.storage)
        (known, relationships), changes = await asyncio.gather(store.load_customer(tenant), store.changes(tenant))
        if known is None and not relationships:
            raise ApiError(404, "unknownCustomer", "no customer with this tenant id is known")
        index: CustomerIndex | None
        try:
            index = await latest_index(request)
        except ApiError:
            index = None
        row = index.row(tenant) if index is not None else None
        end = parse_iso(index.head["asOf"]) if index is not None else utcnow()
        start = end - timedelta(days=span - 1)
        history = await sign_in_history(services, tenant, start, end)
        agents = agents_of(history)
        names = await AgentDirectory(services.storage).names(a["userId"] for a in agents)
        for agent in agents:
            agent["userPrincipalName"], agent["displayName"] = names.get(agent["userId"], ("", ""))
        raw = await customer_actions(services, tenant)
        actions = None if raw is None else visible_actions(raw, principal)
        name = (known.display_name if known else "") or next((r.customer_name for r in relationships), "")
        return json_response({
            "tenantId": tenant, "displayName": name,
            "defaultDomainName": known.default_domain if known else "",
            "culture": known.culture if known else "",
            "evaluation": None if index is None else {"id": index.evaluation_id, "asOf": index.head["asOf"]},
            "row": row,
            "relationships": [relationship_detail(r) for r in sorted(
                relationships, key=lambda r: (not r.active, r.type, r.established_at or end, r.id))],
            "changes": changes,
            "signIns": {"from": iso(start), "to": iso(end), "days": history},
            "agents": agents,
            "actions": actions,
        })

    @app.get("/api/actions", tags=["actions"], summary="The audit trail of what was done, by customer and date",
             responses={200: {"model": schemas.Actions}, **schemas.ERRORS})
    async def actions(request: Request, tenantId: str | None = None,
                      since: str | None = None, until: str | None = None, limit: str | None = None,
                      principal: Principal = reader) -> Response:
        tenant = parse_guid(tenantId) if tenantId else None
        start, end = parse_time(since, "since"), parse_time(until, "until")
        if start is not None and end is not None and start > end:
            raise ApiError(400, "invalidParameter", "since must not be after until")
        count = parse_int(limit, "limit", 500, 1, 5000)
        module = removals_module()
        services = await services_of(request)
        items = visible_actions(await module.list_actions(services, tenant_id=tenant, since=start, until=end,
                                                          limit=count), principal)
        return json_response({"actions": items, "count": len(items)})

    @app.get("/api/trends", tags=["audit"], summary="Daily counts per bucket from the stored evaluations",
             responses={200: {"model": schemas.Trends}, **schemas.ERRORS})
    async def trends(request: Request, days: str | None = None, principal: Principal = reader) -> Response:
        span = parse_int(days, "days", 90, 1, 400)
        services = await services_of(request)
        heads = await services.evaluations.heads(limit=max(400, span * 4))
        return json_response({"days": span, "points": trend_points(heads, span)})

    @app.post("/api/audit/run", tags=["audit"], status_code=202,
              summary="Refresh now: sync relationships, ingest sign-ins, evaluate (in the background)",
              responses={202: {"model": schemas.AuditRun}, **schemas.ERRORS},
              openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
                  "schema": {"type": "object", "description": "empty object"}}}}})
    async def run_audit(request: Request, principal: Principal = reader) -> Response:
        await json_body(request)
        services = await services_of(request)
        run, started = await web_state(request).runs.start(services, principal.display)
        run = {**run, "statusUrl": f"/api/audit/runs/{run['id']}", "started": started}
        return json_response(run, status=202)

    @app.get("/api/audit/runs/{run_id}", tags=["audit"], summary="The state of an on-demand audit run",
             responses={200: {"model": schemas.AuditRun}, **schemas.ERRORS})
    async def audit_run(request: Request, run_id: str, principal: Principal = reader) -> Response:
        if not re.fullmatch(r"[0-9a-f]{32}", run_id):
            raise ApiError(400, "invalidParameter", "not an audit run id")
        run = await web_state(request).runs.get(await services_of(request), run_id)
        if run is None:
            raise ApiError(404, "unknownRun", "no audit run with this id")
        return json_response(run)

    @app.post("/api/removals", tags=["removals"], status_code=202,
              summary="Request the removal of delegated admin access (executed by the removal queue)",
              responses={202: {"model": schemas.RemovalsAccepted}, **schemas.ERRORS},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": schemas.RemovalRequest.model_json_schema()}}}})
    async def request_removals(request: Request, principal: Principal = remover) -> Response:
        body = await json_body(request)
        tenant_ids, reason = validate_removal_request(body)
        module = removals_module()
        services = await services_of(request)
        try:
            removals = await module.request_removals(
                services, tenant_ids, requested_by=principal.display, reason=reason, source="user",
                customer_notified=True)
        except SettingsError as exc:  # e.g. NOTIFY_SENDER missing while customers are to be notified
            log.error("removal request refused: %s", exc)
            raise ApiError(503, "notConfigured", f"removals are not configured: {exc}") from None
        except ValueError as exc:
            raise ApiError(400, "unknownTenantId", str(exc) or "a tenant id is not under monitoring") from None
        state = web_state(request)
        if state.drain_wakeup is not None:
            state.drain_wakeup.set()
        return json_response({"removals": removals}, status=202)

    @app.get("/api/removals/{removal_id}", tags=["removals"], summary="The state of one removal",
             responses={200: {"model": schemas.Removal}, **schemas.ERRORS})
    async def get_removal(request: Request, removal_id: str, principal: Principal = reader) -> Response:
        if not REMOVAL_ID.fullmatch(removal_id):
            raise ApiError(400, "invalidParameter", "not a removal id")
        module = removals_module()
        removal = await module.get_removal(await services_of(request), removal_id)
        if removal is None:
            raise ApiError(404, "unknownRemoval", "no removal with this id")
        return json_response(removal)

    @app.get("/api/removals", tags=["removals"], summary="The state of several removals (ids=a,b,c)",
             responses={200: {"model": schemas.RemovalList}, **schemas.ERRORS})
    async def list_removals(request: Request, ids: str = "", principal: Principal = reader) -> Response:
        wanted = [i for i in ids.split(",") if i]
        if not wanted or len(wanted) > MAX_REMOVAL_IDS or not all(REMOVAL_ID.fullmatch(i) for i in wanted):
            raise ApiError(400, "invalidParameter", f"ids must list 1 to {MAX_REMOVAL_IDS} removal ids")
        module = removals_module()
        services = await services_of(request)
        found = await asyncio.gather(*(module.get_removal(services, i) for i in wanted))
        return json_response({"removals": [r for r in found if r is not None],
                              "missing": [i for i, r in zip(wanted, found, strict=True) if r is None]})


# --- route helpers -----------------------------------------------------------------------------------

ADDRESS = re.compile(r"[^\s@,;<>\"'()]+@[^\s@,;<>\"'()]+")


def visible_actions(items: list[dict[str, Any]], principal: Principal) -> list[dict[str, Any]]:
    """The trail as this reader may see it: the mail addresses of notices' recipients only to holders of
    Relationships.Remove (who act on those customers); other readers see that a mail was sent."""
    if principal.has(REMOVE_ROLE):
        return items
    out = []
    for item in items:
        if str(item.get("action", "")).startswith("notification.") and item.get("detail"):
            item = {**item, "detail": ADDRESS.sub("(address hidden)", str(item["detail"]))}
        out.append(item)
    return out


def validate_removal_request(body: dict[str, Any]) -> tuple[list[str], str]:
    """The tenant ids and reason of a removal request, or a 400 that names what is wrong."""
    ids = body.get("tenantIds")
    if not isinstance(ids, list) or not ids:
        raise ApiError(400, "malformedBody", "tenantIds must be a non-empty list of tenant ids")
    if len(ids) > MAX_REMOVAL_IDS:
        raise ApiError(400, "tooManyTenantIds", f"at most {MAX_REMOVAL_IDS} tenant ids per request")
    bad = [i for i in ids if not isinstance(i, str) or not GUID.fullmatch(i)]
    if bad:
        raise ApiError(400, "invalidTenantId", "every tenant id must be a GUID",
                       {"invalid": [str(b)[:64] for b in bad[:10]]})
    if body.get("customerNotified") is not True:
        raise ApiError(400, "customerNotNotified",
                       "customerNotified must be true: notify the customers before removing their access")
    reason = body.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ApiError(400, "malformedBody", f"reason must be text of at most {MAX_REASON} characters")
    if any(not ch.isprintable() and ch not in "\n\t" for ch in reason):
        raise ApiError(400, "malformedBody", "reason must not contain control characters")
    tenant_ids = list(dict.fromkeys(i.lower() for i in ids))
    return tenant_ids, reason.strip() or "Removal requested in the portal"


def relationship_detail(rel: Any) -> dict[str, Any]:
    return {
        "type": rel.type, "id": rel.id, "displayName": rel.display_name, "status": rel.status,
        "active": rel.active, "establishedAt": iso_optional(rel.established_at),
        "createdAt": iso_optional(rel.created_at), "endsAt": iso_optional(rel.ends_at),
        "duration": rel.duration, "autoExtend": rel.auto_extend,
        "roles": list(rel.roles), "roleNames": [role_name(r) for r in rel.roles],
        "accessAssignments": [{"id": a.id, "groupId": a.group_id, "status": a.status, "roles": list(a.roles),
                               "roleNames": [role_name(r) for r in a.roles]} for a in rel.access_assignments],
    }


async def sign_in_history(services: Services, tenant: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Every day of [start, end] (days without sign-ins as zero), read in parallel 30-day pieces."""
    reader_ = ActivityReader(services.storage)
    pieces = []
    cursor = start
    while cursor <= end:
        piece_end = min(end, cursor + timedelta(days=29))
        pieces.append((cursor, piece_end))
        cursor = piece_end + timedelta(days=1)
    results = await asyncio.gather(*(reader_.history(tenant, a, b) for a, b in pieces))
    found = {d["day"]: d for part in results for d in part}
    out = []
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= end:
        key = day.strftime("%Y-%m-%d")
        item = found.get(key) or {"day": key, "signIns": 0, "nonInteractiveSignIns": 0, "agents": [], "lastAt": None}
        out.append({**item, "agentCount": len(item["agents"])})
        day += timedelta(days=1)
    return out


def agents_of(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which partner agents signed in over the history: days with a sign-in and the last such day
    (their names are added from the :class:`AgentDirectory`)."""
    agents: dict[str, dict[str, Any]] = {}
    for day in history:
        for agent in day["agents"]:
            entry = agents.setdefault(agent, {"userId": agent, "days": 0, "lastDay": day["day"]})
            entry["days"] += 1
            entry["lastDay"] = max(entry["lastDay"], day["day"])
    return sorted(agents.values(), key=lambda a: (a["lastDay"], a["days"]), reverse=True)


async def customer_actions(services: Services, tenant: str) -> list[dict[str, Any]] | None:
    try:
        module = removals_module()
    except ApiError:
        return None
    items: list[dict[str, Any]] = await module.list_actions(services, tenant_id=tenant, limit=200)
    return items


def trend_points(heads: list[dict[str, Any]], days: int) -> list[dict[str, Any]]:
    """One point per UTC day of asOf: the latest evaluation computed for that day."""
    per_day: dict[str, dict[str, Any]] = {}
    for head in heads:  # newest first
        day = str(head["asOf"])[:10]
        chosen = per_day.get(day)
        if chosen is None or (head["asOf"], head["createdAt"]) > (chosen["asOf"], chosen["createdAt"]):
            per_day[day] = head
    if not per_day:
        return []
    last = max(per_day)
    first = (parse_iso(last + "T00:00:00Z") - timedelta(days=days - 1)).strftime("%Y-%m-%d")
    points = []
    for day in sorted(d for d in per_day if d >= first):
        head = per_day[day]
        s = head["summary"]
        total = s["customersUnderMonitoring"]
        points.append({
            "day": day, "asOf": head["asOf"], "evaluationId": head["id"],
            "customersUnderMonitoring": total,
            "active": total - s["inactive30To60Days"] - s["inactive61To90Days"] - s["inactiveOver90Days"],
            "inactive30To60Days": s["inactive30To60Days"], "inactive61To90Days": s["inactive61To90Days"],
            "inactiveOver90Days": s["inactiveOver90Days"], "establishedLast7Days": s["establishedLast7Days"],
            "recommendedForRemoval": s["recommendedForRemoval"],
        })
    return points


async def drain_removal_queue(state: WebState) -> None:
    """serve only: what the queue functions do in Azure (removals, then the mail they cause), every
    few seconds and after each request."""
    from shared.notifications.worker import process_notification_queue
    from shared.removals.worker import process_removal_queue

    wakeup = state.drain_wakeup
    assert wakeup is not None
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout=DRAIN_INTERVAL_SECONDS)
        wakeup.clear()
        try:
            services = await state.config.services()
            await process_removal_queue(services)
            await process_notification_queue(services)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("draining the queues failed; retrying in %s s", DRAIN_INTERVAL_SECONDS)


__all__ = ["BUCKET_FILTERS", "SORT_KEYS", "ApiError", "WebConfig", "create_app"]
