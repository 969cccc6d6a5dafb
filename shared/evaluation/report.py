"""The audit: sync, ingest, compute the report of CONTRACTS section 5, store it as an evaluation.

The same service backs ``python -m shared.cli audit``, ``GET /api/audit`` and the evaluation timer.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.data.tables import UpdateMode

from shared.domain.rules import Policy, customer_row, sort_rows, summarize
from shared.platform.sharding import SHARDS, shard_of_tenant
from shared.platform.state import Coverage, StateStore
from shared.platform.storage import Storage, partition, upsert_all
from shared.platform.timeutil import iso, iso_optional, parse_iso, utcnow
from shared.relationships.store import Estate, RelationshipStore
from shared.signins.ingestion import ActivityReader

SCHEMA_VERSION = 1
MAX_TICKS = 10**13


def policy_from_settings(settings: Any) -> Policy:
    return Policy(mode=settings.policy_mode, recommend_after_days=settings.recommend_after_days,
                  remove_after_days=settings.remove_after_days, excluded=frozenset(settings.excluded_tenants))


async def compute_report(storage: Storage, *, as_of: datetime, partner_tenant_id: str, policy: Policy,
                         estate: Estate | None = None, shard: str | None = None,
                         coverage: Coverage | None = None) -> dict[str, Any]:
    """The report from what the store holds (no calls to Microsoft).

    ``shard`` restricts it to the customers of one shard (``shared.platform.sharding``), reading only that
    shard's partitions; ``coverage`` fixes the coverage the rows are computed against (the sharded
    evaluation hands every shard the same one).
    """
    estate = estate or await RelationshipStore(storage).load(shard=shard)
    coverage = coverage or await StateStore(storage).load_coverage()
    span = coverage.covering(as_of)
    coverage_from = span[0] if span else None
    monitored = estate.monitored()
    activity = await ActivityReader(storage).read(as_of, monitored, coverage_from, shard=shard)
    rows = []
    for tenant in monitored:
        customer = estate.customers.get(tenant)
        rels = estate.relationships.get(tenant, [])
        name = (customer.display_name if customer else "") or next((r.customer_name for r in rels if r.customer_name), "")
        a = activity[tenant]
        row = customer_row(tenant_id=tenant, display_name=name, relationships=rels, as_of=as_of,
                           last_sign_in=a.last_sign_in_at, agents_last_day=a.agents_last_day,
                           sign_ins_last_day=a.sign_ins_last_day, coverage_from=coverage_from, policy=policy,
                           non_interactive_last_day=a.non_interactive_last_day,
                           last_sign_in_kind=a.last_sign_in_kind)
        if row is not None:
            rows.append(row)
    rows = sort_rows(rows)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "asOf": iso(as_of),
        "partnerTenantId": partner_tenant_id,
        "coverage": {"from": iso_optional(coverage_from), "to": iso(span[1]) if span else None},
        "policy": policy.to_json(),
        "summary": summarize(rows, as_of),
        "customers": rows,
    }


def new_evaluation_id(as_of: datetime) -> str:
    """Newest first in the table's order: by ``asOf`` (inverted milliseconds), then by the host's own
    clock, then unique. ``asOf`` is Microsoft's time, which the emulator holds still between moves, so
    two evaluations of one moment are ordered by when this host made them."""
    return (f"{MAX_TICKS - int(as_of.timestamp() * 1000):013d}-"
            f"{MAX_TICKS - int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}")


@dataclass
class StoredEvaluation:
    id: str
    created_at: datetime
    report: dict[str, Any]


class EvaluationStore:
    """Every computed report is kept: the latest serves the API, the series serves the trends."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._cache: StoredEvaluation | None = None

    async def save(self, report: dict[str, Any], created_at: datetime | None = None) -> str:
        created_at = created_at or utcnow()
        evaluation_id = new_evaluation_id(parse_iso(report["asOf"]))
        await self.save_rows(evaluation_id, report["customers"])
        head = {k: v for k, v in report.items() if k != "customers"}
        await self.save_head(evaluation_id, head, len(report["customers"]), created_at)
        return evaluation_id

    async def save_rows(self, evaluation_id: str, rows: list[dict[str, Any]]) -> int:
        """The report's rows, one partition per shard (``<id>-<shard>``): spread under the per-partition
        throughput limit, and written (by the sharded evaluation) or read in parallel."""
        entities = [{"PartitionKey": f"{evaluation_id}-{shard_of_tenant(r['tenantId'])}", "RowKey": r["tenantId"],
                     "Row": json.dumps(r, ensure_ascii=False)} for r in rows]
        return await upsert_all(self.storage.table("EvaluationRows"), entities, UpdateMode.REPLACE)

    async def save_head(self, evaluation_id: str, head: dict[str, Any], rows: int, created_at: datetime) -> None:
        # Written last: an evaluation is visible only once all its rows are stored.
        await self.storage.table("Evaluations").upsert_entity({
            "PartitionKey": "evaluation", "RowKey": evaluation_id, "CreatedAt": iso(created_at),
            "AsOf": head["asOf"], "Head": json.dumps(head, ensure_ascii=False), "Rows": rows, "RowShards": len(SHARDS),
        }, mode=UpdateMode.REPLACE)

    async def head_entities(self, limit: int) -> list[dict[str, Any]]:
        table = self.storage.table("Evaluations")
        out = []
        async for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": "evaluation"},
                                            results_per_page=min(limit, 1000)):
            out.append(dict(e))
            if len(out) >= limit:
                break
        return out

    async def heads(self, limit: int = 400) -> list[dict[str, Any]]:
        return [{"id": e["RowKey"], "createdAt": e["CreatedAt"], **json.loads(e["Head"])}
                for e in await self.head_entities(limit)]

    async def rows(self, evaluation_id: str, sharded: bool = True) -> list[dict[str, Any]]:
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
        report = {k: v for k, v in head.items() if k not in ("id", "createdAt")}
        report["customers"] = rows
        self._cache = StoredEvaluation(head["id"], parse_iso(head["createdAt"]), report)
        return self._cache


