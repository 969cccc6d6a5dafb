"""Timer triggers that pull relationships and sign-ins into Table Storage."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.triggers import register_timer_trigger
from shared.gdap.follow_up import run_follow_up
from shared.platform.state import ConcurrentRunError
from shared.relationships.sync import sync_relationships
from shared.runtime import get_services
from shared.services import Services
from shared.signins.archive import hour_of_blob
from shared.signins.ingestion import ingest_sign_ins

bp = func.Blueprint()
log = logging.getLogger(__name__)


async def relationship_sync(services: Services) -> None:
    result = await sync_relationships(services, await services.now())
    log.info("relationship sync: %s", result)
    # GDAP requests this product made: approved ones get their access assignments (never fails the sync).
    follow_up = await run_follow_up(services, await services.now())
    log.info("GDAP follow-up: %s", follow_up)


async def signin_ingest(services: Services) -> None:
    result = await ingest_sign_ins(services, await services.now())
    log.info("sign-in ingestion: %s", result)


register_timer_trigger(bp, "relationship_sync", "RELATIONSHIP_SYNC_SCHEDULE", relationship_sync)
register_timer_trigger(bp, "signin_ingest", "SIGNIN_INGEST_SCHEDULE", signin_ingest)


# The archive's containers get a blob per hour; each new one wakes the archive ingestion (which reads
# every held hour the store does not hold yet, so a missed or repeated event changes nothing). Event
# Grid delivers blob-created events (Flex Consumption has no polling blob trigger); the connection
# SIGNIN_ARCHIVE is the archive account (SIGNIN_ARCHIVE__blobServiceUri with the app's identity). The
# function is disabled in the deployment unless an archive is named (infra/main.bicep).
ARCHIVE_TRIGGER_CONTAINERS = ("insights-logs-signinlogs", "insights-logs-noninteractiveusersigninlogs")


async def signin_archive_blob(services: Services, name: str) -> str:
    """What a new archive blob does: ``ingested``, or why nothing was done."""
    if services.settings.signin_source != "archive":
        return "ignored: SIGNIN_SOURCE is not archive"
    if hour_of_blob(name.partition("/")[2]) is None:
        return "ignored: not an hourly sign-in blob"
    try:
        result = await ingest_sign_ins(services, await services.now())
    except ConcurrentRunError:
        return "skipped: another ingestion is under way and will read it"
    log.info("sign-in ingestion from the archive (%s): %s", name, result)
    return "ingested"


def _register_archive_trigger(container: str) -> None:
    @bp.function_name(f"signin_archive_{container.removeprefix('insights-logs-')}")
    @bp.blob_trigger(
        arg_name="blob",
        path=f"{container}/{{name}}",
        connection="SIGNIN_ARCHIVE",
        source=func.BlobSource.EVENT_GRID,
    )
    async def trigger(blob: func.InputStream) -> None:
        outcome = await signin_archive_blob(await get_services(), str(blob.name or ""))
        log.info("archive blob %s: %s", blob.name, outcome)


for _container in ARCHIVE_TRIGGER_CONTAINERS:
    _register_archive_trigger(_container)
