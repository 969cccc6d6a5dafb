"""The ``Evaluations`` table: stored reports (head and rows), newest first, and what the portal reads as
the latest."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from azure.data.tables import UpdateMode

from shared.domain.report import Report, ReportHead, ReportRow
from shared.domain.rules import sort_rows
from shared.platform.sharding import SHARDS, shard_of_tenant
from shared.platform.storage import Storage, partition, upsert_all
from shared.platform.timeutil import iso, parse_iso, utcnow

MAX_TICKS = 10**13


def new_evaluation_id(as_of: datetime) -> str:
    """Newest first in the table's order: by ``asOf`` (inverted milliseconds), then by the host's own
    clock, then unique. ``asOf`` is Microsoft's time, which the emulator holds still between moves, so
    two evaluations of one moment are ordered by when this host made them."""
    return (
        f"{MAX_TICKS - int(as_of.timestamp() * 1000):013d}-"
        f"{MAX_TICKS - int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"
    )


@dataclass
class StoredEvaluation:
    id: str
    created_at: datetime
    report: Report


class EvaluationStore:
    """Every computed report is kept: the latest serves the API, the series serves the trends."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._cache: StoredEvaluation | None = None

    async def save(self, report: Report, created_at: datetime | None = None) -> str:
        created_at = created_at or utcnow()
        evaluation_id = new_evaluation_id(parse_iso(report["asOf"]))
        await self.save_rows(evaluation_id, report["customers"])
        head = cast(ReportHead, {k: v for k, v in report.items() if k != "customers"})
        await self.save_head(evaluation_id, head, len(report["customers"]), created_at)
        return evaluation_id

    async def save_rows(self, evaluation_id: str, rows: list[ReportRow]) -> int:
        """The report's rows, one partition per shard (``<id>-<shard>``): spread under the per-partition
        throughput limit, and written (by the sharded evaluation) or read in parallel."""
        entities = [
            {
                "PartitionKey": f"{evaluation_id}-{shard_of_tenant(r['tenantId'])}",
                "RowKey": r["tenantId"],
                "Row": json.dumps(r, ensure_ascii=False),
            }
            for r in rows
        ]
        return await upsert_all(self.storage.table("EvaluationRows"), entities, UpdateMode.REPLACE)

    async def save_head(self, evaluation_id: str, head: ReportHead, rows: int, created_at: datetime) -> None:
        # Written last: an evaluation is visible only once all its rows are stored.
        await self.storage.table("Evaluations").upsert_entity(
            {
                "PartitionKey": "evaluation",
                "RowKey": evaluation_id,
                "CreatedAt": iso(created_at),
                "AsOf": head["asOf"],
                "Head": json.dumps(head, ensure_ascii=False),
                "Rows": rows,
                "RowShards": len(SHARDS),
            },
            mode=UpdateMode.REPLACE,
        )

    async def head_entities(self, limit: int) -> list[dict[str, Any]]:
        table = self.storage.table("Evaluations")
        out = []
        async for e in table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": "evaluation"}, results_per_page=min(limit, 1000)
        ):
            out.append(dict(e))
            if len(out) >= limit:
                break
        return out

    async def heads(self, limit: int = 400) -> list[dict[str, Any]]:
        return [
            {"id": e["RowKey"], "createdAt": e["CreatedAt"], **json.loads(e["Head"])}
            for e in await self.head_entities(limit)
        ]

    async def rows(self, evaluation_id: str, sharded: bool = True) -> list[ReportRow]:
        """An evaluation's rows (unsorted); evaluations stored before rows were sharded: one partition."""
        table = self.storage.table("EvaluationRows")
        if not sharded:
            return [json.loads(e["Row"]) for e in await partition(table, evaluation_id)]
        parts = await asyncio.gather(*(partition(table, f"{evaluation_id}-{shard}") for shard in SHARDS))
        return [json.loads(e["Row"]) for entities in parts for e in entities]

    async def latest(self) -> StoredEvaluation | None:
        entities = await self.head_entities(limit=1)
        if not entities:
            return None
        entity = entities[0]
        head = {"id": entity["RowKey"], "createdAt": entity["CreatedAt"], **json.loads(entity["Head"])}
        if self._cache is not None and self._cache.id == head["id"]:
            return self._cache
        rows = sort_rows(await self.rows(head["id"], sharded=bool(entity.get("RowShards"))))
        # Stored by save()/save_head() from a Report: read back as one (it is only ever written so).
        report = cast(
            Report, {**{k: v for k, v in head.items() if k not in ("id", "createdAt")}, "customers": rows}
        )
        self._cache = StoredEvaluation(head["id"], parse_iso(head["createdAt"]), report)
        return self._cache
