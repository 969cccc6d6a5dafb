"""``GET /api/agents`` (Read): per partner agent, its use of customers and the groups that give it
access, idle agents flagged. ``POST /api/agents/{userId}/groups/{groupId}/remove`` (Remove): remove an
idle agent from one group, with ``{"reason": str, "confirm": true}``; re-checked right before acting."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from shared.agents.removal import remove_agent_from_group
from shared.agents.report import agents_csv_rows, agents_report
from shared.gdap.base import GdapError
from shared.platform.retry import UpstreamError
from shared.web import schemas
from shared.web.auth import Principal
from shared.web.http import (
    ApiError,
    choice_query,
    csv_response,
    json_body,
    json_response,
    reader,
    remover,
    services_of,
)


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


async def _run(coroutine: Any) -> Any:
    try:
        return await coroutine
    except GdapError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    except UpstreamError as exc:
        raise ApiError(
            502, "upstreamFailed", f"a Microsoft service failed: {exc}; nothing was removed"
        ) from None


def register_agents_api(app: FastAPI) -> None:
    @app.get(
        "/api/agents",
        tags=["agents"],
        summary="Per partner agent: last sign-in into any customer, customers reached in the last 30/90 "
        "days, the groups that give it access and how many customers each opens; idle agents flagged",
        responses=schemas.ERRORS,
    )
    async def agents(
        request: Request,
        format: str = choice_query("json", ("json", "csv")),  # noqa: A002 - the query parameter's name
        principal: Principal = reader,
    ) -> Response:
        if format not in ("json", "csv"):
            raise ApiError(400, "invalidQuery", "format must be json or csv")
        services = await services_of(request)
        report = await _run(agents_report(services))
        if format == "csv":
            return csv_response(csv_bytes(agents_csv_rows(report)), f"agents-{report['asOf'][:10]}.csv")
        return json_response(report)

    @app.post(
        "/api/agents/{userId}/groups/{groupId}/remove",
        tags=["agents"],
        summary="Remove an idle agent from a group (reason and confirm: true required); refused when the "
        "agent signed in since or is not proven idle; a repeated request answers unchanged",
        responses=schemas.ERRORS,
    )
    async def remove(request: Request, userId: str, groupId: str, principal: Principal = remover) -> Response:  # noqa: N803
        body = await json_body(request)
        services = await services_of(request)
        result = await _run(remove_agent_from_group(services, userId, groupId, body, actor=principal.display))
        return json_response(result)
