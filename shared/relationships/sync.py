"""The relationship sync: DAP from Partner Center and GDAP from Graph, compared with the store, each change
recorded in ``RelationshipChanges``."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.data.tables import UpdateMode

from shared.domain.models import DAP_ROLES, Customer, Relationship
from shared.microsoft.graph import GraphClient
from shared.microsoft.partner_center import PartnerCenterClient, PartnerCustomer
from shared.platform.retry import UpstreamError
from shared.platform.storage import Storage, upsert_all
from shared.platform.timeutil import iso
from shared.relationships.groups import GroupNames
from shared.relationships.store import Estate, RelationshipStore, customer_entity

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


class RelationshipSync:
    """Reads every relationship the partner holds and records what changed."""

    def __init__(
        self,
        storage: Storage,
        graph: GraphClient,
        partner_center: PartnerCenterClient | None,
        *,
        concurrency: int = 16,
    ) -> None:
        self.storage = storage
        self.store = RelationshipStore(storage)
        self.graph = graph
        self.partner_center = partner_center
        self.concurrency = concurrency

    async def run(self, now: datetime) -> dict[str, Any]:
        before = await self.store.load()
        gdap = await self.graph.list_relationships()
        stored_by_key = {(r.tenant_id, r.key): r for rs in before.relationships.values() for r in rs}
        await self._access_assignments(gdap, stored_by_key)
        # People know the access assignments' groups by name: named once, kept (never fails the sync).
        await GroupNames(self.storage).learn(
            self.graph, {a.group_id for r in gdap if r.active for a in r.access_assignments}
        )
        fresh: list[Relationship] = list(gdap)
        customers: dict[str, Customer] = {}
        for rel in gdap:
            if rel.tenant_id:
                customers.setdefault(rel.tenant_id, Customer(rel.tenant_id, rel.customer_name))
        fresh_keys = {(r.tenant_id, r.key) for r in gdap}

        if self.partner_center is not None:
            dap = await self.partner_center.list_dap_customers()
            for item in dap:
                fresh.append(
                    Relationship(
                        tenant_id=item.tenant_id,
                        type="DAP",
                        id=item.tenant_id,
                        display_name="DAP (Admin Agents, Helpdesk Agents)",
                        status="active" if item.dap_enabled else "disabled",
                        established_at=item.start,
                        ends_at=None if item.dap_enabled else item.end,
                        roles=list(DAP_ROLES),
                        customer_name=item.display_name,
                    )
                )
                customer = customers.setdefault(item.tenant_id, Customer(item.tenant_id, item.display_name))
                customer.display_name = customer.display_name or item.display_name
                fresh_keys.add((item.tenant_id, "DAP"))
            listed = await self.partner_center.list_customers()
            resellers = await self._reseller_names(listed, before)
            for pc in listed:
                customer = customers.setdefault(pc.tenant_id, Customer(pc.tenant_id, pc.company_name))
                customer.display_name = pc.company_name or customer.display_name
                customer.default_domain = pc.domain
                # The list says who the reseller is now (none: a direct customer, or no longer indirect).
                customer.reseller_id = pc.reseller_id
                customer.reseller_name = resellers.get(pc.reseller_id, "") if pc.reseller_id else ""
            # DAP rows that no longer appear in the list are no longer enabled.
            for (tenant, key), rel in stored_by_key.items():
                if key == "DAP" and (tenant, key) not in fresh_keys and rel.status != "disabled":
                    rel.status = "disabled"
                    fresh.append(rel)

        # Relationships Graph no longer lists (auto-cleaned after a year) keep their last state.
        for ident, rel in stored_by_key.items():
            if rel.type == "GDAP" and ident not in fresh_keys and rel.status not in ("terminated", "expired"):
                log.info("relationship %s no longer listed; keeping last state %s", rel.id, rel.status)

        for tenant, customer in customers.items():
            old = before.customers.get(tenant)
            if old is not None:
                customer.culture = customer.culture or old.culture
                customer.contacts = customer.contacts or old.contacts
                customer.default_domain = customer.default_domain or old.default_domain
                customer.display_name = customer.display_name or old.display_name
                if self.partner_center is None:  # not read this time: what the store knew
                    customer.reseller_id = customer.reseller_id or old.reseller_id
                    customer.reseller_name = customer.reseller_name or old.reseller_name
        await self._billing_profiles(customers, fresh)

        written = await self.store.write(fresh, before.relationships, now)
        customer_writes = []
        for tenant, customer in customers.items():
            entity = customer_entity(customer)
            old = before.customers.get(tenant)
            if old is None or customer_entity(old) != entity:
                customer_writes.append(entity)
        await upsert_all(self.storage.table("Customers"), customer_writes, UpdateMode.REPLACE)
        from shared.platform.state import StateStore

        result = {
            "at": iso(now),
            "gdap": len(gdap),
            "dap": sum(1 for r in fresh if r.type == "DAP"),
            "customers": len(customers),
            "relationshipsWritten": written,
            "customersWritten": len(customer_writes),
        }
        await StateStore(self.storage).record_success("sync", now, result)
        return result

    async def _access_assignments(
        self, gdap: list[Relationship], stored: dict[tuple[str, str], Relationship]
    ) -> None:
        """Access assignments of active relationships; unchanged relationships (same ETag) reuse them."""
        semaphore = asyncio.Semaphore(self.concurrency)

        async def fill(rel: Relationship) -> None:
            old = stored.get((rel.tenant_id, rel.key))
            if (
                old is not None
                and old.etag
                and old.etag == rel.etag
                and old.status == rel.status
                and all(a.status == "active" for a in old.access_assignments)
            ):
                rel.access_assignments = old.access_assignments
                return
            async with semaphore:
                rel.access_assignments = await self.graph.list_access_assignments(rel.id)

        await asyncio.gather(*(fill(r) for r in gdap if r.active))

    async def _reseller_names(self, listed: list[PartnerCustomer], before: Estate) -> dict[str, str]:
        """The names of the resellers the customer list names (asked for only when it names one). A
        refused or failing read keeps the names the store had: a reseller's name is a label, never a
        reason to stop the sync."""
        assert self.partner_center is not None
        known = {c.reseller_id: c.reseller_name for c in before.customers.values() if c.reseller_id}
        if not any(pc.reseller_id for pc in listed):
            return known
        try:
            return {**known, **await self.partner_center.indirect_resellers()}
        except UpstreamError as exc:
            log.warning("could not read the indirect resellers' names; keeping the stored ones: %s", exc)
            return known

    async def _billing_profiles(self, customers: dict[str, Customer], fresh: list[Relationship]) -> None:
        """Culture and e-mail from the billing profile, fetched once per monitored customer."""
        if self.partner_center is None:
            return
        pc = self.partner_center
        monitored = {r.tenant_id for r in fresh if r.active}
        wanted = [c for t, c in customers.items() if t in monitored and not c.culture]
        semaphore = asyncio.Semaphore(self.concurrency)

        async def fetch(customer: Customer) -> None:
            async with semaphore:
                profile = await pc.billing_profile(customer.tenant_id)
            if profile is None:
                return
            customer.culture = profile.culture or "en-US"
            if profile.email and profile.email not in customer.contacts:
                customer.contacts = [profile.email, *customer.contacts]

        await asyncio.gather(*(fetch(c) for c in wanted))


async def sync_relationships(services: Services, now: datetime) -> dict[str, Any]:
    """One sync of DAP and GDAP relationships into the store; then the access that ended without this
    product removing it is noticed (:mod:`shared.lost`), and the partner's Azure role assignments in the
    customers under monitoring are read (``shared.azure_roles``)."""
    from shared.azure_roles.sync import sync_azure_roles
    from shared.lost.service import notice_lost_access  # the concept above: it explains what sync saw

    await services.storage.ensure()
    result = await RelationshipSync(services.storage, services.graph, services.partner_center).run(now)
    try:
        result["lost"] = await notice_lost_access(services)
    except Exception:
        # The endings stay recorded ("noticed"): the next sync explains and announces them.
        log.exception("lost access could not be processed; the next sync retries")
    result["azureRoles"] = await sync_azure_roles(services, now)
    return result
