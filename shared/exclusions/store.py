"""Exclusions: customers the policy never removes. Two sources, used together:

* ``EXCLUDED_TENANTS``, the setting (changed by a deployment, shown read-only in the portal);
* the ``Exclusions`` table, managed in the portal and the API by holders of ``Relationships.Remove``,
  each row with who excluded the customer, when and why. Every change is a row in the audit trail
  (``exclusion.added`` / ``exclusion.removed``).

The evaluation reads both (:func:`excluded_tenants`), and so does the removal worker right before a
policy removal acts: an exclusion added after the evaluation still stops the removal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.platform.actions import record_action
from shared.platform.storage import Storage, get_or_none, query_all, shard_of
from shared.platform.timeutil import iso, parse_optional, utcnow

if TYPE_CHECKING:
    from shared.platform.settings import Settings

TABLE = "Exclusions"
MAX_REASON = 500


@dataclass(frozen=True)
class Exclusion:
    tenant_id: str
    display_name: str
    reason: str
    by: str
    at: datetime | None
    source: str  # "portal": the Exclusions table; "setting": EXCLUDED_TENANTS

    def to_json(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "reason": self.reason,
            "excludedBy": self.by,
            "excludedAt": iso(self.at) if self.at else None,
            "source": self.source,
        }


class ExclusionStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.table = storage.table(TABLE)

    async def stored(self) -> list[Exclusion]:
        rows = [e async for e in query_all(self.table)]
        return sorted((_of(e) for e in rows), key=lambda x: (x.display_name.lower(), x.tenant_id))

    async def get(self, tenant_id: str) -> Exclusion | None:
        found = await get_or_none(self.table, shard_of(tenant_id.lower()), tenant_id.lower())
        return None if found is None else _of(found)

    async def stored_ids(self) -> frozenset[str]:
        return frozenset(x.tenant_id for x in await self.stored())

    async def all(self, settings: Settings) -> list[Exclusion]:
        """The stored exclusions and those of the setting (a tenant in both is listed once, as stored)."""
        stored = await self.stored()
        known = {x.tenant_id for x in stored}
        from_setting = [
            Exclusion(t, "", "EXCLUDED_TENANTS", "", None, "setting")
            for t in sorted(settings.excluded_tenants)
            if t not in known
        ]
        return stored + from_setting

    async def add(self, tenant_id: str, display_name: str, reason: str, by: str) -> tuple[Exclusion, bool]:
        """Exclude the customer; (the exclusion, whether it is new). Excluding again keeps the first row
        (its author and time) and records nothing: the call is idempotent."""
        tenant = tenant_id.lower()
        existing = await get_or_none(self.table, shard_of(tenant), tenant)
        if existing is not None:
            return _of(existing), False
        now = utcnow()
        entity = {
            "PartitionKey": shard_of(tenant),
            "RowKey": tenant,
            "DisplayName": display_name,
            "Reason": reason[:MAX_REASON],
            "ExcludedBy": by,
            "ExcludedAt": iso(now),
        }
        await self.table.upsert_entity(entity)
        await record_action(
            self.storage,
            tenant_id=tenant,
            actor=by,
            action="exclusion.added",
            result="completed",
            reason=reason,
            detail="excluded from removal by the policy",
            action_id=f"exclusion:{tenant}:{iso(now)}",
            at=now,
        )
        return _of(entity), True

    async def remove(self, tenant_id: str, reason: str, by: str) -> bool:
        """End the stored exclusion; False when there was none (nothing recorded)."""
        tenant = tenant_id.lower()
        existing = await get_or_none(self.table, shard_of(tenant), tenant)
        if existing is None:
            return False
        # The trail first: if the process dies between the two, the exclusion is still in force (safe)
        # and the same call again removes it (the trail row is idempotent per exclusion).
        await record_action(
            self.storage,
            tenant_id=tenant,
            actor=by,
            action="exclusion.removed",
            result="completed",
            reason=reason,
            detail=f"excluded since {existing.get('ExcludedAt', '')} by {existing.get('ExcludedBy', '')}",
            action_id=f"exclusion:{tenant}:{existing.get('ExcludedAt', '')}:removed",
        )
        await self.table.delete_entity(shard_of(tenant), tenant)  # a row already gone is no error
        return True


def _of(e: dict[str, Any]) -> Exclusion:
    return Exclusion(
        tenant_id=str(e["RowKey"]),
        display_name=str(e.get("DisplayName", "")),
        reason=str(e.get("Reason", "")),
        by=str(e.get("ExcludedBy", "")),
        at=parse_optional(e.get("ExcludedAt")),
        source="portal",
    )


async def excluded_tenants(storage: Storage, settings: Settings) -> frozenset[str]:
    """Every customer the policy must not remove: EXCLUDED_TENANTS and the stored exclusions."""
    return frozenset(settings.excluded_tenants) | await ExclusionStore(storage).stored_ids()
