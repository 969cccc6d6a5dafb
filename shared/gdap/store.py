"""The ``GdapRequests`` and ``GdapOperations`` tables: relationships the product asked for and the changes
it made to them (extend, Global Administrator removal, assignments)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from azure.data.tables import UpdateMode

from shared.platform.storage import Storage, get_or_none, query_all, shard_of
from shared.platform.timeutil import (
    iso,
    iso_optional,
    parse_optional,
    utcnow,
    whole_days,
)
from shared.relationships.store import tenant_range

INVITATION_URL = (
    "https://admin.microsoft.com/AdminPortal/Home#/partners/invitation/granularAdminRelationships/{id}"
)


# Our steps of a request. Finished rows keep the relationship's last status (expired, terminated, ...).
OPEN_STATES = ("created", "approvalPending", "approved", "activating", "assigning")


def invitation_link(relationship_id: str) -> str:
    return INVITATION_URL.format(id=relationship_id)


class _Row(Protocol):
    def to_entity(self) -> dict[str, Any]: ...


_R = TypeVar("_R", bound=_Row)


class _RowTable(Generic[_R]):
    """A table of rows written whole (upsert, replace) and read back with ``from_entity``."""

    def __init__(self, storage: Storage, name: str, from_entity: Callable[[dict[str, Any]], _R]) -> None:
        self.table = storage.table(name)
        self.from_entity = from_entity

    async def save(self, row: _R) -> None:
        await self.table.upsert_entity(row.to_entity(), mode=UpdateMode.REPLACE)

    async def rows(self, query: str | None = None, params: dict[str, Any] | None = None) -> list[_R]:
        return [self.from_entity(e) async for e in query_all(self.table, query, params)]


@dataclass
class GdapRequest:
    """A relationship this product requested, and how far its lifecycle has come."""

    tenant_id: str
    relationship_id: str
    display_name: str
    customer_name: str
    template: str
    roles: list[str]
    duration: str
    auto_extend_duration: str
    requested_by: str
    requested_at: datetime
    source: str = "request"  # request | reestablish
    state: str = "created"
    status: str = "created"  # the relationship's status when last read
    assignments: list[dict[str, Any]] = field(
        default_factory=list
    )  # {group, groupId, roles, id, status, error}
    notified_to: list[str] = field(default_factory=list)
    notified_at: datetime | None = None
    activated_at: datetime | None = None
    updated_at: datetime | None = None
    last_error: str = ""

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": shard_of(self.tenant_id),
            "RowKey": f"{self.tenant_id}|{self.relationship_id}",
            "TenantId": self.tenant_id,
            "RelationshipId": self.relationship_id,
            "DisplayName": self.display_name,
            "CustomerName": self.customer_name,
            "Template": self.template,
            "Roles": json.dumps(self.roles),
            "Duration": self.duration,
            "AutoExtendDuration": self.auto_extend_duration,
            "RequestedBy": self.requested_by,
            "RequestedAt": iso(self.requested_at),
            "Source": self.source,
            "State": self.state,
            "Status": self.status,
            "Assignments": json.dumps(self.assignments),
            "NotifiedTo": json.dumps(self.notified_to),
            "NotifiedAt": iso_optional(self.notified_at) or "",
            "ActivatedAt": iso_optional(self.activated_at) or "",
            "UpdatedAt": iso_optional(self.updated_at) or "",
            "LastError": self.last_error[:4000],
        }

    @classmethod
    def from_entity(cls, e: dict[str, Any]) -> GdapRequest:
        return cls(
            tenant_id=str(e["TenantId"]),
            relationship_id=str(e["RelationshipId"]),
            display_name=str(e.get("DisplayName", "")),
            customer_name=str(e.get("CustomerName", "")),
            template=str(e.get("Template", "")),
            roles=json.loads(e.get("Roles") or "[]"),
            duration=str(e.get("Duration", "")),
            auto_extend_duration=str(e.get("AutoExtendDuration", "")),
            requested_by=str(e.get("RequestedBy", "")),
            requested_at=parse_optional(e.get("RequestedAt")) or datetime(1970, 1, 1, tzinfo=UTC),
            source=str(e.get("Source", "request")),
            state=str(e.get("State", "created")),
            status=str(e.get("Status", "")),
            assignments=json.loads(e.get("Assignments") or "[]"),
            notified_to=json.loads(e.get("NotifiedTo") or "[]"),
            notified_at=parse_optional(e.get("NotifiedAt")),
            activated_at=parse_optional(e.get("ActivatedAt")),
            updated_at=parse_optional(e.get("UpdatedAt")),
            last_error=str(e.get("LastError", "")),
        )

    def to_json(self, as_of: datetime | None = None) -> dict[str, Any]:
        moment = as_of or utcnow()
        return {
            "id": self.relationship_id,
            "tenantId": self.tenant_id,
            "customerName": self.customer_name,
            "displayName": self.display_name,
            "template": self.template,
            "status": self.status,
            "state": self.state,
            "open": self.open,
            "source": self.source,
            "roles": list(self.roles),
            "duration": self.duration,
            "autoExtendDuration": self.auto_extend_duration,
            "requestedBy": self.requested_by,
            "requestedAt": iso(self.requested_at),
            "ageDays": max(0, whole_days(moment - self.requested_at)),
            "invitationLink": invitation_link(self.relationship_id),
            "notifiedTo": list(self.notified_to),
            "notifiedAt": iso_optional(self.notified_at),
            "activatedAt": iso_optional(self.activated_at),
            "updatedAt": iso_optional(self.updated_at),
            "accessAssignments": [
                {k: a.get(k) for k in ("group", "groupId", "roles", "id", "status", "error")}
                for a in self.assignments
            ],
            "error": self.last_error or None,
        }


class GdapRequestStore(_RowTable[GdapRequest]):
    def __init__(self, storage: Storage) -> None:
        super().__init__(storage, "GdapRequests", GdapRequest.from_entity)

    async def get(self, tenant_id: str, relationship_id: str) -> GdapRequest | None:
        entity = await get_or_none(self.table, shard_of(tenant_id), f"{tenant_id}|{relationship_id}")
        return None if entity is None else GdapRequest.from_entity(entity)

    async def for_tenant(self, tenant_id: str) -> list[GdapRequest]:
        query, params = tenant_range(tenant_id)
        return sorted(await self.rows(query, params), key=lambda r: r.requested_at, reverse=True)

    async def open_rows(self) -> list[GdapRequest]:
        names = {f"s{i}": s for i, s in enumerate(OPEN_STATES)}
        query = " or ".join(f"State eq @{k}" for k in names)
        return sorted(await self.rows(query, names), key=lambda r: r.requested_at)

    async def all(self) -> list[GdapRequest]:
        return sorted(await self.rows(), key=lambda r: r.requested_at)


@dataclass
class GdapOperation:
    """A long-running change of a relationship (removing Global Administrator) and its outcome."""

    tenant_id: str
    operation_id: str
    relationship_id: str
    display_name: str
    kind: str
    requested_by: str
    requested_at: datetime
    state: str = "requested"  # requested | succeeded | failed
    status: str = "notStarted"  # the operation's status when last read
    roles_after: list[str] = field(default_factory=list)
    updated_at: datetime | None = None
    reason: str = ""  # why it failed, or what is still awaited

    def to_entity(self) -> dict[str, Any]:
        return {
            "Reason": self.reason[:4000],
            "PartitionKey": shard_of(self.tenant_id),
            "RowKey": f"{self.tenant_id}|{self.operation_id}",
            "TenantId": self.tenant_id,
            "OperationId": self.operation_id,
            "RelationshipId": self.relationship_id,
            "DisplayName": self.display_name,
            "Kind": self.kind,
            "RequestedBy": self.requested_by,
            "RequestedAt": iso(self.requested_at),
            "State": self.state,
            "Status": self.status,
            "RolesAfter": json.dumps(self.roles_after),
            "UpdatedAt": iso_optional(self.updated_at) or "",
        }

    @classmethod
    def from_entity(cls, e: dict[str, Any]) -> GdapOperation:
        return cls(
            tenant_id=str(e["TenantId"]),
            operation_id=str(e["OperationId"]),
            relationship_id=str(e.get("RelationshipId", "")),
            display_name=str(e.get("DisplayName", "")),
            kind=str(e.get("Kind", "")),
            requested_by=str(e.get("RequestedBy", "")),
            requested_at=parse_optional(e.get("RequestedAt")) or datetime(1970, 1, 1, tzinfo=UTC),
            state=str(e.get("State", "requested")),
            status=str(e.get("Status", "")),
            roles_after=json.loads(e.get("RolesAfter") or "[]"),
            updated_at=parse_optional(e.get("UpdatedAt")),
            reason=str(e.get("Reason", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "operationId": self.operation_id,
            "relationshipId": self.relationship_id,
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "kind": self.kind,
            "state": self.state,
            "operationStatus": self.status,
            "rolesAfter": list(self.roles_after),
            "requestedBy": self.requested_by,
            "requestedAt": iso(self.requested_at),
            "updatedAt": iso_optional(self.updated_at),
            "reason": self.reason or None,
        }


class GdapOperationStore(_RowTable[GdapOperation]):
    def __init__(self, storage: Storage) -> None:
        super().__init__(storage, "GdapOperations", GdapOperation.from_entity)

    async def open_operations(self) -> list[GdapOperation]:
        return await self.rows("State eq @s", {"s": "requested"})

    async def for_relationship(self, relationship_id: str) -> list[GdapOperation]:
        rows = await self.rows("RelationshipId eq @r", {"r": relationship_id})
        return sorted(rows, key=lambda o: o.requested_at, reverse=True)
