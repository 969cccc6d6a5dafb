"""The ``Notifications`` table: one row per mail key (its content, recipients' source, state and lease),
and whether the sender mailbox works (a refused mail halts removals until one is sent again)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.platform.actions import record_action
from shared.platform.lease import Heartbeat
from shared.platform.state import StateStore, partner_state
from shared.platform.storage import (
    Storage,
    create_row,
    get_with_etag,
    replace_row,
    shard_of,
)
from shared.platform.timeutil import iso, parse_optional, utcnow

if TYPE_CHECKING:
    from shared.services import Services
log = logging.getLogger(__name__)


CUSTOMER_KINDS = ("customer-removal", "customer-warning", "customer-gdap-invitation")


PARTNER_KINDS = ("partner-warning", "partner-digest", "partner-alert", "partner-gdap-digest")


DATA_PIECE = 30_000  # characters of a notification's content per table property


def _row_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class NotificationRow:
    key: str
    kind: str
    tenant_id: str
    status: str = "queued"
    attempts: int = 0
    lease_owner: str = ""
    lease_until: datetime | None = None
    subject: str = ""
    recipients: list[str] | None = None
    sent_at: datetime | None = None
    error: str = ""
    etag: str | None = None
    # What the product queued (the mail's content); the worker mails this, never a message's own copy.
    data: dict[str, Any] | None = None

    def to_entity(self) -> dict[str, Any]:
        rk = _row_key(self.key)
        entity = {
            "PartitionKey": shard_of(rk),
            "RowKey": rk,
            "Key": self.key[:1000],
            "Kind": self.kind,
            "TenantId": self.tenant_id,
            "Status": self.status,
            "Attempts": self.attempts,
            "LeaseOwner": self.lease_owner,
            "LeaseUntil": iso(self.lease_until) if self.lease_until else "",
            "Subject": self.subject[:1000],
            "Recipients": json.dumps(self.recipients or []),
            "SentAt": iso(self.sent_at) if self.sent_at else "",
            "Error": self.error[:4000],
        }
        if self.data is not None:  # in pieces: a string property holds at most 32K characters
            text = json.dumps(self.data, ensure_ascii=False)
            for n in range(0, len(text), DATA_PIECE):
                entity[f"Data{n // DATA_PIECE}"] = text[n : n + DATA_PIECE]
        return entity

    @classmethod
    def from_entity(cls, e: dict[str, Any], etag: str | None) -> NotificationRow:
        pieces, n = [], 0
        while f"Data{n}" in e:
            pieces.append(str(e[f"Data{n}"]))
            n += 1
        return cls(
            key=str(e.get("Key", "")),
            kind=str(e.get("Kind", "")),
            tenant_id=str(e.get("TenantId", "")),
            status=str(e.get("Status", "queued")),
            attempts=int(e.get("Attempts") or 0),
            lease_owner=str(e.get("LeaseOwner", "")),
            lease_until=parse_optional(e.get("LeaseUntil")),
            subject=str(e.get("Subject", "")),
            recipients=json.loads(e.get("Recipients") or "[]"),
            sent_at=parse_optional(e.get("SentAt")),
            error=str(e.get("Error", "")),
            etag=etag,
            data=json.loads("".join(pieces)) if pieces else None,
        )


class NotificationStore:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Notifications")

    async def get(self, key: str) -> NotificationRow | None:
        rk = _row_key(key)
        found = await get_with_etag(self.table, shard_of(rk), rk)
        return None if found is None else NotificationRow.from_entity(*found)

    async def create(self, row: NotificationRow) -> bool:
        """Insert; False when a row for this key exists already."""
        return await create_row(self.table, row)

    async def replace(self, row: NotificationRow) -> None:
        """ETag-conditional replace; raises :class:`ConflictingWrite` when someone else wrote first."""
        await replace_row(self.table, row, f"notification {row.key}")


class HeldNotification(NotificationStore):
    """The store of one notification while a delivery holds its lease, kept alive by a
    :class:`shared.platform.lease.Heartbeat` (as removals are): a sendMail held up by throttling never lets
    the lease lapse and hand the mail to a second delivery, which would send it again."""

    def __init__(self, storage: Storage, row: NotificationRow, lease: timedelta) -> None:
        super().__init__(storage)
        self.row = row
        self.lease = lease
        self.heartbeat = Heartbeat(f"notification {row.key}", lambda: lease.total_seconds() / 4, self._renew)

    async def replace(self, row: NotificationRow) -> None:
        async with self.heartbeat.turn:
            await super().replace(row)

    async def _renew(self) -> bool:
        if self.row.status != "sending":
            return False
        self.row.lease_until = utcnow() + self.lease
        await super().replace(self.row)
        return True

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[HeldNotification]:
        async with self.heartbeat.kept():
            yield self


# sendMail answers these when the sender mailbox or the permission is wrong: no retry fixes them.
MAIL_REFUSED = (401, 403, 404)


MAIL_STATE = ("mail", "broken")


async def mark_mail_broken(services: Services, detail: str) -> None:
    """Mail cannot be sent (a bad NOTIFY_SENDER, Mail.Send missing or restricted): removals stop until a
    mail goes out again, so no customer loses access without being told."""
    if not await mail_broken(services):
        log.error("mail cannot be sent; removals stop until it can: %s", detail)
        await record_action(
            services.storage,
            tenant_id=None,
            actor="system",
            action="notification.broken",
            result="failed",
            detail=detail[:2000],
        )
    await partner_state(services.storage).set(
        *MAIL_STATE, json.dumps({"at": iso(utcnow()), "detail": detail[:2000]})
    )


async def mark_mail_working(services: Services) -> None:
    if await mail_broken(services):
        await partner_state(services.storage).set(*MAIL_STATE, "")
        await record_action(
            services.storage,
            tenant_id=None,
            actor="system",
            action="notification.working",
            result="completed",
            detail="a mail was sent again; removals go on",
        )


async def mail_broken(services: Services) -> str | None:
    """Why mail cannot be sent, or None while it can (as far as the last attempt showed)."""
    state = partner_state(services.storage)
    value = await state.get(*MAIL_STATE)
    if not value:
        # Kept in IngestionState by an earlier version: moved here, so that an upgrade forgets no outage.
        earlier = StateStore(services.storage)
        value = await earlier.get_value(*MAIL_STATE)
        if value:
            await state.set(*MAIL_STATE, value)
            await earlier.set_value(*MAIL_STATE, "")
    if not value:
        return None
    try:
        return str(json.loads(value).get("detail") or "mail cannot be sent")
    except ValueError:
        return "mail cannot be sent"
