"""Warnings before removal: the customer and the partner are told, once per inactivity stretch, when
access will be removed."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError

from shared.domain.report import ReportRow
from shared.notifications.enqueue import (
    enqueue_customer_warning,
    enqueue_partner_warning,
)
from shared.platform.actions import POLICY_ACTOR, record_action
from shared.platform.storage import get_or_none
from shared.platform.timeutil import iso, utcnow
from shared.removals.store import stretch_of

if TYPE_CHECKING:
    from shared.services import Services


def warning_key(stretch: str) -> str:
    return "".join("_" if ch in "/\\#?" or ord(ch) < 32 or 127 <= ord(ch) < 160 else ch for ch in stretch)[
        :500
    ]


def remove_on(row: ReportRow, as_of: datetime, remove_after: int) -> str:
    days = max(0, remove_after + 1 - int(row["inactiveForAtLeastDays"]))
    return iso((as_of + timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0))


async def warn_before_removal(
    services: Services, rows: list[ReportRow], as_of: datetime
) -> list[dict[str, Any]]:
    """Advance warnings, once per customer per inactivity stretch (``Warnings`` rows)."""
    settings = services.settings
    table = services.storage.table("Warnings")
    fresh: list[tuple[ReportRow, str, dict[str, Any]]] = []
    for row in rows:
        stretch = stretch_of(row)
        if await get_or_none(table, row["tenantId"], warning_key(stretch)) is not None:
            continue
        fresh.append(
            (row, stretch, brief_row(row, removeOn=remove_on(row, as_of, settings.remove_after_days)))
        )
    if not fresh:
        return []
    # The key names exactly this set of warnings: a run that crashes after enqueueing and before the
    # Warnings rows are written enqueues the same key again, which the notification worker dedupes.
    digest = hashlib.sha256(
        json.dumps(sorted(f"{r['tenantId']}|{s}" for r, s, _ in fresh)).encode()
    ).hexdigest()
    await enqueue_partner_warning(services, f"partner-warning:{digest[:32]}", [b for _, _, b in fresh])
    warned: list[dict[str, Any]] = []
    for row, stretch, brief in fresh:
        if settings.notify_customers_before_removal:
            await enqueue_customer_warning(services, row, stretch, brief["removeOn"])
        # Recorded before the row that makes it done: a run that dies in between records it again
        # (idempotent), rather than leaving a warning without its record.
        await record_action(
            services.storage,
            tenant_id=row["tenantId"],
            actor=POLICY_ACTOR,
            action="warning.queued",
            result="warned",
            detail=f"will lose delegated access on {brief['removeOn'][:10]} unless an agent signs in",
            action_id=f"warning:{row['tenantId']}:{stretch}",
        )
        try:
            await table.create_entity(
                {
                    "PartitionKey": row["tenantId"],
                    "RowKey": warning_key(stretch),
                    "Stretch": stretch,
                    "RemoveOn": brief["removeOn"],
                    "InactiveDays": row["inactiveForAtLeastDays"],
                    "At": iso(utcnow()),
                }
            )
        except ResourceExistsError:
            continue  # another evaluation, running at the same time, warned (and reports) it
        warned.append(brief)
    return warned


def brief_row(row: ReportRow, **extra: Any) -> dict[str, Any]:
    return {
        "tenantId": row["tenantId"],
        "displayName": row["displayName"],
        "inactiveForAtLeastDays": row["inactiveForAtLeastDays"],
        "lastSignInAt": row["lastSignInAt"],
        "relationships": [
            r["type"] if r["type"] == "DAP" else f"GDAP {r['displayName'] or r['id']}"
            for r in row["relationships"]
        ],
        **extra,
    }
