"""The benchmark's floors: the least work that moves the same data, measured in the same run.

Each figure of ``tools.bench`` is reported next to a floor and as a ratio product / floor:

* ingestion floor -- the same sign-ins (same slices, same ``$filter``/``$select``/``$top``, the same
  number of slices in flight; like the product, each slice is read once per kind of user sign-in,
  interactive then non-interactive, because the log lists a kind only when the filter names it, and
  only sign-ins whose ``crossTenantAccessType`` has the ``serviceProvider`` flag are kept) paged out
  of the emulator with plain httpx (no SDK, no middleware)
  and written *raw*, one entity per sign-in, to Azurite in 100-entity transactions through the same
  ``$batch`` encoder the product uses (``shared.platform.table_batch``). PK = the sign-in's hour: a page of
  1,000 sign-ins spans an hour or two, so transactions fill, and partitions stay small -- Azurite
  finds an entity by scanning its partition, so day-sized partitions of raw sign-ins would make the
  floor quadratic (30 minutes for a million) for a reason Azure does not have; for the same reason
  the hours are spread over :data:`RAW_TABLES` tables;
* evaluation floor -- every entity the evaluation reads (customers, relationships, last sign-ins,
  the two day partitions of the last-24-hours window) listed straight from the tables, joined by
  tenant in a dict and written back raw as one entity per customer, no rules applied;
* API floor -- a bare ASGI callable under the same uvicorn that answers a pre-built body of the
  same size as the product's answer (HTTP, transfer and client costs only).

Run as ``python -m tools.bench_floor ingest|evaluate ...`` (one JSON line on stdout, with the
process's own peak RSS) or ``python -m tools.bench_floor serve --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.microsoft.graph import SIGNIN_EVENT_TYPES, SIGNIN_PAGE_SIZE, SIGNIN_SELECT
from shared.platform.identity import DEVELOPMENT_TOKEN
from shared.platform.storage import BATCH_LIMIT
from shared.platform.table_batch import submit_upserts
from shared.platform.timeutil import day_key, day_start, graph_literal, parse_iso
from shared.signins.ingestion import slices

WRITES_IN_FLIGHT = 8  # as shared.platform.storage.upsert_all
# Azurite (LokiJS) keeps a table's entities in sorted index arrays, so an insert costs time in
# proportion to the table's size: a million raw rows in one table would make the floor quadratic, a
# cost Azure does not have. The raw rows go to 16 tables by hour instead (still 100-entity batches).
RAW_TABLES = 16


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sign_in_url(root: str, start: Any, end: Any, kind: str) -> str:
    """The product's query (``shared.microsoft.graph.GraphClient.sign_in_url``) for one kind of user sign-in."""
    flt = (
        f"createdDateTime ge {graph_literal(start)} and createdDateTime le {graph_literal(end)}"
        " and crossTenantAccessType ne 'none' and status/errorCode eq 0"
        f" and signInEventTypes/any(t: t eq '{SIGNIN_EVENT_TYPES[kind]}')"
    )
    query = urlencode(
        {"$filter": flt, "$select": SIGNIN_SELECT, "$top": str(SIGNIN_PAGE_SIZE)},
        quote_via=quote,
        safe="$,/'",
    )
    return f"{root.rstrip('/')}/beta/auditLogs/signIns?{query}"


async def _table(conn: str, name: str) -> TableClient:
    async with TableServiceClient.from_connection_string(conn) as service:
        with contextlib.suppress(ResourceExistsError):
            await service.create_table(name)
    return TableClient.from_connection_string(conn, name)


async def _tables(service: TableServiceClient, names: list[str]) -> list[TableClient]:
    """Table clients sharing the service client's connection pool (as shared.platform.storage.Storage does)."""
    for name in names:
        with contextlib.suppress(ResourceExistsError):
            await service.create_table(name)
    return [service.get_table_client(name) for name in names]


async def floor_ingest(
    conn: str, emulator: str, prefix: str, as_of: str, backfill_days: int, slice_hours: int, concurrency: int
) -> dict[str, Any]:
    end = parse_iso(as_of)
    pieces = slices(end - timedelta(days=backfill_days), end, slice_hours)
    service = TableServiceClient.from_connection_string(conn)
    tables = await _tables(service, [f"{prefix}RawSignIns{n}" for n in range(RAW_TABLES)])
    writes = asyncio.Semaphore(WRITES_IN_FLIGHT)
    totals = {"signIns": 0, "pages": 0, "transactions": 0}
    by_kind = dict.fromkeys(SIGNIN_EVENT_TYPES, 0)

    async def write(rows: list[dict[str, Any]]) -> None:
        hour = rows[0]["PartitionKey"]
        async with writes:
            await submit_upserts(
                tables[(int(hour[8:10]) * 24 + int(hour[11:13])) % RAW_TABLES], rows, UpdateMode.REPLACE
            )
        totals["transactions"] += 1

    async def one(client: httpx.AsyncClient, start: Any, stop: Any, gate: asyncio.Semaphore) -> None:
        async with gate:
            for kind in SIGNIN_EVENT_TYPES:
                await read(client, sign_in_url(emulator, start, stop, kind), kind)

    async def read(client: httpx.AsyncClient, first: str, kind: str) -> None:
        url: str | None = first
        while url:
            response = await client.get(url)
            response.raise_for_status()
            page = response.json()
            by_hour: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for s in page.get("value") or []:
                if "serviceprovider" not in str(s.get("crossTenantAccessType") or "").lower().split(","):
                    continue
                created = str(s.get("createdDateTime") or "")
                by_hour[created[:13]].append(
                    {
                        "PartitionKey": created[:13],
                        "RowKey": str(s["id"]),
                        "CreatedDateTime": created,
                        "UserId": s.get("userId"),
                        "HomeTenantId": s.get("homeTenantId"),
                        "ResourceTenantId": s.get("resourceTenantId"),
                        "CrossTenantAccessType": s.get("crossTenantAccessType"),
                        "ErrorCode": int((s.get("status") or {}).get("errorCode", 0)),
                    }
                )
            await asyncio.gather(
                *(
                    write(rows[i : i + BATCH_LIMIT])
                    for rows in by_hour.values()
                    for i in range(0, len(rows), BATCH_LIMIT)
                )
            )
            found = sum(len(rows) for rows in by_hour.values())
            totals["signIns"] += found
            by_kind[kind] += found
            totals["pages"] += 1
            url = page.get("@odata.nextLink")

    started = time.perf_counter()
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {DEVELOPMENT_TOKEN}", "Accept": "application/json"}
    async with httpx.AsyncClient(timeout=300, headers=headers) as client:
        await asyncio.gather(*(one(client, a, b, gate) for a, b in pieces))
    seconds = time.perf_counter() - started
    await service.close()
    return {
        "step": "floor-ingest",
        "seconds": seconds,
        "slices": len(pieces),
        **totals,
        "signInsByKind": by_kind,
        "entitiesWritten": totals["signIns"],
        "maxRssMb": peak_rss_mb(),
    }


