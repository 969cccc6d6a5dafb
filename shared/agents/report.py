"""The agents report: per partner agent, the last sign-in into any customer, the customers reached in
the last 30 and 90 days, the partner groups that give it access (Admin Agents and Helpdesk Agents for
DAP, each GDAP access assignment's security group) and how many customers each membership opens.

Computed from the store (the relationships with their access assignments, the ``SignInDays`` log) and
live group membership (Graph ``transitiveMembers``). Coverage honesty: an agent is idle only for as many
days as the stored sign-in log proves (``inactiveForAtLeastDays`` never reaches before the log's start),
and it is flagged only when that reaches ``AGENT_INACTIVE_DAYS`` while it is still a member of a group.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.azure_roles.store import admin_agents_group
from shared.gdap.base import CONCURRENCY
from shared.platform.retry import UpstreamError
from shared.platform.state import StateStore
from shared.platform.timeutil import days_covering, iso, iso_optional, whole_days
from shared.relationships.store import RelationshipStore
from shared.signins.activity import DayActivity, day_entities
from shared.signins.agents import AgentDirectory

if TYPE_CHECKING:
    from shared.services import Services

ADMIN_AGENTS, HELPDESK_AGENTS, GDAP_GROUP = "adminAgents", "helpdeskAgents", "gdap"


@dataclass
class _Group:
    group_id: str
    kind: str
    customers: set[str] = field(default_factory=set)
    name: str = ""


async def helpdesk_agents_group(services: Services) -> str | None:
    """The partner's HelpdeskAgents group id: ``GDAP_GROUP_HELPDESKAGENTS``, else the one group Graph
    names ``HelpdeskAgents``; None when it cannot be told."""
    configured = services.settings.gdap_group_helpdesk_agents
    if configured:
        return str(configured).lower()
    try:
        found = await services.graph.find_groups("HelpdeskAgents")
    except UpstreamError:
        return None
    ids = {str(g.get("id") or "").lower() for g in found if g.get("id")}
    return ids.pop() if len(ids) == 1 else None


async def access_groups(services: Services) -> dict[str, _Group]:
    """Every partner group that opens customers, with the customers it opens (active access only)."""
    estate = await RelationshipStore(services.storage).load()
    groups: dict[str, _Group] = {}
    dap = {t for t, rels in estate.relationships.items() for r in rels if r.type == "DAP" and r.active}
    # DAP: "The Admin agent group is assigned to the Global Administrator role in the customer's Azure AD
    # tenant. The Helpdesk agent group is assigned to the Helpdesk administrator role"
    # (https://learn.microsoft.com/partner-center/security/dap-monitor-self-serve-removal): both open
    # every customer with an active DAP relationship.
    for kind, lookup in ((ADMIN_AGENTS, admin_agents_group), (HELPDESK_AGENTS, helpdesk_agents_group)):
        gid = await lookup(services)
        if gid:
            groups[gid] = _Group(gid, kind, set(dap))
    for tenant, rels in estate.relationships.items():
        for rel in rels:
            if rel.type != "GDAP" or not rel.active:
                continue
            for a in rel.access_assignments:
                if a.status != "active" or not a.group_id:
                    continue
                gid = a.group_id.lower()
                groups.setdefault(gid, _Group(gid, GDAP_GROUP)).customers.add(tenant)
    return groups


async def _members(
    services: Services, groups: dict[str, _Group], errors: list[str], people: dict[str, tuple[str, str]]
) -> dict[str, set[str]]:
    """Live (transitive) user members per group; ``people`` gets each member's (UPN, display name)."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    members: dict[str, set[str]] = {}

    async def one(group: _Group) -> None:
        async with semaphore:
            try:
                users = await services.graph.group_member_users(group.group_id)
                group.name = await services.graph.group_display_name(group.group_id) or ""
            except UpstreamError as exc:
                errors.append(f"group {group.group_id}: {exc}")
                return
        members[group.group_id] = {u["id"] for u in users}
        for u in users:
            if u["userPrincipalName"] or u["displayName"]:
                people[u["id"]] = (u["userPrincipalName"], u["displayName"])

    await asyncio.gather(*(one(g) for g in groups.values()))
    return members


async def _use(
    services: Services, start: datetime, end: datetime
) -> dict[str, tuple[datetime, str, dict[str, datetime]]]:
    """Per agent (lower-case id): (last sign-in, its customer, last sign-in per customer) in [start, end]."""
    days = days_covering(start, end)
    semaphore = asyncio.Semaphore(CONCURRENCY)
    per_agent: dict[str, dict[str, datetime]] = {}

    async def one(day: datetime) -> None:
        async with semaphore:
            entities = await day_entities(services.storage, day)
        for entity in entities:
            tenant = str(entity["RowKey"])
            for at, user in DayActivity.from_entity(entity).times():
                if start <= at <= end:
                    seen = per_agent.setdefault(user.lower(), {})
                    if tenant not in seen or at > seen[tenant]:
                        seen[tenant] = at

    await asyncio.gather(*(one(d) for d in days))
    out = {}
    for user, seen in per_agent.items():
        tenant, at = max(seen.items(), key=lambda item: item[1])
        out[user] = (at, tenant, seen)
    return out


