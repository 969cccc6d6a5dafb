"""The monitoring rules of docs/definitions.md sections 1-2, as pure functions (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.domain.models import GLOBAL_ADMINISTRATOR, Relationship
from shared.domain.report import (
    PolicyJson,
    ReportRelationship,
    ReportRow,
    ResellerRef,
    SignInKind,
    Summary,
)
from shared.platform.timeutil import (
    iso,
    iso_optional,
    parse_optional,
    whole_days,
)

Bucket = Literal["active", "30-60", "61-90", "90+"]


@dataclass(frozen=True)
class Policy:
    mode: str = "report"
    recommend_after_days: int = 60
    remove_after_days: int = 90
    excluded: frozenset[str] = frozenset()

    def to_json(self) -> PolicyJson:
        return {
            "mode": "enforce" if self.mode == "enforce" else "report",
            "recommendAfterDays": self.recommend_after_days,
            "removeAfterDays": self.remove_after_days,
        }


def qualifies(raw: dict[str, Any], partner_tenant: str) -> bool:
    """A qualifying sign-in (docs/definitions.md), the time bound aside (the caller checks it): a
    successful sign-in of a partner user into another tenant with a crossTenantAccessType that includes
    the serviceProvider flag (a flags enum: "b2bCollaboration,serviceProvider" qualifies). Either kind of
    user sign-in, interactive or non-interactive, qualifies: the list query decides which kind is read."""
    access = str(raw.get("crossTenantAccessType") or "")
    if "serviceprovider" not in {part.strip().lower() for part in access.split(",")}:
        return False
    status = raw.get("status") or {}
    if not isinstance(status, dict) or status.get("errorCode", 0) != 0:
        return False
    home = str(raw.get("homeTenantId") or partner_tenant).lower()
    resource = str(raw.get("resourceTenantId") or "").lower()
    return home == partner_tenant.lower() and bool(resource) and resource != partner_tenant.lower()


def bucket_of(days: int) -> Bucket:
    """active d <= 29; 30-60; 61-90; 90+ d >= 91 (docs/definitions.md section 1 settles the seed's overlapping ranges)."""
    if days <= 29:
        return "active"
    if days <= 60:
        return "30-60"
    if days <= 90:
        return "61-90"
    return "90+"


def established_at(relationships: Iterable[Relationship]) -> datetime | None:
    """The earliest establishment over the customer's active relationships."""
    times = [r.established_at for r in relationships if r.active and r.established_at is not None]
    return min(times) if times else None


def inactive_for_at_least(
    as_of: datetime, last_sign_in: datetime | None, established: datetime, coverage_from: datetime | None
) -> int:
    """What the store can prove: floor((asOf - max(lastSignInAt, establishedAt, coverage.from)) / 1 day).

    Without any coverage nothing is proven, so the evidence starts at asOf itself (0 days).
    """
    evidence = [established, coverage_from if coverage_from is not None else as_of]
    if last_sign_in is not None:
        evidence.append(last_sign_in)
    return max(0, whole_days(as_of - max(evidence)))


def days_until_candidate(row: ReportRow, policy: Policy) -> int:
    """Days until inactiveForAtLeastDays exceeds removeAfterDays if nobody signs in (0 = already)."""
    return max(0, policy.remove_after_days + 1 - row["inactiveForAtLeastDays"])


def relationship_json(rel: Relationship, as_of: datetime | None = None) -> ReportRelationship:
    return {
        "type": rel.type,
        "id": rel.id,
        "displayName": rel.display_name,
        "status": rel.status,
        "establishedAt": iso_optional(rel.established_at),
        "endsAt": iso_optional(rel.ends_at),
        "autoExtend": rel.auto_extend,
        "roles": list(rel.roles),
        # floor((endsAt - asOf) / 1 day); null when the end (or asOf) is unknown
        "expiresInDays": None if as_of is None else expires_in_days(rel.ends_at, as_of),
        "includesGlobalAdministrator": includes_global_administrator(rel.roles),
    }


def customer_row(
    *,
    tenant_id: str,
    display_name: str,
    relationships: list[Relationship],
    as_of: datetime,
    last_sign_in: datetime | None,
    agents_last_day: int,
    sign_ins_last_day: int,
    coverage_from: datetime | None,
    policy: Policy,
    non_interactive_last_day: int = 0,
    last_sign_in_kind: SignInKind | None = None,
    reseller: ResellerRef | None = None,
) -> ReportRow | None:
    """One customer's row of the report, or None when the customer is not under monitoring."""
    active = sorted((r for r in relationships if r.active), key=lambda r: (r.type, r.id))
    established = established_at(active)
    if not active or established is None:
        return None
    if last_sign_in is not None and last_sign_in > as_of:
        raise ValueError("last sign-in after asOf")
    d = inactive_for_at_least(as_of, last_sign_in, established, coverage_from)
    excluded = tenant_id in policy.excluded
    return {
        "tenantId": tenant_id,
        "displayName": display_name,
        "relationships": [relationship_json(r, as_of) for r in active],
        "establishedAt": iso(established),
        "daysActive": whole_days(as_of - established),
        "lastSignInAt": iso_optional(last_sign_in),
        "daysInactive": None if last_sign_in is None else whole_days(as_of - last_sign_in),
        "inactiveForAtLeastDays": d,
        "bucket": bucket_of(d),
        "establishedLast7Days": established > as_of - timedelta(days=7),
        "agentsSignedInLastDay": agents_last_day,
        "signInsLastDay": sign_ins_last_day,
        "nonInteractiveSignInsLastDay": non_interactive_last_day,
        "lastSignInKind": last_sign_in_kind if last_sign_in is not None else None,
        "recommendation": "remove" if d > policy.recommend_after_days and not excluded else "none",
        "excluded": excluded,
        "reseller": reseller,
    }


def sort_rows(rows: list[ReportRow]) -> list[ReportRow]:
    return sorted(rows, key=lambda r: (-r["inactiveForAtLeastDays"], r["tenantId"]))


def summarize(rows: list[ReportRow], as_of: datetime | None = None) -> Summary:
    summary: Summary = {
        "customersUnderMonitoring": len(rows),
        "inactiveOver90Days": sum(1 for r in rows if r["bucket"] == "90+"),
        "inactive61To90Days": sum(1 for r in rows if r["bucket"] == "61-90"),
        "inactive30To60Days": sum(1 for r in rows if r["bucket"] == "30-60"),
        "establishedLast7Days": sum(1 for r in rows if r["establishedLast7Days"]),
        "recommendedForRemoval": sum(1 for r in rows if r["recommendation"] == "remove"),
    }
    if as_of is not None:
        gdap = [rel for r in rows for rel in r.get("relationships", []) if rel["type"] == "GDAP"]
        summary["gdapExpiringWithin30Days"] = sum(1 for rel in gdap if gdap_expiring(rel, as_of, 30))
        summary["gdapWithGlobalAdministrator"] = sum(
            1 for rel in gdap if includes_global_administrator(rel["roles"])
        )
        summary["customersWithAzureRoleAssignments"] = sum(1 for r in rows if r.get("azureRoleAssignments"))
    return summary


def gdap_expiring(rel: ReportRelationship, as_of: datetime, within_days: int) -> bool:
    """:func:`is_expiring` for a relationship of the report."""
    return (
        rel["type"] == "GDAP"
        and rel["status"] == "active"
        and ends_within(parse_optional(rel.get("endsAt")), rel["autoExtend"], as_of, within_days)
    )


def ends_within(ends_at: datetime | None, auto_extend: bool, as_of: datetime, within_days: int) -> bool:
    """The expiry rule: no auto-extend and endsAt <= asOf + within days."""
    return not auto_extend and ends_at is not None and ends_at <= as_of + timedelta(days=within_days)


def includes_global_administrator(roles: Iterable[str]) -> bool:
    return GLOBAL_ADMINISTRATOR in {r.lower() for r in roles}


def expires_in_days(ends_at: datetime | None, as_of: datetime) -> int | None:
    """floor((endsAt - asOf) / 1 day); None when the end is unknown."""
    return None if ends_at is None else whole_days(ends_at - as_of)


def is_expiring(rel: Relationship, as_of: datetime, within_days: int) -> bool:
    """An active GDAP relationship without auto-extend with endsAt <= asOf + within days."""
    return rel.type == "GDAP" and rel.active and ends_within(rel.ends_at, rel.auto_extend, as_of, within_days)
