"""The partner's daily GDAP digest: once per UTC day (kept in ``Digests``), the partner admins
(``NOTIFY_PARTNER_ADDRESSES``, from ``NOTIFY_SENDER``) get the ``partner-gdap-digest`` mail of the
relationships that end within 30 days without auto-extend and those that hold Global Administrator (at
most 200 of each named), and ``ALERT_WEBHOOK_URL`` the same digest once; nothing is sent when nothing
ends."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.gdap.base import ACTOR_SYSTEM, active_gdap
from shared.gdap.expiry import expiring
from shared.gdap.global_admin import global_administrators
from shared.notifications.digests import GDAP_EXPIRY, digest_marked, mark_digest
from shared.notifications.enqueue import enqueue_webhook
from shared.platform.actions import record_action
from shared.platform.state import StateStore
from shared.platform.timeutil import day_key, iso, utcnow
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.services import Services

MAX_LISTED = 200  # relationships named in one digest


async def expiry_digest(services: Services, as_of: datetime | None = None) -> dict[str, Any]:
    """Once per UTC day, mail the partner admins (NOTIFY_PARTNER_ADDRESSES) the relationships that end
    within 30 days without auto-extend, and those with Global Administrator. Nothing when nothing ends."""
    await services.storage.ensure()
    settings = services.settings
    moment = as_of or utcnow()
    day = day_key(moment)
    # An earlier version kept the day in IngestionState ("gdapDigest").
    if await digest_marked(services.storage, GDAP_EXPIRY, day) or await StateStore(
        services.storage
    ).get_value("gdapDigest", day):
        return {"day": day, "result": "alreadySent"}
    ending = await expiring(services, 30, moment)
    if not ending["relationships"]:
        return {"day": day, "result": "nothingEnding"}
    estate = await RelationshipStore(services.storage).load()
    names = {t: c.display_name for t, c in estate.customers.items()}
    listed = ending["relationships"][:MAX_LISTED]
    global_admins = await global_administrators(services.storage, active_gdap(estate), names)
    key, data = (
        f"gdap-digest:{day}",
        {
            "asOf": iso(moment),
            "counts": ending["counts"],
            "relationships": listed,
            "more": len(ending["relationships"]) - len(listed),
            "globalAdmins": global_admins[:MAX_LISTED],
        },
    )
    # The webhook (ALERT_WEBHOOK_URL) gets the day's digest once, mail or no mail.
    webhook = await enqueue_webhook(services, "partner-gdap-digest", key, data)
    recipients = list(settings.notify_partner_addresses)
    if not recipients or not settings.notify_sender:
        return {
            "day": day,
            "result": "notConfigured",
            "reason": "NOTIFY_PARTNER_ADDRESSES and NOTIFY_SENDER are needed to mail the digest",
            **({"webhook": "queued"} if webhook else {}),
        }
    from shared.notifications.worker import NotificationBusy, send_now

    # The one mail path: a Notifications row keyed by the day (sent once), queued, sent here under its lease.
    try:
        status, sent = await send_now(services, "partner-gdap-digest", key, data)
    except NotificationBusy:  # the notifications function is sending it right now
        return {"day": day, "result": "queued"}
    if status != "sent" or sent is None:
        return {"day": day, "result": status}
    await mark_digest(services.storage, GDAP_EXPIRY, day)
    await record_action(
        services.storage,
        tenant_id=None,
        actor=ACTOR_SYSTEM,
        action="gdap.digest",
        result="sent",
        detail=f"{sent.subject} -> {', '.join(sent.recipients or recipients)}",
        action_id=f"gdap:digest:{day}",
    )
    return {
        "day": day,
        "result": "sent",
        "relationships": len(ending["relationships"]),
        "recipients": recipients,
    }
