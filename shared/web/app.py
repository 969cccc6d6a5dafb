"""The HTTP API (docs/definitions.md section 6) and the portal, as one ASGI app.

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
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from fastapi import FastAPI, Request
from fastapi import Query as FastApiQuery
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.azure_roles.store import AzureRoleStore
from shared.domain.report import Report
from shared.domain.roles import role_catalog, role_name
from shared.evaluation.audit_runs import drain_audit_runs, get_audit_run, start_audit_run
from shared.evaluation.trends import trend_points
from shared.platform.actions import list_actions
from shared.platform.timeutil import iso, iso_optional, parse_iso, utcnow
from shared.relationships.groups import GroupNames
from shared.relationships.store import RelationshipStore
from shared.signins.agents import AgentDirectory
from shared.signins.history import agents_of, sign_in_history
from shared.web import schemas
from shared.web.auth import (
    GRANT_ROLE,
    REMOVE_ROLE,
    Principal,
)
from shared.web.catalog import (
    BUCKET_FILTERS,
    DEFAULT_SORT,
    MAX_PAGE_SIZE,
    SORT_KEYS,
    CustomerIndex,
    Query,
    QueryError,
)
from shared.web.http import (
    ApiError,
    Requires,
    WebConfig,
    WebState,
    Whole,
    choice_query,
    csv_response,
    json_body,
    json_response,
    latest_index,
    parse_guid,
    parse_time,
    reader,
    services_of,
    storage_missing,
    time_query,
    web_state,
)
from shared.web.removals_api import register_exclusion_routes, register_removal_routes
from shared.web.security import (
    HeadAndOptions,
    HostCheck,
    SecurityHeaders,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
DRAIN_INTERVAL_SECONDS = 5.0


# --- the app -----------------------------------------------------------------------------------------

FORMAT = choice_query("json", ("json", "csv"))
SORTS = tuple(f"{sign}{key}" for key in SORT_KEYS for sign in ("", "-"))
PAGE = Whole("page", 1, 1, 10**6)
PAGE_SIZE = Whole("pageSize", 50, 1, MAX_PAGE_SIZE, "rows per page")
HISTORY_DAYS = Whole("days", 90, 1, 400, "days of sign-in history up to the evaluation's asOf")
TREND_DAYS = Whole("days", 90, 1, 400, "days of trend")
ACTIONS_LIMIT = Whole("limit", 500, 1, 5000, "at most this many actions, newest first")


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
            if config.on_shutdown is not None:
                await config.on_shutdown()

    app = FastAPI(
        title="Delegated Admin Monitor API",
        version="1.0.0",
        description=(
            "Monitoring of DAP and GDAP delegated admin relationships: the audit report, customers, "
            "sign-in history, actions, trends and removals. Callers are signed in through App Service "
            "Authentication (X-MS-CLIENT-PRINCIPAL) and need the app role Relationships.Read; "
            "removals need Relationships.Remove."
        ),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,  # served below, behind the Read role
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.web = state
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadAndOptions, routes=lambda: app.router.routes)
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
        errors = exc.errors()
        if errors and all(e.get("loc", ("",))[0] in ("query", "path") for e in errors):
            first = errors[0]
            name = str(first["loc"][-1])
            return ApiError(
                400, "invalidParameter", f"{name}: {first.get('msg', 'not valid')}"[:300]
            ).response()
        return ApiError(400, "invalidRequest", "the request is not valid").response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ResourceNotFoundError) and storage_missing(exc):
            # The tables or queues vanished under a running server (storage reset): make them again, so
            # that the next request works without a restart.
            log.warning(
                "storage %s on %s %s: creating tables and queues again",
                getattr(exc, "error_code", ""),
                request.method,
                request.url.path,
            )
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
    from shared.web.lost_api import register_lost_api

    register_lost_api(app)
    from shared.web.agents_api import register_agents_api

    register_agents_api(app)
    from shared.web.signins_api import register_signins_api

    register_signins_api(app)
    from shared.web.webhook_api import register_webhook_api

    register_webhook_api(app)
    return app


def register_portal(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def portal() -> FileResponse:
        return FileResponse(
            STATIC / "index.html",
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def register_api(app: FastAPI) -> None:
    """The API: the signed-in user, the OpenAPI document, and each area's routes."""

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi(principal: Principal = reader) -> Response:
        return json_response(openapi_document(app))

    @app.get(
        "/api/me",
        tags=["portal"],
        summary="The signed-in user and what they may do",
        responses={200: {"model": schemas.Me}, **schemas.ERRORS},
    )
    async def me(principal: Principal = reader) -> Response:
        return json_response(
            {
                "name": principal.name,
                "roles": sorted(principal.roles),
                "canRemove": principal.has(REMOVE_ROLE),
                "canGrant": principal.has(GRANT_ROLE),
                "localOperator": principal.local_operator,
            }
        )

    @app.get(
        "/api/roles",
        tags=["portal"],
        summary="Names of well-known Entra role definition ids (en, ja)",
        responses={200: {"model": dict[str, schemas.RoleName]}, **schemas.ERRORS},
    )
    async def roles(principal: Principal = reader) -> Response:
        return json_response(role_catalog())

    register_audit_routes(app)
    register_customer_routes(app)
    register_action_routes(app)
    register_run_routes(app)
    register_removal_routes(app)
    register_exclusion_routes(app)


