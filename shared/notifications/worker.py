"""Notifications: mail to customers and partner admins through Graph ``sendMail`` (CONTRACTS section 6).

Every mail is a small JSON message on the ``notifications`` queue with an idempotency key. The worker
writes a ``Notifications`` state row (``queued -> sending -> sent | skipped | failed``, ETag-conditional)
*before* it calls ``sendMail``; a delivery that finds the key ``sent`` sends nothing, one that finds it
``sending`` under another delivery's live lease backs off. (A crash after Graph accepted the mail
and before the row says ``sent`` sends it once more when the same message is retried: the only
window in which a mail can go out twice; Graph offers no idempotent send.)

Templates are Jinja2 under ``shared/notifications/templates/<language>/`` (HTML autoescaped, plain text beside
it); the customer's language comes from the billing-profile culture (``ja-*`` -> Japanese, anything
else -> English). Subjects are forced onto one line: a customer name cannot inject mail headers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import (
    ResourceNotFoundError,
)
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.domain.models import GLOBAL_ADMINISTRATOR, HELPDESK_ADMINISTRATOR
from shared.platform.retry import UpstreamError
from shared.platform.settings import NOTIFICATIONS_QUEUE, Settings, SettingsError
from shared.platform.state import StateStore
from shared.platform.storage import (
    ConflictingWrite,
    Storage,
    create_if_absent,
    replace_if_unchanged,
    shard_of,
)
from shared.platform.timeutil import iso, parse_optional, utcnow
from shared.relationships.store import RelationshipStore
from shared.removals.worker import (
    Busy,
    DrainResult,
    Removal,
    drain_poison,
    drain_queue,
    record_action,
)

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
LEASE = timedelta(minutes=2)
MAX_LIST = 200  # entries per list inside one message (a queue message holds at most 64 KB)
ADDRESS = re.compile(r"^[^@\s,;<>\"()\[\]\\]+@[^@\s,;<>\"()\[\]\\]+\.[^@\s,;<>\"()\[\]\\]+$")

CUSTOMER_KINDS = ("customer-removal", "customer-warning")
PARTNER_KINDS = ("partner-warning", "partner-digest", "partner-alert")
DATA_PIECE = 30_000  # characters of a notification's content per table property

# Well-known Microsoft Entra role template ids (GDAP roles), for mail people can read.
ROLE_NAMES: dict[str, tuple[str, str]] = {
    GLOBAL_ADMINISTRATOR: ("Global Administrator", "グローバル管理者"),
    HELPDESK_ADMINISTRATOR: ("Helpdesk Administrator", "ヘルプデスク管理者"),
    "29232cdf-9323-42fd-ade2-1d097af3e4de": ("Exchange Administrator", "Exchange 管理者"),
    "3a2c62db-5318-420d-8d74-23affee5d9d5": ("Intune Administrator", "Intune 管理者"),
    "f28a1f50-f6e7-4571-818b-6a12f2af6b6c": ("SharePoint Administrator", "SharePoint 管理者"),
    "69091246-20e8-4a56-aa4d-066075b2a7a8": ("Teams Administrator", "Teams 管理者"),
    "fe930be7-5e62-47db-91af-98c3a49a38b1": ("User Administrator", "ユーザー管理者"),
    "194ae4cb-b126-40b2-bd5b-6091b380977d": ("Security Administrator", "セキュリティ管理者"),
    "5d6b6bb7-de71-4623-b4af-96380a352509": ("Security Reader", "セキュリティ閲覧者"),
    "5f2222b1-57c3-48ba-8ad5-d4759f1fde6f": ("Security Operator", "セキュリティ オペレーター"),
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451": ("Global Reader", "グローバル閲覧者"),
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": ("Application Administrator", "アプリケーション管理者"),
    "158c047a-c907-4556-b7ef-446551a6b5f7": ("Cloud Application Administrator", "クラウド アプリケーション管理者"),
    "966707d0-3269-4727-9be2-8c3a10f19b9d": ("Password Administrator", "パスワード管理者"),
    "c4e39bd9-1100-46d3-8c65-fb160da0071f": ("Authentication Administrator", "認証管理者"),
    "7be44c8a-adaf-4e2a-84d6-ab2649e08a13": ("Privileged Authentication Administrator", "特権認証管理者"),
    "e8611ab8-c189-46e8-94e1-60213ab1f814": ("Privileged Role Administrator", "特権ロール管理者"),
    "b0f54661-2d74-4c50-afa3-1ec803f12efe": ("Billing Administrator", "課金管理者"),
    "17315797-102d-40b4-93e0-432062caca18": ("Compliance Administrator", "コンプライアンス管理者"),
    "4d6ac14f-3453-41d0-bef9-a3e0c569773a": ("License Administrator", "ライセンス管理者"),
    "f023fd81-a637-4b56-95fd-791ac0226033": ("Service Support Administrator", "サービス サポート管理者"),
    "4a5d8f65-41da-4de4-8968-e035b65339cf": ("Reports Reader", "レポート閲覧者"),
    "88d8e3e3-8f55-4a1e-953a-9b9898b8876b": ("Directory Readers", "ディレクトリ閲覧者"),
    "9360feb5-f418-4baa-8175-e2a00bac4301": ("Directory Writers", "ディレクトリ書き込み"),
    "fdd7a751-b60b-444a-984c-02652fe8fa1c": ("Groups Administrator", "グループ管理者"),
    "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9": ("Conditional Access Administrator", "条件付きアクセス管理者"),
    "7698a772-787b-4ac8-901f-60d6b08affd2": ("Cloud Device Administrator", "クラウド デバイス管理者"),
    "11648597-926c-4cf3-9c36-bcebb0ba8dcc": ("Power Platform Administrator", "Power Platform 管理者"),
    "44367163-eba1-44c3-98af-f5787879f96a": ("Dynamics 365 Administrator", "Dynamics 365 管理者"),
    "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2": ("Hybrid Identity Administrator", "ハイブリッド ID 管理者"),
    "baf37b3a-610e-45da-9e62-d9d1e5e8914b": ("Teams Communications Administrator", "Teams 通信管理者"),
    "31392ffb-586c-42d1-9346-e59415a2cc4e": ("Exchange Recipient Administrator", "Exchange 受信者管理者"),
    "2b745bdf-0803-4d80-aa65-822c4493daac": ("Office Apps Administrator", "Office アプリ管理者"),
    "11451d60-acb2-45eb-a7d6-43d0f0125c13": ("Windows 365 Administrator", "Windows 365 管理者"),
    "790c1fb9-7f7d-4f88-86a1-ef1f95c05c1b": ("Message Center Reader", "メッセージ センター閲覧者"),
}


class NotificationBusy(Busy):
    """Another delivery is sending this notification."""


# --- settings -----------------------------------------------------------------------------------------

def require_sender(settings: Settings) -> str:
    if not settings.notify_sender:
        raise SettingsError(
            "NOTIFY_SENDER is not set: it is required whenever mail is sent (NOTIFY_PARTNER_ADDRESSES, "
            "NOTIFY_CUSTOMERS after removals); set it to the mailbox that sends, e.g. the partner's "
            "notices mailbox")
    return settings.notify_sender


def mail_needed(settings: Settings) -> bool:
    """Whether an evaluation run could send mail with these settings."""
    if settings.notify_partner_addresses:
        return True
    return settings.enforce and (settings.notify_customers or settings.notify_customers_before_removal)


def language_of(culture: str | None) -> str:
    return "ja" if (culture or "").lower().startswith("ja") else "en"


def role_name(role_id: str, language: str = "en") -> str:
    names = ROLE_NAMES.get(role_id.lower())
    if names is None:
        return role_id
    return names[1] if language == "ja" else names[0]


def valid_address(value: str) -> bool:
    return bool(ADDRESS.match(value)) and len(value) <= 254


def single_line(value: Any, limit: int = 255) -> str:
    """Control and format characters (CR, LF, U+2028 ...) become spaces: one line, always."""
    text = "".join(" " if unicodedata.category(ch)[0] in ("C", "Z") and ch != " " else ch for ch in str(value))
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit]


# --- rendering ----------------------------------------------------------------------------------------

def _date(value: Any, language: str = "en") -> str:
    moment = parse_optional(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        return ""
    if language == "ja":
        return f"{moment.year}年{moment.month}月{moment.day}日"
    return moment.strftime("%Y-%m-%d")


def _datetime(value: Any, language: str = "en") -> str:
    moment = parse_optional(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        return ""
    if language == "ja":
        return f"{moment.year}年{moment.month}月{moment.day}日 {moment:%H:%M} (UTC)"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["oneline"] = single_line
    env.filters["date"] = _date
    env.filters["datetime"] = _datetime
    env.filters["role"] = role_name
    return env


@dataclass
class Rendered:
    subject: str
    text: str
    html: str


def render(kind: str, language: str, context: dict[str, Any]) -> Rendered:
    env = environment()
    name = kind.replace("-", "_")
    language = language if (TEMPLATES / language / f"{name}.html").exists() else "en"
    ctx = {**context, "lang": language}
    subject = single_line(env.get_template(f"{language}/{name}.subject.txt").render(ctx))
    return Rendered(subject=subject, text=env.get_template(f"{language}/{name}.txt").render(ctx),
                    html=env.get_template(f"{language}/{name}.html").render(ctx))


# --- the state table ----------------------------------------------------------------------------------

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
        entity = {"PartitionKey": shard_of(rk), "RowKey": rk, "Key": self.key[:1000], "Kind": self.kind,
                  "TenantId": self.tenant_id, "Status": self.status, "Attempts": self.attempts,
                  "LeaseOwner": self.lease_owner, "LeaseUntil": iso(self.lease_until) if self.lease_until else "",
                  "Subject": self.subject[:1000], "Recipients": json.dumps(self.recipients or []),
                  "SentAt": iso(self.sent_at) if self.sent_at else "", "Error": self.error[:4000]}
        if self.data is not None:  # in pieces: a string property holds at most 32K characters
            text = json.dumps(self.data, ensure_ascii=False)
            for n in range(0, len(text), DATA_PIECE):
                entity[f"Data{n // DATA_PIECE}"] = text[n:n + DATA_PIECE]
        return entity

    @classmethod
    def from_entity(cls, e: dict[str, Any], etag: str | None) -> NotificationRow:
        pieces, n = [], 0
        while f"Data{n}" in e:
            pieces.append(str(e[f"Data{n}"]))
            n += 1
        return cls(key=str(e.get("Key", "")), kind=str(e.get("Kind", "")), tenant_id=str(e.get("TenantId", "")),
                   status=str(e.get("Status", "queued")), attempts=int(e.get("Attempts") or 0),
                   lease_owner=str(e.get("LeaseOwner", "")), lease_until=parse_optional(e.get("LeaseUntil")),
                   subject=str(e.get("Subject", "")), recipients=json.loads(e.get("Recipients") or "[]"),
                   sent_at=parse_optional(e.get("SentAt")), error=str(e.get("Error", "")), etag=etag,
                   data=json.loads("".join(pieces)) if pieces else None)


class NotificationStore:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Notifications")

    async def get(self, key: str) -> NotificationRow | None:
        rk = _row_key(key)
        try:
            entity = await self.table.get_entity(shard_of(rk), rk)
        except ResourceNotFoundError:
            return None
        return NotificationRow.from_entity(dict(entity), entity.metadata.get("etag"))

    async def create(self, row: NotificationRow) -> bool:
        """Insert; False when a row for this key exists already."""
        etag = await create_if_absent(self.table, row.to_entity())
        if etag is None:
            return False
        row.etag = etag
        return True

    async def replace(self, row: NotificationRow) -> None:
        """ETag-conditional replace; raises :class:`ConflictingWrite` when someone else wrote first."""
        row.etag = await replace_if_unchanged(self.table, row.to_entity(), row.etag, f"notification {row.key}")


async def listed_in_digest(storage: Storage, removal_id: str) -> bool:
    """Whether a partner digest already listed this removal (see :func:`mark_listed_in_digest`)."""
    return await NotificationStore(storage).get(f"digest-listed:{removal_id}") is not None


async def mark_listed_in_digest(storage: Storage, removal_ids: list[str]) -> None:
    """Remember, in the mail state table, that an enqueued digest lists these removals."""
    store = NotificationStore(storage)
    for removal_id in removal_ids:
        await store.create(NotificationRow(key=f"digest-listed:{removal_id}", kind="partner-digest", tenant_id="",
                                           status="sent", sent_at=utcnow()))


# --- enqueueing ---------------------------------------------------------------------------------------

async def enqueue_notification(storage: Storage, kind: str, key: str, data: dict[str, Any],
                               tenant_id: str | None = None) -> None:
    """Store the notification (its content, once per key) and queue its key. The queue message is only a
    key: anyone able to write to the queue could otherwise mail anyone from NOTIFY_SENDER."""
    if len(json.dumps(data, ensure_ascii=False).encode("utf-8")) > 60_000:
        raise ValueError(f"notification {key} is too large ({kind})")
    await NotificationStore(storage).create(NotificationRow(key=key, kind=kind, tenant_id=tenant_id or "", data=data))
    body = {"v": 2, "key": key, "idempotencyKey": key, "kind": kind, "tenantId": tenant_id}
    await storage.queue(NOTIFICATIONS_QUEUE).send_message(json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def _clip(items: list[Any]) -> tuple[list[Any], int]:
    return items[:MAX_LIST], max(0, len(items) - MAX_LIST)


async def enqueue_customer_removal_notice(services: Services, removal: Removal) -> bool:
    """The customer's contacts learn what was removed, when, why, and how to grant access again."""
    customer, _ = await RelationshipStore(services.storage).load_customer(removal.tenant_id)
    contacts = list(customer.contacts) if customer else []
    removed = [r for r in removal.relationships if r.get("state") in ("requested", "completed", "requesting")]
    data = {
        "removalId": removal.id, "tenantId": removal.tenant_id,
        "customerName": (customer.display_name if customer else "") or removal.display_name,
        "domain": customer.default_domain if customer else "", "culture": customer.culture if customer else "",
        "recipients": contacts, "removedAt": iso(utcnow()), "source": removal.source,
        "inactiveDays": removal.inactive_days,
        "lastSignInAt": iso(removal.last_sign_in_at) if removal.last_sign_in_at else None,
        "dap": any(r["type"] == "DAP" for r in removed),
        "gdap": [{"displayName": r.get("displayName") or r["id"], "roles": list(r.get("roles", []))}
                 for r in removed if r["type"] == "GDAP"],
    }
    await enqueue_notification(services.storage, "customer-removal", f"customer-removal:{removal.id}", data,
                               removal.tenant_id)
    return True


