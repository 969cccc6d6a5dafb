"""On-demand audit runs (``POST /api/audit/run``, the portal's "Refresh now"): sync, ingest and evaluate,
as a queue message (``audit-runs``) that the ``audit_runs`` queue function handles in Azure and ``serve``
drains itself, so that no HTTP request holds the work and no frozen or recycled instance loses it.

The run's state is kept in the ``AuditRuns`` table, so any instance can answer
``GET /api/audit/runs/{id}``. At most one run is under way at a time: a request while one is queued or
running gets that run back instead of a second (the ingestion's coverage checkpoint would refuse a
concurrent writer anyway). A redelivered message finds the run finished and does nothing.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.evaluation.audit import audit
from shared.platform.actions import record_unreadable
from shared.platform.queues import DrainResult, drain_poison, drain_queue
from shared.platform.settings import AUDIT_RUNS_QUEUE
from shared.platform.state import KeyValues, StateStore
from shared.platform.telemetry import EVENT_POISON_MESSAGE, track_event
from shared.platform.timeutil import iso, parse_iso, utcnow

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

KIND = "auditRun"
LATEST = "latest"
# A run that has not finished after this long is taken to have died with its instance.
STALE_AFTER = timedelta(minutes=30)


def runs_table(services: Services) -> KeyValues:
    return KeyValues(services.storage, "AuditRuns")


async def get_audit_run(services: Services, run_id: str) -> dict[str, Any] | None:
    value = await runs_table(services).get(KIND, run_id)
    if not value:  # started by an earlier version, which kept runs in IngestionState
        value = await StateStore(services.storage).get_value(KIND, run_id)
    if not value:
        return None
    run: dict[str, Any] = json.loads(value)
    if run["status"] == "running" and utcnow() - parse_iso(run["startedAt"]) > STALE_AFTER:
        run["status"] = "failed"
        run["error"] = "the run did not finish (its instance stopped)"
    return run


async def start_audit_run(services: Services, requested_by: str) -> tuple[dict[str, Any], bool]:
    """(the run, whether it was started now): the run is recorded, then its message queued. A run
    already under way is returned instead."""
    state = runs_table(services)
    latest = await state.get(KIND, LATEST)
    if latest:
        current = await get_audit_run(services, latest)
        if current is not None and current["status"] == "running":
            return current, False
    run: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "status": "running",
        "startedAt": iso(utcnow()),
        "finishedAt": None,
        "requestedBy": requested_by,
        "asOf": None,
        "summary": None,
        "error": None,
    }
    await _save(services, run)
    await state.set(KIND, LATEST, run["id"])
    await services.storage.queue(AUDIT_RUNS_QUEUE).send_message(json.dumps({"v": 1, "runId": run["id"]}))
    return run, True


def parse_message(body: bytes | str) -> str:
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
    message = json.loads(text)
    if not isinstance(message, dict) or not isinstance(message.get("runId"), str) or not message["runId"]:
        raise ValueError(f"not an audit run message: {text[:200]!r}")
    return str(message["runId"])


async def handle_audit_run_message(services: Services, body: bytes | str) -> str:
    """The audit_runs queue function's work for one message: the run, once. Returns its status."""
    run = await get_audit_run(services, parse_message(body))
    if run is None or run["status"] != "running":
        return "unknown" if run is None else str(run["status"])
    try:
        report = await audit(services, await services.now())
        run.update(status="succeeded", asOf=report["asOf"], summary=report["summary"])
    except Exception as exc:  # the run's outcome is reported to whoever polls it
        log.exception("on-demand audit %s failed", run["id"])
        first_line = (str(exc).splitlines() or [""])[0][:300]
        run.update(status="failed", error=f"{type(exc).__name__}: {first_line}".rstrip(": "))
    run["finishedAt"] = iso(utcnow())
    await _save(services, run)
    return str(run["status"])


async def handle_audit_run_poison(services: Services, body: bytes | str) -> None:
    """A run message the queue gave up on: the run is failed (a poller learns it), and it is written down."""
    track_event(EVENT_POISON_MESSAGE, {"queue": AUDIT_RUNS_QUEUE})
    try:
        run_id = parse_message(body)
    except (ValueError, UnicodeDecodeError) as exc:
        await record_unreadable(services.storage, "auditRun", body, exc)
        return
    run = await get_audit_run(services, run_id)
    if run is not None and run["status"] == "running":
        run.update(status="failed", error="the run failed every attempt", finishedAt=iso(utcnow()))
        await _save(services, run)


async def drain_audit_runs(services: Services, max_messages: int | None = None) -> DrainResult:
    """What the queue functions do, in-process (``serve``, tests)."""
    await services.storage.ensure()

    async def handle(body: bytes, message_id: str, dequeue_count: int) -> None:
        await handle_audit_run_message(services, body)

    result = await drain_queue(services.storage, AUDIT_RUNS_QUEUE, handle, max_messages=max_messages)
    if result.poisoned:
        await drain_poison(services.storage, AUDIT_RUNS_QUEUE, lambda b: handle_audit_run_poison(services, b))
    return result


async def _save(services: Services, run: dict[str, Any]) -> None:
    await runs_table(services).set(KIND, run["id"], json.dumps(run, ensure_ascii=False))
