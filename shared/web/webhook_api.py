"""The alert webhook's routes (``/api/webhook...``), on the same rules as the others.

``GET /api/webhook`` (Relationships.Read) says whether a webhook is set, its format and host, never its
URL (the URL is its credential). ``POST /api/webhook/test`` (Relationships.Remove: an operator's act, with
the same JSON-only, same-site body check as ``POST /api/removals``) posts a test event now, as
``python -m shared.cli webhook test`` does, and writes it to the trail.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from shared.notifications.webhook import portal_link, target_host
from shared.notifications.webhook_worker import send_test
from shared.platform.settings import SettingsError
from shared.web import schemas
from shared.web.auth import Principal
from shared.web.http import ApiError, json_body, json_response, reader, remover, services_of


def register_webhook_api(app: FastAPI) -> None:
    @app.get(
        "/api/webhook",
        tags=["webhook"],
        summary="The alert webhook: whether one is set, its format and host (never its URL)",
        responses=schemas.ERRORS,
    )
    async def webhook_status(request: Request, principal: Principal = reader) -> Response:
        settings = (await services_of(request)).settings
        url = settings.alert_webhook_url
        return json_response(
            {
                "configured": bool(url),
                "format": settings.alert_webhook_format,
                "target": target_host(url) if url else None,
                "link": portal_link(settings),
            }
        )

    @app.post(
        "/api/webhook/test",
        tags=["webhook"],
        summary="Post a test event to the alert webhook now and answer what it said",
        responses={
            200: {"description": "the webhook took the test event"},
            502: {"description": "the webhook did not take it (error.result: its answer)"},
            503: {"description": "no webhook is set (ALERT_WEBHOOK_URL)"},
            **schemas.ERRORS,
        },
        openapi_extra={
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {"schema": {"type": "object", "description": "empty object"}}
                },
            }
        },
    )
    async def webhook_test(request: Request, principal: Principal = remover) -> Response:
        await json_body(request)
        services = await services_of(request)
        try:
            result = await send_test(services, actor=principal.display)
        except SettingsError as exc:
            raise ApiError(503, "notConfigured", str(exc)) from None
        if result["result"] != "sent":
            raise ApiError(
                502,
                "webhookFailed",
                f"the webhook did not take the test event: {result['detail']}",
                {"result": result},
            )
        return json_response(result)
