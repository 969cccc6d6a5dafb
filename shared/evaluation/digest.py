"""Which removals the partner digest has already listed (each is listed once)."""

from __future__ import annotations

from shared.notifications.store import NotificationRow, NotificationStore
from shared.platform.storage import (
    Storage,
)
from shared.platform.timeutil import utcnow


async def listed_in_digest(storage: Storage, removal_id: str) -> bool:
    """Whether a partner digest already listed this removal (see :func:`mark_listed_in_digest`)."""
    return await NotificationStore(storage).get(f"digest-listed:{removal_id}") is not None


async def mark_listed_in_digest(storage: Storage, removal_ids: list[str]) -> None:
    """Remember, in the mail state table, that an enqueued digest lists these removals."""
    store = NotificationStore(storage)
    for removal_id in removal_ids:
        await store.create(
            NotificationRow(
                key=f"digest-listed:{removal_id}",
                kind="partner-digest",
                tenant_id="",
                status="sent",
                sent_at=utcnow(),
            )
        )
