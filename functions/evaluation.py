"""The evaluation timer: report, daily snapshot, policy (warnings, removal queue, guards)."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.enforcement import run_evaluation
from shared.runtime import get_services
from shared.timeutil import utcnow

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("evaluation")
@bp.timer_trigger(arg_name="timer", schedule="%EVALUATION_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def evaluation(timer: func.TimerRequest) -> None:
    services = await get_services()
    summary = await run_evaluation(services, utcnow())
    log.info("evaluation %s as of %s: %d candidates, %d queued, %d warned, halted=%s",
             summary["evaluationId"], summary["asOf"], len(summary["candidates"]), len(summary["queued"]),
             len(summary["warned"]), summary["halted"])
