"""The customer's notice after a removal: what was removed and why, queued as mail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.notifications.enqueue import enqueue_notification
from shared.platform.timeutil import iso, utcnow
from shared.relationships.store import RelationshipStore
from shared.removals.store import Removal

if TYPE_CHECKING:
    from shared.services import Services


async def enqueue_customer_removal_notice(services: Services, removal: Removal) -> bool:
    """The customer's contacts learn what was removed, when, why, and how to grant access again."""
    customer, _ = await RelationshipStore(services.storage).load_customer(removal.tenant_id)
    contacts = list(customer.contacts) if customer else []
    removed = [r for r in removal.relationships if r.get("state") in ("requested", "completed", "requesting")]
    data = {
        "removalId": removal.id,
        "tenantId": removal.tenant_id,
        "customerName": (customer.display_name if customer else "") or removal.display_name,
        "domain": customer.default_domain if customer else "",
        "culture": customer.culture if customer else "",
        "recipients": contacts,
        "removedAt": iso(utcnow()),
        "source": removal.source,
        # A manual removal says the partner removed access, with the operator's reason (a policy
        # removal's reason is the inactivity the mail states anyway).
        "reason": "" if removal.source == "policy" else removal.reason,
        "inactiveDays": removal.inactive_days,
        "lastSignInAt": iso(removal.last_sign_in_at) if removal.last_sign_in_at else None,
        "dap": any(r["type"] == "DAP" for r in removed),
        "gdap": [
            {"displayName": r.get("displayName") or r["id"], "roles": list(r.get("roles", []))}
            for r in removed
            if r["type"] == "GDAP"
        ],
    }
    # Azure role assignments survive DAP and GDAP: the notice says which were deleted with them
    # (REMOVAL_SCOPE with azure) and which remain, by subscription and role; the general advice only
    # where they were never read.
    from shared.azure_roles.removal import remaining_azure_roles
    from shared.azure_roles.store import AzureRoleStore, by_subscription

    stored = await AzureRoleStore(services.storage).get(removal.tenant_id)
    read_live = removal.azure_roles is not None and not removal.azure_note
    data["azureKnown"] = read_live or (
        stored is not None and (stored.state == "read" or bool(stored.assignments))
    )
    data["azureRemoved"] = by_subscription([a for a in removal.azure_roles or [] if a["state"] == "removed"])
    data["azureRemaining"] = by_subscription(await remaining_azure_roles(services, removal))
    await enqueue_notification(
        services.storage, "customer-removal", f"customer-removal:{removal.id}", data, removal.tenant_id
    )
    return True
