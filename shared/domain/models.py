"""Domain records shared by the clients, the stores and the rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RelationshipType = Literal["DAP", "GDAP"]

GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
HELPDESK_ADMINISTRATOR = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
# DAP: Admin Agents -> Global Administrator, Helpdesk Agents -> Helpdesk Administrator (seed 000).
DAP_ROLES = (GLOBAL_ADMINISTRATOR, HELPDESK_ADMINISTRATOR)

GDAP_ACTIVE = "active"
NO_AUTO_EXTEND = ("", "PT0S", "P0D")


@dataclass
class AccessAssignment:
    id: str
    group_id: str
    roles: list[str]
    status: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "groupId": self.group_id, "roles": self.roles, "status": self.status}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccessAssignment:
        return cls(
            id=str(data["id"]),
            group_id=str(data.get("groupId", "")),
            roles=[str(r) for r in data.get("roles", [])],
            status=str(data.get("status", "")),
        )


@dataclass
class Relationship:
    """A DAP or GDAP relationship between the partner and one customer tenant."""

    tenant_id: str
    type: RelationshipType
    id: str
    display_name: str
    status: str
    established_at: datetime | None
    created_at: datetime | None = None
    ends_at: datetime | None = None
    duration: str = ""
    auto_extend_duration: str = ""
    roles: list[str] = field(default_factory=list)
    access_assignments: list[AccessAssignment] = field(default_factory=list)
    etag: str | None = None
    customer_name: str = ""

    @property
    def active(self) -> bool:
        """docs/definitions.md sections 1-2: DAP with dapEnabled, or GDAP with status active."""
        if self.type == "DAP":
            return self.status == "active"
        return self.status == GDAP_ACTIVE

    @property
    def auto_extend(self) -> bool:
        return self.auto_extend_duration not in NO_AUTO_EXTEND

    @property
    def key(self) -> str:
        """Row key: unique per customer."""
        return "DAP" if self.type == "DAP" else f"GDAP-{self.id}"


@dataclass
class Customer:
    tenant_id: str
    display_name: str
    default_domain: str = ""
    culture: str = ""
    contacts: list[str] = field(default_factory=list)
    # An indirect provider's customer: its indirect reseller as Partner Center names it (the customer's
    # associatedPartnerId, the reseller's tenant id, and that reseller's name); empty otherwise.
    reseller_id: str = ""
    reseller_name: str = ""
