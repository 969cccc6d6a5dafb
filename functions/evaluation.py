"""The evaluation timer: report, daily snapshot, policy (warnings, removal queue, guards)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.triggers import register_timer_trigger
from shared.evaluation.fanout import should_fan_out, start_sharded_evaluation
from shared.evaluation.run import run_evaluation
from shared.services import Services

bp = func.Blueprint()
log = logging.getLogger(__name__)


async def evaluation(services: Services) -> None:
    if await should_fan_out(services):  # a large estate: one queue message per customer shard
        started = await start_sharded_evaluation(services, await services.now())
        log.info(
            "evaluation %s as of %s: fanned out to %d shards",
            started["evaluationId"],
            started["asOf"],
            started["shards"],
        )
        return
    summary = await run_evaluation(services, await services.now())
    log.info(
        "evaluation %s as of %s: %d candidates, %d queued, %d warned, halted=%s",
        summary["evaluationId"],
        summary["asOf"],
        len(summary["candidates"]),
        len(summary["queued"]),
        len(summary["warned"]),
        summary["halted"],
    )


register_timer_trigger(bp, "evaluation", "EVALUATION_SCHEDULE", evaluation)
