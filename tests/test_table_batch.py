"""The directly encoded entity group transactions (shared.platform.table_batch) against real Azurite: the same
entities as the SDK's submit_transaction, the same errors, and no transaction over the payload limit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.platform import table_batch
from shared.platform.table_batch import check_batch_response, encode_upserts, submit_upserts
from tools.azurite import RunningAzurite


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _table(azurite: RunningAzurite) -> TableClient:
    name = "tb" + uuid.uuid4().hex[:12]
    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        await service.create_table(name)
    return TableClient.from_connection_string(azurite.connection_string, name)


def _entities(pk: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "PartitionKey": pk,
            "RowKey": f"r|{i:03d}ü'",
            "Text": f"héllo 'x' \"q\"\n東京 {i}",
            "Count": i,
            "Flag": i % 2 == 0,
            "Ratio": i / 7,
            "Blob": bytes(range(256)) * 3,
            "When": datetime(2026, 11, 21, 1, 2, 3, tzinfo=UTC),
            "Empty": None,
        }
        for i in range(n)
    ]


def _plain(entity: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(entity).items() if k not in ("Timestamp",)}


def test_fast_transactions_store_what_the_sdk_stores(azurite: RunningAzurite) -> None:
    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        fast, sdk = await _table(azurite), await _table(azurite)
        async with fast, sdk:
            rows = _entities("p'1|x", 100)
            await submit_upserts(fast, rows, UpdateMode.REPLACE)
            await sdk.submit_transaction([("upsert", e, {"mode": UpdateMode.REPLACE}) for e in rows])
            # Merge keeps the other properties, replace drops them, as in the SDK.
            await submit_upserts(
                fast,
                [
                    {"PartitionKey": "p'1|x", "RowKey": "r|000ü'", "Text": "merged"},
                    {"PartitionKey": "p'1|x", "RowKey": "r|001ü'", "Text": "merged"},
                ],
                UpdateMode.MERGE,
            )
            await sdk.submit_transaction(
                [
                    (
                        "upsert",
                        {"PartitionKey": "p'1|x", "RowKey": r, "Text": "merged"},
                        {"mode": UpdateMode.MERGE},
                    )
                    for r in ("r|000ü'", "r|001ü'")
                ]
            )
            await submit_upserts(
                fast,
                [
                    {"PartitionKey": "p'1|x", "RowKey": "r|002ü'", "Text": "replaced"},
                    {"PartitionKey": "p'1|x", "RowKey": "r|003ü'"},
                ],
                UpdateMode.REPLACE,
            )
            await sdk.submit_transaction(
                [
                    (
                        "upsert",
                        {"PartitionKey": "p'1|x", "RowKey": "r|002ü'", "Text": "replaced"},
                        {"mode": UpdateMode.REPLACE},
                    ),
                    ("upsert", {"PartitionKey": "p'1|x", "RowKey": "r|003ü'"}, {"mode": UpdateMode.REPLACE}),
                ]
            )
            return (
                [_plain(e) async for e in fast.list_entities()],
                [_plain(e) async for e in sdk.list_entities()],
            )

    fast, sdk = run(go())
    assert len(fast) == 100 and fast == sdk
    assert fast[0]["Text"] == "merged" and fast[0]["Blob"] == bytes(range(256)) * 3
    assert fast[2] == {"PartitionKey": "p'1|x", "RowKey": "r|002ü'", "Text": "replaced"}


def test_a_failed_operation_fails_the_transaction(azurite: RunningAzurite) -> None:
    async def go() -> list[dict[str, Any]]:
        table = await _table(azurite)
        async with table:
            rows = [
                {"PartitionKey": "p", "RowKey": "ok", "V": "x"},
                {"PartitionKey": "p", "RowKey": "big", "V": "y" * 70_000},
            ]  # over 64 KiB: rejected
            with pytest.raises(TableTransactionError):
                await submit_upserts(table, rows)
            return [dict(e) async for e in table.list_entities()]

    assert run(go()) == []  # nothing of it was stored


def test_arguments_are_checked_like_the_sdk(azurite: RunningAzurite) -> None:
    async def go() -> None:
        table = await _table(azurite)
        async with table:
            with pytest.raises(ValueError, match="one PartitionKey"):
                await submit_upserts(
                    table, [{"PartitionKey": "a", "RowKey": "1"}, {"PartitionKey": "b", "RowKey": "2"}]
                )
            with pytest.raises(ValueError, match="at most 100"):
                await submit_upserts(table, _entities("p", 101))
            with pytest.raises(TypeError):
                await submit_upserts(
                    table, [{"PartitionKey": "p", "RowKey": 1}, {"PartitionKey": "p", "RowKey": "2"}]
                )
            await submit_upserts(table, [])  # nothing to do

    run(go())


def test_big_entities_go_as_several_transactions_under_the_payload_limit(
    azurite: RunningAzurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real_frame = table_batch._frame

    def frame(operations: Any, token: str) -> tuple[bytes, str]:
        body, batch = real_frame(operations, token)
        sizes.append(len(body))
        return body, batch

    monkeypatch.setattr(table_batch, "_frame", frame)

    async def go() -> int:
        table = await _table(azurite)
        async with table:
            rows = [
                {
                    "PartitionKey": "p",
                    "RowKey": f"{i:03d}",
                    **{f"B{k}": bytes([i]) * 60_000 for k in range(8)},
                }
                for i in range(12)
            ]  # 12 x 480 KB binary: 7.7 MB as base64 JSON
            await submit_upserts(table, rows)
            return len([e async for e in table.list_entities(select=["RowKey"])])

    assert run(go()) == 12
    assert len(sizes) >= 2 and max(sizes) <= 4 * 1024 * 1024


def test_response_parsing() -> None:
    ok = (
        b"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_1\r\n\r\n"
        b"--changesetresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        b"--changesetresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        b"--changesetresponse_1--\r\n--batchresponse_1--\r\n"
    )
    assert check_batch_response(202, ok) == 2
    failed = ok.replace(
        b"HTTP/1.1 204 No Content\r\n\r\n--changesetresponse_1--",
        b'HTTP/1.1 400 Bad Request\r\n\r\n{"odata.error":{"code":"X","message":{"value":"1:bad"}}}'
        b"\r\n--changesetresponse_1--",
    )
    with pytest.raises(TableTransactionError, match="1:bad"):
        check_batch_response(202, failed)
    with pytest.raises(Exception, match="413"):
        check_batch_response(413, b"too large")
    body, boundary = encode_upserts(
        "http://h/acct/T", [{"PartitionKey": "a'b", "RowKey": "c/d"}], UpdateMode.MERGE, boundary="x"
    )
    assert boundary == "batch_x"
    assert b"MERGE http://h/acct/T(PartitionKey='a%27%27b',RowKey='c%2Fd') HTTP/1.1" in body


def test_queries_return_what_the_sdk_returns(azurite: RunningAzurite) -> None:
    """shared.platform.storage.query_all (shared.platform.table_query) against the SDK's own pager: same entities, paged."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables import EdmType, EntityProperty

    from shared.platform.storage import query_all

    async def go() -> None:
        table = await _table(azurite)
        async with table:
            rows = _entities("p'1", 100) + _entities("q", 100)
            rows += [{"PartitionKey": "r", "RowKey": f"{i:05d}", "N": i} for i in range(2300)]  # > 2 pages
            rows.append(
                {
                    "PartitionKey": "s",
                    "RowKey": "big",
                    "Big": EntityProperty(2**40, EdmType.INT64),
                    "Id": uuid.UUID(int=7),
                    "Neg": -5,
                    "F": 1e300,
                }
            )
            for pk in ("p'1", "q", "r", "s"):
                chunk = [r for r in rows if r["PartitionKey"] == pk]
                for i in range(0, len(chunk), 100):
                    await submit_upserts(table, chunk[i : i + 100])
            cases: list[tuple[str | None, dict[str, Any] | None, list[str] | None]] = [
                (None, None, None),
                ("PartitionKey eq @pk", {"pk": "p'1"}, None),
                ("PartitionKey eq @pk and RowKey ge @lo", {"pk": "r", "lo": "01000"}, ["RowKey", "N"]),
                ("PartitionKey eq 's'", None, None),
                ("PartitionKey eq @pk", {"pk": "none"}, None),
            ]
            for query, params, select in cases:
                fast = [e async for e in query_all(table, query, params, select)]
                pager = (
                    table.list_entities(select=select)
                    if query is None
                    else table.query_entities(query, parameters=params, select=select)
                )
                sdk = [dict(e) async for e in pager]
                assert fast == sdk, query
                assert [type(v) for e in fast for v in e.values()] == [
                    type(v) for e in sdk for v in e.values()
                ]
            everything = [e async for e in query_all(table)]
            assert len(everything) == len(rows)
            big = next(e for e in everything if e["RowKey"] == "big")
            assert big["Big"].value == 2**40 and big["Id"] == uuid.UUID(int=7)
        missing = TableClient.from_connection_string(
            azurite.connection_string, "nosuchtable" + uuid.uuid4().hex[:8]
        )
        async with missing:
            with pytest.raises(ResourceNotFoundError):
                [e async for e in query_all(missing)]

    run(go())
