"""Removals: requests (portal or policy), the removal queue worker, and the append-only ``Actions`` trail.

A removal is one customer's delegated admin access going away: DAP through the Partner Center
``PATCH`` and every active GDAP relationship through a terminate request (CONTRACTS sections 6, 7).

Exactly-once towards Microsoft, on an at-least-once queue:

* every removal has a ``Removals`` row whose id is the message's idempotency key;
* the row moves ``queued -> requesting -> requested | completed | skipped | failed`` with
  ETag-conditional writes, and each relationship inside it ``pending -> requesting -> requested |
  completed | skipped``; "requesting" is written *before* the service is called;
* a delivery that finds the removal past ``requesting`` calls nothing; one that finds it
  ``requesting`` under another worker's live lease backs off (:class:`RemovalBusy`) -- a working
  delivery keeps its lease alive however long Microsoft throttles it (:class:`HeldRemoval`); one that finds an
  abandoned ``requesting`` (a crash between the write and the call) re-reads the live state and
  decides from it (a relationship already ``terminationRequested`` *is* requested).

The live state is re-read before anything is removed: a customer that is excluded now, whose
relationships are no longer active, that got a new relationship, or that an agent signed in to since
the evaluation is skipped with its reason, never removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.domain.models import Relationship
from shared.platform.retry import UpstreamError
from shared.platform.settings import GUID_RE, REMOVALS_QUEUE
from shared.platform.storage import (
    ConflictingWrite,
    Storage,
    create_if_absent,
    get_or_none,
    query_all,
    replace_if_unchanged,
    shard_of,
)
from shared.platform.timeutil import iso, parse_optional, utcnow
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

PUBLIC_STATUS = {"queued": "queued", "requesting": "queued", "requested": "requested",
                 "completed": "completed", "skipped": "skipped", "failed": "failed"}
FINISHED = frozenset({"requested", "completed", "skipped", "failed"})
LEASE = timedelta(minutes=2)
MAX_ATTEMPTS = 5  # host.json extensions.queues.maxDequeueCount
MAIL_RETRY_SECONDS = 900  # a removal waiting for mail to work again looks again after this long
PARTNER_PARTITION = "_partner"  # Actions rows that concern no single customer (alerts, halts)
POLICY_ACTOR = "policy"
GDAP_REQUESTED = ("terminationRequested", "terminating")
GDAP_DONE = ("terminated",)
REMOVAL_NAMESPACE = uuid.UUID("3c9b8f6e-41a4-4f0e-9a55-5f0b8a1c7d21")


class Busy(RuntimeError):
    """Another delivery holds the work item's lease; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RemovalBusy(Busy):
    """Another delivery is executing this removal."""


class RemovalNotYet(Busy):
    """The sign-in log has not settled for the moment the removal was decided (SIGNIN_LOG_LATENCY_MINUTES):
    a sign-in made just before the decision may not be in it yet, so the last check waits."""


# --- time -------------------------------------------------------------------------------------------

def fixed_iso(value: datetime) -> str:
    """Sortable form for row keys: always six fractional digits."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the Actions trail ------------------------------------------------------------------------------

async def record_action(storage: Storage, *, tenant_id: str | None, actor: str, action: str, result: str,
                        reason: str = "", detail: str = "", removal_id: str = "", relationship_type: str = "",
                        relationship_id: str = "", action_id: str | None = None,
                        at: datetime | None = None) -> dict[str, Any]:
    """Append one row to ``Actions`` (PK tenant, RK time|id); never updates or deletes.

    With ``action_id`` the append is idempotent: a retry that records the same event again (a crash
    between the event and its row) finds the earlier row and adds nothing.
    """
    table = storage.table("Actions")
    pk = (tenant_id or PARTNER_PARTITION).lower()
    if action_id is not None:
        async for existing in table.query_entities("PartitionKey eq @pk and ActionId eq @id",
                                                   parameters={"pk": pk, "id": action_id}):
            return action_json(dict(existing))
    moment = at or utcnow()
    entity = {
        "PartitionKey": pk, "RowKey": f"{fixed_iso(moment)}|{uuid.uuid4().hex[:12]}",
        "ActionId": action_id or uuid.uuid4().hex, "At": iso(moment), "Actor": actor, "Action": action,
        "Result": result, "Reason": reason[:4000], "Detail": detail[:8000], "RemovalId": removal_id,
        "RelationshipType": relationship_type, "RelationshipId": relationship_id,
    }
    await table.create_entity(entity)
    try:
        await storage.append_audit(entity)
    except Exception:  # the table row is written; the copy's gap is what verify_trail reports
        log.exception("the audit trail's immutable copy could not be written for %s %s", pk, entity["RowKey"])
    if action_id is not None:
        # Two writers recording the same event at the same moment both pass the check above. The one
        # that inserts second sees both rows here: the earliest stays, later copies go. (The other
        # writer may have seen only its own row; whichever row remains, exactly one does.)
        same = sorted([dict(e) async for e in table.query_entities(
            "PartitionKey eq @pk and ActionId eq @id", parameters={"pk": pk, "id": action_id})],
            key=lambda e: str(e["RowKey"]))
        for extra in same[1:]:
            with contextlib.suppress(ResourceNotFoundError):
                await table.delete_entity(extra["PartitionKey"], extra["RowKey"])
        if same:
            return action_json(same[0])
    return action_json(entity)


def action_json(e: dict[str, Any]) -> dict[str, Any]:
    pk = str(e["PartitionKey"])
    return {
        "id": e.get("ActionId", ""), "tenantId": None if pk == PARTNER_PARTITION else pk, "at": e.get("At"),
        "actor": e.get("Actor", ""), "action": e.get("Action", ""), "result": e.get("Result", ""),
        "reason": e.get("Reason") or None, "detail": e.get("Detail") or None,
        "removalId": e.get("RemovalId") or None, "relationshipType": e.get("RelationshipType") or None,
        "relationshipId": e.get("RelationshipId") or None,
    }


async def list_actions(services: Services, tenant_id: str | None = None, since: datetime | None = None,
                       until: datetime | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Actions newest first; one customer's (``tenant_id``) or everyone's, partner-level ones included."""
    await services.storage.ensure()
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if tenant_id:
        clauses.append("PartitionKey eq @pk")
        params["pk"] = tenant_id.lower()
    if since is not None:
        clauses.append("RowKey ge @lo")
        params["lo"] = fixed_iso(since)
    if until is not None:
        clauses.append("RowKey lt @hi")
        params["hi"] = fixed_iso(until + timedelta(microseconds=1))
    query = " and ".join(clauses) or None
    rows = [e async for e in query_all(services.storage.table("Actions"), query, params or None)]
    rows.sort(key=lambda e: (str(e["RowKey"]), str(e["PartitionKey"])), reverse=True)
    return [action_json(e) for e in rows[:max(0, limit)]]


