"""``GET /api/signins/coverage`` (Read, like the audit report): the sign-in evidence the store holds.
The stretches of sign-in log stored (coverage) and so the gaps between them, where ongoing ingestion
reads (``SIGNIN_SOURCE``), whether the Entra sign-in archive is configured and what its last backfill
imported: the same answer as ``python -m shared.cli archive status``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from shared.signins.ingestion import archive_status
from shared.web import schemas
from shared.web.auth import Principal
from shared.web.http import json_response, reader, services_of


def register_signins_api(app: FastAPI) -> None:
    @app.get(
        "/api/signins/coverage",
        tags=["audit"],
        summary="The sign-in evidence: the stretches of sign-in log stored, the source, the Entra "
        "sign-in archive's settings and its last backfill (what it imported, the hours it lacked)",
        responses={200: {"model": schemas.SignInCoverage}, **schemas.ERRORS},
    )
    async def sign_in_coverage(request: Request, principal: Principal = reader) -> Response:
        services = await services_of(request)
        return json_response(await archive_status(services))