async def floor_evaluate(conn: str, prefix: str, as_of: str) -> dict[str, Any]:
    """Read what the evaluation reads, join it by tenant, write one raw entity per customer."""
    end = parse_iso(as_of)
    started = time.perf_counter()
    by_tenant: dict[str, dict[str, Any]] = defaultdict(dict)
    read = 0
    clients = []

    async def scan(name: str, query: str | None = None, parameters: dict[str, Any] | None = None) -> None:
        nonlocal read
        client = TableClient.from_connection_string(conn, f"{prefix}{name}")
        clients.append(client)
        pager = (
            client.list_entities(results_per_page=1000)
            if query is None
            else client.query_entities(query, parameters=parameters, results_per_page=1000)
        )
        async for entity in pager:
            read += 1
            tenant = str(entity.get("TenantId") or entity["RowKey"]).split("|")[0]
            by_tenant[tenant].setdefault(name, []).append(dict(entity))

    today = day_start(end)
    await asyncio.gather(
        scan("Customers"),
        scan("Relationships"),
        scan("LastSignIns"),
        *(
            scan("SignInDays", "PartitionKey eq @pk", {"pk": day_key(day)})
            for day in (today, today - timedelta(days=1))
        ),
    )
    out = await _table(conn, f"{prefix}RawEvaluation")
    clients.append(out)
    rows = [
        {"PartitionKey": "floor", "RowKey": tenant, "Row": json.dumps(parts, default=str)[:30000]}
        for tenant, parts in by_tenant.items()
        if "Customers" in parts
    ]
    gate = asyncio.Semaphore(WRITES_IN_FLIGHT)

    async def write(chunk: list[dict[str, Any]]) -> None:
        async with gate:
            await submit_upserts(out, chunk, UpdateMode.REPLACE)

    await asyncio.gather(*(write(rows[i : i + BATCH_LIMIT]) for i in range(0, len(rows), BATCH_LIMIT)))
    seconds = time.perf_counter() - started
    for client in clients:
        await client.close()
    return {
        "step": "floor-evaluate",
        "seconds": seconds,
        "entitiesRead": read,
        "rowsWritten": len(rows),
        "maxRssMb": peak_rss_mb(),
    }


# --- the API floor: same server, no application ----------------------------------------------------


class StaticBodies:
    """ASGI app: ``GET /bytes/N`` answers N bytes of JSON-shaped content (built once per size)."""

    def __init__(self) -> None:
        self.cache: dict[int, bytes] = {}

    def body(self, size: int) -> bytes:
        cached = self.cache.get(size)
        if cached is None:
            body = b'{"x":"' + b"a" * (size - 8) + b'"}' if size >= 8 else b" " * size
            cached = self.cache[size] = body
        return cached

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope.get("path", "")
        try:
            size = int(path.rsplit("/", 1)[-1]) if path.startswith("/bytes/") else 2
        except ValueError:
            size = 2
        body = self.body(min(size, 50_000_000))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(StaticBodies(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_floor")
    steps = parser.add_subparsers(dest="step", required=True)
    ingest = steps.add_parser("ingest")
    ingest.add_argument("--storage", required=True)
    ingest.add_argument("--emulator", required=True)
    ingest.add_argument("--prefix", required=True)
    ingest.add_argument("--as-of", required=True)
    ingest.add_argument("--backfill-days", type=int, default=30)
    ingest.add_argument("--slice-hours", type=int, default=24)
    ingest.add_argument("--concurrency", type=int, default=4)
    evaluate = steps.add_parser("evaluate")
    evaluate.add_argument("--storage", required=True)
    evaluate.add_argument("--prefix", required=True)
    evaluate.add_argument("--as-of", required=True)
    server = steps.add_parser("serve")
    server.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.step == "serve":
        serve(args.port)
        return 0
    if args.step == "ingest":
        result = asyncio.run(
            floor_ingest(
                args.storage,
                args.emulator,
                args.prefix,
                args.as_of,
                args.backfill_days,
                args.slice_hours,
                args.concurrency,
            )
        )
    else:
        result = asyncio.run(floor_evaluate(args.storage, args.prefix, args.as_of))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
