"""The partner agents seen signing in to customers (``Agents``): who reached which customer, when."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

from azure.data.tables import UpdateMode

from shared.platform.storage import (
    Storage,
    check_key,
    get_or_none,
    query_all,
    upsert_all,
)
from shared.platform.timeutil import iso, parse_optional


class AgentDirectory:
    """Who the partner's agents are, as the sign-in log names them (``Agents`` table, PK ``agents``,
    RK user id): the user principal name and display name beside each id, for the portal and API.

    Ingestion records the names of every agent it meets, keeping the newest seen (a renamed agent
    takes its new name; an older slice read later does not bring the old one back).
    """

    PARTITION = "agents"

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Agents")
        self._known: dict[str, tuple[str, str, datetime]] | None = None
        self._lock = asyncio.Lock()

    async def learn(self, people: dict[str, tuple[str, str, datetime]]) -> int:
        """Store the names of ``people`` (user id -> (UPN, display name, seen at)) that are new or newer
        than stored; the table is read once per directory. Returns how many rows were written."""
        async with self._lock:
            if self._known is None:
                self._known = {}
                async for e in query_all(self.table, "PartitionKey eq @pk", {"pk": self.PARTITION}):
                    seen = parse_optional(e.get("SeenAt")) or datetime(1970, 1, 1, tzinfo=UTC)
                    self._known[e["RowKey"]] = (
                        str(e.get("UserPrincipalName") or ""),
                        str(e.get("DisplayName") or ""),
                        seen,
                    )
            writes = {}
            for user_id, (upn, name, at) in people.items():
                if not (upn or name) or not _valid_key(user_id):
                    continue
                known = self._known.get(user_id)
                if known is None or ((upn, name) != known[:2] and at > known[2]):
                    writes[user_id] = (upn, name, at)
            await upsert_all(
                self.table,
                [
                    {
                        "PartitionKey": self.PARTITION,
                        "RowKey": user_id,
                        "UserPrincipalName": upn[:1000],
                        "DisplayName": name[:1000],
                        "SeenAt": iso(at),
                    }
                    for user_id, (upn, name, at) in writes.items()
                ],
                UpdateMode.REPLACE,
            )
            self._known.update(writes)
            return len(writes)

    async def names(self, user_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """(UPN, display name) of the given agents that are known."""
        ids = [u for u in dict.fromkeys(user_ids) if _valid_key(u)]
        rows = await asyncio.gather(*(get_or_none(self.table, self.PARTITION, u) for u in ids))
        return {
            u: (str(r.get("UserPrincipalName") or ""), str(r.get("DisplayName") or ""))
            for u, r in zip(ids, rows, strict=True)
            if r is not None
        }


def _valid_key(value: str) -> bool:
    try:
        check_key(value)
    except ValueError:
        return False
    return True
