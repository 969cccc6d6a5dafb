"""The evaluation timer: report, daily snapshot, policy (warnings, removal queue, guards)."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.evaluation.fanout import should_fan_out, start_sharded_evaluation
from shared.evaluation.run import run_evaluation
from shared.runtime import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("evaluation")
@bp.timer_trigger(arg_name="timer", schedule="%EVALUATION_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def evaluation(timer: func.TimerRequest) -> None:
    services = await get_services()
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
