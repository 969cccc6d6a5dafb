"""``AccessEndings`` rows (written by :class:`shared.relationships.store.RelationshipStore` when access
ends) as lost-access records: read, explained and followed through ``noticed -> classified -> done``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import UpdateMode

from shared.lost.causes import Ending
from shared.platform.storage import Storage, query_all
from shared.platform.timeutil import iso, parse_optional

TABLE = "AccessEndings"


@dataclass
class LostAccess:
    pk: str
    id: str  # the row key: tenant|key[|DAP start]
    tenant_id: str
    type: str
    relationship_id: str
    display_name: str
    customer_name: str
    roles: list[str]
    before: str
    after: str
    seen_at: datetime
    ends_at: datetime | None
    previous_ends_at: datetime | None
    established_at: datetime | None
    auto_extend_duration: str
    state: str  # noticed | classified | done
    cause: str = ""
    detail: str = ""
    ended_at: datetime | None = None
    last_sign_in_at: datetime | None = None
    removal_id: str = ""

    @property
    def lost(self) -> bool:
        """Classified, and not this product's own removal."""
        return bool(self.cause) and self.cause != "product"

    def ending(self) -> Ending:
        return Ending(
            type=self.type,
            before=self.before,
            after=self.after,
            seen_at=self.seen_at,
            ends_at=self.ends_at,
            previous_ends_at=self.previous_ends_at,
            auto_extend_duration=self.auto_extend_duration,
        )

    @classmethod
    def from_entity(cls, e: dict[str, Any]) -> LostAccess:
        return cls(
            pk=str(e["PartitionKey"]),
            id=str(e["RowKey"]),
            tenant_id=str(e.get("TenantId", "")),
            type=str(e.get("Type", "")),
            relationship_id=str(e.get("RelationshipId", "")),
            display_name=str(e.get("DisplayName", "")),
            customer_name=str(e.get("CustomerName", "")),
            roles=[str(r) for r in json.loads(e.get("Roles") or "[]")],
            before=str(e.get("From", "")),
            after=str(e.get("To", "")),
            seen_at=parse_optional(e.get("SeenAt")) or datetime(1970, 1, 1, tzinfo=UTC),
            ends_at=parse_optional(e.get("EndsAt")),
            previous_ends_at=parse_optional(e.get("PreviousEndsAt")),
            established_at=parse_optional(e.get("EstablishedAt")),
            auto_extend_duration=str(e.get("AutoExtendDuration", "")),
            state=str(e.get("State", "noticed")),
            cause=str(e.get("Cause", "")),
            detail=str(e.get("CauseDetail", "")),
            ended_at=parse_optional(e.get("EndedAt")),
            last_sign_in_at=parse_optional(e.get("LastSignInAt")),
            removal_id=str(e.get("RemovalId", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenantId": self.tenant_id,
            "displayName": self.customer_name,
            "type": self.type,
            "relationshipId": self.relationship_id,
            "relationshipName": self.display_name,
            "roles": list(self.roles),
            "previousStatus": self.before,
            "status": self.after,
            "cause": self.cause,
            "detail": self.detail,
            "endedAt": iso(self.ended_at) if self.ended_at else iso(self.seen_at),
            "noticedAt": iso(self.seen_at),
            "lastSignInAt": iso(self.last_sign_in_at) if self.last_sign_in_at else None,
        }


class LostAccessStore:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table(TABLE)

    async def in_state(self, state: str) -> list[LostAccess]:
        return [LostAccess.from_entity(e) async for e in query_all(self.table, "State eq @s", {"s": state})]

    async def all(self) -> list[LostAccess]:
        return [LostAccess.from_entity(e) async for e in query_all(self.table)]

    async def classify(self, row: LostAccess) -> None:
        await self.table.upsert_entity(
            {
                "PartitionKey": row.pk,
                "RowKey": row.id,
                "State": "classified",
                "Cause": row.cause,
                "CauseDetail": row.detail[:4000],
                "EndedAt": iso(row.ended_at) if row.ended_at else "",
                "LastSignInAt": iso(row.last_sign_in_at) if row.last_sign_in_at else "",
                "RemovalId": row.removal_id,
                "Lost": row.lost,
            },
            mode=UpdateMode.MERGE,
        )
        row.state = "classified"

    async def done(self, row: LostAccess) -> None:
        await self.table.upsert_entity(
            {"PartitionKey": row.pk, "RowKey": row.id, "State": "done"}, mode=UpdateMode.MERGE
        )
        row.state = "done"
