"""Deleting the partner's Azure role assignments as part of a removal (``REMOVAL_SCOPE`` with ``azure``).

Runs before DAP and GDAP go: once both are gone the partner may no longer reach the customer tenant at
all, and the role assignments would stay out of its reach. The live assignments are read first and the
plan is written to the removal row; each assignment then moves ``pending -> requesting -> removed |
absent | kept`` with the row written *before* the call. A delete is idempotent at Resource Manager (a
second one answers 204), so a delivery that finds one ``requesting`` (a crash between the write and the
answer) deletes again and counts a 204 as its own. A refusal (403 AuthorizationFailed) or a lock (409
ScopeLocked) keeps that assignment, says why, and the customer's notice lists it as remaining; nothing
else is held back by it. Every outcome is a row in ``Actions``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.azure_roles.store import DENIED, AzureRoles, AzureRoleStore, admin_agents_group, read_customer
from shared.platform.actions import record_action
from shared.platform.retry import UpstreamError
from shared.relationships.store import RelationshipStore
from shared.removals.store import Removal, RemovalStore

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)
KEPT_STATUSES = (401, 403, 409)


def label(item: dict[str, Any]) -> str:
    subscription = item.get("subscriptionName") or item.get("subscriptionId") or ""
    return (
        f"{item.get('roleName') or item.get('roleDefinitionId')} on {subscription} ({item.get('principal')})"
    )


async def remove_azure_roles(services: Services, store: RemovalStore, removal: Removal) -> None:
    client = services.resource_manager
    tenant = removal.tenant_id
    if removal.azure_roles is None:
        if client is None:  # Services refuses REMOVAL_SCOPE=azure without credentials; belt and braces
            removal.azure_roles, removal.azure_note = [], "Resource Manager is not configured"
            await store.replace(removal)
            return
        _, relationships = await RelationshipStore(services.storage).load_customer(tenant)
        try:
            live = await read_customer(client, tenant, relationships, await admin_agents_group(services))
        except UpstreamError as exc:
            if exc.status not in DENIED:
                raise  # retried by the queue; nothing was deleted
            removal.azure_roles, removal.azure_note = [], f"Resource Manager refused the read: {exc}"
            await record_action(
                services.storage,
                **removal.trail(),
                action="azure.read",
                result="failed",
                detail=removal.azure_note,
                action_id=f"{removal.id}:azure-read:failed",
            )
            await store.replace(removal)
            return
        removal.azure_roles = [{**a, "state": "pending", "note": ""} for a in live]
        await store.replace(removal)
    if client is None:
        return
    for item in removal.azure_roles:
        if item["state"] not in ("pending", "requesting"):
            continue
        resumed = item["state"] == "requesting"
        item["state"] = "requesting"
        await store.replace(removal)
        try:
            deleted = await client.delete_role_assignment(tenant, str(item["id"]))
        except UpstreamError as exc:
            if exc.status == 404:
                state, note = "absent", "the subscription no longer exists"
            elif exc.status in KEPT_STATUSES:
                state, note = "kept", str(exc)
            else:
                raise  # the queue delivers again; this assignment is deleted (or found gone) then
        else:
            state = "removed" if deleted or resumed else "absent"
            note = "deleted" if state == "removed" else "already deleted"
        item["state"], item["note"] = state, note
        await record_action(
            services.storage,
            **removal.trail(),
            action="azure.roleAssignment.delete",
            result=state,
            detail=f"{label(item)}: {note} ({item['id']})",
            relationship_type="AZURE",
            relationship_id=str(item["id"]),
            action_id=f"{removal.id}:azure-{str(item['id']).rsplit('/', 1)[-1]}:{state}",
        )
        await store.replace(removal)
    await _forget_deleted(services, removal)


async def _forget_deleted(services: Services, removal: Removal) -> None:
    """The stored read no longer lists what this removal deleted (the next sync reads it afresh anyway)."""
    gone = {str(i["id"]) for i in removal.azure_roles or [] if i["state"] in ("removed", "absent")}
    if not gone:
        return
    roles_store = AzureRoleStore(services.storage)
    stored = await roles_store.get(removal.tenant_id)
    if stored is None:
        return
    kept = [a for a in stored.assignments if str(a.get("id")) not in gone]
    await roles_store.put(AzureRoles(stored.tenant_id, stored.state, stored.read_at, kept, stored.error))


async def remaining_azure_roles(services: Services, removal: Removal) -> list[dict[str, Any]]:
    """What the partner still holds in Azure after this removal: the assignments the removal kept, or,
    when it did not touch Azure, the customer's last read."""
    if removal.azure_roles is not None and "azure" in removal.scope:
        if removal.azure_note:  # the read was refused: what the store last knew remains
            stored = await AzureRoleStore(services.storage).get(removal.tenant_id)
            return list(stored.assignments) if stored else []
        return [i for i in removal.azure_roles if i["state"] == "kept"]
    stored = await AzureRoleStore(services.storage).get(removal.tenant_id)
    return list(stored.assignments) if stored else []