async def enqueue_customer_warning(services: Services, row: dict[str, Any], stretch: str, remove_on: str) -> bool:
    customer, _ = await RelationshipStore(services.storage).load_customer(row["tenantId"])
    data = {
        "tenantId": row["tenantId"], "customerName": (customer.display_name if customer else "") or row["displayName"],
        "domain": customer.default_domain if customer else "", "culture": customer.culture if customer else "",
        "recipients": list(customer.contacts) if customer else [], "removeOn": remove_on,
        "inactiveDays": row["inactiveForAtLeastDays"], "lastSignInAt": row.get("lastSignInAt"),
        "dap": any(r["type"] == "DAP" for r in row["relationships"]),
        "gdap": [{"displayName": r.get("displayName") or r["id"], "roles": list(r.get("roles", []))}
                 for r in row["relationships"] if r["type"] == "GDAP"],
    }
    key = f"customer-warning:{row['tenantId']}:{stretch}"
    await enqueue_notification(services.storage, "customer-warning", key, data, row["tenantId"])
    return True


async def enqueue_partner(services: Services, kind: str, key: str, data: dict[str, Any]) -> bool:
    """Partner-admin mail; nothing when NOTIFY_PARTNER_ADDRESSES is empty (the Actions row stays)."""
    if not services.settings.notify_partner_addresses:
        log.info("%s %s: NOTIFY_PARTNER_ADDRESSES is empty; not mailed", kind, key)
        return False
    await enqueue_notification(services.storage, kind, key,
                               {**data, "recipients": list(services.settings.notify_partner_addresses)})
    return True


