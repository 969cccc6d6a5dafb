"""The audit report's types (docs/definitions.md section 3): one place for its shape.

The report *is* JSON from the moment it is computed (the CLI prints it, the API serves it, a stored
evaluation keeps it, the portal pages 10,000 rows of it from precomputed text), so its rows are typed
dictionaries: the type checker holds every reader to these keys, and the API's OpenAPI document is
generated from the same classes (pydantic reads them; hence ``typing_extensions.TypedDict``, which
it requires before Python 3.12). More keys may be added; none of these may change meaning.
"""

from __future__ import annotations

from typing import Literal, NotRequired

from typing_extensions import TypedDict

Bucket = Literal["active", "30-60", "61-90", "90+"]
Recommendation = Literal["remove", "none"]
SignInKind = Literal["interactive", "nonInteractive"]
RelationshipType = Literal["DAP", "GDAP"]


class AccessGroup(TypedDict):
    id: str
    displayName: str


class ReportRelationship(TypedDict):
    """An active relationship of a customer under monitoring."""

    type: RelationshipType
    id: str
    displayName: str
    status: str
    establishedAt: str | None
    endsAt: str | None
    autoExtend: bool
    roles: list[str]
    expiresInDays: int | None  # floor((endsAt - asOf) / 1 day); null when the end is unknown
    includesGlobalAdministrator: bool
    # GDAP: the partner's security groups its active access assignments give roles to (name "" when the
    # product could not read it); DAP: none. Absent in evaluations stored before it was added.
    accessGroups: NotRequired[list[AccessGroup]]
    roleNames: NotRequired[list[str]]  # the API and the portal add the roles' names


class ResellerRef(TypedDict):
    """An indirect provider's customer's indirect reseller, as Partner Center names it."""

    id: str  # the reseller's tenant id (the customer's associatedPartnerId)
    name: str  # its name; empty when Partner Center did not say


class AzureRoleAssignment(TypedDict):
    """An Azure role assignment a principal of the partner holds on one of the customer's subscriptions
    (it survives the removal of DAP and GDAP)."""

    id: str
    subscriptionId: str
    subscriptionName: str
    scope: str
    roleDefinitionId: str
    roleName: str
    principalId: str
    principalType: str
    principal: Literal["adminAgents", "gdapGroup"]


class ReportRow(TypedDict):
    """One customer under monitoring."""

    tenantId: str
    displayName: str
    relationships: list[ReportRelationship]
    establishedAt: str
    daysActive: int
    lastSignInAt: str | None
    daysInactive: int | None
    inactiveForAtLeastDays: int
    bucket: Bucket
    establishedLast7Days: bool
    agentsSignedInLastDay: int
    signInsLastDay: int
    nonInteractiveSignInsLastDay: int  # the non-interactive part of signInsLastDay
    lastSignInKind: SignInKind | None
    recommendation: Recommendation
    excluded: bool
    reseller: NotRequired[ResellerRef | None]  # null: a direct customer (or not known)
    # The partner's Azure role assignments in the customer as last read (empty when none or never read),
    # and how that read went: read | denied (Resource Manager refused) | failed | null (never read).
    azureRoleAssignments: NotRequired[list[AzureRoleAssignment]]
    azureRolesState: NotRequired[str | None]
    culture: NotRequired[str]  # the customer's culture as Partner Center reports it (e.g. ja-JP); "" unknown


class Summary(TypedDict):
    customersUnderMonitoring: int
    inactiveOver90Days: int
    inactive61To90Days: int
    inactive30To60Days: int
    establishedLast7Days: int
    recommendedForRemoval: int
    gdapExpiringWithin30Days: NotRequired[int]
    gdapWithGlobalAdministrator: NotRequired[int]
    customersWithAzureRoleAssignments: NotRequired[int]


# The window of the sign-in log the store holds without a gap, up to asOf (null: none). "from" is a
# Python keyword, so the functional syntax names it.
CoverageSpan = TypedDict("CoverageSpan", {"from": str | None, "to": str | None})


class PolicyJson(TypedDict):
    mode: Literal["report", "enforce"]
    recommendAfterDays: int
    removeAfterDays: int


class ReportHead(TypedDict):
    """The report without its rows (what the Evaluations table keeps as an evaluation's head)."""

    schemaVersion: int
    asOf: str
    partnerTenantId: str
    coverage: CoverageSpan
    policy: PolicyJson
    summary: Summary


class Report(ReportHead):
    customers: list[ReportRow]
