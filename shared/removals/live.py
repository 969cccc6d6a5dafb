"""What Microsoft says now about a customer's relationships: read again before anything is removed
and while a removal is followed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.domain.models import Relationship
from shared.platform.settings import GUID_RE
from shared.relationships.store import RelationshipStore
from shared.removals.store import Removal

if TYPE_CHECKING:
    from shared.services import Services

GDAP_REQUESTED = ("terminationRequested", "terminating")
GDAP_DONE = ("terminated",)


@dataclass
class LiveState:
    dap: str | None  # "active" | "disabled" | None when the customer has no DAP record (or DAP is off)
    gdap: dict[str, Relationship]

    def status_of(self, rel: dict[str, Any]) -> str:
        if rel["type"] == "DAP":
            return self.dap or "notFound"
        current = self.gdap.get(rel["id"])
        return current.status if current is not None else "notFound"


async def gdap_by_id(services: Services, tenant_id: str) -> dict[str, Relationship]:
    if not GUID_RE.match(tenant_id):
        raise ValueError(f"not a tenant id: {tenant_id!r}")
    rels = await services.graph.list_relationships(f"customer/tenantId eq '{tenant_id}'")
    return {r.id: r for r in rels if r.tenant_id == tenant_id}


async def live_state(services: Services, removal: Removal) -> LiveState:
    dap: str | None = None
    if services.partner_center is not None and any(r["type"] == "DAP" for r in removal.relationships):
        for item in await services.partner_center.list_dap_customers():
            if item.tenant_id == removal.tenant_id:
                dap = "active" if item.dap_enabled else "disabled"
                break
    return LiveState(dap=dap, gdap=await gdap_by_id(services, removal.tenant_id))


async def save_dap_disabled(services: Services, tenant_id: str) -> None:
    store = RelationshipStore(services.storage)
    _, stored = await store.load_customer(tenant_id)
    dap = next((r for r in stored if r.type == "DAP"), None)
    if dap is not None and dap.status != "disabled":
        dap.status = "disabled"
        await store.keep_seen(dap)
