"""The HTTP API and the portal: every request goes to the one ASGI app in ``shared/web``.

A catch-all route (``host.json`` sets ``routePrefix`` to empty, so the portal is ``/`` and the API is
``/api/...``) hands the request to the app through ``func.AsgiMiddleware``. Function keys are not used
(anonymous at the Functions level): App Service Authentication signs users in and the app checks
their app roles on every API route.
"""

from __future__ import annotations

import azure.functions as func

from shared.runtime import get_services
from shared.web.app import create_app
from shared.web.http import WebConfig

bp = func.Blueprint()

# Building the app reads nothing and opens nothing: services are created on the first request.
_asgi = func.AsgiMiddleware(create_app(WebConfig(services=get_services)))


@bp.function_name("http_api")
@bp.route(
    route="{*route}",
    auth_level=func.AuthLevel.ANONYMOUS,
    methods=[func.HttpMethod.GET, func.HttpMethod.POST, func.HttpMethod.HEAD, func.HttpMethod.OPTIONS],
)
async def http_api(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    response: func.HttpResponse = await _asgi.handle_async(req, context)
    return response
