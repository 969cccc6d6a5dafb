"""Shapes of the API's answers, for the OpenAPI document only.

Handlers build their JSON directly (a page of 10,000 customers is served from precomputed JSON), so
these models document the contract without validating every answer at run time. The report's own
shapes (rows, relationships, summary) are the typed dictionaries of :mod:`shared.domain.report`, the
same types the product computes with.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.domain.report import ReportRow, Summary


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalidTenantId"])
    message: str


class Error(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "malformed request (nothing was changed)"},
    401: {"model": Error, "description": "no signed-in principal"},
    403: {"model": Error, "description": "the principal lacks the app role, or the request is cross-site"},
    404: {"model": Error, "description": "not found (or no evaluation stored yet)"},
}


class RoleName(BaseModel):
    en: str
    ja: str


class Me(BaseModel):
    name: str
    roles: list[str]
    canRemove: bool
    canGrant: bool
    localOperator: bool


class CustomerRow(ReportRow):
    """A customer row of the audit report (docs/definitions.md section 3, :class:`shared.domain.report.ReportRow`)
    with what the portal shows beside it."""

    relationshipTypes: list[str]
    roles: list[str]
    roleNames: list[str]


class ResellerCount(BaseModel):
    id: str = Field(description="the reseller's tenant id (the customers' associatedPartnerId)")
    name: str = Field(description="its name as Partner Center reports it; empty when unknown")
    customers: int


class CustomerPage(BaseModel):
    evaluationId: str
    evaluatedAt: str
    asOf: str
    coverage: dict[str, str | None]
    policy: dict[str, Any]
    summary: Summary
    query: dict[str, Any]
    facets: dict[str, Any] = Field(
        description="what the filters can choose from: roles (id, name, customers holding it)"
    )
    resellers: list[ResellerCount] = Field(
        default_factory=list, description="the indirect resellers the rows name, with their customers"
    )
    resellerSummary: Summary | None = Field(
        default=None, description="with reseller=: the tiles' counts for that reseller's customers"
    )
    total: int
    page: int
    pageSize: int
    pages: int
    customers: list[CustomerRow]


class DaySignIns(BaseModel):
    day: str
    signIns: int = Field(description="Sign-ins of both kinds, interactive and non-interactive")
    nonInteractiveSignIns: int = Field(description="The non-interactive part of signIns")
    agents: list[str]
    agentCount: int
    lastAt: str | None


class Agent(BaseModel):
    userId: str
    userPrincipalName: str = Field(
        description="From the partner tenant's sign-in log; empty when not recorded"
    )
    displayName: str
    days: int = Field(description="Days of the period with a sign-in by this agent")
    lastDay: str


class CustomerDetail(BaseModel):
    tenantId: str
    displayName: str
    defaultDomainName: str
    culture: str
    evaluation: dict[str, str] | None
    row: CustomerRow | None
    relationships: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    signIns: dict[str, Any]
    agents: list[Agent]
    actions: list[dict[str, Any]] | None
    azureRoles: dict[str, Any] | None = None  # the partner's Azure role assignments, as last read


class Actions(BaseModel):
    actions: list[dict[str, Any]]
    count: int


class TrendPoint(BaseModel):
    day: str
    asOf: str
    evaluationId: str
    customersUnderMonitoring: int
    active: int
    inactive30To60Days: int
    inactive61To90Days: int
    inactiveOver90Days: int
    establishedLast7Days: int
    recommendedForRemoval: int


class Trends(BaseModel):
    days: int
    points: list[TrendPoint]


class AuditRun(BaseModel):
    id: str
    status: Literal["running", "succeeded", "failed"]
    startedAt: str
    finishedAt: str | None
    requestedBy: str
    asOf: str | None
    summary: Summary | None
    error: str | None


class RemovalRequest(BaseModel):
    tenantIds: list[str] = Field(min_length=1, max_length=100, description="customer tenant ids (GUIDs)")
    customerNotified: Literal[True] = Field(description="must be true: the customers were told")
    reason: str = Field(default="", max_length=500)


class Removal(BaseModel):
    id: str
    tenantId: str
    status: Literal["queued", "requested", "completed", "skipped", "failed"]
    reason: str | None = None
    requestedBy: str | None = None
    requestedAt: str | None = None
    updatedAt: str | None = None


class RemovalsAccepted(BaseModel):
    removals: list[Removal]


class RemovalList(BaseModel):
    removals: list[Removal]
    missing: list[str]


class RemovalPreviewRequest(BaseModel):
    tenantIds: list[str] = Field(min_length=1, max_length=100, description="customer tenant ids (GUIDs)")


class RemovedRelationship(BaseModel):
    type: Literal["DAP", "GDAP"]
    id: str
    displayName: str
    roles: list[str]
    roleNames: list[str]


class RemovalUnderWay(BaseModel):
    id: str
    status: str


class RemovalPreviewCustomer(BaseModel):
    tenantId: str
    displayName: str
    inactiveForAtLeastDays: int | None = None
    recommendation: str | None = None
    refused: Literal["notMonitored", "nothingInScope"] | None = Field(
        description="why a removal request for this customer would be refused"
    )
    underWay: RemovalUnderWay | None = Field(
        default=None, description="a removal already under way: a request returns it instead of a new one"
    )
    removes: list[RemovedRelationship] = Field(description="what the removal ends (REMOVAL_SCOPE)")
    recipients: list[str] = Field(description="who the customer notice is sent to (none: nobody)")
    warnings: list[Literal["active", "signedInLastDay", "notRecommended", "excluded"]]


class RemovalPreview(BaseModel):
    evaluationId: str
    scope: list[str]
    notifyCustomers: bool
    customers: list[RemovalPreviewCustomer]


class ExclusionRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="why the customer is excluded")


class Exclusion(BaseModel):
    tenantId: str
    displayName: str
    reason: str
    excludedBy: str
    excludedAt: str | None
    source: Literal["portal", "setting"]


class Exclusions(BaseModel):
    exclusions: list[Exclusion]


class ArchiveSettings(BaseModel):
    configured: bool = Field(description="SIGNIN_ARCHIVE_CONNECTION is set")
    containers: list[str] = Field(description="SIGNIN_ARCHIVE_CONTAINERS")
    quietHours: int = Field(description="SIGNIN_ARCHIVE_QUIET_HOURS")


class ArchiveBackfill(BaseModel):
    at: str = Field(description="when the last archive backfill finished")
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    signIns: int | None = None
    slices: int | None = None
    blobsRead: int | None = None
    gaps: list[list[str]] | None = Field(None, description="[from, to] stretches the archive did not hold")
    missingHours: dict[str, int] | None = Field(None, description="per container, hours without a blob")


class SignInCoverage(BaseModel):
    source: Literal["graph", "archive"] = Field(description="SIGNIN_SOURCE: where ongoing ingestion reads")
    archive: ArchiveSettings
    coverage: list[list[str]] = Field(description="[from, to] stretches of sign-in log the store holds")
    lastIngestionAt: str | None
    lastBackfill: ArchiveBackfill | None
