"""The removal and exclusion routes of the HTTP API: asking for removals (and seeing first what they
would do), following them, and the customers excluded from removal by the policy."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from fastapi import FastAPI, Request, Response

from shared.exclusions.store import ExclusionStore
from shared.platform.settings import SettingsError
from shared.relationships.store import RelationshipStore
from shared.removals import preview as removal_preview
from shared.removals import progress
from shared.removals import request as removal_requests
from shared.removals.store import RemovalStore
from shared.web import schemas
from shared.web.auth import Principal
from shared.web.http import (
    GUID,
    ApiError,
    json_body,
    json_response,
    parse_guid,
    parse_time,
    reader,
    remover,
    services_of,
    time_query,
    web_state,
)

log = logging.getLogger(__name__)

REMOVAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_REMOVAL_IDS = 100
MAX_REASON = 500
MAX_LISTED = 500


def register_removal_routes(app: FastAPI) -> None:
    """Asking for removals and following them."""

    @app.post(
        "/api/removals",
        tags=["removals"],
        status_code=202,
        summary="Request the removal of delegated admin access (executed by the removal queue)",
        responses={202: {"model": schemas.RemovalsAccepted}, **schemas.ERRORS},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": schemas.RemovalRequest.model_json_schema()}},
            }
        },
    )
    async def request_removals(request: Request, principal: Principal = remover) -> Response:
        body = await json_body(request)
        tenant_ids, reason = validate_removal_request(body)
        services = await services_of(request)
        try:
            removals = await removal_requests.request_removals(
                services,
                tenant_ids,
                requested_by=principal.display,
                reason=reason,
                source="user",
                customer_notified=True,
            )
        except SettingsError as exc:  # e.g. NOTIFY_SENDER missing while customers are to be notified
            log.error("removal request refused: %s", exc)
            raise ApiError(503, "notConfigured", f"removals are not configured: {exc}") from None
        except ValueError as exc:
            raise ApiError(
                400, "unknownTenantId", str(exc) or "a tenant id is not under monitoring"
            ) from None
        state = web_state(request)
        if state.drain_wakeup is not None:
            state.drain_wakeup.set()
        return json_response({"removals": removals}, status=202)

    @app.post(
        "/api/removals/preview",
        tags=["removals"],
        summary="What removing these customers' access would do: relationships and roles removed, "
        "who is e-mailed, warnings (nothing is written)",
        responses={200: {"model": schemas.RemovalPreview}, **schemas.ERRORS},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": schemas.RemovalPreviewRequest.model_json_schema()}
                },
            }
        },
    )
    async def preview_removals(request: Request, principal: Principal = remover) -> Response:
        body = await json_body(request)
        tenant_ids = validate_tenant_ids(body)
        try:
            preview = await removal_preview.preview_removals(await services_of(request), tenant_ids)
        except ValueError as exc:
            raise ApiError(409, "noEvaluation", str(exc)) from None
        return json_response(preview)

    @app.get(
        "/api/removals/{removal_id}",
        tags=["removals"],
        summary="The state of one removal",
        responses={200: {"model": schemas.Removal}, **schemas.ERRORS},
    )
    async def get_removal(request: Request, removal_id: str, principal: Principal = reader) -> Response:
        if not REMOVAL_ID.fullmatch(removal_id):
            raise ApiError(400, "invalidParameter", "not a removal id")
        removal = await progress.get_removal(await services_of(request), removal_id)
        if removal is None:
            raise ApiError(404, "unknownRemoval", "no removal with this id")
        return json_response(removal)

    @app.get(
        "/api/removals",
        tags=["removals"],
        summary="The state of several removals (ids=a,b,c), or of every removal under way and every one "
        "that changed since a time (since=...)",
        responses={200: {"model": schemas.RemovalList}, **schemas.ERRORS},
    )
    async def list_removals(
        request: Request,
        ids: str = "",
        since: str | None = time_query(
            "every removal still under way, and those updated at or after this time (newest first)"
        ),
        principal: Principal = reader,
    ) -> Response:
        services = await services_of(request)
        if since is not None:
            if ids:
                raise ApiError(400, "invalidParameter", "give ids or since, not both")
            moment = parse_time(since, "since")
            assert moment is not None
            await services.storage.ensure()
            found = await RemovalStore(services.storage).open_or_changed_since(moment, MAX_LISTED)
            return json_response({"removals": [r.to_json() for r in found], "missing": []})
        wanted = [i for i in ids.split(",") if i]
        if not wanted or len(wanted) > MAX_REMOVAL_IDS or not all(REMOVAL_ID.fullmatch(i) for i in wanted):
            raise ApiError(400, "invalidParameter", f"ids must list 1 to {MAX_REMOVAL_IDS} removal ids")
        listed = await asyncio.gather(*(progress.get_removal(services, i) for i in wanted))
        return json_response(
            {
                "removals": [r for r in listed if r is not None],
                "missing": [i for i, r in zip(wanted, listed, strict=True) if r is None],
            }
        )


def validate_tenant_ids(body: dict[str, Any]) -> list[str]:
    """The body's ``tenantIds``: 1 to :data:`MAX_REMOVAL_IDS` GUIDs, lower case, each once."""
    ids = body.get("tenantIds")
    if not isinstance(ids, list) or not ids:
        raise ApiError(400, "malformedBody", "tenantIds must be a non-empty list of tenant ids")
    if len(ids) > MAX_REMOVAL_IDS:
        raise ApiError(400, "tooManyTenantIds", f"at most {MAX_REMOVAL_IDS} tenant ids per request")
    bad = [i for i in ids if not isinstance(i, str) or not GUID.fullmatch(i)]
    if bad:
        raise ApiError(
            400,
            "invalidTenantId",
            "every tenant id must be a GUID",
            {"invalid": [str(b)[:64] for b in bad[:10]]},
        )
    return list(dict.fromkeys(i.lower() for i in ids))


