"""The names of the partner's security groups that GDAP access assignments give roles to.

Graph names an access assignment's group only by id (``accessContainer.accessContainerId``). People
know their groups by name ("Helpdesk Agents", "Tier2-Exchange"), so each sync looks up the names of
groups it has not named yet, or named more than :data:`REFRESH_AFTER` ago, and keeps them in
``PartnerState`` (PK ``groupName``, RK group id). A group the product may not read keeps its id: the
names are for people, nothing decides by them, and a failed lookup never fails the sync.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from shared.domain.report import AccessGroup
from shared.platform.retry import UpstreamError
from shared.platform.storage import Storage, partition
from shared.platform.timeutil import iso, parse_optional, utcnow

if TYPE_CHECKING:
    from shared.domain.models import Relationship
    from shared.microsoft.graph import GraphClient

log = logging.getLogger(__name__)

KIND = "groupName"
REFRESH_AFTER = timedelta(days=7)
CONCURRENCY = 4


class GroupNames:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("PartnerState")

    async def load(self) -> dict[str, str]:
        """Every known group id (lower case) with its display name."""
        rows = await partition(self.table, KIND)
        return {str(e["RowKey"]): str(e.get("Value", "")) for e in rows if e.get("Value")}

    async def learn(self, graph: GraphClient, group_ids: set[str]) -> int:
        """Look up the groups not named yet (or named long ago); returns how many were named now."""
        known = {str(e["RowKey"]): parse_optional(e.get("At")) for e in await partition(self.table, KIND)}
        stale = utcnow() - REFRESH_AFTER

        def due(group_id: str) -> bool:
            at = known.get(group_id)
            return at is None or at < stale

        wanted = sorted(g for g in {x.lower() for x in group_ids if x} if due(g))
        semaphore = asyncio.Semaphore(CONCURRENCY)
        named = 0

        async def one(group_id: str) -> None:
            nonlocal named
            async with semaphore:
                try:
                    name = await graph.group_display_name(group_id)
                except UpstreamError as exc:
                    log.warning("group %s: its name could not be read (%s); its id is shown", group_id, exc)
                    return
            if name:
                await self.table.upsert_entity(
                    {"PartitionKey": KIND, "RowKey": group_id, "Value": name, "At": iso(utcnow())}
                )
                named += 1

        await asyncio.gather(*(one(g) for g in wanted))
        return named


def access_groups(rel: Relationship, names: dict[str, str]) -> list[AccessGroup]:
    """The groups the relationship's active access assignments give roles to: id and name ("" if unknown)."""
    seen: dict[str, AccessGroup] = {}
    for a in rel.access_assignments:
        if a.status != "active" or not a.group_id:
            continue
        gid = a.group_id.lower()
        seen.setdefault(gid, AccessGroup(id=gid, displayName=names.get(gid, "")))
    return sorted(seen.values(), key=lambda g: (g["displayName"].lower() or "~", g["id"]))
