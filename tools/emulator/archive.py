"""Entra's diagnostic setting, played by the emulator: the partner tenant's sign-in log archived to a
storage account (Azurite in tests), in Microsoft's layout (see ``shared/signins/archive.py`` for the
documents): one container per category, ``insights-logs-signinlogs`` and
``insights-logs-noninteractiveusersigninlogs``; one append blob per hour,
``tenantId={tenant}/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json``; one record per line, ``properties`` being
the signIn resource as Graph (beta) serves it.

``POST /_emulator/archive`` with ``{"connection": "<storage connection string>", "from": ISO,
"to": ISO}`` writes every sign-in of the log created in [from, to) -- whatever Graph's retention --
and, options:

* ``ownSignInsPerHour`` (default 1): the partner's own staff signing in to the partner tenant, per
  hour and container, as a busy tenant's log has them (never a qualifying sign-in); 0 leaves an hour
  without sign-ins without a blob, as Azure does;
* ``deliveryMinutes`` (default 10): a record is written to the blob of the hour it *arrives* in, up to
  this many minutes after its ``createdDateTime`` (a stable spread per sign-in), so records created
  late in an hour land in the next hour's blob;
* ``skip``: ``[{"from": ISO, "to": ISO, "containers": [...]}]``, hours whose blobs are not written
  (every container unless named): an export that was off;
* ``format``: ``lines`` (default) or ``records`` (the single ``{"records": [...]}`` object of blobs
  written before November 2018);
* ``tenantCase``: ``lower`` (default) or ``upper``, how the blob names spell the tenant id.

Answers ``{"blobs", "records", "signIns"}``. Writing the same range again replaces its blobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import bad_request
from .filters import format_timestamp
from .signin_log import INTERACTIVE, NON_INTERACTIVE
from .values import parse_time, stable_guid

if TYPE_CHECKING:
    from .estate import SimEstate

CONTAINERS = {
    INTERACTIVE: ("insights-logs-signinlogs", "SignInLogs"),
    NON_INTERACTIVE: ("insights-logs-noninteractiveusersigninlogs", "NonInteractiveUserSignInLogs"),
}
HOUR = timedelta(hours=1)
APPEND_BLOCK = 4 * 1024 * 1024 - 1024  # an append block is at most 4 MiB


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _record(partner: str, category: str, wire: dict[str, Any]) -> dict[str, Any]:
    """An Azure Monitor record of Entra's sign-in categories around the signIn resource."""
    status = wire.get("status") or {}
    return {
        "time": wire["createdDateTime"],
        "resourceId": f"/tenants/{partner}/providers/Microsoft.aadiam",
        "operationName": "Sign-in activity",
        "operationVersion": "1.0",
        "category": category,
        "tenantId": partner,
        "resultType": str(status.get("errorCode", 0)),
        "resultSignature": "None",
        "resultDescription": status.get("failureReason") or "",
        "durationMs": 0,
        "callerIpAddress": wire.get("ipAddress", ""),
        "correlationId": wire.get("correlationId", ""),
        "identity": wire.get("userDisplayName", ""),
        "Level": 4,
        "location": (wire.get("location") or {}).get("countryOrRegion", ""),
        "properties": wire,
    }


def _own_sign_in(e: SimEstate, hour: datetime, kind: str, n: int) -> dict[str, Any]:
    """A partner user signing in to the partner tenant itself (not delegated access)."""
    agent = e.agents[n % len(e.agents)] if e.agents else None
    user_id = agent["id"] if agent else stable_guid("own-user", e.partner_tenant_id)
    upn = agent["userPrincipalName"] if agent else f"staff@{e.partner_tenant_id}"
    created = hour + timedelta(minutes=7 + (n * 13) % 40)
    return {
        "id": stable_guid("own-signin", e.partner_tenant_id, hour.isoformat(), kind, str(n)),
        "createdDateTime": format_timestamp(created),
        "userDisplayName": agent["displayName"] if agent else "Partner staff",
        "userPrincipalName": upn,
        "userId": user_id,
        "appDisplayName": "Microsoft Teams",
        "ipAddress": "203.0.113.10",
        "isInteractive": kind == INTERACTIVE,
        "homeTenantId": e.partner_tenant_id,
        "resourceTenantId": e.partner_tenant_id,
        "crossTenantAccessType": "none",
        "signInEventTypes": [kind],
        "status": {"errorCode": 0, "failureReason": None, "additionalDetails": None},
    }


