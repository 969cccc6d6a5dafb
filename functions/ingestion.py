"""Timer triggers that pull relationships and sign-ins into Table Storage."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.gdap.follow_up import run_follow_up
from shared.relationships.sync import sync_relationships
from shared.runtime import get_services
from shared.signins.ingestion import ingest_sign_ins

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("relationship_sync")
@bp.timer_trigger(
    arg_name="timer", schedule="%RELATIONSHIP_SYNC_SCHEDULE%", run_on_startup=False, use_monitor=True
)
async def relationship_sync(timer: func.TimerRequest) -> None:
    services = await get_services()
    result = await sync_relationships(services, await services.now())
    log.info("relationship sync: %s", result)
    # GDAP requests this product made: approved ones get their access assignments (never fails the sync).
    follow_up = await run_follow_up(services, await services.now())
    log.info("GDAP follow-up: %s", follow_up)


@bp.function_name("signin_ingest")
@bp.timer_trigger(
    arg_name="timer", schedule="%SIGNIN_INGEST_SCHEDULE%", run_on_startup=False, use_monitor=True
)
async def signin_ingest(timer: func.TimerRequest) -> None:
    services = await get_services()
    result = await ingest_sign_ins(services, await services.now())
    log.info("sign-in ingestion: %s", result)
