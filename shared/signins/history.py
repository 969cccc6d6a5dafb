"""A customer's sign-ins day by day and the partner agents behind them (the customer view)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.signins.activity import ActivityReader

if TYPE_CHECKING:
    from shared.services import Services


async def sign_in_history(
    services: Services, tenant: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Every day of [start, end] (days without sign-ins as zero), read in parallel 30-day pieces."""
    reader_ = ActivityReader(services.storage)
    pieces = []
    cursor = start
    while cursor <= end:
        piece_end = min(end, cursor + timedelta(days=29))
        pieces.append((cursor, piece_end))
        cursor = piece_end + timedelta(days=1)
    results = await asyncio.gather(*(reader_.history(tenant, a, b) for a, b in pieces))
    found = {d["day"]: d for part in results for d in part}
    out = []
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= end:
        key = day.strftime("%Y-%m-%d")
        item = found.get(key) or {
            "day": key,
            "signIns": 0,
            "nonInteractiveSignIns": 0,
            "agents": [],
            "lastAt": None,
        }
        out.append({**item, "agentCount": len(item["agents"])})
        day += timedelta(days=1)
    return out


def agents_of(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which partner agents signed in over the history: days with a sign-in and the last such day
    (their names are added from the :class:`AgentDirectory`)."""
    agents: dict[str, dict[str, Any]] = {}
    for day in history:
        for agent in day["agents"]:
            entry = agents.setdefault(agent, {"userId": agent, "days": 0, "lastDay": day["day"]})
            entry["days"] += 1
            entry["lastDay"] = max(entry["lastDay"], day["day"])
    return sorted(agents.values(), key=lambda a: (a["lastDay"], a["days"]), reverse=True)
