"""The simulated Microsoft entities: customer tenants, GDAP relationships, their requests, long-running
operations and access assignments, each with its Graph wire shape and its scenario shape.

The classes are named ``Sim...`` so that none reads as the product's own (:mod:`shared.models` has a
``Customer``, a ``Relationship`` and an ``AccessAssignment`` of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .values import stable_guid, ts

GLOBAL_ADMIN_ROLE = "62e90394-69f5-4237-9190-012177145e10"
HELPDESK_ADMIN_ROLE = "729827e3-9c14-49f7-bb1b-9608f156bbb8"

RELATIONSHIP_STATUSES = (
    "activating",
    "active",
    "approvalPending",
    "approved",
    "created",
    "expired",
    "expiring",
    "terminated",
    "terminating",
    "terminationRequested",
)
# A delegatedAdminCustomer exists while the customer has at least one of these.
CUSTOMER_VISIBLE_STATUSES = {
    "active",
    "expiring",
    "terminationRequested",
    "terminating",
    "activating",
    "approved",
}
TERMINATING_STATUSES = {"terminationRequested", "terminating", "terminated"}
AUTO_EXTEND_VALUES = {"P0D": "P0D", "PT0S": "PT0S", "P180D": "P180D"}
FAILURE_FLAGS = ("failTermination", "failOperations", "failAccessAssignments")


@dataclass
class SimOperation:
    """A delegatedAdminRelationshipOperation: a long-running change of a relationship or assignment."""

    id: str
    operation_type: str
    data: str
    status: str
    created: datetime
    modified: datetime
    etag: str
    apply: Callable[[], None] | None = None  # runs once when the operation succeeds
    due: datetime | None = None  # when it ends (succeeded, or failed with ``fail``)
    fail: bool = False
    on_end: Callable[[], None] | None = None  # runs once when it ends either way

    def wire(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.delegatedAdminRelationshipOperation",
            "@odata.etag": self.etag,
            "id": self.id,
            "operationType": self.operation_type,
            "data": self.data,
            "status": self.status,
            "createdDateTime": ts(self.created),
            "lastModifiedDateTime": ts(self.modified),
        }


@dataclass
class SimRelationshipRequest:
    """A delegatedAdminRelationshipRequest: lockForApproval or terminate."""

    id: str
    action: str
    status: str
    created: datetime
    modified: datetime
    due: datetime | None = None  # lockForApproval: when it succeeds; terminate: settled with the relationship

    def wire(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.delegatedAdminRelationshipRequest",
            "id": self.id,
            "action": self.action,
            "status": self.status,
            "createdDateTime": ts(self.created),
            "lastModifiedDateTime": ts(self.modified),
        }


@dataclass
class SimAccessAssignment:
    """A delegatedAdminAccessAssignment: a partner security group given some of a relationship's roles."""

    id: str
    group_id: str
    roles: list[str]
    status: str
    created: datetime
    modified: datetime
    etag: str
    pending_op: SimOperation | None = None
    due: datetime | None = None  # when a pending / deleting assignment settles
    fail: bool = False  # it settles in status "error"

    def wire(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.delegatedAdminAccessAssignment",
            "@odata.etag": self.etag,
            "id": self.id,
            "status": self.status,
            "createdDateTime": ts(self.created),
            "lastModifiedDateTime": ts(self.modified),
            "accessContainer": {"accessContainerId": self.group_id, "accessContainerType": "securityGroup"},
            "accessDetails": {"unifiedRoles": [{"roleDefinitionId": r} for r in self.roles]},
        }

    def scenario(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "groupId": self.group_id,
            "roles": list(self.roles),
            "status": self.status,
            "createdDateTime": ts(self.created),
            "lastModifiedDateTime": ts(self.modified),
        }
        if self.fail:
            out["fail"] = True
        return out