# --- the Removals table -----------------------------------------------------------------------------

@dataclass
class Removal:
    id: str
    tenant_id: str
    display_name: str
    source: str  # policy | user
    requested_by: str
    reason: str
    requested_at: datetime
    updated_at: datetime
    status: str = "queued"
    status_reason: str = ""
    customer_notified: bool = True
    evaluation_id: str = ""
    evaluated_as_of: datetime | None = None
    last_sign_in_at: datetime | None = None
    established_at: datetime | None = None
    inactive_days: int = 0
    baseline: datetime | None = None  # a qualifying sign-in at or after this is activity the decision missed
    decided_at: datetime | None = None  # Microsoft's time of the decision: checked once the log has settled
    stretch: str = ""
    scope: list[str] = field(default_factory=list)
    relationships: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    lease_owner: str = ""
    lease_until: datetime | None = None
    last_error: str = ""
    notice_queued: bool = False
    etag: str | None = None

    @property
    def actor(self) -> str:
        return POLICY_ACTOR if self.source == "policy" else (self.requested_by or "user")

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": shard_of(self.id), "RowKey": self.id, "TenantId": self.tenant_id,
            "DisplayName": self.display_name, "Source": self.source, "RequestedBy": self.requested_by,
            "Reason": self.reason[:4000], "RequestedAt": iso(self.requested_at), "UpdatedAt": iso(self.updated_at),
            "Status": self.status, "StatusReason": self.status_reason[:4000],
            "CustomerNotified": self.customer_notified, "EvaluationId": self.evaluation_id,
            "EvaluatedAsOf": iso(self.evaluated_as_of) if self.evaluated_as_of else "",
            "LastSignInAt": iso(self.last_sign_in_at) if self.last_sign_in_at else "",
            "EstablishedAt": iso(self.established_at) if self.established_at else "",
            "InactiveDays": self.inactive_days, "Baseline": iso(self.baseline) if self.baseline else "",
            "DecidedAt": iso(self.decided_at) if self.decided_at else "",
            "Stretch": self.stretch, "Scope": ",".join(self.scope),
            "Relationships": json.dumps(self.relationships, ensure_ascii=False), "Attempts": self.attempts,
            "LeaseOwner": self.lease_owner, "LeaseUntil": iso(self.lease_until) if self.lease_until else "",
            "LastError": self.last_error[:4000], "NoticeQueued": self.notice_queued,
        }

    @classmethod
    def from_entity(cls, e: dict[str, Any], etag: str | None) -> Removal:
        return cls(
            id=str(e["RowKey"]), tenant_id=str(e.get("TenantId", "")), display_name=str(e.get("DisplayName", "")),
            source=str(e.get("Source", "user")), requested_by=str(e.get("RequestedBy", "")),
            reason=str(e.get("Reason", "")), requested_at=_time(e.get("RequestedAt")),
            updated_at=_time(e.get("UpdatedAt")), status=str(e.get("Status", "queued")),
            status_reason=str(e.get("StatusReason", "")), customer_notified=bool(e.get("CustomerNotified", True)),
            evaluation_id=str(e.get("EvaluationId", "")), evaluated_as_of=parse_optional(e.get("EvaluatedAsOf")),
            last_sign_in_at=parse_optional(e.get("LastSignInAt")),
            established_at=parse_optional(e.get("EstablishedAt")), inactive_days=int(e.get("InactiveDays") or 0),
            baseline=parse_optional(e.get("Baseline")), decided_at=parse_optional(e.get("DecidedAt")),
            stretch=str(e.get("Stretch", "")),
            scope=[s for s in str(e.get("Scope", "")).split(",") if s],
            relationships=json.loads(e.get("Relationships") or "[]"), attempts=int(e.get("Attempts") or 0),
            lease_owner=str(e.get("LeaseOwner", "")), lease_until=parse_optional(e.get("LeaseUntil")),
            last_error=str(e.get("LastError", "")), notice_queued=bool(e.get("NoticeQueued", False)), etag=etag)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "tenantId": self.tenant_id, "displayName": self.display_name,
            "status": PUBLIC_STATUS.get(self.status, self.status),
            "reason": self.status_reason or None,
            "requestedBy": self.requested_by, "requestedAt": iso(self.requested_at),
            "updatedAt": iso(self.updated_at), "source": self.source, "requestReason": self.reason or None,
            "customerNotified": self.customer_notified, "evaluationId": self.evaluation_id or None,
            "lastSignInAt": iso(self.last_sign_in_at) if self.last_sign_in_at else None,
            "inactiveDays": self.inactive_days, "attempts": self.attempts,
            "relationships": [dict(r) for r in self.relationships],
        }


def _time(value: Any) -> datetime:
    parsed = parse_optional(value) if isinstance(value, str) else None
    return parsed or datetime(1970, 1, 1, tzinfo=UTC)


class RemovalStore:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Removals")

    async def get(self, removal_id: str) -> Removal | None:
        try:
            entity = await self.table.get_entity(shard_of(removal_id), removal_id)
        except ResourceNotFoundError:
            return None
        return Removal.from_entity(dict(entity), entity.metadata.get("etag"))

    async def create(self, removal: Removal) -> bool:
        """Insert; False when a removal with this id exists already."""
        etag = await create_if_absent(self.table, removal.to_entity())
        if etag is None:
            return False
        removal.etag = etag
        return True

    async def replace(self, removal: Removal) -> None:
        """ETag-conditional replace; raises :class:`ConflictingWrite` when someone else wrote first."""
        removal.updated_at = utcnow()
        removal.etag = await replace_if_unchanged(self.table, removal.to_entity(), removal.etag,
                                                  f"removal {removal.id}")

    async def renew_lease(self, removal: Removal, until: datetime) -> None:
        """Move only the lease's end, if nobody wrote the removal since (ETag); the rest stays as stored."""
        removal.etag = await replace_if_unchanged(
            self.table, {"PartitionKey": shard_of(removal.id), "RowKey": removal.id, "LeaseUntil": iso(until)},
            removal.etag, f"removal {removal.id}", mode=UpdateMode.MERGE)
        removal.lease_until = until

    async def pending_for(self, tenant_id: str) -> Removal | None:
        async for e in self.table.query_entities(
                "TenantId eq @t and (Status eq 'queued' or Status eq 'requesting' or Status eq 'requested')",
                parameters={"t": tenant_id}):
            return Removal.from_entity(dict(e), e.metadata.get("etag"))
        return None

    async def with_status(self, status: str) -> list[Removal]:
        out = []
        async for e in self.table.query_entities("Status eq @s", parameters={"s": status}):
            out.append(Removal.from_entity(dict(e), e.metadata.get("etag")))
        return out


# --- creating removals ------------------------------------------------------------------------------

