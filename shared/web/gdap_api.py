"""The GDAP lifecycle routes (``/api/gdap/...``) of the HTTP API, on the same rules as the others.

Reads need ``Relationships.Read``; a reduction of access (removing Global Administrator, unused access
assignments) needs ``Relationships.Remove``, a grant (requests, follow-up, extend, re-establish)
``Relationships.Grant``; every change passes the same JSON-only, same-site
body check as ``POST /api/removals``. The work is done by :class:`shared.gdap.service.GdapService`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi import Query as FastApiQuery
from fastapi.responses import Response
from pydantic import BaseModel, Field

from shared.gdap.base import GdapError
from shared.gdap.service import GdapService
from shared.gdap.templates import TemplateError
from shared.platform.retry import UpstreamError
from shared.platform.settings import SettingsError
from shared.platform.timeutil import parse_iso, utcnow
from shared.relationships.store import RelationshipStore
from shared.web import schemas
from shared.web.auth import Principal
from shared.web.http import (
    ApiError,
    Whole,
    choice_query,
    granter,
    json_body,
    json_response,
    parse_time,
    reader,
    remover,
    services_of,
    time_query,
)

MAX_EXTEND_IDS = 1000
AS_OF = time_query("the moment (default: the latest evaluation's asOf)")
WITHIN = Whole("within", 30, 1, 730, "days")
UNUSED_DAYS = Whole("days", 90, 1, 730, "an assignment unused for this many days is listed")


class GdapRequestBody(BaseModel):
    customer: str = Field(description="customer tenant id (GUID)")
    template: str = Field(description="role template name (GET /api/gdap/templates)")
    notifyCustomer: bool = Field(
        default=False, description="mail the invitation link to the customer's contacts"
    )


class ReestablishBody(BaseModel):
    customer: str = Field(description="customer tenant id (GUID) whose access was removed")
    notifyCustomer: bool = False


class ExtendBody(BaseModel):
    relationshipIds: list[str] | None = Field(default=None, max_length=MAX_EXTEND_IDS)
    all: bool = Field(
        default=False, description="every active relationship without auto-extend ending within `within`"
    )
    within: int = Field(default=30, ge=1, le=730)


class RemoveGlobalAdminBody(BaseModel):
    relationshipId: str


class RemoveGlobalAdminManyBody(BaseModel):
    relationshipIds: list[str] = Field(min_length=1, max_length=100)


class AssignmentRef(BaseModel):
    relationshipId: str
    assignmentId: str


class RemoveUnusedAssignmentsBody(BaseModel):
    assignments: list[AssignmentRef] = Field(min_length=1, max_length=100)
    days: int = Field(default=90, ge=1, le=730, description="the least-privilege window the portal showed")


class GdapRequestAnswer(BaseModel):
    id: str
    tenantId: str
    status: str
    state: str
    template: str
    invitationLink: str
    ageDays: int


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ApiError(400, "malformedBody", f"{name} must be true or false")
    return value


async def _service(request: Request) -> GdapService:
    try:
        return GdapService(await services_of(request))
    except TemplateError as exc:
        raise ApiError(503, "notConfigured", f"the role templates are not valid: {exc}") from None


async def _run(coroutine: Any) -> Any:
    """Run a service call, mapping its refusals to API errors (nothing was changed by a refusal)."""
    try:
        return await coroutine
    except GdapError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    except SettingsError as exc:
        raise ApiError(503, "notConfigured", str(exc)) from None
    except UpstreamError as exc:
        raise ApiError(502, "upstreamFailed", f"a Microsoft service failed: {exc}") from None


async def default_as_of(request: Request, value: str | None) -> datetime:
    """``asOf`` from the query, else the latest evaluation's (what the portal shows), else now."""
    given = parse_time(value, "asOf")
    if given is not None:
        return given
    services = await services_of(request)
    latest = await services.evaluations.latest()
    return parse_iso(latest.report["asOf"]) if latest is not None else utcnow()


