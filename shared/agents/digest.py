"""Newly idle agents for the partner digest: each idle stretch of an agent is listed once (``Digests``,
partition ``agentIdle``, row ``<userId>|<last sign-in or none>``: an agent that signs in and later falls
idle again is listed again)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.agents.report import agents_report
from shared.notifications.digests import digest_marked, mark_digest
from shared.platform.retry import UpstreamError

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

DIGEST_KIND = "agentIdle"


def _mark(agent: dict[str, Any]) -> str:
    return f"{agent['userId']}|{agent['lastSignInAt'] or 'none'}"


async def idle_agents_for_digest(services: Services, as_of: datetime) -> list[dict[str, Any]]:
    """Idle agents no partner digest has listed for this idle stretch, in the digest's shape. Graph
    failing leaves them for a later digest (logged), never fails the run."""
    try:
        report = await agents_report(services, as_of)
    except UpstreamError as exc:
        log.warning("idle agents left out of this digest: %s", exc)
        return []
    out = []
    for agent in report["agents"]:
        if agent["idle"] and not await digest_marked(services.storage, DIGEST_KIND, _mark(agent)):
            out.append(
                {
                    "mark": _mark(agent),
                    "userId": agent["userId"],
                    "name": agent["displayName"] or agent["userPrincipalName"] or agent["userId"],
                    "inactiveForAtLeastDays": agent["inactiveForAtLeastDays"],
                    "groups": [g["groupName"] or g["groupId"] for g in agent["groups"]],
                    "customers": agent["customersReachable"],
                }
            )
    return out


async def mark_idle_agents_in_digest(services: Services, agents: list[dict[str, Any]]) -> None:
    for agent in agents:
        await mark_digest(services.storage, DIGEST_KIND, agent["mark"])
