"""Bucket counts over time, from the stored evaluation heads (the portal's trend chart)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.platform.timeutil import parse_iso


def trend_points(heads: list[dict[str, Any]], days: int) -> list[dict[str, Any]]:
    """One point per UTC day of asOf: the latest evaluation computed for that day."""
    per_day: dict[str, dict[str, Any]] = {}
    for head in heads:  # newest first
        day = str(head["asOf"])[:10]
        chosen = per_day.get(day)
        if chosen is None or (head["asOf"], head["createdAt"]) > (chosen["asOf"], chosen["createdAt"]):
            per_day[day] = head
    if not per_day:
        return []
    last = max(per_day)
    first = (parse_iso(last + "T00:00:00Z") - timedelta(days=days - 1)).strftime("%Y-%m-%d")
    points = []
    for day in sorted(d for d in per_day if d >= first):
        head = per_day[day]
        s = head["summary"]
        total = s["customersUnderMonitoring"]
        points.append(
            {
                "day": day,
                "asOf": head["asOf"],
                "evaluationId": head["id"],
                "customersUnderMonitoring": total,
                "active": total - s["inactive30To60Days"] - s["inactive61To90Days"] - s["inactiveOver90Days"],
                "inactive30To60Days": s["inactive30To60Days"],
                "inactive61To90Days": s["inactive61To90Days"],
                "inactiveOver90Days": s["inactiveOver90Days"],
                "establishedLast7Days": s["establishedLast7Days"],
                "recommendedForRemoval": s["recommendedForRemoval"],
            }
        )
    return points