def policy_removal_id(tenant_id: str, stretch: str, attempt: int = 0) -> str:
    """The same customer in the same inactivity stretch always gets the same removal (idempotency key),
    whoever asks for it (the policy or a person): two requests at once make one conditional insert of
    one row, so the second finds the first. ``attempt`` counts the removals of this stretch that ended
    skipped or failed: a skip for a temporary reason is re-evaluated, not kept for the whole stretch."""
    suffix = f"|{attempt}" if attempt else ""
    return str(uuid.uuid5(REMOVAL_NAMESPACE, f"policy|{tenant_id}|{stretch}{suffix}"))


async def removal_id_for(storage: Storage, tenant_id: str, stretch: str) -> str:
    """The id a new request for this customer and stretch must use (:func:`policy_removal_id`): the
    stretch's live or finished removal if there is one, else the next attempt after those that were
    skipped or failed (each re-read live state; none acted twice)."""
    closed = 0
    async for e in storage.table("Removals").query_entities(
            "TenantId eq @t and Stretch eq @s", parameters={"t": tenant_id, "s": stretch}):
        if str(e.get("Status")) in ("skipped", "failed"):
            closed += 1
        else:
            return str(e["RowKey"])
    return policy_removal_id(tenant_id, stretch, closed)


def stretch_of(row: dict[str, Any]) -> str:
    """An inactivity stretch is named by its evidence: the last sign-in, else the establishment."""
    return str(row.get("lastSignInAt") or f"established {row.get('establishedAt')}")


