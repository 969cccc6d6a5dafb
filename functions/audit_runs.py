"""On-demand audit queue triggers (``POST /api/audit/run`` queues one message per run): run it; mark it
failed when its message ends in the poison queue. Runs are idempotent per message: a redelivery finds
the run finished and does nothing."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.triggers import register_poison_trigger, register_queue_trigger
from shared.evaluation.audit_runs import handle_audit_run_message, handle_audit_run_poison

bp = func.Blueprint()
log = logging.getLogger(__name__)


register_queue_trigger(
    bp,
    "audit_runs",
    "audit-runs",
    lambda services, msg: handle_audit_run_message(services, msg.get_body()),
    lambda msg, status: log.info("audit run message %s: %s", msg.id, status),
)


register_poison_trigger(
    bp, "audit_runs_poison", "audit-runs-poison", handle_audit_run_poison, "audit run message", log
)
