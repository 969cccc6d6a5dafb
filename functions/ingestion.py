"""Timer triggers that pull relationships and sign-ins into Table Storage."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.triggers import register_timer_trigger
from shared.gdap.follow_up import run_follow_up
from shared.relationships.sync import sync_relationships
from shared.services import Services
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
