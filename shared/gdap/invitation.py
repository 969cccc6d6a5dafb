"""The customer's invitation by mail: who may get it (the customer's valid contact addresses; refused before
anything is created when no sender is set or no address is known), and the ``customer-gdap-invitation``
mail itself in the customer's language, with the invitation link, recorded on the request and in the
``Actions`` trail. A mail that fails leaves the request as it is: the link can be sent by hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from shared.domain.models import Customer
from shared.gdap.base import GdapError, record_gdap_action
from shared.gdap.store import GdapRequest, GdapRequestStore, invitation_link
from shared.gdap.templates import AUTO_EXTEND_DURATION, DURATION, RoleTemplate, duration_days
from shared.platform.retry import UpstreamError
from shared.platform.settings import Settings
from shared.platform.timeutil import utcnow

if TYPE_CHECKING:
    from shared.services import Services


def invitation_recipients(settings: Settings, customer: Customer, tenant: str) -> list[str]:
    """The addresses to mail the invitation to; GdapError when it cannot be mailed."""
    from shared.notifications.mail import valid_address

    if not settings.notify_sender:
        raise GdapError(
            "NOTIFY_SENDER is not set: the invitation cannot be mailed",
            status=503,
            code="notConfigured",
        )
    recipients = [a for a in dict.fromkeys(customer.contacts) if valid_address(a)]
    if not recipients:
        raise GdapError(
            f"no e-mail address is known for {customer.display_name or tenant}: send the "
            "invitation link yourself",
            code="noContact",
        )
    return recipients


async def send_invitation(
    services: Services,
    templates: Mapping[str, RoleTemplate],
    row: GdapRequest,
    customer: Customer,
    recipients: list[str],
    actor: str,
) -> None:
    from shared.notifications.mail import language_of
    from shared.notifications.worker import NotificationBusy, partner_name, send_now

    settings = services.settings
    language = language_of(customer.culture)
    template = templates.get(row.template)
    context = {
        "customerName": customer.display_name or row.customer_name,
        "domain": customer.default_domain,
        "tenantId": row.tenant_id,
        "partnerName": await partner_name(services),
        "contact": settings.notify_sender,
        "link": invitation_link(row.relationship_id),
        "relationshipName": row.display_name,
        "roles": list(row.roles),
        "templateName": (template.display_name.get(language) or template.display_name["en"])
        if template
        else row.template,
        "durationDays": duration_days(row.duration) if DURATION.fullmatch(row.duration) else 0,
        "autoExtend": row.auto_extend_duration == AUTO_EXTEND_DURATION,
    }
    requests = GdapRequestStore(services.storage)
    # The one mail path (Notifications row, lease, once per key), waited for: the caller reports who got it.
    try:
        status, sent = await send_now(
            services,
            "customer-gdap-invitation",
            f"gdap-invitation:{row.relationship_id}",
            {**context, "culture": customer.culture},
            row.tenant_id,
        )
    except (UpstreamError, NotificationBusy) as exc:
        row.last_error = f"invitation mail: {exc}"
        await requests.save(row)
        await record_gdap_action(
            services.storage, row.tenant_id, actor, "gdap.invitation", "failed", row.relationship_id, str(exc)
        )
        return
    if status != "sent" or sent is None:
        row.last_error = f"invitation mail: {status}"
        await requests.save(row)
        return
    recipients = list(sent.recipients or recipients)
    row.notified_to, row.notified_at = recipients, utcnow()
    await requests.save(row)
    await record_gdap_action(
        services.storage,
        row.tenant_id,
        actor,
        "gdap.invitation",
        "sent",
        row.relationship_id,
        f"{sent.subject} -> {', '.join(recipients)}",
        action_id=f"gdap:{row.relationship_id}:invited",
    )