def validate_removal_request(body: dict[str, Any]) -> tuple[list[str], str]:
    """The tenant ids and reason of a removal request, or a 400 that names what is wrong."""
    tenant_ids = validate_tenant_ids(body)
    if body.get("customerNotified") is not True:
        raise ApiError(
            400,
            "customerNotNotified",
            "customerNotified must be true: notify the customers before removing their access",
        )
    reason = validate_reason(body)
    return tenant_ids, reason or "Removal requested in the portal"


def validate_reason(body: dict[str, Any]) -> str:
    """The body's optional ``reason``: printable text of at most :data:`MAX_REASON` characters."""
    reason = body.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ApiError(400, "malformedBody", f"reason must be text of at most {MAX_REASON} characters")
    if any(not ch.isprintable() and ch not in "\n\t" for ch in reason):
        raise ApiError(400, "malformedBody", "reason must not contain control characters")
    return reason.strip()


def register_exclusion_routes(app: FastAPI) -> None:
    """Customers excluded from removal by the policy: EXCLUDED_TENANTS (read-only here) and the
    exclusions managed here by holders of Relationships.Remove (stored, audited)."""

    @app.get(
        "/api/exclusions",
        tags=["exclusions"],
        summary="The customers the policy never removes (EXCLUDED_TENANTS and the stored exclusions)",
        responses={200: {"model": schemas.Exclusions}, **schemas.ERRORS},
    )
    async def exclusions(request: Request, principal: Principal = reader) -> Response:
        services = await services_of(request)
        await services.storage.ensure()
        found = await ExclusionStore(services.storage).all(services.settings)
        return json_response({"exclusions": [x.to_json() for x in found]})

    @app.put(
        "/api/exclusions/{tenant_id}",
        tags=["exclusions"],
        summary="Exclude a customer from removal by the policy (idempotent; recorded in the trail)",
        responses={200: {"model": schemas.Exclusion}, 201: {"model": schemas.Exclusion}, **schemas.ERRORS},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": schemas.ExclusionRequest.model_json_schema()}},
            }
        },
    )
    async def exclude(request: Request, tenant_id: str, principal: Principal = remover) -> Response:
        tenant = parse_guid(tenant_id)
        reason = validate_reason(await json_body(request))
        if not reason:
            raise ApiError(400, "malformedBody", "reason is required: say why the customer is excluded")
        services = await services_of(request)
        await services.storage.ensure()
        customer, relationships = await RelationshipStore(services.storage).load_customer(tenant)
        if customer is None and not relationships:
            raise ApiError(404, "unknownCustomer", "no customer with this tenant id is known")
        name = (customer.display_name if customer else "") or next(
            (r.customer_name for r in relationships if r.customer_name), ""
        )
        exclusion, created = await ExclusionStore(services.storage).add(
            tenant, name, reason, principal.display
        )
        return json_response(exclusion.to_json(), status=201 if created else 200)

    @app.delete(
        "/api/exclusions/{tenant_id}",
        tags=["exclusions"],
        summary="End a stored exclusion (recorded in the trail); EXCLUDED_TENANTS is changed in the "
        "settings only",
        status_code=204,
        responses={**schemas.ERRORS},
    )
    async def include(
        request: Request, tenant_id: str, reason: str = "", principal: Principal = remover
    ) -> Response:
        tenant = parse_guid(tenant_id)
        reason = validate_reason({"reason": reason})
        services = await services_of(request)
        await services.storage.ensure()
        if not await ExclusionStore(services.storage).remove(
            tenant, reason or "exclusion ended in the portal", principal.display
        ):
            if tenant in services.settings.excluded_tenants:
                raise ApiError(
                    409,
                    "excludedBySetting",
                    "the customer is in EXCLUDED_TENANTS: change that setting to include it again",
                )
            raise ApiError(404, "notExcluded", "the customer has no stored exclusion")
        return Response(status_code=204)
