"""The sharded evaluation: one message per customer shard, so many Functions instances share the work.

For a large estate the evaluation timer does not compute the report itself. It refreshes the store
as always, fixes what every shard must agree on (``asOf``, the coverage, the evaluation id) in a run
record, and puts one message per shard (``shared.platform.sharding.SHARDS``) on the ``evaluation-shards``
queue. Each message computes the rows of its shard's customers -- reading only that shard's
partitions -- and stores them under ``EvaluationRows`` ``<evaluation>-<shard>``. The delivery that
finds every shard stored finishes: it reads the rows, writes the evaluation's head (which makes the
evaluation visible, exactly as the in-process evaluation does) and applies the policy
(:func:`shared.evaluation.run.apply_policy`: guards, warnings, one removal message per candidate on
the ``removals`` queue -- where the removals fan out again, one customer per message).

Every step is idempotent, as queue deliveries are at-least-once: a shard recomputed writes the same
rows, the finish is claimed with an insert-only marker (a stale claim -- a finisher that died -- is
taken over after :data:`FINISH_LEASE`), and the policy step's side effects are keyed (removal ids
per inactivity stretch, warning rows, notification keys per evaluation).

The evaluation fans out when the previous evaluation had at least ``EVALUATION_SHARD_THRESHOLD``
customers (0: always); below it, one instance computes everything in a few seconds.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.domain.rules import sort_rows
from shared.evaluation.report import compute_report, current_policy, policy_from_settings, report_head
from shared.evaluation.store import new_evaluation_id
from shared.platform.settings import EVALUATION_SHARDS_QUEUE
from shared.platform.sharding import SHARDS
from shared.platform.state import Coverage
from shared.platform.storage import ConflictingWrite, get_or_none, partition, replace_if_unchanged
from shared.platform.timeutil import iso, parse_iso, utcnow

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

RUNS_TABLE = "EvaluationRuns"  # run records, their shard progress and the finish claim
# Runs recorded by a version that kept them beside the heads in Evaluations: found there while they finish.
EARLIER_RUNS_TABLE = "Evaluations"
RUNS = "run"  # partition of run records
FINAL = "~final"  # row of the finish claim, after the shard rows in a run's partition
FINISH_LEASE = timedelta(minutes=10)


def _progress_partition(evaluation_id: str) -> str:
    return f"run-{evaluation_id}"


@dataclass
class Run:
    evaluation_id: str
    as_of: datetime  # the moment the timer evaluated for
    effective: datetime  # the moment the report is computed for (as_of, or the newest fully ingested)
    created_at: datetime
    coverage: Coverage
    partner_tenant_id: str
    refresh_error: str | None
    table: str = RUNS_TABLE  # where it is recorded, with its progress

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": RUNS,
            "RowKey": self.evaluation_id,
            "AsOf": iso(self.as_of),
            "Effective": iso(self.effective),
            "CreatedAt": iso(self.created_at),
            "Coverage": self.coverage.to_json(),
            "PartnerTenantId": self.partner_tenant_id,
            "RefreshError": self.refresh_error or "",
            "Shards": len(SHARDS),
        }

    @classmethod
    def from_entity(cls, e: dict[str, Any], table: str = RUNS_TABLE) -> Run:
        return cls(
            evaluation_id=e["RowKey"],
            as_of=parse_iso(e["AsOf"]),
            effective=parse_iso(e["Effective"]),
            created_at=parse_iso(e["CreatedAt"]),
            coverage=Coverage.from_json(e.get("Coverage")),
            partner_tenant_id=e["PartnerTenantId"],
            refresh_error=e.get("RefreshError") or None,
            table=table,
        )


async def should_fan_out(services: Services) -> bool:
    """Fan out when the previous evaluation had at least EVALUATION_SHARD_THRESHOLD customers (0: always)."""
    threshold = services.settings.evaluation_shard_threshold
    if threshold <= 0:
        return True
    heads = await services.evaluations.head_entities(limit=1)
    return bool(heads) and int(heads[0].get("Rows") or 0) >= threshold


async def start_sharded_evaluation(
    services: Services, as_of: datetime, *, refresh: bool = True
) -> dict[str, Any]:
    """The evaluation timer, fanned out: refresh, write the run record, enqueue one message per shard."""
    from shared.evaluation.run import effective_as_of, prepare_evaluation

    refresh_error, coverage = await prepare_evaluation(services, as_of, refresh=refresh)
    created_at = utcnow()
    run = Run(
        evaluation_id=new_evaluation_id(effective_as_of(coverage, as_of)),
        as_of=as_of,
        effective=effective_as_of(coverage, as_of),
        created_at=created_at,
        coverage=coverage,
        partner_tenant_id=await services.partner_tenant_id(),
        refresh_error=refresh_error,
    )
    await services.storage.table(RUNS_TABLE).create_entity(run.to_entity())
    queue = services.storage.queue(EVALUATION_SHARDS_QUEUE)
    for shard in SHARDS:
        await queue.send_message(
            json.dumps({"v": 1, "evaluationId": run.evaluation_id, "shard": shard}, separators=(",", ":"))
        )
    log.info(
        "evaluation %s as of %s: %d shard messages queued", run.evaluation_id, iso(run.effective), len(SHARDS)
    )
    return {
        "evaluationId": run.evaluation_id,
        "asOf": iso(run.effective),
        "shards": len(SHARDS),
        "refreshError": refresh_error,
    }


def parse_shard_message(body: bytes | str) -> tuple[str, str]:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    message = json.loads(text)
    if (
        not isinstance(message, dict)
        or message.get("shard") not in SHARDS
        or not isinstance(message.get("evaluationId"), str)
        or not message["evaluationId"]
    ):
        raise ValueError(f"not an evaluation shard message: {text[:200]!r}")
    return message["evaluationId"], message["shard"]


async def handle_shard_message(services: Services, body: bytes | str) -> dict[str, Any]:
    """One shard of a sharded evaluation; the delivery that completes the set finishes the evaluation."""
    evaluation_id, shard = parse_shard_message(body)
    run = await load_run(services, evaluation_id)
    evaluations = services.storage.table(run.table)
    report = await compute_report(
        services.storage,
        as_of=run.effective,
        partner_tenant_id=run.partner_tenant_id,
        policy=await current_policy(services.storage, services.settings),
        shard=shard,
        coverage=run.coverage,
    )
    rows = report["customers"]
    await services.evaluations.save_rows(evaluation_id, rows)
    await evaluations.upsert_entity(
        {
            "PartitionKey": _progress_partition(evaluation_id),
            "RowKey": shard,
            "Rows": len(rows),
            "At": iso(utcnow()),
        },
        mode=UpdateMode.REPLACE,
    )
    done = {e["RowKey"] for e in await partition(evaluations, _progress_partition(evaluation_id))}
    result: dict[str, Any] = {
        "evaluationId": evaluation_id,
        "shard": shard,
        "rows": len(rows),
        "shardsDone": len(done & set(SHARDS)),
        "finished": None,
    }
    if set(SHARDS) <= done:
        started = time.perf_counter()
        result["finished"] = await finish(services, run)
        result["finishSeconds"] = time.perf_counter() - started
    return result


async def load_run(services: Services, evaluation_id: str) -> Run:
    for name in (RUNS_TABLE, EARLIER_RUNS_TABLE):
        entity = await get_or_none(services.storage.table(name), RUNS, evaluation_id)
        if entity is not None:
            return Run.from_entity(entity, name)
    raise LookupError(f"evaluation run {evaluation_id} is not recorded")


async def _claim_finish(services: Services, run: Run) -> bool:
    """Insert-only claim; a claim older than FINISH_LEASE (its finisher died) is taken over."""
    table = services.storage.table(run.table)
    progress = _progress_partition(run.evaluation_id)
    claim: dict[str, Any] = {
        "PartitionKey": progress,
        "RowKey": FINAL,
        "At": iso(utcnow()),
        "Finished": False,
    }
    try:
        await table.create_entity(claim)
        return True
    except ResourceExistsError:
        pass
    try:
        existing = await table.get_entity(progress, FINAL)
    except ResourceNotFoundError:
        return False
    if existing.get("Finished") or utcnow() - parse_iso(existing["At"]) < FINISH_LEASE:
        return False
    try:
        await replace_if_unchanged(table, claim, existing.metadata["etag"], "the evaluation's finish claim")
    except ConflictingWrite:
        return False
    return True


async def finish(services: Services, run: Run) -> dict[str, Any] | None:
    """Assemble the stored shards into the evaluation (head written last) and apply the policy."""
    from shared.evaluation.policy import apply_policy

    if not await _claim_finish(services, run):
        return None
    rows = sort_rows(await services.evaluations.rows(run.evaluation_id))
    span = run.coverage.covering(run.effective)
    head = report_head(
        as_of=run.effective,
        partner_tenant_id=run.partner_tenant_id,
        span=span,
        policy=policy_from_settings(services.settings),
        rows=rows,
    )
    await services.evaluations.save_head(run.evaluation_id, head, len(rows), run.created_at)
    summary = await apply_policy(
        services,
        {**head, "customers": rows},
        run.evaluation_id,
        as_of=run.as_of,
        refresh_error=run.refresh_error,
    )
    await services.storage.table(run.table).upsert_entity(
        {
            "PartitionKey": _progress_partition(run.evaluation_id),
            "RowKey": FINAL,
            "At": iso(utcnow()),
            "Finished": True,
        },
        mode=UpdateMode.REPLACE,
    )
    log.info(
        "evaluation %s finished: %d customers, %d queued, halted=%s",
        run.evaluation_id,
        len(rows),
        len(summary["queued"]),
        summary["halted"],
    )
    return summary


async def run_shard_messages(services: Services, max_idle: float = 0.0) -> dict[str, Any]:
    """Drain the shard queue in-process, as one queue-triggered instance does (CLI, benchmark, tests).

    ``max_idle``: keep polling this long after the queue looks empty (other workers may still add)."""
    import asyncio

    from shared.platform.queues import drain_queue

    await services.storage.ensure()
    handled: list[dict[str, Any]] = []

    busy = 0.0

    async def handle(body: bytes, message_id: str, dequeue_count: int) -> None:
        nonlocal busy
        started = time.perf_counter()
        result = await handle_shard_message(services, body)
        busy += time.perf_counter() - started
        if result["finished"] is not None:
            result["finishedAt"] = time.time()  # wall clock: workers are separate processes
        handled.append(result)

    idle_since = time.monotonic()
    while True:
        result = await drain_queue(services.storage, EVALUATION_SHARDS_QUEUE, handle)
        if result.processed:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= max_idle:
            break
        else:
            await asyncio.sleep(0.1)
    finished = [
        {**h["finished"], "finishedAt": h["finishedAt"], "finishSeconds": h["finishSeconds"]}
        for h in handled
        if h.get("finished")
    ]
    return {
        "shards": len(handled),
        "rows": sum(h["rows"] for h in handled),
        "finished": finished,
        "busySeconds": busy,
    }


async def handle_shard_poison(services: Services, body: bytes | str) -> None:
    """A shard message the queue gave up on: that evaluation never becomes visible (the previous one
    keeps serving); write it down and alert the partner admins."""
    from shared.notifications.enqueue import enqueue_partner_alert
    from shared.platform.actions import record_action
    from shared.platform.telemetry import EVENT_POISON_MESSAGE, track_event

    await services.storage.ensure()
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    try:
        evaluation_id, shard = parse_shard_message(body)
    except (ValueError, UnicodeDecodeError):
        evaluation_id, shard = "", ""
    track_event(EVENT_POISON_MESSAGE, {"queue": EVALUATION_SHARDS_QUEUE})
    detail = (
        f"evaluation {evaluation_id}: shard {shard} failed repeatedly; the evaluation was not completed"
        if evaluation_id
        else f"an unreadable evaluation shard message was set aside: {text[:200]}"
    )
    await record_action(
        services.storage,
        tenant_id=None,
        actor="system",
        action="evaluation.failed",
        result="failed",
        detail=detail,
        action_id=f"poison:evaluation:{evaluation_id}:{shard}" if evaluation_id else None,
    )
    await enqueue_partner_alert(
        services,
        "poison",
        f"poison:evaluation:{evaluation_id or text[:64]}:{shard}",
        {"queue": EVALUATION_SHARDS_QUEUE, "detail": detail},
    )
