"""What the portal's GDAP tiles read, from the store alone (no Microsoft call): the active GDAP
relationships ending within 30, 7 and 1 days without auto-extend, those with Global Administrator and how
many of them have a removal pending, and the open requests."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.domain.rules import includes_global_administrator, is_expiring
from shared.gdap.base import active_gdap
from shared.gdap.expiry import EXPIRY_WINDOWS
from shared.gdap.store import GdapOperationStore, GdapRequestStore
from shared.platform.timeutil import iso, utcnow
from shared.relationships.store import RelationshipStore

if TYPE_CHECKING:
    from shared.services import Services


async def summary(services: Services, as_of: datetime | None = None) -> dict[str, Any]:
    """The portal's GDAP tiles, from the store: ending within 30/7/1 days, with Global Administrator."""
    await services.storage.ensure()
    moment = as_of or utcnow()
    estate = await RelationshipStore(services.storage).load()
    active = active_gdap(estate)
    removals = {op.relationship_id for op in await GdapOperationStore(services.storage).open_operations()}
    with_ga = [r for r in active if includes_global_administrator(r.roles)]
    return {
        "asOf": iso(moment),
        "expiring": {str(w): sum(1 for r in active if is_expiring(r, moment, w)) for w in EXPIRY_WINDOWS},
        "withGlobalAdministrator": len(with_ga),
        "globalAdministratorRemovalsPending": sum(1 for r in with_ga if r.id in removals),
        "pendingRequests": len(await GdapRequestStore(services.storage).open_rows()),
    }
