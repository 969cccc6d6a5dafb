"""The ``AzureRoles`` table: per customer, the Azure role assignments the partner's principals hold on
the customer's subscriptions, as last read from Resource Manager (one row per customer, replaced by
each read), and the reading of them (:func:`read_customer`), which the sync and the removal share.

Which principals are the partner's. Resource Manager names a principal by object id and type only, and
the partner's groups keep their own object ids in the customer tenant (principal type ``ForeignGroup``):

* the Admin Agents group, Owner of the Azure CSP subscriptions the partner provisioned: Microsoft's
  procedure to reinstate it assigns the role to the object id of the partner tenant's ``AdminAgents``
  group (https://learn.microsoft.com/partner-center/customers/reinstate-csp, "Reinstate admin
  privileges for a customer's Azure CSP subscriptions"); its id is ``GDAP_GROUP_ADMINAGENTS`` or the one
  partner group Graph names ``AdminAgents``;
* a GDAP security group of the partner, by its id (the access assignments of the customer's GDAP
  relationships name them).

Any other principal -- another partner's foreign group included -- is not the partner's and is neither
shown nor removed. When the Admin Agents group cannot be told (no setting, Graph names none or several),
only the GDAP groups are.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.models import Relationship
from shared.microsoft.resource_manager import ResourceManagerClient, RoleAssignment
from shared.platform.retry import UpstreamError
from shared.platform.storage import Storage, get_or_none, query_all, shard_of
from shared.platform.timeutil import iso, parse_optional

DENIED = (401, 403)


@dataclass
class AzureRoles:
    """One customer's last read: ``state`` read | denied | failed."""

    tenant_id: str
    state: str
    read_at: datetime | None
    assignments: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": shard_of(self.tenant_id),
            "RowKey": self.tenant_id,
            "State": self.state,
            "ReadAt": iso(self.read_at) if self.read_at else "",
            "Assignments": json.dumps(self.assignments, ensure_ascii=False),
            "Error": self.error[:4000],
        }

    @classmethod
    def from_entity(cls, e: dict[str, Any]) -> AzureRoles:
        return cls(
            tenant_id=str(e["RowKey"]),
            state=str(e.get("State") or "read"),
            read_at=parse_optional(e.get("ReadAt")),
            assignments=json.loads(e.get("Assignments") or "[]"),
            error=str(e.get("Error") or ""),
        )


class AzureRoleStore:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("AzureRoles")

    async def get(self, tenant_id: str) -> AzureRoles | None:
        entity = await get_or_none(self.table, shard_of(tenant_id), tenant_id)
        return None if entity is None else AzureRoles.from_entity(entity)

    async def load(self, shard: str | None = None) -> dict[str, AzureRoles]:
        from shared.platform.sharding import key_range_filter

        query, params = key_range_filter("PartitionKey", shard) if shard is not None else ("", {})
        out: dict[str, AzureRoles] = {}
        async for e in query_all(self.table, query or None, params or None):
            row = AzureRoles.from_entity(e)
            out[row.tenant_id] = row
        return out

    async def put(self, row: AzureRoles) -> None:
        await self.table.upsert_entity(row.to_entity())


def partner_principals(relationships: list[Relationship], admin_agents: str | None) -> dict[str, str]:
    """principal id -> ``gdapGroup`` | ``adminAgents`` for the principals that are the partner's."""
    out = {
        a.group_id.lower(): "gdapGroup"
        for r in relationships
        if r.type == "GDAP"
        for a in r.access_assignments
        if a.group_id
    }
    if admin_agents:
        out[admin_agents.lower()] = "adminAgents"
    return out


async def admin_agents_group(services: Any) -> str | None:
    """The partner's AdminAgents group id: ``GDAP_GROUP_ADMINAGENTS``, else the one group Graph names
    ``AdminAgents``; None when it cannot be told (then no Admin Agents assignment is claimed)."""
    configured = services.settings.gdap_group_admin_agents
    if configured:
        return str(configured).lower()
    try:
        found = await services.graph.find_groups("AdminAgents")
    except UpstreamError:
        return None
    ids = {str(g.get("id") or "").lower() for g in found if g.get("id")}
    return ids.pop() if len(ids) == 1 else None


async def read_customer(
    client: ResourceManagerClient,
    tenant_id: str,
    relationships: list[Relationship],
    admin_agents: str | None,
) -> list[dict[str, Any]]:
    """The partner's role assignments on every subscription it sees in the customer tenant, as report
    entries. Raises :class:`UpstreamError` when Resource Manager refuses or fails."""
    subscriptions = await client.list_subscriptions(tenant_id)
    found: list[tuple[str, RoleAssignment]] = []
    for subscription in subscriptions:
        try:
            items = await client.list_role_assignments(tenant_id, subscription.subscription_id)
        except UpstreamError as exc:
            if exc.status == 404:  # cancelled or moved since it was listed
                continue
            raise
        found.extend((subscription.display_name, a) for a in items)
    principals = partner_principals(relationships, admin_agents)
    out = []
    for name, a in found:
        kind = principals.get(a.principal_id)
        if kind is None:
            continue
        out.append(
            {
                "id": a.id,
                "subscriptionId": a.subscription_id,
                "subscriptionName": name,
                "scope": a.scope,
                "roleDefinitionId": a.role_definition_id,
                "roleName": await client.role_name(tenant_id, a.role_definition_id),
                "principalId": a.principal_id,
                "principalType": a.principal_type,
                "principal": kind,
            }
        )
    return sorted(out, key=lambda x: (x["subscriptionName"], x["subscriptionId"], x["roleName"], x["id"]))


def failure_state(exc: UpstreamError) -> str:
    return "denied" if exc.status in DENIED else "failed"


def by_subscription(assignments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assignments grouped for mail and display: ``[{"subscription", "subscriptionId", "roles"}]``."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for a in assignments:
        key = (
            str(a.get("subscriptionName") or a.get("subscriptionId") or ""),
            str(a.get("subscriptionId") or ""),
        )
        role = str(a.get("roleName") or "")
        if role and role not in groups[key]:
            groups[key].append(role)
    return [
        {"subscription": k[0], "subscriptionId": k[1], "roles": sorted(v)} for k, v in sorted(groups.items())
    ]