async def enqueue_partner_alert(services: Services, alert: str, key: str, data: dict[str, Any]) -> bool:
    return await enqueue_partner(services, "partner-alert", f"alert:{key}", {"alert": alert, **data})


async def enqueue_partner_warning(services: Services, key: str, customers: list[dict[str, Any]]) -> bool:
    listed, more = _clip(customers)
    return await enqueue_partner(services, "partner-warning", key, {"customers": listed, "more": more})


async def enqueue_partner_digest(services: Services, key: str, summary: dict[str, Any]) -> bool:
    return await enqueue_partner(services, "partner-digest", key, {"summary": summary})


# --- sending (the queue worker) -----------------------------------------------------------------------

def parse_message(body: bytes | str) -> dict[str, Any]:
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
    message = json.loads(text)
    if (not isinstance(message, dict) or not isinstance(message.get("key"), str)
            or message.get("kind") not in CUSTOMER_KINDS + PARTNER_KINDS
            or not isinstance(message.get("data", {}), dict)):
        raise ValueError(f"not a notification message: {text[:200]!r}")
    return message


async def partner_name(services: Services) -> str:
    state = StateStore(services.storage)
    cached = await state.get_value("partner", "displayName")
    if cached:
        return cached
    try:
        name = await services.graph.partner_display_name()
    except Exception:  # a name is nice to have; the mail goes out without it
        log.warning("could not read the partner's name", exc_info=True)
        return ""
    if name:
        await state.set_value("partner", "displayName", name)
    return name


