"""Relationship sync: GDAP (Graph) and DAP (Partner Center) into Table Storage, with status history.

Only what changed is written, so an hourly sync of 10,000 customers costs a few writes, and every
status change (e.g. terminationRequested -> terminated) lands in ``RelationshipChanges``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.data.tables import UpdateMode

from shared.domain.models import AccessAssignment, Customer, Relationship
from shared.platform.storage import Storage, create_if_absent, query_all, shard_of, upsert_all
from shared.platform.timeutil import iso, parse_optional, utcnow

log = logging.getLogger(__name__)

# Statuses in which a GDAP relationship still grants access, and those in which it has ended for good.
GDAP_HOLDING = ("active", "expiring", "terminationRequested", "terminating")
GDAP_ENDED = ("terminated", "expired")


def ends_access(before: str | None, rel: Relationship) -> bool:
    """Whether a status change takes away access the partner held: DAP enabled -> disabled, a GDAP
    relationship that granted access -> terminated or expired. A first sight (``before`` None) is history,
    not a loss."""
    if rel.type == "DAP":
        return before == "active" and rel.status == "disabled"
    return before in GDAP_HOLDING and rel.status in GDAP_ENDED


def ending_entity(rel: Relationship, stored: dict[str, Any], seen_at: datetime) -> dict[str, Any]:
    """One ``AccessEndings`` row: a relationship that stopped granting access, as the store saw it end.

    One row per ending: a GDAP relationship ends once (its id is never reused); DAP can be granted
    again, so its ending is named by the DAP establishment it ends."""
    name = f"{rel.tenant_id}|{rel.key}"
    if rel.type == "DAP":
        name += f"|{stored.get('EstablishedAt') or ''}"
    return {
        "PartitionKey": shard_of(rel.tenant_id),
        "RowKey": name,
        "TenantId": rel.tenant_id,
        "Key": rel.key,
        "Type": rel.type,
        "RelationshipId": rel.id,
        "DisplayName": rel.display_name or str(stored.get("DisplayName") or ""),
        "CustomerName": rel.customer_name or str(stored.get("CustomerName") or ""),
        "Roles": json.dumps(rel.roles or json.loads(stored.get("Roles") or "[]")),
        "From": str(stored.get("Status") or ""),
        "To": rel.status,
        "SeenAt": iso(seen_at),
        "EndsAt": iso(rel.ends_at) if rel.ends_at else "",
        "PreviousEndsAt": str(stored.get("EndsAt") or ""),
        "EstablishedAt": str(stored.get("EstablishedAt") or ""),
        "AutoExtendDuration": str(stored.get("AutoExtendDuration") or ""),
        "State": "noticed",
    }


def tenant_range(tenant_id: str) -> tuple[str, dict[str, Any]]:
    """Rows of one customer in a table keyed (shard, "<tenant>|..."): a parameterised RowKey range."""
    return (
        "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
        {"pk": shard_of(tenant_id), "lo": f"{tenant_id}|", "hi": f"{tenant_id}|~"},
    )


def relationship_entity(rel: Relationship) -> dict[str, Any]:
    # Keyed by shard so that a sync writes 100 relationships per transaction, not one.
    return {
        "PartitionKey": shard_of(rel.tenant_id),
        "RowKey": f"{rel.tenant_id}|{rel.key}",
        "TenantId": rel.tenant_id,
        "Type": rel.type,
        "Id": rel.id,
        "DisplayName": rel.display_name,
        "Status": rel.status,
        "EstablishedAt": iso(rel.established_at) if rel.established_at else "",
        "CreatedAt": iso(rel.created_at) if rel.created_at else "",
        "EndsAt": iso(rel.ends_at) if rel.ends_at else "",
        "Duration": rel.duration,
        "AutoExtendDuration": rel.auto_extend_duration,
        "Roles": json.dumps(rel.roles),
        "AccessAssignments": json.dumps([a.to_json() for a in rel.access_assignments]),
        "GraphEtag": rel.etag or "",
        "CustomerName": rel.customer_name,
    }


def relationship_from_entity(e: dict[str, Any]) -> Relationship:
    return Relationship(
        tenant_id=e["TenantId"],
        type=e["Type"],
        id=e["Id"],
        display_name=e.get("DisplayName", ""),
        status=e.get("Status", ""),
        established_at=parse_optional(e.get("EstablishedAt")),
        created_at=parse_optional(e.get("CreatedAt")),
        ends_at=parse_optional(e.get("EndsAt")),
        duration=e.get("Duration", ""),
        auto_extend_duration=e.get("AutoExtendDuration", ""),
        roles=json.loads(e.get("Roles") or "[]"),
        access_assignments=[
            AccessAssignment.from_json(a) for a in json.loads(e.get("AccessAssignments") or "[]")
        ],
        etag=e.get("GraphEtag") or None,
        customer_name=e.get("CustomerName", ""),
    )


def customer_entity(c: Customer) -> dict[str, Any]:
    return {
        "PartitionKey": shard_of(c.tenant_id),
        "RowKey": c.tenant_id,
        "DisplayName": c.display_name,
        "DefaultDomain": c.default_domain,
        "Culture": c.culture,
        "Contacts": json.dumps(c.contacts),
        # Only for an indirect reseller's customers: rows written before there were resellers stay as they are.
        **({"ResellerId": c.reseller_id, "ResellerName": c.reseller_name} if c.reseller_id else {}),
    }


def customer_from_entity(e: dict[str, Any]) -> Customer:
    return Customer(
        tenant_id=e["RowKey"],
        display_name=e.get("DisplayName", ""),
        default_domain=e.get("DefaultDomain", ""),
        culture=e.get("Culture", ""),
        contacts=json.loads(e.get("Contacts") or "[]"),
        reseller_id=e.get("ResellerId", ""),
        reseller_name=e.get("ResellerName", ""),
    )


@dataclass
class Estate:
    customers: dict[str, Customer] = field(default_factory=dict)
    relationships: dict[str, list[Relationship]] = field(default_factory=dict)

    def active(self, tenant_id: str) -> list[Relationship]:
        return [r for r in self.relationships.get(tenant_id, []) if r.active]

    def monitored(self) -> list[str]:
        return sorted(t for t in self.relationships if self.active(t))


class RelationshipStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def load(self, shard: str | None = None) -> Estate:
        """Every customer and relationship; with ``shard`` only that shard's (its partitions)."""
        from shared.platform.sharding import key_range_filter

        query, params = key_range_filter("PartitionKey", shard) if shard is not None else ("", {})
        estate = Estate()
        async for e in query_all(self.storage.table("Customers"), query or None, params or None):
            c = customer_from_entity(e)
            estate.customers[c.tenant_id] = c
        async for e in query_all(self.storage.table("Relationships"), query or None, params or None):
            r = relationship_from_entity(e)
            estate.relationships.setdefault(r.tenant_id, []).append(r)
        return estate

    async def load_customer(self, tenant_id: str) -> tuple[Customer | None, list[Relationship]]:
        from shared.platform.storage import get_or_none

        entity = await get_or_none(self.storage.table("Customers"), shard_of(tenant_id), tenant_id)
        query, params = tenant_range(tenant_id)
        rels = [
            relationship_from_entity(e)
            async for e in query_all(self.storage.table("Relationships"), query, params)
        ]
        return (customer_from_entity(entity) if entity else None), rels

    async def changes(self, tenant_id: str) -> list[dict[str, Any]]:
        query, params = tenant_range(tenant_id)
        rows = [e async for e in query_all(self.storage.table("RelationshipChanges"), query, params)]
        return [
            {"at": r["At"], "relationship": r["Key"], "from": r.get("From") or None, "to": r["To"]}
            for r in rows
        ]

    async def save_relationship(self, rel: Relationship, seen_at: datetime) -> bool:
        """Write one relationship's fresh state (e.g. read back after a removal). True if it changed."""
        _, stored = await self.load_customer(rel.tenant_id)
        before = next((r for r in stored if r.key == rel.key), None)
        if before is not None and not rel.access_assignments:
            rel.access_assignments = before.access_assignments
        changed = await self.write([rel], {rel.tenant_id: stored}, seen_at)
        return changed > 0

    async def keep_seen(self, rel: Relationship) -> None:
        """Keep the store in step with what was just read from Microsoft (the portal shows it before the
        next sync). Best effort: the next sync writes it anyway."""
        if not rel.tenant_id:
            return
        try:
            await self.save_relationship(rel, utcnow())
        except Exception:
            log.warning("could not store relationship %s", rel.id, exc_info=True)

    async def write(
        self, fresh: list[Relationship], stored: dict[str, list[Relationship]], seen_at: datetime
    ) -> int:
        stored_entities = {(r.tenant_id, r.key): relationship_entity(r) for rs in stored.values() for r in rs}
        stored_status = {(r.tenant_id, r.key): r.status for rs in stored.values() for r in rs}
        writes: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        endings: list[dict[str, Any]] = []
        for rel in fresh:
            entity = relationship_entity(rel)
            ident = (rel.tenant_id, rel.key)
            if stored_entities.get(ident) != entity:
                writes.append(entity)
            before = stored_status.get(ident)
            if ends_access(before, rel):
                endings.append(ending_entity(rel, stored_entities[ident], seen_at))
            if before != rel.status:
                changes.append(
                    {
                        "PartitionKey": shard_of(rel.tenant_id),
                        "RowKey": f"{rel.tenant_id}|{iso(seen_at)}|{rel.key}",
                        "At": iso(seen_at),
                        "Key": rel.key,
                        "Type": rel.type,
                        "RelationshipId": rel.id,
                        "From": before or "",
                        "To": rel.status,
                    }
                )
        # Endings first: once the relationship's row says "ended" no later write sees the change again, so a
        # crash in between must leave the ending recorded (insert-only: a repeat keeps the first row).
        for ending in endings:
            await create_if_absent(self.storage.table("AccessEndings"), ending)
        await upsert_all(self.storage.table("Relationships"), writes, UpdateMode.REPLACE)
        await upsert_all(self.storage.table("RelationshipChanges"), changes, UpdateMode.REPLACE)
        return len(writes)
