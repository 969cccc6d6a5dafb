"""``GET /api/lost-access``: access the partner lost without this product removing it (customer,
Microsoft, expiry), newest first. Read role, like the other reads; re-establishing goes through
``POST /api/gdap/reestablish`` (Grant), from the template used before."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from shared.lost.service import list_lost_access
from shared.web import schemas
from shared.web.auth import Principal
from shared.web.http import json_response, reader, services_of


def register_lost_api(app: FastAPI) -> None:
    @app.get(
        "/api/lost-access",
        tags=["lost access"],
        summary="Access that ended without this product removing it: when, what, who ended it "
        "(customer, Microsoft, expiry), and whether the customer still has other access",
        responses=schemas.ERRORS,
    )
    async def lost_access(request: Request, principal: Principal = reader) -> Response:
        services = await services_of(request)
        items = await list_lost_access(services)
        return json_response({"lostAccess": items, "count": len(items)})
