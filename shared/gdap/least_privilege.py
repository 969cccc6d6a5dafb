"""The least-privilege report: the active relationships holding Global Administrator
(:func:`shared.gdap.global_admin.global_administrators`), and the active access assignments whose partner
security group's (transitive) members never signed in to that customer within a window, proven from the
stored sign-in aggregates (``SignInDays``) and only where the evidence spans long enough."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.domain.models import AccessAssignment, Relationship
from shared.gdap.base import CONCURRENCY, active_gdap
from shared.gdap.global_admin import global_administrators
from shared.platform.retry import UpstreamError
from shared.platform.state import StateStore
from shared.platform.storage import Storage, partition
from shared.platform.timeutil import (
    day_key,
    day_start,
    days_covering,
    iso,
    iso_optional,
    utcnow,
    whole_days,
)
from shared.relationships.store import RelationshipStore
from shared.signins.activity import DayActivity

if TYPE_CHECKING:
    from shared.microsoft.graph import GraphClient
    from shared.services import Services

MIN_EVIDENCE_DAYS = 30


async def least_privilege(
    services: Services, as_of: datetime | None = None, window_days: int = 90
) -> dict[str, Any]:
    """Relationships holding Global Administrator, and access assignments nobody in the group used.

    An assignment is flagged when no (transitive) member of its security group signed in to that
    customer since ``evidenceFrom`` = the latest of asOf - window, the start of the stored sign-in
    log and the relationship's activation, and that evidence spans at least 30 days (or the window).
    """
    await services.storage.ensure()
    moment = as_of or utcnow()
    estate = await RelationshipStore(services.storage).load()
    coverage = await StateStore(services.storage).load_coverage()
    span = coverage.covering(moment)
    coverage_from = span[0] if span else None
    window_from = moment - timedelta(days=window_days)
    active = active_gdap(estate)
    names = {t: c.display_name for t, c in estate.customers.items()}
    ga = await global_administrators(services.storage, active, names)
    unused: list[dict[str, Any]] = []
    errors: list[str] = []
    checked = 0
    note = None
    if coverage_from is None:
        note = "no sign-in data is stored for asOf: nothing can be proven unused"
    else:
        evidence_start = max(window_from, coverage_from)
        assignments = [(rel, a) for rel in active for a in rel.access_assignments if a.status == "active"]
        groups = sorted({a.group_id.lower() for _, a in assignments})
        members, group_names = await _groups(services.graph, groups, errors)
        agents = await _agents_in_window(
            services.storage, evidence_start, moment, {rel.tenant_id for rel, _ in assignments}
        )
        for rel, a in assignments:
            gid = a.group_id.lower()
            if gid not in members:
                continue
            checked += 1
            since = max(evidence_start, rel.established_at or evidence_start)
            days = whole_days(moment - since)
            used = members[gid] & agents.get(rel.tenant_id, set())
            if used or days < min(MIN_EVIDENCE_DAYS, window_days):
                continue
            unused.append(
                _unused(rel, a, names, group_names.get(gid) or None, len(members[gid]), since, days)
            )
    return {
        "asOf": iso(moment),
        "windowDays": window_days,
        "windowFrom": iso(window_from),
        "coverageFrom": iso_optional(coverage_from),
        "globalAdministrator": ga,
        "unusedAssignments": unused,
        "assignmentsChecked": checked,
        "errors": errors,
        "note": note,
    }


def _unused(
    rel: Relationship,
    a: AccessAssignment,
    names: dict[str, str],
    group_name: str | None,
    members: int,
    since: datetime,
    days: int,
) -> dict[str, Any]:
    return {
        "tenantId": rel.tenant_id,
        "customerName": names.get(rel.tenant_id) or rel.customer_name,
        "relationshipId": rel.id,
        "relationshipName": rel.display_name,
        "assignmentId": a.id,
        "groupId": a.group_id,
        "groupName": group_name,
        "roles": list(a.roles),
        "members": members,
        "evidenceFrom": iso(since),
        "evidenceDays": days,
        "recommendation": "removeAssignment",
        "reason": (
            f"no member of the group signed in to this customer in the {days} days since {iso(since)}"
            if members
            else "the group has no members"
        ),
    }


async def _groups(
    graph: GraphClient, group_ids: list[str], errors: list[str]
) -> tuple[dict[str, set[str]], dict[str, str]]:
    semaphore = asyncio.Semaphore(CONCURRENCY)
    members: dict[str, set[str]] = {}
    display: dict[str, str] = {}

    async def one(gid: str) -> None:
        async with semaphore:
            try:
                members[gid] = set(await graph.group_member_ids(gid))
                display[gid] = await graph.group_display_name(gid) or ""
            except UpstreamError as exc:
                errors.append(f"group {gid}: {exc}")

    await asyncio.gather(*(one(g) for g in group_ids))
    return members, display


async def _agents_in_window(
    storage: Storage, start: datetime, end: datetime, tenants: set[str]
) -> dict[str, set[str]]:
    """Agents with a qualifying sign-in in [start, end], per customer, from the stored daily aggregates."""
    table = storage.table("SignInDays")
    out: dict[str, set[str]] = {}
    days = days_covering(start, end)
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(day: datetime) -> None:
        edge = day == day_start(start) or day == day_start(end)
        async with semaphore:
            entities = await partition(table, day_key(day), None if edge else ["RowKey", "Agents"])
        for entity in entities:
            tenant = str(entity["RowKey"])
            if tenant not in tenants:
                continue
            if edge:  # only the sign-ins inside [start, end]
                activity = DayActivity.from_entity(entity)
                found = {user for at, user in activity.times() if start <= at <= end}
            else:
                found = set(json.loads(entity.get("Agents") or "[]"))
            out.setdefault(tenant, set()).update(u.lower() for u in found)

    await asyncio.gather(*(one(d) for d in days))
    return out
