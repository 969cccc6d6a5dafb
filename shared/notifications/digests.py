"""What the digests have already told (``Digests``): the removals a partner digest listed (each is listed
once), and the days the GDAP expiry digest went out (shared.gdap.digest)."""

from __future__ import annotations

from shared.notifications.store import NotificationStore
from shared.platform.storage import Storage, create_if_absent, get_or_none
from shared.platform.timeutil import iso, utcnow

LISTED = "listed"
GDAP_EXPIRY = "gdapExpiry"


async def digest_marked(storage: Storage, kind: str, name: str) -> bool:
    return await get_or_none(storage.table("Digests"), kind, name) is not None


async def mark_digest(storage: Storage, kind: str, name: str) -> None:
    """Insert-only: two runs marking the same entry leave one row."""
    await create_if_absent(
        storage.table("Digests"), {"PartitionKey": kind, "RowKey": name, "At": iso(utcnow())}
    )


async def listed_in_digest(storage: Storage, removal_id: str) -> bool:
    """Whether a partner digest already listed this removal (see :func:`mark_listed_in_digest`)."""
    if await digest_marked(storage, LISTED, removal_id):
        return True
    # An earlier version kept the mark as a "sent" row of the Notifications table.
    return await NotificationStore(storage).get(f"digest-listed:{removal_id}") is not None


async def mark_listed_in_digest(storage: Storage, removal_ids: list[str]) -> None:
    """Remember that an enqueued digest lists these removals."""
    for removal_id in removal_ids:
        await mark_digest(storage, LISTED, removal_id)