def archive_blobs(e: SimEstate, body: dict[str, Any]) -> tuple[dict[tuple[str, str], bytes], int]:
    """The blobs (container, name) -> content the diagnostic setting writes for ``body``."""
    start = _hour(parse_time(body.get("from"), "from"))
    end = parse_time(body.get("to"), "to")
    if end <= start:
        raise bad_request("'to' must be after 'from'.")
    own = body.get("ownSignInsPerHour", 1)
    delivery = body.get("deliveryMinutes", 10)
    if not isinstance(own, int) or not 0 <= own <= 100:
        raise bad_request("'ownSignInsPerHour' must be a whole number from 0 to 100.")
    if not isinstance(delivery, int) or not 0 <= delivery <= 50:
        raise bad_request("'deliveryMinutes' must be a whole number from 0 to 50.")
    fmt = body.get("format", "lines")
    if fmt not in ("lines", "records"):
        raise bad_request("'format' must be 'lines' or 'records'.")
    skips = []
    for item in body.get("skip") or []:
        if not isinstance(item, dict):
            raise bad_request("'skip' items are objects with from, to and optional containers.")
        names = item.get("containers") or [c for c, _ in CONTAINERS.values()]
        skips.append(
            (parse_time(item.get("from"), "skip.from"), parse_time(item.get("to"), "skip.to"), set(names))
        )
    if end > e.now:
        raise bad_request(
            "'to' is after the emulator's clock: the diagnostic setting cannot archive the future."
        )
    partner = e.partner_tenant_id.lower()
    spelled = partner.upper() if body.get("tenantCase") == "upper" else partner

    by_blob: dict[tuple[str, datetime], list[dict[str, Any]]] = defaultdict(list)
    lower, upper = format_timestamp(start), format_timestamp(end)
    count = 0
    for row in e.signins.rows:
        if row.event_type not in CONTAINERS or not lower <= row.created < upper:
            continue
        wire = e.signin_wire(row, beta=True)
        created = parse_time(row.created)
        delay = timedelta(seconds=zlib.crc32(row.id.encode()) % (delivery * 60 + 1))
        if created + delay > e.now:
            continue  # not delivered yet: a later write (after the clock moves) has it
        container, category = CONTAINERS[row.event_type]
        by_blob[(container, _hour(created + delay))].append(_record(partner, category, wire))
        count += 1
    hour = start
    while hour < end:
        for kind, (container, category) in CONTAINERS.items():
            for n in range(own):
                by_blob[(container, hour)].append(_record(partner, category, _own_sign_in(e, hour, kind, n)))
        hour += HOUR

    blobs: dict[tuple[str, str], bytes] = {}
    for (container, blob_hour), records in by_blob.items():
        if any(a <= blob_hour < b and container in names for a, b, names in skips):
            continue
        records.sort(key=lambda r: str(r["time"]))
        name = f"tenantId={spelled}/y={blob_hour:%Y}/m={blob_hour:%m}/d={blob_hour:%d}/h={blob_hour:%H}/m=00/PT1H.json"
        if fmt == "records":
            data = json.dumps({"records": records}).encode()
        else:
            data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
        blobs[(container, name)] = data
    return blobs, count


async def write_archive(e: SimEstate, body: dict[str, Any]) -> dict[str, Any]:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob.aio import BlobServiceClient

    connection = body.get("connection")
    if not isinstance(connection, str) or "=" not in connection:
        raise bad_request("'connection' must be a storage connection string.")
    blobs, count = archive_blobs(e, body)
    records = 0
    async with BlobServiceClient.from_connection_string(connection) as service:
        for container in {c for c, _ in blobs}:
            with contextlib.suppress(ResourceExistsError):
                await service.create_container(container)
        limit = asyncio.Semaphore(16)

        async def put(container: str, name: str, data: bytes) -> None:
            async with limit:
                blob = service.get_blob_client(container, name)
                await blob.create_append_blob()  # replaces an earlier write of the same hour
                for offset in range(0, len(data), APPEND_BLOCK):
                    await blob.append_block(data[offset : offset + APPEND_BLOCK])

        await asyncio.gather(*(put(c, n, d) for (c, n), d in sorted(blobs.items())))
        if body.get("format", "lines") == "lines":
            records = sum(d.count(b"\n") for d in blobs.values())
    return {"blobs": len(blobs), "records": records, "signIns": count}