async def handle_notification_message(services: Services, body: bytes | str, *, message_id: str,
                                      dequeue_count: int = 1) -> str:
    """The notification queue function's work for one message. Raises to have the queue retry it."""
    await services.storage.ensure()
    message = parse_message(body)
    return await send_notification(services, message, owner=message_id or uuid.uuid4().hex, attempt=dequeue_count)


async def send_notification(services: Services, message: dict[str, Any], *, owner: str, attempt: int = 1) -> str:
    store = NotificationStore(services.storage)
    key, kind = str(message["key"]), str(message["kind"])
    tenant = str(message.get("tenantId") or "")
    for _ in range(5):
        row = await store.get(key)
        if row is None or row.kind != kind:
            # Not queued by this product (a forged or mangled message): nothing is mailed.
            detail = f"refused a {kind} message for {key!r}: no such notification was queued"
            await record_action(services.storage, tenant_id=tenant or None, actor="system",
                                action="notification.refused", result="refused", detail=detail[:1000],
                                action_id=f"notification-refused:{hashlib.sha256(key.encode()).hexdigest()[:32]}")
            log.warning("%s", detail)
            return "refused"
        if row.status in ("sent", "skipped"):
            log.info("notification %s already %s; not sent again", key, row.status)
            if row.status == "sent":  # idempotent: the sending delivery may have died before recording it
                await _record_sent(services, row, dict(row.data or message.get("data") or {}))
            return row.status
        now = utcnow()
        if row.status == "sending" and row.lease_owner != owner and row.lease_until and row.lease_until > now:
            raise NotificationBusy(f"notification {key} is being sent by another delivery",
                                   (row.lease_until - now).total_seconds())
        row.status, row.lease_owner, row.lease_until = "sending", owner, now + LEASE
        row.attempts += 1
        try:
            await store.replace(row)
        except ConflictingWrite:
            continue
        break
    else:
        raise NotificationBusy(f"notification {key} keeps changing under this delivery", 5.0)
    try:
        status = await _send(services, store, row, message)
    except Exception as exc:
        try:
            row.lease_until, row.error = utcnow() - timedelta(seconds=1), f"attempt {attempt}: {exc}"
            await store.replace(row)
            if isinstance(exc, UpstreamError) and exc.status in MAIL_REFUSED:
                await mark_mail_broken(services, f"{exc}")
        except Exception:
            log.exception("notification %s: could not record the failed attempt", key)
        raise
    if status == "sent":
        await mark_mail_working(services)
    return status


