"""The append-only audit trail: the ``Actions`` table (who, what, when, why, result) and its
tamper-evident copy in the ``audit-trail`` blob container."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.platform.storage import (
    Storage,
    query_all,
)
from shared.platform.telemetry import (
    EVENT_CIRCUIT_BREAKER_TRIPPED,
    EVENT_INGESTION_STALE,
    EVENT_MAIL_FAILED,
    EVENT_REMOVAL_COMPLETED,
    EVENT_REMOVAL_FAILED,
    EVENT_REMOVAL_REQUESTED,
    EVENT_REMOVAL_SKIPPED,
    PropertyValue,
    track_event,
)
from shared.platform.timeutil import iso, utcnow

log = logging.getLogger(__name__)


PARTNER_PARTITION = "_partner"  # Actions rows that concern no single customer (alerts, halts)


POLICY_ACTOR = "policy"


def event_of(action: str, result: str) -> str | None:
    """The custom event (``shared.platform.telemetry``) of a trail row, if one is watched."""
    if action == "removal.queued" and result == "queued":
        return EVENT_REMOVAL_REQUESTED
    if action == "notification.broken" or (action.startswith("notification.") and result == "failed"):
        return EVENT_MAIL_FAILED
    return {
        "removal.completed": EVENT_REMOVAL_COMPLETED,
        "removal.skipped": EVENT_REMOVAL_SKIPPED,
        "removal.failed": EVENT_REMOVAL_FAILED,
        "enforcement.breaker": EVENT_CIRCUIT_BREAKER_TRIPPED,
        "enforcement.stale": EVENT_INGESTION_STALE,
    }.get(action)


def fixed_iso(value: datetime) -> str:
    """Sortable form for row keys: always six fractional digits."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def record_action(
    storage: Storage,
    *,
    tenant_id: str | None,
    actor: str,
    action: str,
    result: str,
    reason: str = "",
    detail: str = "",
    removal_id: str = "",
    relationship_type: str = "",
    relationship_id: str = "",
    action_id: str | None = None,
    at: datetime | None = None,
    telemetry: Mapping[str, PropertyValue] | None = None,
) -> dict[str, Any]:
    """Append one row to ``Actions`` (PK tenant, RK time|id); never updates or deletes.

    With ``action_id`` the append is idempotent: a retry that records the same event again (a crash
    between the event and its row) finds the earlier row and adds nothing.

    The trail is where the product says what happened, so the custom events the alerts and the workbook
    read are emitted here, once per row written (:func:`event_of`); ``telemetry`` adds properties.
    """
    table = storage.table("Actions")
    pk = (tenant_id or PARTNER_PARTITION).lower()
    if action_id is not None:
        async for existing in table.query_entities(
            "PartitionKey eq @pk and ActionId eq @id", parameters={"pk": pk, "id": action_id}
        ):
            return action_json(dict(existing))
    moment = at or utcnow()
    entity = {
        "PartitionKey": pk,
        "RowKey": f"{fixed_iso(moment)}|{uuid.uuid4().hex[:12]}",
        "ActionId": action_id or uuid.uuid4().hex,
        "At": iso(moment),
        "Actor": actor,
        "Action": action,
        "Result": result,
        "Reason": reason[:4000],
        "Detail": detail[:8000],
        "RemovalId": removal_id,
        "RelationshipType": relationship_type,
        "RelationshipId": relationship_id,
    }
    await table.create_entity(entity)
    event = event_of(action, result)
    if event is not None:
        track_event(
            event,
            {
                "tenantId": tenant_id or "",
                "actor": actor,
                "action": action,
                "result": result,
                "reason": (detail or reason)[:500],
                "removalId": removal_id,
                "type": relationship_type,
                **(telemetry or {}),
            },
        )
    try:
        await storage.append_audit(entity)
    except Exception:  # the table row is written; the copy's gap is what verify_trail reports
        log.exception("the audit trail's immutable copy could not be written for %s %s", pk, entity["RowKey"])
    if action_id is not None:
        # Two writers recording the same event at the same moment both pass the check above. The one
        # that inserts second sees both rows here: the earliest stays, later copies go. (The other
        # writer may have seen only its own row; whichever row remains, exactly one does.)
        same = sorted(
            [
                dict(e)
                async for e in table.query_entities(
                    "PartitionKey eq @pk and ActionId eq @id", parameters={"pk": pk, "id": action_id}
                )
            ],
            key=lambda e: str(e["RowKey"]),
        )
        for extra in same[1:]:
            with contextlib.suppress(ResourceNotFoundError):
                await table.delete_entity(extra["PartitionKey"], extra["RowKey"])
        if same:
            return action_json(same[0])
    return action_json(entity)