def in_scope(relationships: list[dict[str, Any]], scope: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    wanted = {s.lower() for s in scope}
    return [r for r in relationships if str(r.get("type", "")).lower() in wanted]


def removal_from_row(row: dict[str, Any], *, removal_id: str, source: str, requested_by: str, reason: str,
                     customer_notified: bool, scope: tuple[str, ...] | list[str], evaluation_id: str,
                     as_of: datetime | None, coverage_from: datetime | None, now: datetime,
                     decided_at: datetime | None = None) -> Removal:
    """A queued removal for one customer row of a stored evaluation (CONTRACTS section 5)."""
    last = parse_optional(row.get("lastSignInAt"))
    established = parse_optional(row.get("establishedAt"))
    if source == "policy":
        # Any qualifying sign-in after the evidence the decision rests on breaks the proof.
        if last is not None:
            baseline: datetime | None = last + timedelta(microseconds=1)
        else:
            candidates = [t for t in (established, coverage_from) if t is not None]
            baseline = max(candidates) if candidates else as_of
    else:
        # A person asked for this removal now (Microsoft's now, ``decided_at``): a sign-in after the
        # request means someone works there.
        baseline = decided_at or now
    decided = decided_at or (as_of if source == "policy" else None) or now
    rels = [{"type": r["type"], "id": r["id"], "displayName": r.get("displayName", ""),
             "roles": list(r.get("roles", [])), "state": "pending", "status": r.get("status", ""),
             "note": ""} for r in in_scope(list(row.get("relationships", [])), scope)]
    return Removal(
        id=removal_id, tenant_id=str(row["tenantId"]).lower(), display_name=str(row.get("displayName", "")),
        source=source, requested_by=requested_by, reason=reason, requested_at=now, updated_at=now,
        customer_notified=customer_notified, evaluation_id=evaluation_id, evaluated_as_of=as_of,
        last_sign_in_at=last, established_at=established, inactive_days=int(row.get("inactiveForAtLeastDays") or 0),
        baseline=baseline, decided_at=decided, stretch=stretch_of(row), scope=list(scope), relationships=rels)


def removal_message(removal: Removal) -> str:
    body = {"v": 1, "removalId": removal.id, "tenantId": removal.tenant_id, "idempotencyKey": removal.id}
    return json.dumps(body, separators=(",", ":"))


async def enqueue_removal(storage: Storage, removal: Removal, delay_seconds: int = 0) -> None:
    """One message for the removal; ``delay_seconds`` keeps it invisible that long (the log's latency)."""
    await storage.queue(REMOVALS_QUEUE).send_message(removal_message(removal),
                                                     visibility_timeout=max(0, delay_seconds) or None)


async def handle_or_defer(services: Services, queue_name: str, body: bytes, message_id: str,
                          handle: Callable[[], Awaitable[str]]) -> str:
    """A queue function's work for one message: ``handle()``, or, when the work is busy or must wait
    (:class:`Busy`), the message sent again for later -- ending normally, so that the host's retry
    budget is not spent on what is no failure."""
    try:
        return await handle()
    except Busy as busy:
        await defer_message(services.storage, queue_name, body, busy.retry_after)
        log.info("%s message %s deferred: %s", queue_name, message_id, busy)
        return "deferred"


async def defer_message(storage: Storage, queue_name: str, body: bytes | str, seconds: float) -> None:
    """Send the message again, invisible for ``seconds``: how a queue function puts off work that is
    not a failure (another delivery holds it, or it must wait) without spending the host's retry
    budget (a raised exception counts towards maxDequeueCount and ends in the poison queue)."""
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
    await storage.queue(queue_name).send_message(text, visibility_timeout=max(1, min(int(seconds) + 1, 7 * 24 * 3600)))


async def queue_removal(services: Services, removal: Removal) -> tuple[Removal, bool]:
    """Write the row (if new) and enqueue its message. Returns (the stored removal, created).

    A removal that exists and has not been executed yet is enqueued again: a second message for the
    same id is harmless (the row decides), a lost one would leave it queued for ever.
    """
    store = RemovalStore(services.storage)
    if removal.source == "policy":
        # One removal per customer at a time. A half-done one (a worker died after removing part of the
        # access) changes the customer's establishment, hence its stretch and removal id: resume it.
        under_way = await store.pending_for(removal.tenant_id)
        if under_way is not None and under_way.id != removal.id and under_way.status in ("queued", "requesting"):
            await enqueue_removal(services.storage, under_way)
            await record_queued(services, under_way)
            return under_way, False
    created = await store.create(removal)
    if not created:
        existing = await store.get(removal.id)
        if existing is None:  # deleted in between: nothing sensible left to do
            raise ConflictingWrite(f"removal {removal.id} vanished")
        if existing.status in ("queued", "requesting"):
            await enqueue_removal(services.storage, existing)
        # The run that created it may have died before recording it (idempotent: found, not doubled).
        await record_queued(services, existing)
        return existing, False
    try:
        await enqueue_removal(services.storage, removal, services.settings.signin_log_latency_minutes * 60)
    except Exception as exc:
        # The row stays queued: the next evaluation (policy) or the same request again (portal)
        # enqueues it anew, and a duplicate message is harmless.
        await record_action(services.storage, tenant_id=removal.tenant_id, actor=removal.actor,
                            action="removal.queued", result="error", reason=removal.reason,
                            detail=f"could not be enqueued: {type(exc).__name__}: {exc}", removal_id=removal.id)
        raise
    await record_queued(services, removal)
    return removal, True


async def record_queued(services: Services, removal: Removal) -> None:
    await record_action(services.storage, tenant_id=removal.tenant_id, actor=removal.actor, action="removal.queued",
                        result="queued", reason=removal.reason,
                        detail=", ".join(f"{r['type']} {r.get('displayName') or r['id']}"
                                         for r in removal.relationships),
                        removal_id=removal.id, action_id=f"{removal.id}:queued", at=removal.requested_at)


async def request_removals(services: Services, tenant_ids: list[str], *, requested_by: str, reason: str,
                           source: str = "user", customer_notified: bool = True) -> list[dict[str, Any]]:
    """Queue the removal of each customer's delegated admin access (portal, API).

    Raises ValueError (nothing written) for a tenant id that is not under monitoring in the latest
    evaluation or has nothing to remove within ``REMOVAL_SCOPE``. A customer with a removal still
    under way gets that removal back instead of a second one.
    """
    from shared.notifications.worker import require_sender

    await services.storage.ensure()
    settings = services.settings
    latest = await services.evaluations.latest()
    if latest is None:
        raise ValueError("no evaluation has been stored yet; run the audit first")
    rows = {str(r["tenantId"]).lower(): r for r in latest.report["customers"]}
    wanted: list[str] = []
    for raw in tenant_ids:
        tenant = str(raw).strip().lower()
        if not GUID_RE.match(tenant):
            raise ValueError(f"{raw!r} is not a tenant id")
        if tenant not in rows:
            raise ValueError(f"{tenant} is not under monitoring in the latest evaluation")
        if not in_scope(rows[tenant]["relationships"], settings.removal_scope):
            raise ValueError(f"{tenant} has no active relationship within REMOVAL_SCOPE "
                             f"({','.join(settings.removal_scope)})")
        if tenant not in wanted:
            wanted.append(tenant)
    if customer_notified and settings.notify_customers:
        require_sender(settings)
    store = RemovalStore(services.storage)
    await _check_manual_breaker(store, wanted, settings.max_removals_per_run)
    coverage = latest.report.get("coverage") or {}
    decided_at = await services.now()
    out = []
    for tenant in wanted:
        pending = await store.pending_for(tenant)
        if pending is not None:
            if pending.status in ("queued", "requesting"):
                await enqueue_removal(services.storage, pending)  # heals a lost message; duplicates are no-ops
            out.append({"id": pending.id, "tenantId": tenant, "status": PUBLIC_STATUS[pending.status]})
            continue
        removal = removal_from_row(
            rows[tenant], removal_id=await removal_id_for(services.storage, tenant, stretch_of(rows[tenant])),
            source=source, requested_by=requested_by, reason=reason,
            customer_notified=customer_notified, scope=settings.removal_scope, evaluation_id=latest.id,
            as_of=parse_optional(latest.report.get("asOf")), coverage_from=parse_optional(coverage.get("from")),
            now=utcnow(), decided_at=decided_at)
        stored, _ = await queue_removal(services, removal)
        out.append({"id": stored.id, "tenantId": tenant, "status": PUBLIC_STATUS[stored.status]})
    return out


async def _check_manual_breaker(store: RemovalStore, wanted: list[str], limit: int) -> None:
    """People's removals fall under the same circuit breaker as the policy's: at most
    MAX_REMOVALS_PER_RUN customers in any 24 hours (a slip of the select-all box, or a stolen session,
    cannot empty the estate). Customers with a removal already under way do not count again."""
    since = utcnow() - timedelta(hours=24)
    recent: set[str] = set()
    async for e in store.table.query_entities("Source ne @policy and RequestedAt ge @since",
                                              parameters={"policy": "policy", "since": iso(since)}):
        recent.add(str(e.get("TenantId") or ""))
    new = [t for t in wanted if t not in recent]
    if len(recent) + len(new) > limit:
        raise ValueError(f"circuit breaker: {len(new)} more customer(s) would make {len(recent) + len(new)} removals "
                         f"requested by people in 24 hours, more than MAX_REMOVALS_PER_RUN ({limit}); nothing "
                         "was queued")


async def verify_trail(storage: Storage) -> dict[str, list[dict[str, Any]]]:
    """The ``Actions`` table against its immutable copy: rows missing from the table (deleted), rows
    that differ from what was first written (altered), and rows the copy lacks (its write failed).
    Concurrent copies of one idempotent event (``ActionId``) count once, as the table keeps one."""
    fields = ("PartitionKey", "RowKey", "ActionId", "At", "Actor", "Action", "Result", "Reason", "Detail",
              "RemovalId", "RelationshipType", "RelationshipId")
    table = {(str(e["PartitionKey"]), str(e["RowKey"])): {k: e.get(k) for k in fields}
             async for e in query_all(storage.table("Actions"))}
    copy: dict[tuple[str, str], dict[str, Any]] = {}
    for record in await storage.audit_records():
        copy.setdefault((str(record["PartitionKey"]), str(record["RowKey"])), {k: record.get(k) for k in fields})
    kept = {(k[0], str(v.get("ActionId"))) for k, v in table.items()}
    missing = [v for k, v in copy.items() if k not in table and (k[0], str(v.get("ActionId"))) not in kept]
    altered = [{"stored": table[k], "written": v} for k, v in copy.items() if k in table and table[k] != v]
    uncopied = [v for k, v in table.items() if k not in copy]
    return {"deleted": missing, "altered": altered, "uncopied": uncopied}


# --- reading removals -------------------------------------------------------------------------------

async def get_removal(services: Services, removal_id: str) -> dict[str, Any] | None:
    """The removal's state; a ``requested`` one is advanced first by re-reading its GDAP relationships."""
    await services.storage.ensure()
    store = RemovalStore(services.storage)
    removal = await store.get(removal_id)
    if removal is None:
        return None
    if removal.status == "requested":
        try:
            removal = await refresh_removal(services, removal)
        except (UpstreamError, ConflictingWrite) as exc:
            log.warning("removal %s: could not refresh (%s); showing the stored state", removal_id, exc)
    return removal.to_json()


async def refresh_removal(services: Services, removal: Removal) -> Removal:
    """``requested`` -> ``completed`` once every requested GDAP relationship reads ``terminated``."""
    if removal.status != "requested":
        return removal
    live = await _gdap_by_id(services, removal.tenant_id)
    changed = False
    now = utcnow()
    for rel in removal.relationships:
        if rel["type"] != "GDAP" or rel["state"] != "requested":
            continue
        current = live.get(rel["id"])
        status = current.status if current is not None else "notFound"
        if status != rel.get("status"):
            rel["status"] = status
            changed = True
        if status in GDAP_DONE or current is None:
            rel["state"], rel["completedAt"] = "completed", iso(now)
            changed = True
            await record_action(
                services.storage, tenant_id=removal.tenant_id, actor=removal.actor, action="gdap.terminated",
                result="completed", reason=removal.reason, removal_id=removal.id, relationship_type="GDAP",
                relationship_id=rel["id"], action_id=f"{removal.id}:GDAP-{rel['id']}:terminated",
                detail=f"{rel.get('displayName', '')}: {'terminated' if current else 'no longer listed'}")
        elif status not in GDAP_REQUESTED and rel.get("requestId"):
            # Neither terminating nor terminated: did Microsoft give the terminate request up? A failed
            # request leaves the relationship as it was (access kept); that is said, never assumed away.
            request = await services.graph.get_request(rel["id"], str(rel["requestId"]))
            if request is not None and str(request.get("status")) == "failed":
                rel["state"], changed = "failed", True
                rel["note"] = (f"Microsoft reports the terminate request {rel['requestId']} failed; the "
                               f"relationship is {status}, so the access is kept")
                await record_action(
                    services.storage, tenant_id=removal.tenant_id, actor=removal.actor, action="gdap.terminate",
                    result="failed", reason=removal.reason, removal_id=removal.id, relationship_type="GDAP",
                    relationship_id=rel["id"], action_id=f"{removal.id}:GDAP-{rel['id']}:failed",
                    detail=f"{rel.get('displayName', '')}: {rel['note']}")
        if current is not None:
            await _save_relationship(services, current)
    if not changed:
        return removal
    if all(r["state"] in ("completed", "skipped") for r in removal.relationships):
        removal.status = "completed"
        await record_action(services.storage, tenant_id=removal.tenant_id, actor=removal.actor,
                            action="removal.completed", result="completed", reason=removal.reason,
                            removal_id=removal.id, action_id=f"{removal.id}:completed")
    elif all(r["state"] in ("completed", "skipped", "failed") for r in removal.relationships):
        from shared.notifications.worker import enqueue_partner_alert

        removal.status = "failed"
        removal.status_reason = "; ".join(f"{r.get('displayName') or r['id']}: {r.get('note')}"
                                          for r in removal.relationships if r["state"] == "failed")
        await record_action(services.storage, tenant_id=removal.tenant_id, actor=removal.actor,
                            action="removal.failed", result="failed", reason=removal.reason,
                            detail=removal.status_reason, removal_id=removal.id, action_id=f"{removal.id}:failed")
        await enqueue_partner_alert(services, "failed", f"removal-failed:{removal.id}",
                                    {"run": "removal", "detail": f"{removal.display_name}: {removal.status_reason}",
                                     "tenantId": removal.tenant_id, "displayName": removal.display_name})
    await RemovalStore(services.storage).replace(removal)
    return removal


async def refresh_requested_removals(services: Services) -> int:
    """Advance every ``requested`` removal (run by each evaluation). Returns how many completed."""
    completed = 0
    for removal in await RemovalStore(services.storage).with_status("requested"):
        try:
            after = await refresh_removal(services, removal)
        except (UpstreamError, ConflictingWrite) as exc:
            log.warning("removal %s: refresh failed: %s", removal.id, exc)
            continue
        completed += after.status == "completed"
    return completed


# --- executing removals (the queue worker) ----------------------------------------------------------

@dataclass
class LiveState:
    dap: str | None  # "active" | "disabled" | None when the customer has no DAP record (or DAP is off)
    gdap: dict[str, Relationship]

    def status_of(self, rel: dict[str, Any]) -> str:
        if rel["type"] == "DAP":
            return self.dap or "notFound"
        current = self.gdap.get(rel["id"])
        return current.status if current is not None else "notFound"


async def _gdap_by_id(services: Services, tenant_id: str) -> dict[str, Relationship]:
    if not GUID_RE.match(tenant_id):
        raise ValueError(f"not a tenant id: {tenant_id!r}")
    rels = await services.graph.list_relationships(f"customer/tenantId eq '{tenant_id}'")
    return {r.id: r for r in rels if r.tenant_id == tenant_id}


async def _live_state(services: Services, removal: Removal) -> LiveState:
    dap: str | None = None
    if services.partner_center is not None and any(r["type"] == "DAP" for r in removal.relationships):
        for item in await services.partner_center.list_dap_customers():
            if item.tenant_id == removal.tenant_id:
                dap = "active" if item.dap_enabled else "disabled"
                break
    return LiveState(dap=dap, gdap=await _gdap_by_id(services, removal.tenant_id))


async def _save_relationship(services: Services, rel: Relationship) -> None:
    """Keep the store in step with what was just seen (the portal shows it before the next sync)."""
    try:
        await RelationshipStore(services.storage).save_relationship(rel, utcnow())
    except Exception:  # the next sync writes it anyway
        log.warning("could not store relationship %s", rel.id, exc_info=True)


async def _save_dap_disabled(services: Services, tenant_id: str) -> None:
    _, stored = await RelationshipStore(services.storage).load_customer(tenant_id)
    dap = next((r for r in stored if r.type == "DAP"), None)
    if dap is not None and dap.status != "disabled":
        dap.status = "disabled"
        await _save_relationship(services, dap)


async def handle_removal_message(services: Services, body: bytes | str, *, message_id: str,
                                 dequeue_count: int = 1) -> str:
    """The removal queue function's work for one message. Raises to have the queue retry it."""
    await services.storage.ensure()
    message = parse_message(body)
    return await execute_removal(services, str(message["removalId"]), owner=message_id or uuid.uuid4().hex,
                                 attempt=dequeue_count)


def parse_message(body: bytes | str) -> dict[str, Any]:
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
    message = json.loads(text)
    if not isinstance(message, dict) or not isinstance(message.get("removalId"), str):
        raise ValueError(f"not a removal message: {text[:200]!r}")
    return message


class HeldRemoval(RemovalStore):
    """The store of one removal while a delivery holds its lease: a heartbeat renews the lease every
    quarter of :data:`LEASE` for as long as the delivery works, so that a Microsoft call held up by
    throttling (the SDKs honour ``Retry-After`` for minutes) never lets the lease lapse under a live
    worker and hand the removal to a second delivery. Writes and renewals take turns (one ETag chain);
    a renewal moves only the lease's end, never the delivery's unwritten changes."""

    def __init__(self, storage: Storage, removal: Removal) -> None:
        super().__init__(storage)
        self.removal = removal
        self._turn = asyncio.Lock()

    async def replace(self, removal: Removal) -> None:
        async with self._turn:
            await super().replace(removal)

    async def renew(self) -> None:
        async with self._turn:
            await self.renew_lease(self.removal, utcnow() + LEASE)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(LEASE.total_seconds() / 4)
            try:
                await self.renew()
            except ConflictingWrite:
                log.warning("removal %s: the lease was taken over; the next write of this delivery fails",
                            self.removal.id)
                return
            except Exception as exc:  # storage hiccup: the next beat tries again, well inside the lease
                log.warning("removal %s: could not renew the lease: %s", self.removal.id, exc)

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[HeldRemoval]:
        beat = asyncio.create_task(self._heartbeat())
        try:
            yield self
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat


async def execute_removal(services: Services, removal_id: str, *, owner: str, attempt: int = 1) -> str:
    """Run one removal to a finished state, exactly once towards Microsoft. Returns the status."""
    store = RemovalStore(services.storage)
    for _ in range(5):
        removal = await store.get(removal_id)
        if removal is None:
            raise LookupError(f"removal {removal_id} does not exist")
        if removal.status in FINISHED:
            log.info("removal %s is already %s; nothing to do", removal_id, removal.status)
            return removal.status
        if removal.status == "queued":
            await _wait_for_the_log(services, removal)
            await _wait_for_mail(services, removal)
        now = utcnow()
        if (removal.status == "requesting" and removal.lease_owner != owner and removal.lease_until is not None
                and removal.lease_until > now):
            raise RemovalBusy(f"removal {removal_id} is being executed by another delivery",
                              (removal.lease_until - now).total_seconds())
        removal.status, removal.lease_owner, removal.lease_until = "requesting", owner, now + LEASE
        removal.attempts += 1
        try:
            await store.replace(removal)
        except ConflictingWrite:
            continue
        break
    else:
        raise RemovalBusy(f"removal {removal_id} keeps changing under this delivery", 5.0)
    try:
        async with HeldRemoval(services.storage, removal).kept() as held:
            return await _execute(services, held, removal)
    except Exception as exc:
        await _attempt_failed(services, store, removal, exc, attempt)
        raise


async def _wait_for_the_log(services: Services, removal: Removal) -> None:
    """Raise :class:`RemovalNotYet` until Microsoft's clock is SIGNIN_LOG_LATENCY_MINUTES past the
    decision: Entra writes sign-ins to its log minutes late (Microsoft published 2 minutes at the 95th
    and 5 at the 99th percentile, https://learn.microsoft.com/azure/active-directory/reports-monitoring/
    reference-reports-latencies), and the last check must see every sign-in made before the decision."""
    latency = timedelta(minutes=services.settings.signin_log_latency_minutes)
    decided = removal.decided_at or removal.baseline or removal.requested_at
    if latency <= timedelta(0):
        return
    wait = decided + latency - await services.now()
    if wait > timedelta(0):
        raise RemovalNotYet(f"removal {removal.id} waits {int(wait.total_seconds())} s for the sign-in log to "
                            "settle", wait.total_seconds())


async def _wait_for_mail(services: Services, removal: Removal) -> None:
    """No customer loses access without being told: while mail cannot be sent, a removal whose
    customer is to be notified waits (RemovalNotYet) instead of starting."""
    from shared.notifications.worker import mail_broken

    if not (removal.customer_notified and services.settings.notify_customers):
        return
    broken = await mail_broken(services)
    if broken:
        raise RemovalNotYet(f"removal {removal.id} waits: customer notices cannot be sent ({broken[:200]})",
                            MAIL_RETRY_SECONDS)


async def _attempt_failed(services: Services, store: RemovalStore, removal: Removal, exc: BaseException,
                          attempt: int) -> None:
    """Release the lease (a retry resumes at once) and write the failure down; never hides ``exc``."""
    detail = f"attempt {attempt}: {type(exc).__name__}: {exc}"
    try:
        fresh = await store.get(removal.id)
        if fresh is not None and fresh.status == "requesting" and fresh.lease_owner == removal.lease_owner:
            fresh.lease_until, fresh.last_error = utcnow() - timedelta(seconds=1), detail
            await store.replace(fresh)
        await record_action(services.storage, tenant_id=removal.tenant_id, actor=removal.actor,
                            action="removal.attempt", result="error", reason=removal.reason, detail=detail,
                            removal_id=removal.id)
    except Exception:
        log.exception("removal %s: could not record the failed attempt", removal.id)


async def _skip(services: Services, store: RemovalStore, removal: Removal, reason: str) -> str:
    await record_action(services.storage, tenant_id=removal.tenant_id, actor=removal.actor, action="removal.skipped",
                        result="skipped", reason=removal.reason, detail=reason, removal_id=removal.id,
                        action_id=f"{removal.id}:skipped")
    for rel in removal.relationships:
        if rel["state"] == "pending":
            rel["state"] = "skipped"
    removal.status, removal.status_reason, removal.lease_owner = "skipped", reason, ""
    await store.replace(removal)
    log.info("removal %s (%s) skipped: %s", removal.id, removal.tenant_id, reason)
    return "skipped"


async def _prechecks(services: Services, removal: Removal, live: LiveState) -> str | None:
    """The reason to skip the whole removal, or None to go ahead (CONTRACTS section 6)."""
    settings = services.settings
    if removal.source == "policy" and removal.tenant_id in settings.excluded_tenants:
        return "excluded: the customer is in EXCLUDED_TENANTS now"
    active = [r for r in removal.relationships if live.status_of(r) == "active"]
    if not active:
        states = ", ".join(f"{r['type']} {r.get('displayName') or r['id']}: {live.status_of(r)}"
                           for r in removal.relationships)
        return f"no longer active ({states})"
    wanted = {s.lower() for s in removal.scope}
    known = {r["id"] for r in removal.relationships if r["type"] == "GDAP"}
    if "gdap" in wanted:
        fresh = [r for r in live.gdap.values() if r.active and r.id not in known]
        if fresh:
            return ("a new relationship was established since the evaluation: "
                    + ", ".join(r.display_name or r.id for r in fresh))
    if removal.baseline is not None:
        # The store first: it may hold a sign-in that Graph no longer serves (an older decision, a
        # sign-in ingested since); then Graph, both kinds, read until a sign-in turns up or pages end.
        stored = await get_or_none(services.storage.table("LastSignIns"), shard_of(removal.tenant_id),
                                   removal.tenant_id)
        stored_at = parse_optional(stored.get("LastAt")) if stored else None
        if stored_at is not None and stored_at >= removal.baseline:
            return (f"signed in since: the store holds a sign-in at {iso(stored_at)} "
                    f"(after {iso(removal.baseline)})")
        found = await services.graph.latest_sign_in(removal.tenant_id, removal.baseline,
                                                    await services.partner_tenant_id())
        if found is not None:
            kind = "non-interactive" if found.get("kind") == "nonInteractive" else "interactive"
            return (f"signed in since: an agent signed in at {found.get('createdDateTime')} "
                    f"({kind}, after {iso(removal.baseline)})")
    return None


async def _execute(services: Services, store: RemovalStore, removal: Removal) -> str:
    live = await _live_state(services, removal)
    started = any(r["state"] != "pending" for r in removal.relationships)
    if not started:
        reason = await _prechecks(services, removal, live)
        if reason is not None:
            return await _skip(services, store, removal, reason)
    # DAP first: it is the broadest access (Global Administrator). One relationship failing does not
    # hold back the others; the failure is raised afterwards so that the queue retries what is left.
    failures: list[UpstreamError] = []
    for rel in sorted(removal.relationships, key=lambda r: (r["type"] != "DAP", r["id"])):
        if rel["state"] in ("pending", "requesting"):
            try:
                await _remove_one(services, store, removal, rel, live)
            except UpstreamError as exc:
                failures.append(exc)
    if failures:
        raise failures[0]
    states = {r["state"] for r in removal.relationships}
    if states <= {"skipped"}:
        return await _skip(services, store, removal, "; ".join(
            f"{r['type']} {r.get('displayName') or r['id']}: {r.get('note') or 'skipped'}"
            for r in removal.relationships) or "nothing to remove")
    final = "requested" if "requested" in states else "completed"
    if removal.customer_notified and services.settings.notify_customers and not removal.notice_queued:
        # Enqueued before the final write: a crash in between re-sends the same key, which dedupes.
        from shared.notifications.worker import enqueue_customer_removal_notice

        await enqueue_customer_removal_notice(services, removal)
        removal.notice_queued = True
    await record_action(services.storage, tenant_id=removal.tenant_id, actor=removal.actor,
                        action=f"removal.{final}", result=final, reason=removal.reason, removal_id=removal.id,
                        detail="; ".join(f"{r['type']} {r.get('displayName') or r['id']}: {r['state']}"
                                         for r in removal.relationships),
                        action_id=f"{removal.id}:{final}")
    removal.status, removal.lease_owner, removal.status_reason = final, "", ""
    removal.last_error = ""
    await store.replace(removal)
    return final


async def _set_state(store: RemovalStore, removal: Removal, rel: dict[str, Any], state: str, note: str = "",
                     status: str | None = None) -> None:
    rel["state"] = state
    if note:
        rel["note"] = note
    if status is not None:
        rel["status"] = status
    if state in ("requested", "completed"):
        rel.setdefault("requestedAt", iso(utcnow()))
    if state == "completed":
        rel["completedAt"] = iso(utcnow())
    await store.replace(removal)


async def _remove_one(services: Services, store: RemovalStore, removal: Removal, rel: dict[str, Any],
                      live: LiveState) -> None:
    status = live.status_of(rel)
    what = "dap.disable" if rel["type"] == "DAP" else "gdap.terminate"
    action_base = f"{removal.id}:{rel['type']}-{rel['id']}"

    async def outcome(state: str, note: str, detail: str) -> None:
        await record_action(services.storage, tenant_id=removal.tenant_id, actor=removal.actor, action=what,
                            result=state, reason=removal.reason, detail=detail, removal_id=removal.id,
                            relationship_type=rel["type"], relationship_id=rel["id"],
                            action_id=f"{action_base}:{state}")
        await _set_state(store, removal, rel, state, note, status)

    label = rel.get("displayName") or rel["id"]
    if status != "active":
        if rel["state"] == "requesting":
            # Resuming after a crash between "requesting" and the call: the live state says whether it went out.
            if rel["type"] == "DAP" and status == "disabled":
                await outcome("completed", "DAP disabled", f"{label}: found disabled on resume")
                return
            if rel["type"] == "GDAP" and status in GDAP_REQUESTED:
                await outcome("requested", f"status {status}", f"{label}: found {status} on resume")
                return
            if rel["type"] == "GDAP" and status in GDAP_DONE:
                await outcome("completed", "terminated", f"{label}: found terminated on resume")
                return
        note = f"no longer active (status {status})"
        await outcome("skipped", note, f"{label}: {note}")
        return

    # The state row says "requesting" before the service is called (exactly once across deliveries).
    await _set_state(store, removal, rel, "requesting")
    if rel["type"] == "DAP":
        await _disable_dap(services, removal, rel, outcome)
    else:
        await _terminate_gdap(services, removal, rel, outcome)


Outcome = Callable[[str, str, str], Awaitable[None]]


async def _disable_dap(services: Services, removal: Removal, rel: dict[str, Any], outcome: Outcome) -> None:
    pc = services.partner_center
    if pc is None:
        await outcome("skipped", "DAP is not managed here (DAP_ENABLED=false)", "DAP_ENABLED=false")
        return
    try:
        await pc.disable_dap(removal.tenant_id)
    except UpstreamError as exc:
        if exc.status == 404:
            await outcome("skipped", "the customer no longer exists in Partner Center", str(exc))
            return
        # Anything else (a 412 included) is retried by the queue, which re-reads the live state first.
        raise
    rel["status"] = "disabled"
    await outcome("completed", "DAP disabled",
                  "Admin Agents (Global Administrator) and Helpdesk Agents (Helpdesk Administrator) removed")
    await _save_dap_disabled(services, removal.tenant_id)


async def _terminate_gdap(services: Services, removal: Removal, rel: dict[str, Any], outcome: Outcome) -> None:
    label = rel.get("displayName") or rel["id"]
    for _ in range(3):
        try:
            request_id = await services.graph.request_termination(rel["id"])
        except UpstreamError as exc:
            if exc.status == 409:
                rel["status"] = "terminationRequested"
                await outcome("requested", "already being terminated", f"{label}: {exc}")
                await _store_gdap_status(services, removal.tenant_id, rel["id"])
                return
            if exc.status == 404:
                rel["status"] = "notFound"
                await outcome("skipped", "the relationship no longer exists", f"{label}: {exc}")
                return
            if exc.status == 412:
                current = (await _gdap_by_id(services, removal.tenant_id)).get(rel["id"])
                if current is not None and current.status == "active":
                    continue
                status = current.status if current is not None else "notFound"
                rel["status"] = status
                if status in GDAP_REQUESTED or status in GDAP_DONE:
                    await outcome("requested" if status in GDAP_REQUESTED else "completed", f"status {status}",
                                  f"{label}: {status} after 412")
                else:
                    await outcome("skipped", f"no longer active (status {status})", f"{label}: {exc}")
                return
            raise
        rel["status"] = "terminationRequested"
        rel["requestId"] = request_id
        await outcome("requested", "terminate requested", f"{label}: terminate request {request_id}")
        await _store_gdap_status(services, removal.tenant_id, rel["id"])
        return
    raise UpstreamError(f"terminate {rel['id']}: precondition kept failing", status=412)


async def _store_gdap_status(services: Services, tenant_id: str, relationship_id: str) -> None:
    _, stored = await RelationshipStore(services.storage).load_customer(tenant_id)
    current = next((r for r in stored if r.type == "GDAP" and r.id == relationship_id), None)
    if current is not None and current.status == "active":
        current.status = "terminationRequested"
        await _save_relationship(services, current)


# --- poison -----------------------------------------------------------------------------------------

async def handle_removal_poison(services: Services, body: bytes | str) -> None:
    """A removal message the queue gave up on: mark the removal failed, write it down, alert."""
    from shared.notifications.worker import enqueue_partner_alert

    await services.storage.ensure()
    try:
        message = parse_message(body)
    except (ValueError, UnicodeDecodeError) as exc:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
        await record_action(services.storage, tenant_id=None, actor="system", action="removal.poison",
                            result="failed", detail=f"unreadable removal message: {exc}: {text[:500]}")
        await enqueue_partner_alert(services, "poison", f"poison:removal:{uuid.uuid4().hex}", {
            "queue": REMOVALS_QUEUE, "detail": f"an unreadable removal message was set aside: {text[:200]}"})
        return
    removal_id = str(message["removalId"])
    store = RemovalStore(services.storage)
    removal = await store.get(removal_id)
    tenant = removal.tenant_id if removal else str(message.get("tenantId") or "") or None
    if removal is not None and removal.status in FINISHED:
        # A duplicate message of a removal that did finish (or was already marked failed): nothing new.
        log.info("poison message for removal %s, which is %s; nothing to record", removal_id, removal.status)
        return
    if (removal is not None and removal.status == "requesting" and removal.lease_until is not None
            and removal.lease_until > utcnow()):
        # A live delivery is executing it: marking it failed would abandon what that delivery is doing
        # (DAP already disabled, relationships and the notice still to come). The holder finishes it.
        log.info("poison message for removal %s, which a live delivery is executing; left to it", removal_id)
        return
    detail = f"gave up after {MAX_ATTEMPTS} attempts"
    if removal is not None:
        detail += f": {removal.last_error}" if removal.last_error else ""
        if removal.status not in FINISHED:
            removal.status, removal.status_reason, removal.lease_owner = "failed", detail, ""
            await store.replace(removal)
    await record_action(services.storage, tenant_id=tenant, actor=removal.actor if removal else "system",
                        action="removal.failed", result="failed", reason=removal.reason if removal else "",
                        detail=detail, removal_id=removal_id, action_id=f"{removal_id}:failed")
    await enqueue_partner_alert(services, "poison", f"poison:removal:{removal_id}", {
        "queue": REMOVALS_QUEUE, "removalId": removal_id, "tenantId": tenant,
        "displayName": removal.display_name if removal else "", "detail": detail})


# --- draining a queue in-process (CLI cycle, demo, serve, tests) --------------------------------------

@dataclass
class DrainResult:
    processed: int = 0
    poisoned: list[str] = field(default_factory=list)  # message bodies moved to the poison queue
    errors: list[BaseException] = field(default_factory=list)  # the last error of each poisoned message
    deferred: int = 0  # messages left for later (another delivery holds the lease)


Handler = Callable[[bytes, str, int], Awaitable[Any]]
PoisonHandler = Callable[[bytes], Awaitable[None]]

PROCESSING_VISIBILITY = 300  # seconds a received message stays invisible while it is worked on


async def drain_queue(storage: Storage, name: str, handler: Handler, *, max_messages: int | None = None,
                      max_attempts: int = MAX_ATTEMPTS, retry_base: float = 0.05) -> DrainResult:
    """What the Functions host does for a queue trigger, in-process: run ``handler`` for every message,
    retry a failing one (backoff) up to ``max_attempts`` deliveries, then move it to ``<name>-poison``."""
    queue = storage.queue(name)
    poison = storage.queue(f"{name}-poison")
    result = DrainResult()
    while max_messages is None or result.processed < max_messages:
        message = await queue.receive_message(visibility_timeout=PROCESSING_VISIBILITY)
        if message is None:
            break
        content = message.content if isinstance(message.content, str) else str(message.content)
        body = content.encode("utf-8")
        try:
            await handler(body, str(message.id), int(message.dequeue_count or 1))
        except Busy as exc:
            # Not a failure: the holder finishes it, and this delivery then finds nothing to do.
            await queue.update_message(message, visibility_timeout=max(1, int(exc.retry_after) + 1))
            result.deferred += 1
            continue
        except Exception as exc:
            attempts = int(message.dequeue_count or 1)
            if attempts >= max_attempts:
                log.error("%s: message %s failed %d times; moving it to %s-poison: %s", name, message.id,
                          attempts, name, exc)
                await poison.send_message(content)
                await queue.delete_message(message)
                result.poisoned.append(content)
                result.errors.append(exc)
                result.processed += 1
            else:
                log.warning("%s: message %s failed (attempt %d): %s", name, message.id, attempts, exc)
                await asyncio.sleep(min(2.0, retry_base * 2 ** (attempts - 1)))
                await queue.update_message(message, visibility_timeout=0)
            continue
        await queue.delete_message(message)
        result.processed += 1
    return result


async def drain_poison(storage: Storage, name: str, handler: PoisonHandler) -> int:
    """Run the poison-queue function's work for every message in ``<name>-poison``."""
    queue = storage.queue(f"{name}-poison")
    handled = 0
    while True:
        message = await queue.receive_message(visibility_timeout=PROCESSING_VISIBILITY)
        if message is None:
            return handled
        content = message.content if isinstance(message.content, str) else str(message.content)
        await handler(content.encode("utf-8"))
        await queue.delete_message(message)
        handled += 1


async def drain_removals(services: Services, max_messages: int | None = None) -> DrainResult:
    await services.storage.ensure()

    async def handle(body: bytes, message_id: str, dequeue_count: int) -> None:
        await handle_removal_message(services, body, message_id=message_id, dequeue_count=dequeue_count)

    result = await drain_queue(services.storage, REMOVALS_QUEUE, handle, max_messages=max_messages)
    if result.poisoned:
        await drain_poison(services.storage, REMOVALS_QUEUE, lambda b: handle_removal_poison(services, b))
    return result


async def process_removal_queue(services: Services, max_messages: int | None = None) -> int:
    """Drain the removal queue in-process (CLI cycle, demo, ``serve``, tests). Returns messages handled."""
    return (await drain_removals(services, max_messages)).processed


__all__ = ["Busy", "ConflictingWrite", "DrainResult", "Removal", "RemovalBusy", "RemovalStore", "drain_queue",
           "drain_removals", "execute_removal", "get_removal", "handle_removal_message", "handle_removal_poison",
           "list_actions", "policy_removal_id", "process_removal_queue", "record_action", "refresh_removal",
           "refresh_requested_removals", "request_removals", "stretch_of"]
