"""What every part of the GDAP lifecycle shares: :class:`GdapError` (a refusal that changes nothing) and the
checks of a customer tenant id and a relationship id that raise it, the GDAP entry of the ``Actions``
trail (the customer detail's "actions taken", through the same
:func:`shared.platform.actions.record_action` that removals use), the actor of what no one asked for,
the bound on concurrent Microsoft calls, and the active GDAP relationships of a stored estate."""

from __future__ import annotations

import re
from typing import Any

from shared.domain.models import Relationship
from shared.platform.actions import record_action
from shared.platform.settings import GUID_RE
from shared.platform.storage import Storage
from shared.relationships.store import Estate

RELATIONSHIP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,127}")
CONCURRENCY = 8
ACTOR_SYSTEM = "system"


class GdapError(Exception):
    """A request the service refuses, changing nothing: 400 (bad input), 404 (unknown), 409 (wrong state),
    503 (not configured). The command line maps it to exit code 2."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalidRequest") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def tenant_id_of(value: Any) -> str:
    """A customer tenant id (GUID), lower case; else GdapError ``invalidTenantId``."""
    if not isinstance(value, str) or not GUID_RE.match(value.strip()):
        raise GdapError("customer must be a tenant id (GUID)", code="invalidTenantId")
    return value.strip().lower()


def relationship_id_of(value: Any) -> str:
    """A GDAP relationship id; else GdapError ``invalidRelationshipId``."""
    if not isinstance(value, str) or not RELATIONSHIP_ID.fullmatch(value.strip()):
        raise GdapError("not a GDAP relationship id", code="invalidRelationshipId")
    return value.strip()


def active_gdap(estate: Estate) -> list[Relationship]:
    """The estate's active GDAP relationships, every customer's."""
    return [r for rs in estate.relationships.values() for r in rs if r.type == "GDAP" and r.active]


async def record_gdap_action(
    storage: Storage,
    tenant: str | None,
    actor: str,
    action: str,
    result: str,
    relationship_id: str,
    detail: str,
    action_id: str | None = None,
) -> None:
    """One ``Actions`` row about a GDAP relationship (idempotent with ``action_id``)."""
    await record_action(
        storage,
        tenant_id=tenant,
        actor=actor,
        action=action,
        result=result,
        detail=detail,
        relationship_type="GDAP",
        relationship_id=relationship_id,
        action_id=action_id,
    )