async def agents_report(services: Services, as_of: datetime | None = None) -> dict[str, Any]:
    """The agents report at ``as_of`` (default: Microsoft's present)."""
    await services.storage.ensure()
    moment = as_of or await services.now()
    inactive_days = services.settings.agent_inactive_days
    coverage = await StateStore(services.storage).load_coverage()
    # The stretch of stored log that reaches closest to as_of: it proves idleness up to its end only.
    spans = [(start, min(end, moment)) for start, end in coverage.intervals if start <= moment]
    coverage_from, evidence_end = max(spans, key=lambda s: s[1]) if spans else (None, moment)
    errors: list[str] = []
    groups = await access_groups(services)
    people: dict[str, tuple[str, str]] = {}
    members = await _members(services, groups, errors, people)
    use = await _use(services, coverage_from, evidence_end) if coverage_from is not None else {}
    agent_ids = set(use) | {m for ms in members.values() for m in ms}
    # Names from the sign-in log, else from the directory (members who never signed in).
    names = {**people, **await AgentDirectory(services.storage).names(agent_ids)}
    rows: list[dict[str, Any]] = []
    for user in sorted(agent_ids):
        held = [g for g in groups.values() if user in members.get(g.group_id, set())]
        last_at, last_tenant, seen = use.get(user, (None, None, {}))
        proven = 0 if coverage_from is None else whole_days(evidence_end - (last_at or coverage_from))
        reachable = set().union(*(g.customers for g in held)) if held else set()
        idle = coverage_from is not None and bool(held) and proven >= inactive_days
        upn, display = names.get(user, ("", ""))
        rows.append(
            {
                "userId": user,
                "userPrincipalName": upn or None,
                "displayName": display or None,
                "lastSignInAt": iso_optional(last_at),
                "lastSignInTenantId": last_tenant,
                "customersLast30Days": _reached(seen, moment, 30),
                "customersLast90Days": _reached(seen, moment, 90),
                "inactiveForAtLeastDays": proven,
                "customersReachable": len(reachable),
                "groups": sorted(
                    (
                        {
                            "groupId": g.group_id,
                            "groupName": g.name or None,
                            "kind": g.kind,
                            "customers": len(g.customers),
                        }
                        for g in held
                    ),
                    key=lambda g: (g["kind"], g["groupName"] or "", g["groupId"]),
                ),
                "idle": idle,
                "recommendation": "removeFromGroups" if idle else "none",
            }
        )
    rows.sort(key=lambda r: (not r["idle"], -r["inactiveForAtLeastDays"], r["userId"]))
    return {
        "asOf": iso(moment),
        "inactiveDays": inactive_days,
        "coverageFrom": iso_optional(coverage_from),
        "coverageTo": iso_optional(evidence_end if coverage_from is not None else None),
        "summary": {
            "agents": len(rows),
            "idle": sum(r["idle"] for r in rows),
            "withMembership": sum(bool(r["groups"]) for r in rows),
        },
        "agents": rows,
        "errors": errors,
        "note": None
        if coverage_from is not None
        else "no sign-in data is stored for asOf: no agent can be proven idle",
    }


def _reached(seen: dict[str, datetime], moment: datetime, days: int) -> int:
    start = moment - timedelta(days=days)
    return sum(1 for at in seen.values() if start < at <= moment)


def agents_csv_rows(report: dict[str, Any]) -> list[list[str]]:
    """The report as CSV rows (header first); groups joined by ``;``."""
    header = [
        "userId",
        "userPrincipalName",
        "displayName",
        "lastSignInAt",
        "customersLast30Days",
        "customersLast90Days",
        "inactiveForAtLeastDays",
        "customersReachable",
        "groups",
        "idle",
        "recommendation",
    ]
    out = [header]
    for r in report["agents"]:
        out.append(
            [
                r["userId"],
                r["userPrincipalName"] or "",
                r["displayName"] or "",
                r["lastSignInAt"] or "",
                str(r["customersLast30Days"]),
                str(r["customersLast90Days"]),
                str(r["inactiveForAtLeastDays"]),
                str(r["customersReachable"]),
                ";".join(f"{g['groupName'] or g['groupId']}({g['customers']})" for g in r["groups"]),
                "true" if r["idle"] else "false",
                r["recommendation"],
            ]
        )
    return out