def register_audit_routes(app: FastAPI) -> None:
    """The audit report of the latest evaluation (JSON or CSV)."""

    @app.get(
        "/api/audit",
        tags=["audit"],
        summary="The audit report (docs/definitions.md section 3) of the latest evaluation",
        responses={
            200: {
                "model": Report,
                "content": {"text/csv": {}},
                "description": "the report (JSON, docs/definitions.md section 3) or CSV",
            },
            **schemas.ERRORS,
        },
    )
    async def audit(request: Request, format: str = FORMAT, principal: Principal = reader) -> Response:
        if format not in ("json", "csv"):
            raise ApiError(400, "invalidParameter", "format must be json or csv")
        index = await latest_index(request)
        if format == "csv":
            return csv_response(index.report_csv(), f"delegated-admin-audit-{index.head['asOf'][:10]}.csv")
        return Response(index.report_json(), media_type="application/json")


def register_customer_routes(app: FastAPI) -> None:
    """Customer rows (filtered, sorted, paged) and one customer's view."""

    @app.get(
        "/api/customers",
        tags=["customers"],
        summary="Customer rows of the latest evaluation, filtered, sorted and paged",
        responses={200: {"model": schemas.CustomerPage}, **schemas.ERRORS},
    )
    async def customers(
        request: Request,
        bucket: str | None = choice_query(
            None, BUCKET_FILTERS, "inactivity bucket; new: established in the last 7 days"
        ),
        q: str = FastApiQuery("", max_length=200, description="search: name, tenant id, roles"),
        sort: str = choice_query(DEFAULT_SORT, SORTS, "column; - for descending"),
        page: str | None = PAGE.query(),
        pageSize: str | None = PAGE_SIZE.query(),
        recommendation: str | None = choice_query(None, ("remove", "none")),
        type: str | None = choice_query(
            None, ("DAP", "GDAP", "both"), "relationship type; both: customers holding DAP and GDAP"
        ),
        excluded: str | None = choice_query(None, ("true", "false"), "excluded from removal by the policy"),
        role: str | None = FastApiQuery(
            None, max_length=36, description="a role definition id some relationship holds"
        ),
        reseller: str | None = FastApiQuery(
            None, max_length=200, description="an indirect reseller's tenant id or name (any case)"
        ),
        format: str = FORMAT,
        principal: Principal = reader,
    ) -> Response:
        if format not in ("json", "csv"):
            raise ApiError(400, "invalidParameter", "format must be json or csv")
        if excluded not in (None, "", "true", "false"):
            raise ApiError(400, "invalidParameter", "excluded must be true or false")
        query = Query(
            bucket=bucket or None,
            q=q,
            sort=sort or DEFAULT_SORT,
            page=PAGE.parse(page),
            page_size=PAGE_SIZE.parse(pageSize),
            recommendation=recommendation or None,
            relationship_type=type or None,
            excluded=None if not excluded else excluded == "true",
            role=role or None,
            reseller=reseller or None,
        )
        try:
            query.validate()
        except QueryError as exc:
            raise ApiError(400, "invalidParameter", str(exc)) from None
        index = await latest_index(request)
        if format == "csv":
            return csv_response(index.csv(query), f"delegated-admin-customers-{index.head['asOf'][:10]}.csv")
        return Response(index.page(query), media_type="application/json")

    @app.get(
        "/api/customers/{tenant_id}",
        tags=["customers"],
        summary="One customer: relationships with roles and access assignments, daily sign-ins, agents, "
        "actions",
        responses={200: {"model": schemas.CustomerDetail}, **schemas.ERRORS},
    )
    async def customer(
        request: Request,
        tenant_id: str,
        days: str | None = HISTORY_DAYS.query(),
        principal: Principal = reader,
    ) -> Response:
        tenant = parse_guid(tenant_id)
        span = HISTORY_DAYS.parse(days)
        services = await services_of(request)
        store = RelationshipStore(services.storage)
        (known, relationships), changes = await asyncio.gather(
            store.load_customer(tenant), store.changes(tenant)
        )
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
        group_names = await GroupNames(services.storage).load()
        agents = agents_of(history)
        names = await AgentDirectory(services.storage).names(a["userId"] for a in agents)
        for agent in agents:
            agent["userPrincipalName"], agent["displayName"] = names.get(agent["userId"], ("", ""))
        actions = visible_actions(
            await list_actions(services.storage, tenant_id=tenant, limit=200), principal
        )
        azure = await AzureRoleStore(services.storage).get(tenant)
        name = (known.display_name if known else "") or next((r.customer_name for r in relationships), "")
        return json_response(
            {
                "tenantId": tenant,
                "displayName": name,
                "defaultDomainName": known.default_domain if known else "",
                "culture": known.culture if known else "",
                "evaluation": None
                if index is None
                else {
                    "id": index.evaluation_id,
                    "asOf": index.head["asOf"],
                    "coverage": index.head["coverage"],
                    "policy": index.head["policy"],
                },
                "row": row,
                "relationships": [
                    relationship_detail(r, group_names)
                    for r in sorted(
                        relationships, key=lambda r: (not r.active, r.type, r.established_at or end, r.id)
                    )
                ],
                "changes": changes,
                "signIns": {"from": iso(start), "to": iso(end), "days": history},
                "agents": agents,
                "actions": actions,
                # The partner's Azure role assignments in the customer, as last read (null: never read).
                "azureRoles": None
                if azure is None
                else {
                    "state": azure.state,
                    "readAt": iso(azure.read_at) if azure.read_at else None,
                    "error": azure.error or None,
                    "assignments": azure.assignments,
                },
            }
        )