def action_json(e: dict[str, Any]) -> dict[str, Any]:
    pk = str(e["PartitionKey"])
    return {
        "id": e.get("ActionId", ""),
        "tenantId": None if pk == PARTNER_PARTITION else pk,
        "at": e.get("At"),
        "actor": e.get("Actor", ""),
        "action": e.get("Action", ""),
        "result": e.get("Result", ""),
        "reason": e.get("Reason") or None,
        "detail": e.get("Detail") or None,
        "removalId": e.get("RemovalId") or None,
        "relationshipType": e.get("RelationshipType") or None,
        "relationshipId": e.get("RelationshipId") or None,
    }


async def record_unreadable(storage: Storage, what: str, body: bytes | str, exc: BaseException) -> str:
    """Write down a queue message that could not be read (``<what>.poison``, failed); its text, clipped."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    await record_action(
        storage,
        tenant_id=None,
        actor="system",
        action=f"{what}.poison",
        result="failed",
        detail=f"unreadable {what} message: {exc}: {text[:500]}",
    )
    return text


async def list_actions(
    storage: Storage,
    tenant_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Actions newest first; one customer's (``tenant_id``) or everyone's, partner-level ones included."""
    await storage.ensure()
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if tenant_id:
        clauses.append("PartitionKey eq @pk")
        params["pk"] = tenant_id.lower()
    if since is not None:
        clauses.append("RowKey ge @lo")
        params["lo"] = fixed_iso(since)
    if until is not None:
        clauses.append("RowKey lt @hi")
        params["hi"] = fixed_iso(until + timedelta(microseconds=1))
    query = " and ".join(clauses) or None
    rows = [e async for e in query_all(storage.table("Actions"), query, params or None)]
    rows.sort(key=lambda e: (str(e["RowKey"]), str(e["PartitionKey"])), reverse=True)
    return [action_json(e) for e in rows[: max(0, limit)]]


async def verify_trail(storage: Storage) -> dict[str, list[dict[str, Any]]]:
    """The ``Actions`` table against its immutable copy: rows missing from the table (deleted), rows
    that differ from what was first written (altered), and rows the copy lacks (its write failed).
    Concurrent copies of one idempotent event (``ActionId``) count once, as the table keeps one."""
    fields = (
        "PartitionKey",
        "RowKey",
        "ActionId",
        "At",
        "Actor",
        "Action",
        "Result",
        "Reason",
        "Detail",
        "RemovalId",
        "RelationshipType",
        "RelationshipId",
    )
    table = {
        (str(e["PartitionKey"]), str(e["RowKey"])): {k: e.get(k) for k in fields}
        async for e in query_all(storage.table("Actions"))
    }
    copy: dict[tuple[str, str], dict[str, Any]] = {}
    for record in await storage.audit_records():
        copy.setdefault(
            (str(record["PartitionKey"]), str(record["RowKey"])), {k: record.get(k) for k in fields}
        )
    kept = {(k[0], str(v.get("ActionId"))) for k, v in table.items()}
    missing = [v for k, v in copy.items() if k not in table and (k[0], str(v.get("ActionId"))) not in kept]
    altered = [{"stored": table[k], "written": v} for k, v in copy.items() if k in table and table[k] != v]
    uncopied = [v for k, v in table.items() if k not in copy]
    return {"deleted": missing, "altered": altered, "uncopied": uncopied}
