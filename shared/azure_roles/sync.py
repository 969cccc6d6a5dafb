"""Reading the partner's Azure role assignments for every customer under monitoring, after each
relationship sync. One customer's refusal (403) or failure is recorded for that customer and the others
are read on; each customer's row is written as soon as it is read, so an interrupted read resumes with
what it did (the next sync reads all again: a read replaces the row, which makes it idempotent)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.azure_roles.store import (
    AzureRoles,
    AzureRoleStore,
    admin_agents_group,
    failure_state,
    read_customer,
)
from shared.platform.retry import UpstreamError
from shared.platform.timeutil import iso
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)
CONCURRENCY = 8


async def sync_azure_roles(services: Services, now: datetime) -> dict[str, Any]:
    client = services.resource_manager
    if client is None:
        return {"at": iso(now), "read": 0, "skipped": "no Resource Manager credentials"}
    estate = await RelationshipStore(services.storage).load()
    admin_agents = await admin_agents_group(services)
    store = AzureRoleStore(services.storage)
    semaphore = asyncio.Semaphore(CONCURRENCY)
    counts = {"read": 0, "denied": 0, "failed": 0, "assignments": 0}

    async def one(tenant: str) -> None:
        async with semaphore:
            previous = await store.get(tenant)
            try:
                assignments = await read_customer(
                    client, tenant, estate.relationships.get(tenant, []), admin_agents
                )
            except UpstreamError as exc:
                state = failure_state(exc)
                log.warning("Azure role assignments of %s: %s", tenant, exc)
                counts[state] += 1
                # What was last read stays (it is the best knowledge there is), marked with the refusal.
                kept = previous.assignments if previous is not None else []
                await store.put(AzureRoles(tenant, state, now, kept, str(exc)))
                return
            counts["read"] += 1
            counts["assignments"] += len(assignments)
            await store.put(AzureRoles(tenant, "read", now, assignments))

    await asyncio.gather(*(one(t) for t in estate.monitored()))
    return {"at": iso(now), **counts}