def register_gdap_api(app: FastAPI) -> None:
    @app.get(
        "/api/gdap/templates",
        tags=["gdap"],
        summary="The GDAP role templates kept in the repo",
        responses=schemas.ERRORS,
    )
    async def templates(request: Request, principal: Principal = reader) -> Response:
        service = await _service(request)
        return json_response({"templates": service.template_list()})

    @app.get(
        "/api/gdap/summary",
        tags=["gdap"],
        summary="Counts for the portal's GDAP tiles: relationships "
        "ending within 30, 7 and 1 days, with Global Administrator, pending requests",
        responses=schemas.ERRORS,
    )
    async def summary(request: Request, asOf: str | None = AS_OF, principal: Principal = reader) -> Response:
        moment = await default_as_of(request, asOf)
        service = await _service(request)
        return json_response(await service.summary(moment))

    @app.get(
        "/api/gdap/customers",
        tags=["gdap"],
        summary="Known customers to request GDAP for (name search)",
        responses=schemas.ERRORS,
    )
    async def customers(
        request: Request,
        q: str = FastApiQuery("", max_length=200, description="name search"),
        principal: Principal = reader,
    ) -> Response:
        if len(q) > 200:
            raise ApiError(400, "invalidParameter", "q must be at most 200 characters")
        service = await _service(request)
        estate = await RelationshipStore(service.services.storage).load()
        needle = q.strip().casefold()
        items = []
        for tenant, customer in sorted(
            estate.customers.items(), key=lambda kv: (kv[1].display_name.casefold(), kv[0])
        ):
            if needle and needle not in customer.display_name.casefold() and needle not in tenant:
                continue
            rels = estate.relationships.get(tenant, [])
            items.append(
                {
                    "tenantId": tenant,
                    "displayName": customer.display_name,
                    "defaultDomainName": customer.default_domain,
                    "active": any(r.active for r in rels),
                }
            )
            if len(items) >= 50:
                break
        return json_response({"customers": items})

    @app.post(
        "/api/gdap/requests",
        tags=["gdap"],
        status_code=201,
        summary="Request GDAP from a template: create, lock for approval, return the invitation link",
        responses={
            201: {"model": GdapRequestAnswer, "description": "created and locked for approval"},
            200: {"description": "an open request for this customer and template exists"},
            202: {"description": "created; locking for approval is retried by the follow-up"},
            **schemas.ERRORS,
        },
        openapi_extra=_body_schema(GdapRequestBody),
    )
    async def request_gdap(request: Request, principal: Principal = granter) -> Response:
        body = await json_body(request)
        service = await _service(request)
        result, created = await _run(
            service.request(
                body.get("customer"),
                body.get("template"),
                requested_by=principal.display,
                notify_customer=_flag(body, "notifyCustomer"),
            )
        )
        return json_response(result, status=_created_status(result, created))

    @app.get(
        "/api/gdap/requests",
        tags=["gdap"],
        summary="GDAP requests this product made that are not "
        "finished, with their age (all=true: finished ones too)",
        responses=schemas.ERRORS,
    )
    async def list_requests(
        request: Request,
        all: str = choice_query("false", ("true", "false"), "finished too"),
        principal: Principal = reader,
    ) -> Response:
        if all not in ("true", "false"):
            raise ApiError(400, "invalidParameter", "all must be true or false")
        service = await _service(request)
        return json_response(await service.pending_requests(include_finished=all == "true"))

    @app.post(
        "/api/gdap/follow-up",
        tags=["gdap"],
        summary="Move approved requests on now: create and confirm "
        "their access assignments; confirm Global Administrator removals",
        responses=schemas.ERRORS,
    )
    async def follow_up(request: Request, principal: Principal = granter) -> Response:
        await json_body(request)
        service = await _service(request)
        return json_response(await _run(service.follow_up()))

    @app.get(
        "/api/gdap/expiring",
        tags=["gdap"],
        summary="Active GDAP relationships without auto-extend that end "
        "within `within` days (counts for 30, 7 and 1 days)",
        responses=schemas.ERRORS,
    )
    async def expiring(
        request: Request,
        within: str | None = WITHIN.query(),
        asOf: str | None = AS_OF,
        principal: Principal = reader,
    ) -> Response:
        days = WITHIN.parse(within)
        moment = await default_as_of(request, asOf)
        service = await _service(request)
        return json_response(await service.expiring(days, moment))

    @app.post(
        "/api/gdap/extend",
        tags=["gdap"],
        summary="Turn on auto-extend (P180D) for relationships; a result per relationship, no batch limit",
        responses=schemas.ERRORS,
        openapi_extra=_body_schema(ExtendBody),
    )
    async def extend(request: Request, principal: Principal = granter) -> Response:
        body = await json_body(request)
        every = _flag(body, "all")
        ids = body.get("relationshipIds")
        if every == (ids is not None):
            raise ApiError(400, "malformedBody", "give either relationshipIds or all: true")
        if ids is not None and (
            not isinstance(ids, list)
            or not ids
            or len(ids) > MAX_EXTEND_IDS
            or not all(isinstance(i, str) for i in ids)
        ):
            raise ApiError(
                400, "malformedBody", f"relationshipIds must list 1 to {MAX_EXTEND_IDS} relationship ids"
            )
        within = body.get("within", 30)
        if not isinstance(within, int) or isinstance(within, bool) or not 1 <= within <= 730:
            raise ApiError(400, "malformedBody", "within must be a whole number of days between 1 and 730")
        moment = await default_as_of(request, None)
        service = await _service(request)
        summary = await _run(
            service.extend(ids, all_expiring=every, within_days=within, as_of=moment, actor=principal.display)
        )
        return json_response(summary)

    @app.post(
        "/api/gdap/remove-global-admin",
        tags=["gdap"],
        status_code=202,
        summary="Remove Global Administrator from an active relationship (PATCH with If-Match; Microsoft "
        "applies it asynchronously)",
        responses=schemas.ERRORS,
        openapi_extra=_body_schema(RemoveGlobalAdminBody),
    )
    async def remove_global_admin(request: Request, principal: Principal = remover) -> Response:
        body = await json_body(request)
        service = await _service(request)
        result = await _run(service.remove_global_admin(body.get("relationshipId"), actor=principal.display))
        return json_response(result, status=202 if result["result"] == "requested" else 200)

    @app.post(
        "/api/gdap/remove-global-admin/bulk",
        tags=["gdap"],
        summary="Remove Global Administrator from several relationships (1 to 100), a result per "
        "relationship (requested, completed, unchanged, refused with the reason, failed)",
        responses=schemas.ERRORS,
        openapi_extra=_body_schema(RemoveGlobalAdminManyBody),
    )
    async def remove_global_admin_many(request: Request, principal: Principal = remover) -> Response:
        body = await json_body(request)
        service = await _service(request)
        return json_response(
            await _run(service.remove_global_admin_many(body.get("relationshipIds"), actor=principal.display))
        )

    @app.post(
        "/api/gdap/remove-unused-assignments",
        tags=["gdap"],
        summary="Remove access assignments nobody used (1 to 100): each only when proven unused and "
        "no partner agent signed in to that customer since; a result per assignment",
        responses=schemas.ERRORS,
        openapi_extra=_body_schema(RemoveUnusedAssignmentsBody),
    )
    async def remove_unused_assignments(request: Request, principal: Principal = remover) -> Response:
        body = await json_body(request)
        days = body.get("days", 90)
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 730:
            raise ApiError(400, "malformedBody", "days must be a whole number of days between 1 and 730")
        moment = await default_as_of(request, None)
        service = await _service(request)
        return json_response(
            await _run(
                service.remove_unused_assignments(
                    body.get("assignments"), actor=principal.display, as_of=moment, window_days=days
                )
            )
        )

    @app.get(
        "/api/gdap/reestablish/preview",
        tags=["gdap"],
        summary="What re-establishing would request, changing nothing: the template and why, the roles "
        "held before, those requested, and each dropped role with the reason",
        responses=schemas.ERRORS,
    )
    async def reestablish_preview(
        request: Request,
        customer: str = FastApiQuery("", max_length=64, description="customer tenant id (GUID)"),
        principal: Principal = reader,
    ) -> Response:
        service = await _service(request)
        return json_response(await _run(service.reestablish_preview(customer)))

    @app.post(
        "/api/gdap/reestablish",
        tags=["gdap"],
        status_code=201,
        summary="Re-establish a removed customer's access: a new request from the template used before",
        responses=schemas.ERRORS,
        openapi_extra=_body_schema(ReestablishBody),
    )
    async def reestablish(request: Request, principal: Principal = granter) -> Response:
        body = await json_body(request)
        service = await _service(request)
        result, created = await _run(
            service.reestablish(
                body.get("customer"), actor=principal.display, notify_customer=_flag(body, "notifyCustomer")
            )
        )
        return json_response(result, status=_created_status(result, created))

    @app.get(
        "/api/gdap/least-privilege",
        tags=["gdap"],
        summary="Relationships with Global Administrator, and "
        "access assignments whose group never signed in to that customer within `days`",
        responses=schemas.ERRORS,
    )
    async def least_privilege(
        request: Request,
        days: str | None = UNUSED_DAYS.query(),
        asOf: str | None = AS_OF,
        principal: Principal = reader,
    ) -> Response:
        window = UNUSED_DAYS.parse(days)
        moment = await default_as_of(request, asOf)
        service = await _service(request)
        return json_response(await _run(service.least_privilege(moment, window)))


def _created_status(result: dict[str, Any], created: bool) -> int:
    if not created:
        return 200
    return 201 if result.get("status") not in ("created", "") else 202
