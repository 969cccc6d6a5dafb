"""On-demand audit queue triggers (``POST /api/audit/run`` queues one message per run): run it; mark it
failed when its message ends in the poison queue. Runs are idempotent per message: a redelivery finds
the run finished and does nothing."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.queue_triggers import register_poison_trigger
from shared.evaluation.audit_runs import handle_audit_run_message, handle_audit_run_poison
from shared.runtime import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("audit_runs")
@bp.queue_trigger(arg_name="msg", queue_name="audit-runs", connection="AzureWebJobsStorage")
async def audit_runs(msg: func.QueueMessage) -> None:
    services = await get_services()
    status = await handle_audit_run_message(services, msg.get_body())
    log.info("audit run message %s: %s", msg.id, status)


register_poison_trigger(
    bp, "audit_runs_poison", "audit-runs-poison", handle_audit_run_poison, "audit run message", log
)
