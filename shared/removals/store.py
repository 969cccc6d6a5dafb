"""The ``Removals`` table: one row per removal, its state machine and the lease that guards it."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import UpdateMode

from shared.domain.report import ReportRow
from shared.platform.actions import POLICY_ACTOR
from shared.platform.lease import Heartbeat
from shared.platform.queues import Busy
from shared.platform.storage import (
    Storage,
    create_row,
    get_with_etag,
    replace_if_unchanged,
    replace_row,
    shard_of,
)
from shared.platform.timeutil import iso, parse_optional, utcnow

log = logging.getLogger(__name__)


PUBLIC_STATUS = {
    "queued": "queued",
    "requesting": "queued",
    "requested": "requested",
    "completed": "completed",
    "skipped": "skipped",
    "failed": "failed",
}


FINISHED = frozenset({"requested", "completed", "skipped", "failed"})


LEASE = timedelta(minutes=2)


def lease_end(now: datetime) -> datetime:
    """When a lease taken at ``now`` runs out (:data:`LEASE` read at call time: tests shorten it)."""
    return now + LEASE


REMOVAL_NAMESPACE = uuid.UUID("3c9b8f6e-41a4-4f0e-9a55-5f0b8a1c7d21")


class RemovalBusy(Busy):
    """Another delivery is executing this removal."""


class RemovalNotYet(Busy):
    """The sign-in log has not settled for the moment the removal was decided (SIGNIN_LOG_LATENCY_MINUTES):
    a sign-in made just before the decision may not be in it yet, so the last check waits."""


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
    # The partner's Azure role assignments this removal deletes (REMOVAL_SCOPE with azure), each with its
    # state (pending -> requesting -> removed | absent | kept); None until the live state was read.
    azure_roles: list[dict[str, Any]] | None = None
    azure_note: str = ""  # why no Azure role assignment could be read or deleted, if none could
    etag: str | None = None

    def trail(self) -> dict[str, Any]:
        """The fields every Actions row about this removal carries (tenant, actor, reason, id, event
        properties): ``record_action(storage, **removal.trail(), action=..., result=...)``."""
        return {
            "tenant_id": self.tenant_id,
            "actor": self.actor,
            "reason": self.reason,
            "removal_id": self.id,
            "telemetry": self.telemetry,
        }

    @property
    def telemetry(self) -> dict[str, str]:
        """Properties of its custom events: the relationship types it removes (DAP, GDAP, DAP+GDAP)."""
        return {"type": "+".join(sorted({str(r.get("type", "")) for r in self.relationships} - {""}))}

    @property
    def actor(self) -> str:
        return POLICY_ACTOR if self.source == "policy" else (self.requested_by or "user")

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": shard_of(self.id),
            "RowKey": self.id,
            "TenantId": self.tenant_id,
            "DisplayName": self.display_name,
            "Source": self.source,
            "RequestedBy": self.requested_by,
            "Reason": self.reason[:4000],
            "RequestedAt": iso(self.requested_at),
            "UpdatedAt": iso(self.updated_at),
            "Status": self.status,
            "StatusReason": self.status_reason[:4000],
            "CustomerNotified": self.customer_notified,
            "EvaluationId": self.evaluation_id,
            "EvaluatedAsOf": iso(self.evaluated_as_of) if self.evaluated_as_of else "",
            "LastSignInAt": iso(self.last_sign_in_at) if self.last_sign_in_at else "",
            "EstablishedAt": iso(self.established_at) if self.established_at else "",
            "InactiveDays": self.inactive_days,
            "Baseline": iso(self.baseline) if self.baseline else "",
            "DecidedAt": iso(self.decided_at) if self.decided_at else "",
            "Stretch": self.stretch,
            "Scope": ",".join(self.scope),
            "Relationships": json.dumps(self.relationships, ensure_ascii=False),
            "Attempts": self.attempts,
            "LeaseOwner": self.lease_owner,
            "LeaseUntil": iso(self.lease_until) if self.lease_until else "",
            "LastError": self.last_error[:4000],
            "NoticeQueued": self.notice_queued,
            "AzureRoles": ""
            if self.azure_roles is None
            else json.dumps(self.azure_roles, ensure_ascii=False),
            "AzureNote": self.azure_note[:4000],
        }

    @classmethod
    def from_entity(cls, e: dict[str, Any], etag: str | None) -> Removal:
        return cls(
            id=str(e["RowKey"]),
            tenant_id=str(e.get("TenantId", "")),
            display_name=str(e.get("DisplayName", "")),
            source=str(e.get("Source", "user")),
            requested_by=str(e.get("RequestedBy", "")),
            reason=str(e.get("Reason", "")),
            requested_at=_time(e.get("RequestedAt")),
            updated_at=_time(e.get("UpdatedAt")),
            status=str(e.get("Status", "queued")),
            status_reason=str(e.get("StatusReason", "")),
            customer_notified=bool(e.get("CustomerNotified", True)),
            evaluation_id=str(e.get("EvaluationId", "")),
            evaluated_as_of=parse_optional(e.get("EvaluatedAsOf")),
            last_sign_in_at=parse_optional(e.get("LastSignInAt")),
            established_at=parse_optional(e.get("EstablishedAt")),
            inactive_days=int(e.get("InactiveDays") or 0),
            baseline=parse_optional(e.get("Baseline")),
            decided_at=parse_optional(e.get("DecidedAt")),
            stretch=str(e.get("Stretch", "")),
            scope=[s for s in str(e.get("Scope", "")).split(",") if s],
            relationships=json.loads(e.get("Relationships") or "[]"),
            attempts=int(e.get("Attempts") or 0),
            lease_owner=str(e.get("LeaseOwner", "")),
            lease_until=parse_optional(e.get("LeaseUntil")),
            last_error=str(e.get("LastError", "")),
            notice_queued=bool(e.get("NoticeQueued", False)),
            azure_roles=json.loads(e["AzureRoles"]) if e.get("AzureRoles") else None,
            azure_note=str(e.get("AzureNote", "")),
            etag=etag,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "status": PUBLIC_STATUS.get(self.status, self.status),
            "reason": self.status_reason or None,
            "requestedBy": self.requested_by,
            "requestedAt": iso(self.requested_at),
            "updatedAt": iso(self.updated_at),
            "source": self.source,
            "requestReason": self.reason or None,
            "customerNotified": self.customer_notified,
            "evaluationId": self.evaluation_id or None,
            "lastSignInAt": iso(self.last_sign_in_at) if self.last_sign_in_at else None,
            "inactiveDays": self.inactive_days,
            "attempts": self.attempts,
            "relationships": [dict(r) for r in self.relationships],
            "azureRoleAssignments": [dict(a) for a in self.azure_roles or []],
        }


def _time(value: Any) -> datetime:
    parsed = parse_optional(value) if isinstance(value, str) else None
    return parsed or datetime(1970, 1, 1, tzinfo=UTC)


class RemovalStore:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Removals")

    async def get(self, removal_id: str) -> Removal | None:
        found = await get_with_etag(self.table, shard_of(removal_id), removal_id)
        return None if found is None else Removal.from_entity(*found)

    async def create(self, removal: Removal) -> bool:
        """Insert; False when a removal with this id exists already."""
        return await create_row(self.table, removal)

    async def replace(self, removal: Removal) -> None:
        """ETag-conditional replace; raises :class:`ConflictingWrite` when someone else wrote first."""
        removal.updated_at = utcnow()
        await replace_row(self.table, removal, f"removal {removal.id}")

    async def renew_lease(self, removal: Removal, until: datetime) -> None:
        """Move only the lease's end, if nobody wrote the removal since (ETag); the rest stays as stored."""
        removal.etag = await replace_if_unchanged(
            self.table,
            {"PartitionKey": shard_of(removal.id), "RowKey": removal.id, "LeaseUntil": iso(until)},
            removal.etag,
            f"removal {removal.id}",
            mode=UpdateMode.MERGE,
        )
        removal.lease_until = until

    async def pending_for(self, tenant_id: str) -> Removal | None:
        async for e in self.table.query_entities(
            "TenantId eq @t and (Status eq 'queued' or Status eq 'requesting' or Status eq 'requested')",
            parameters={"t": tenant_id},
        ):
            return Removal.from_entity(dict(e), e.metadata.get("etag"))
        return None

    async def open_or_changed_since(self, since: datetime, limit: int) -> list[Removal]:
        """Every removal still under way and every one updated at or after ``since``, newest first (at
        most ``limit``): what a view computed at ``since`` does not know yet."""
        out = []
        async for e in self.table.query_entities(
            "Status eq 'queued' or Status eq 'requesting' or Status eq 'requested' or UpdatedAt ge @since",
            parameters={"since": iso(since)},
        ):
            out.append(Removal.from_entity(dict(e), e.metadata.get("etag")))
        out.sort(key=lambda r: r.updated_at, reverse=True)
        return out[:limit]

    async def with_status(self, status: str) -> list[Removal]:
        out = []
        async for e in self.table.query_entities("Status eq @s", parameters={"s": status}):
            out.append(Removal.from_entity(dict(e), e.metadata.get("etag")))
        return out


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
        "TenantId eq @t and Stretch eq @s", parameters={"t": tenant_id, "s": stretch}
    ):
        if str(e.get("Status")) in ("skipped", "failed"):
            closed += 1
        else:
            return str(e["RowKey"])
    return policy_removal_id(tenant_id, stretch, closed)


def stretch_of(row: ReportRow | dict[str, Any]) -> str:
    """An inactivity stretch is named by its evidence: the last sign-in, else the establishment."""
    return str(row.get("lastSignInAt") or f"established {row.get('establishedAt')}")


class HeldRemoval(RemovalStore):
    """The store of one removal while a delivery holds its lease, kept alive by a
    :class:`shared.platform.lease.Heartbeat` every quarter of :data:`LEASE`."""

    def __init__(self, storage: Storage, removal: Removal) -> None:
        super().__init__(storage)
        self.removal = removal
        self.heartbeat = Heartbeat(f"removal {removal.id}", lambda: LEASE.total_seconds() / 4, self._renew)

    async def replace(self, removal: Removal) -> None:
        async with self.heartbeat.turn:
            await super().replace(removal)

    async def _renew(self) -> bool:
        await self.renew_lease(self.removal, lease_end(utcnow()))
        return True

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[HeldRemoval]:
        async with self.heartbeat.kept():
            yield self