def register_action_routes(app: FastAPI) -> None:
    """The audit trail, and the daily trend counts."""

    @app.get(
        "/api/actions",
        tags=["actions"],
        summary="The audit trail of what was done, by customer and date",
        responses={200: {"model": schemas.Actions}, **schemas.ERRORS},
    )
    async def actions(
        request: Request,
        tenantId: str | None = FastApiQuery(None, description="a customer (GUID)"),
        since: str | None = time_query("from"),
        until: str | None = time_query("until"),
        limit: str | None = ACTIONS_LIMIT.query(),
        principal: Principal = reader,
    ) -> Response:
        tenant = parse_guid(tenantId) if tenantId else None
        start, end = parse_time(since, "since"), parse_time(until, "until")
        if start is not None and end is not None and start > end:
            raise ApiError(400, "invalidParameter", "since must not be after until")
        count = ACTIONS_LIMIT.parse(limit)
        services = await services_of(request)
        items = visible_actions(
            await list_actions(services.storage, tenant_id=tenant, since=start, until=end, limit=count),
            principal,
        )
        return json_response({"actions": items, "count": len(items)})

    @app.get(
        "/api/trends",
        tags=["audit"],
        summary="Daily counts per bucket from the stored evaluations",
        responses={200: {"model": schemas.Trends}, **schemas.ERRORS},
    )
    async def trends(
        request: Request, days: str | None = TREND_DAYS.query(), principal: Principal = reader
    ) -> Response:
        span = TREND_DAYS.parse(days)
        services = await services_of(request)
        heads = await services.evaluations.heads(limit=max(400, span * 4))
        return json_response({"days": span, "points": trend_points(heads, span)})