# sendMail answers these when the sender mailbox or the permission is wrong: no retry fixes them.
MAIL_REFUSED = (401, 403, 404)
MAIL_STATE = ("mail", "broken")


async def mark_mail_broken(services: Services, detail: str) -> None:
    """Mail cannot be sent (a bad NOTIFY_SENDER, Mail.Send missing or restricted): removals stop until a
    mail goes out again, so no customer loses access without being told."""
    state = StateStore(services.storage)
    if not await state.get_value(*MAIL_STATE):
        log.error("mail cannot be sent; removals stop until it can: %s", detail)
        await record_action(services.storage, tenant_id=None, actor="system", action="notification.broken",
                            result="failed", detail=detail[:2000])
    await state.set_value(*MAIL_STATE, json.dumps({"at": iso(utcnow()), "detail": detail[:2000]}))


async def mark_mail_working(services: Services) -> None:
    state = StateStore(services.storage)
    if await state.get_value(*MAIL_STATE):
        await state.set_value(*MAIL_STATE, "")
        await record_action(services.storage, tenant_id=None, actor="system", action="notification.working",
                            result="completed", detail="a mail was sent again; removals go on")


async def mail_broken(services: Services) -> str | None:
    """Why mail cannot be sent, or None while it can (as far as the last attempt showed)."""
    value = await StateStore(services.storage).get_value(*MAIL_STATE)
    if not value:
        return None
    try:
        return str(json.loads(value).get("detail") or "mail cannot be sent")
    except ValueError:
        return "mail cannot be sent"