# --- output formats ------------------------------------------------------------------------------

CSV_COLUMNS = ["tenantId", "displayName", "relationshipTypes", "roles", "establishedAt", "daysActive",
               "lastSignInAt", "daysInactive", "inactiveForAtLeastDays", "bucket", "establishedLast7Days",
               "agentsSignedInLastDay", "signInsLastDay", "recommendation", "excluded"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> str:
    """A cell a spreadsheet will not run as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def report_csv(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report["customers"]:
        types = sorted({r["type"] for r in row["relationships"]})
        roles = sorted({role for r in row["relationships"] for role in r["roles"]})
        values = {**row, "relationshipTypes": "+".join(types), "roles": " ".join(roles)}
        writer.writerow([csv_safe(values.get(c)) for c in CSV_COLUMNS])
    return buffer.getvalue()


def _pct(n: int, total: int) -> str:
    return f"{(100.0 * n / total):.1f}%" if total else "0.0%"


def report_table(report: dict[str, Any], limit: int | None = None) -> str:
    s = report["summary"]
    total = s["customersUnderMonitoring"]
    cov = report["coverage"]
    lines = [
        f"Delegated admin relationships as of {report['asOf']} (partner {report['partnerTenantId']})",
        f"Sign-in data captured from {cov['from'] or '-'} to {cov['to'] or '-'}; policy {report['policy']['mode']}"
        f" (recommend after {report['policy']['recommendAfterDays']} days, remove after "
        f"{report['policy']['removeAfterDays']} days)",
        "",
        f"Customers with delegated admin access: {total}",
        f"  Inactive more than 90 days   {s['inactiveOver90Days']:>6}  {_pct(s['inactiveOver90Days'], total):>6}",
        f"  Inactive 61-90 days          {s['inactive61To90Days']:>6}  {_pct(s['inactive61To90Days'], total):>6}",
        f"  Inactive 30-60 days          {s['inactive30To60Days']:>6}  {_pct(s['inactive30To60Days'], total):>6}",
        f"  Established in last 7 days   {s['establishedLast7Days']:>6}  {_pct(s['establishedLast7Days'], total):>6}",
        f"  Recommended for removal      {s['recommendedForRemoval']:>6}  {_pct(s['recommendedForRemoval'], total):>6}",
        "",
    ]
    header = ["Customer", "Type", "Agents 1d", "Sign-ins 1d", "Days active", "Days inactive", "At least",
              "Bucket", "Last sign-in", "Recommendation"]
    body = []
    rows = report["customers"] if limit is None else report["customers"][:limit]
    for r in rows:
        name = "".join(ch if ch.isprintable() else "?" for ch in r["displayName"])[:32]
        types = "+".join(sorted({x["type"] for x in r["relationships"]}))
        body.append([name, types, str(r["agentsSignedInLastDay"]), str(r["signInsLastDay"]), str(r["daysActive"]),
                     "" if r["daysInactive"] is None else str(r["daysInactive"]), str(r["inactiveForAtLeastDays"]),
                     r["bucket"], (r["lastSignInAt"] or "")[:10],
                     r["recommendation"] + (" (excluded)" if r["excluded"] else "")])
    widths = [max(display_width(x) for x in col) for col in zip(header, *body, strict=False)] if body else \
        [display_width(h) for h in header]
    for cells in [header, *body]:
        lines.append("  ".join(pad(c, w) for c, w in zip(cells, widths, strict=True)).rstrip())
    if limit is not None and len(report["customers"]) > limit:
        lines.append(f"... and {len(report['customers']) - limit} more (use --format csv or json for all)")
    return "\n".join(lines) + "\n"


def display_width(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, width: int) -> str:
    """Left-align in a terminal column, counting East Asian wide characters as two."""
    return text + " " * max(0, width - display_width(text))