@dataclass
class SimRelationship:
    """A delegatedAdminRelationship and what the emulator keeps to move it with the clock."""

    id: str
    display_name: str
    status: str
    duration: str
    customer_tenant_id: str | None
    customer_display_name: str | None
    created: datetime
    activated: datetime | None
    end: datetime | None
    modified: datetime
    auto_extend: str
    roles: list[str]
    etag: str
    assignments: dict[str, SimAccessAssignment] = field(default_factory=dict)
    requests: list[SimRelationshipRequest] = field(default_factory=list)
    operations: list[SimOperation] = field(default_factory=list)
    pending_op: SimOperation | None = None
    since: datetime | None = (
        None  # when the current transient status began (termination, activation, approval)
    )
    before_termination: str = "active"  # the status a failed termination returns to
    durations: dict[str, str] = field(default_factory=dict)  # this relationship's "asyncDurations"
    flags: dict[str, bool] = field(
        default_factory=dict
    )  # failTermination, failOperations, failAccessAssignments

    def sort_key(self) -> tuple[str, str]:
        return (ts(self.created) or "", self.id)

    def wire(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
            "@odata.etag": self.etag,
            "id": self.id,
            "displayName": self.display_name,
            "duration": self.duration,
            "status": self.status,
            "autoExtendDuration": self.auto_extend,
            "createdDateTime": ts(self.created),
            "lastModifiedDateTime": ts(self.modified),
            "activatedDateTime": ts(self.activated),
            "endDateTime": ts(self.end),
            "customer": None
            if self.customer_tenant_id is None
            else {"tenantId": self.customer_tenant_id, "displayName": self.customer_display_name},
            "accessDetails": {"unifiedRoles": [{"roleDefinitionId": r} for r in self.roles]},
        }

    def scenario(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "status": self.status,
            "duration": self.duration,
            "createdDateTime": ts(self.created),
            "activatedDateTime": ts(self.activated),
            "endDateTime": ts(self.end),
            "lastModifiedDateTime": ts(self.modified),
            "autoExtendDuration": self.auto_extend,
            "roles": list(self.roles),
            "accessAssignments": [a.scenario() for a in self.assignments.values()],
            "requests": [r.wire() for r in self.requests],
            "operations": [o.wire() for o in self.operations],
            **({"asyncDurations": dict(self.durations)} if self.durations else {}),
            **{k: True for k, v in self.flags.items() if v},
        }

    def filter_value(self, key: str) -> Any:
        return {
            "id": self.id,
            "status": self.status,
            "displayname": self.display_name,
            "customer/tenantid": self.customer_tenant_id,
            "customer/displayname": self.customer_display_name,
            "autoextendduration": self.auto_extend,
            "duration": self.duration,
            "createddatetime": ts(self.created),
            "activateddatetime": ts(self.activated),
            "enddatetime": ts(self.end),
        }.get(key)


GDAP_FILTER_PROPS = {
    "id",
    "status",
    "displayname",
    "customer/tenantid",
    "customer/displayname",
    "autoextendduration",
    "duration",
    "createddatetime",
    "activateddatetime",
    "enddatetime",
}


@dataclass
class SimCustomer:
    """A customer tenant as Partner Center and GDAP know it; ``dap`` is its DAP relationship, if any."""

    tenant_id: str
    display_name: str
    default_domain: str
    culture: str
    contacts: list[str]
    dap: dict[str, Any] | None
    relationships: list[str] = field(default_factory=list)  # relationship ids
    # The indirect reseller of an indirect provider's customer: {"id": tenant id, "name", "mpnId"}.
    reseller: dict[str, str] | None = None

    @property
    def commerce_id(self) -> str:
        return stable_guid("commerce", self.tenant_id)

    def scenario(self, rels: dict[str, SimRelationship]) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "defaultDomainName": self.default_domain,
            "culture": self.culture,
            "contacts": list(self.contacts),
            "dap": None if self.dap is None else dict(self.dap),
            "gdapRelationships": [rels[r].scenario() for r in self.relationships if r in rels],
            **({"reseller": dict(self.reseller)} if self.reseller else {}),
        }