# Every name a template may test, so that StrictUndefined flags only real template mistakes.
CONTEXT_DEFAULTS: dict[str, Any] = {
    "more": 0, "domain": "", "lastSignInAt": None, "inactiveDays": 0, "dap": False, "gdap": [], "source": "policy",
    "customers": [], "candidates": 0, "limit": 0, "lastSuccess": None, "hours": 0, "error": "", "queue": "",
    "removalId": "", "displayName": "", "tenantId": "", "detail": "", "attempts": 5, "count": 0,
    "coverageFrom": None, "asOf": None, "alert": "",
}


def _context(kind: str, data: dict[str, Any], *, partner: str, contact: str, settings: Settings) -> dict[str, Any]:
    return {**CONTEXT_DEFAULTS, "removeAfterDays": settings.remove_after_days,
            "recommendAfterDays": settings.recommend_after_days, **data, "kind": kind, "partnerName": partner,
            "contact": contact}


async def _send(services: Services, store: NotificationStore, row: NotificationRow, message: dict[str, Any]) -> str:
    settings = services.settings
    # The stored content, never the message's (a row written before content was stored: the message's).
    kind, data = row.kind, dict(row.data if row.data is not None else message.get("data") or {})
    sender = require_sender(settings)
    wanted = await _recipients(services, kind, row.tenant_id)
    recipients = [a for a in dict.fromkeys(wanted) if valid_address(a)]
    language = language_of(data.get("culture")) if kind in CUSTOMER_KINDS else settings.notify_partner_language
    tenant = row.tenant_id or None
    if not recipients:
        row.status, row.lease_owner, row.error = "skipped", "", f"no valid recipient among {wanted!r}"
        await record_action(services.storage, tenant_id=tenant, actor="system", action=f"notification.{kind}",
                            result="skipped", detail=row.error, action_id=f"notification:{row.key}:skipped")
        await store.replace(row)
        return "skipped"
    rendered = render(kind, language, _context(kind, data, partner=await partner_name(services), contact=sender,
                                               settings=settings))
    await services.graph.send_mail(sender, recipients, rendered.subject, rendered.text, rendered.html)
    row.status, row.lease_owner, row.sent_at = "sent", "", utcnow()
    row.subject, row.recipients, row.error = rendered.subject, recipients, ""
    # "sent" first: a crash after Graph took the mail sends it again only within this one write. The
    # action record follows; a redelivery that finds "sent" writes it if the crash came in between.
    await store.replace(row)
    await _record_sent(services, row, data)
    return "sent"