def register_run_routes(app: FastAPI) -> None:
    """On-demand audit runs ("Refresh now")."""

    @app.post(
        "/api/audit/run",
        tags=["audit"],
        status_code=202,
        summary="Refresh now: sync relationships, ingest sign-ins, evaluate (in the background)",
        responses={202: {"model": schemas.AuditRun}, **schemas.ERRORS},
        openapi_extra={
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {"schema": {"type": "object", "description": "empty object"}}
                },
            }
        },
    )
    async def run_audit(request: Request, principal: Principal = reader) -> Response:
        await json_body(request)
        services = await services_of(request)
        run, started = await start_audit_run(services, principal.display)
        wakeup = web_state(request).drain_wakeup
        if wakeup is not None:
            wakeup.set()  # serve: its drainer runs it now
        run = {**run, "statusUrl": f"/api/audit/runs/{run['id']}", "started": started}
        return json_response(run, status=202)

    @app.get(
        "/api/audit/runs/{run_id}",
        tags=["audit"],
        summary="The state of an on-demand audit run",
        responses={200: {"model": schemas.AuditRun}, **schemas.ERRORS},
    )
    async def audit_run(request: Request, run_id: str, principal: Principal = reader) -> Response:
        if not re.fullmatch(r"[0-9a-f]{32}", run_id):
            raise ApiError(400, "invalidParameter", "not an audit run id")
        run = await get_audit_run(await services_of(request), run_id)
        if run is None:
            raise ApiError(404, "unknownRun", "no audit run with this id")
        return json_response(run)


# --- the OpenAPI document ----------------------------------------------------------------------------


def operation_id(route: APIRoute) -> str:
    """camelCase of the route function's name, GDAP routes prefixed (their names repeat the dashboard's)."""
    first, *rest = route.name.split("_")
    name = first + "".join(part.capitalize() for part in rest)
    if route.path.startswith("/api/gdap/") and "gdap" not in name.lower():
        name = "gdap" + name[0].upper() + name[1:]
    return name


SECURITY_SCHEMES = {
    "entraIdBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A Microsoft Entra ID access token for the app registration (audience: its application "
        "id URI), validated by App Service Authentication in front of the app, which then passes the "
        "caller to the app as X-MS-CLIENT-PRINCIPAL (a client's own copy of that header is dropped). "
        "The token's app roles decide: Relationships.Read, Relationships.Remove, Relationships.Grant.",
    },
    "appServiceSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "AppServiceAuthSession",
        "description": "The session cookie App Service Authentication sets after an interactive sign-in at "
        "/.auth/login/aad (the portal's way in); the same app roles apply.",
    },
}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the truth about authentication: the schemes App Service Authentication
    accepts, and per operation the app role its route requires (``x-app-role``)."""
    document = dict(app.openapi())
    document["components"] = {**document.get("components", {}), "securitySchemes": SECURITY_SCHEMES}
    document["security"] = [{name: []} for name in SECURITY_SCHEMES]
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        role = next((d.call.role for d in route.dependant.dependencies if isinstance(d.call, Requires)), None)
        for method in route.methods or ():
            operation = document["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None and role is not None:
                operation["x-app-role"] = role
                operation["description"] = (
                    operation.get("description", "") + f"\n\nNeeds the app role {role}."
                ).strip()
    return document


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


def relationship_detail(rel: Any, group_names: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "type": rel.type,
        "id": rel.id,
        "displayName": rel.display_name,
        "status": rel.status,
        "active": rel.active,
        "establishedAt": iso_optional(rel.established_at),
        "createdAt": iso_optional(rel.created_at),
        "endsAt": iso_optional(rel.ends_at),
        "duration": rel.duration,
        "autoExtend": rel.auto_extend,
        "roles": list(rel.roles),
        "roleNames": [role_name(r) for r in rel.roles],
        "accessAssignments": [
            {
                "id": a.id,
                "groupId": a.group_id,
                "groupName": (group_names or {}).get(a.group_id.lower(), ""),
                "status": a.status,
                "roles": list(a.roles),
                "roleNames": [role_name(r) for r in a.roles],
            }
            for a in rel.access_assignments
        ],
    }


async def drain_removal_queue(state: WebState) -> None:
    """serve only: what the queue functions do in Azure (on-demand audits, removals, then the mail they
    cause), every few seconds and after each request."""
    from shared.notifications.webhook_worker import drain_webhooks
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
            await drain_audit_runs(services)
            await process_removal_queue(services)
            await process_notification_queue(services)
            await drain_webhooks(services)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("draining the queues failed; retrying in %s s", DRAIN_INTERVAL_SECONDS)