async def _recipients(services: Services, kind: str, tenant_id: str) -> list[str]:
    """Who gets this kind of mail, from the settings and the store: partner admins for partner mail, the
    customer's own contacts (billing profile) for customer mail."""
    if kind in PARTNER_KINDS:
        return [str(a).strip() for a in services.settings.notify_partner_addresses]
    customer, _ = await RelationshipStore(services.storage).load_customer(tenant_id) if tenant_id else (None, None)
    return [str(a).strip() for a in (customer.contacts if customer else [])]


async def _record_sent(services: Services, row: NotificationRow, data: dict[str, Any]) -> None:
    await record_action(services.storage, tenant_id=row.tenant_id or None, actor="system",
                        action=f"notification.{row.kind}", result="sent",
                        detail=f"{row.subject} -> {', '.join(row.recipients or [])}",
                        removal_id=str(data.get("removalId") or ""), action_id=f"notification:{row.key}:sent")


async def handle_notification_poison(services: Services, body: bytes | str) -> None:
    """A notification the queue gave up on: mark it failed, write it down, and alert (unless it was an alert)."""
    await services.storage.ensure()
    try:
        message = parse_message(body)
    except (ValueError, UnicodeDecodeError) as exc:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
        await record_action(services.storage, tenant_id=None, actor="system", action="notification.poison",
                            result="failed", detail=f"unreadable notification message: {exc}: {text[:500]}")
        return
    key, kind = str(message["key"]), str(message["kind"])
    store = NotificationStore(services.storage)
    row = await store.get(key)
    if row is not None and row.status in ("sent", "skipped", "failed"):
        log.info("poison message for notification %s, which is %s; nothing to record", key, row.status)
        return
    if row is not None and row.status == "sending" and row.lease_until is not None and row.lease_until > utcnow():
        log.info("poison message for notification %s, which a live delivery is sending; left to it", key)
        return
    detail = f"{kind} {key}: gave up" + (f" ({row.error})" if row is not None and row.error else "")
    if row is not None:
        row.status, row.lease_owner = "failed", ""
        try:
            await store.replace(row)
        except ConflictingWrite:
            log.warning("notification %s changed while being marked failed", key)
    await record_action(services.storage, tenant_id=str(message.get("tenantId") or "") or None, actor="system",
                        action=f"notification.{kind}", result="failed", detail=detail,
                        action_id=f"notification:{key}:failed")
    if kind != "partner-alert":  # an alert about a failed alert would fail the same way
        await enqueue_partner_alert(services, "poison", f"poison:notification:{key}",
                                    {"queue": NOTIFICATIONS_QUEUE, "detail": detail,
                                     "tenantId": message.get("tenantId")})


async def drain_notifications(services: Services, max_messages: int | None = None) -> DrainResult:
    await services.storage.ensure()

    async def handle(body: bytes, message_id: str, dequeue_count: int) -> None:
        await handle_notification_message(services, body, message_id=message_id, dequeue_count=dequeue_count)

    total = DrainResult()
    # A poisoned notification enqueues an alert: drain again for it (alerts never alert about themselves).
    for _ in range(3):
        result = await drain_queue(services.storage, NOTIFICATIONS_QUEUE, handle, max_messages=max_messages)
        total.processed += result.processed
        total.deferred += result.deferred
        total.poisoned += result.poisoned
        total.errors += result.errors
        if not result.poisoned:
            break
        await drain_poison(services.storage, NOTIFICATIONS_QUEUE, lambda b: handle_notification_poison(services, b))
    return total


async def process_notification_queue(services: Services, max_messages: int | None = None) -> int:
    """Drain the notification queue in-process. Returns messages handled."""
    return (await drain_notifications(services, max_messages)).processed


__all__ = ["NotificationBusy", "Rendered", "enqueue_customer_removal_notice", "enqueue_customer_warning",
           "enqueue_partner_alert", "enqueue_partner_digest", "enqueue_partner_warning", "handle_notification_message",
           "handle_notification_poison", "language_of", "mail_needed", "process_notification_queue", "render",
           "require_sender", "role_name", "single_line"]
