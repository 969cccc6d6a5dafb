"""Azure Table and Queue Storage clients (async), created once per process.

Identity-based in Azure (``AzureWebJobsStorage__tableServiceUri`` / ``__queueServiceUri`` with the
managed identity). A connection string with an account key is accepted only for Azurite on loopback:
shared keys are disabled on the real account.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol
from urllib.parse import urlparse

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables._serialize import _parameter_filter_substitution
from azure.data.tables.aio import TableClient, TableServiceClient
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from shared.platform.settings import Settings, SettingsError
from shared.platform.table_batch import submit_upserts
from shared.platform.table_query import query_entities

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BATCH_LIMIT = 100
AUDIT_CONTAINER = "audit-trail"

# Every table the product uses (names before STORAGE_PREFIX).
TABLES = (
    "Customers",  # PK shard, RK tenantId: name, domain, culture, contacts
    "Relationships",  # PK shard, RK tenantId|DAP or tenantId|GDAP-<id>: the latest synced state
    "RelationshipChanges",  # PK shard, RK tenantId|time|key: every status change seen by a sync
    "SignInDays",  # PK yyyy-mm-dd, RK tenantId: that day's qualifying sign-ins, packed
    "LastSignIns",  # PK shard, RK tenantId: latest qualifying sign-in ever ingested
    "Agents",  # PK "agents", RK userId: the partner agents' UPN and display name from the log
    "IngestionState",  # PK kind, RK name: checkpoints, coverage intervals, run records
    "PartnerState",  # PK kind, RK name: the partner's tenant id and name (cached), its sender mailbox's health
    "AuditRuns",  # PK "auditRun", RK run id or "latest": on-demand audit runs (POST /api/audit/run)
    "Evaluations",  # PK "evaluation", RK inverted time: one row per stored evaluation (its head)
    "EvaluationRuns",  # PK "run" / "run-<evaluation id>", RK id / shard / "~final": sharded runs and their progress
    "EvaluationRows",  # PK <evaluation id>-<shard>, RK tenantId: the report's customer rows
    "Actions",  # PK tenantId, RK time|id: append-only audit trail of what was done
    "Removals",  # PK shard, RK removal id: removal requests and their state
    "Warnings",  # PK tenantId, RK stretch: advance warnings already sent
    "Digests",  # PK "listed" / "gdapExpiry", RK removal id / UTC day: what the digests already told
    "Notifications",  # PK shard, RK sha256(idempotency key): mail state (sending -> sent)
    "GdapRequests",  # PK shard, RK tenantId|relationshipId: GDAP requests this product made (template)
    "GdapOperations",  # PK shard, RK tenantId|operationId: long-running GDAP changes (Global Admin removal)
    "Exclusions",  # PK shard, RK tenantId: customers excluded from removal in the portal (who, when, why)
    "AccessEndings",  # PK shard, RK tenantId|key[|DAP start]: access that ended, who ended it, the alert
    "AzureRoles",  # PK shard, RK tenantId: the partner's Azure role assignments in the customer, last read
)


def expand_connection_string(value: str) -> str:
    if value.strip().lower().rstrip(";") == "usedevelopmentstorage=true":
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};"
            "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
            "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
            "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
        )
    return value


def _check_key_based(conn: str) -> None:
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    if "AccountKey" not in parts and "SharedAccessSignature" not in parts:
        return
    endpoints = [v for k, v in parts.items() if k.endswith("Endpoint")]
    hosts = {urlparse(e).hostname for e in endpoints}
    if not endpoints or not hosts <= {"127.0.0.1", "localhost", "::1"}:
        raise SettingsError(
            "AzureWebJobsStorage: key-based connections are accepted only for Azurite on "
            "loopback; in Azure use the identity-based AzureWebJobsStorage__* settings"
        )


def shard_of(tenant_id: str) -> str:
    """16 partitions for per-customer tables that are read whole (spreads write load)."""
    return tenant_id[:1].lower() or "0"


class Storage:
    """Owns the table and queue service clients; hands out prefixed table and queue clients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tables: dict[str, TableClient] = {}
        self._queues: dict[str, QueueClient] = {}
        self._ensured = False
        self._lock = asyncio.Lock()
        conn = settings.storage_connection
        if conn:
            conn = expand_connection_string(conn)
            _check_key_based(conn)
            try:
                self.table_service = TableServiceClient.from_connection_string(conn)
                self.queue_service = QueueServiceClient.from_connection_string(conn)
                self.blob_service = BlobServiceClient.from_connection_string(conn)
            except ValueError as exc:  # the SDK's "Connection string is either blank or malformed"
                raise SettingsError(
                    "AzureWebJobsStorage is not a storage connection string "
                    f"(Key=Value pairs separated by ';', or UseDevelopmentStorage=true): {exc}"
                ) from None
        elif settings.table_service_uri and settings.queue_service_uri and settings.blob_service_uri:
            from shared.platform.identity import storage_credential

            credential = storage_credential(settings)
            self.table_service = TableServiceClient(settings.table_service_uri, credential=credential)
            self.queue_service = QueueServiceClient(settings.queue_service_uri, credential=credential)
            self.blob_service = BlobServiceClient(settings.blob_service_uri, credential=credential)
        else:
            raise SettingsError("AzureWebJobsStorage is not set (UseDevelopmentStorage=true for Azurite)")

    async def close(self) -> None:
        for table in self._tables.values():
            await table.close()
        for queue in self._queues.values():
            await queue.close()
        await self.table_service.close()
        await self.queue_service.close()
        await self.blob_service.close()

    async def ensure(self) -> None:
        """Create every table and queue once per process (idempotent)."""
        if self._ensured:
            return
        async with self._lock:
            if self._ensured:
                return
            from shared.platform.settings import QUEUES

            for name in TABLES:
                with contextlib.suppress(ResourceExistsError):
                    await self.table_service.create_table(self.settings.table_name(name))
            for queue in QUEUES:
                for full in (queue, f"{queue}-poison"):
                    with contextlib.suppress(ResourceExistsError):
                        await self.queue_service.create_queue(self.settings.queue_name(full))
            with contextlib.suppress(ResourceExistsError):
                await self.blob_service.create_container(self.audit_container)
            self._ensured = True

    @property
    def audit_container(self) -> str:
        """The blob container of the audit trail's append-only copy (time-based immutable in Azure)."""
        prefix = self.settings.storage_prefix.lower()
        return f"{prefix}-{AUDIT_CONTAINER}" if prefix else AUDIT_CONTAINER

    async def append_audit(self, record: dict[str, Any]) -> None:
        """Append one record (a JSON line) to the day's append blob of the trail's copy. Append blobs in a
        container with a time-based immutability policy (protected append writes) can be added to but
        neither changed nor deleted, not even by this app's identity: a row deleted or altered in the
        ``Actions`` table still shows here (:func:`shared.removals.worker.verify_trail`)."""
        day = str(record.get("At") or "")[:10] or "undated"
        blob = self.blob_service.get_blob_client(self.audit_container, f"actions/{day}.jsonl")
        data = (json.dumps(record, ensure_ascii=False, sort_keys=True, default=str) + "\n").encode("utf-8")
        try:
            await blob.append_block(data)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                await blob.create_append_blob(if_none_match="*")  # never replaces a day already begun
            await blob.append_block(data)

    async def audit_records(self) -> list[dict[str, Any]]:
        """Every record of the trail's copy, oldest day first."""
        container = self.blob_service.get_container_client(self.audit_container)
        out: list[dict[str, Any]] = []
        async for item in container.list_blobs(name_starts_with="actions/"):
            text = (await (await container.download_blob(item.name)).readall()).decode("utf-8")
            out.extend(json.loads(line) for line in text.splitlines() if line.strip())
        return out

    def forget(self) -> None:
        """The tables and queues may be gone (the storage account or Azurite was reset): the next
        :meth:`ensure` creates them again instead of trusting this process's memory."""
        self._ensured = False

    def table(self, name: str) -> TableClient:
        if name not in TABLES:
            raise KeyError(name)
        client = self._tables.get(name)
        if client is None:
            client = self.table_service.get_table_client(self.settings.table_name(name))
            self._tables[name] = client
        return client

    def queue(self, name: str) -> QueueClient:
        client = self._queues.get(name)
        if client is None:
            client = self.queue_service.get_queue_client(self.settings.queue_name(name))
            self._queues[name] = client
        return client


async def upsert_all(
    table: TableClient,
    entities: Iterable[dict[str, Any]],
    mode: UpdateMode = UpdateMode.REPLACE,
    concurrency: int = 8,
) -> int:
    """Upsert in transactions of up to 100 entities per partition, several partitions at once."""
    by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entity in entities:
        by_partition[entity["PartitionKey"]].append(entity)
    chunks = [
        rows[i : i + BATCH_LIMIT] for rows in by_partition.values() for i in range(0, len(rows), BATCH_LIMIT)
    ]
    semaphore = asyncio.Semaphore(concurrency)

    async def submit(chunk: list[dict[str, Any]]) -> None:
        async with semaphore:
            if len(chunk) == 1:
                await table.upsert_entity(chunk[0], mode=mode)
                return
            await submit_upserts(table, chunk, mode)  # submit_transaction's request, encoded cheaply

    await asyncio.gather(*(submit(c) for c in chunks))
    return sum(len(c) for c in chunks)


async def query_all(
    table: TableClient,
    query: str | None = None,
    parameters: dict[str, Any] | None = None,
    select: list[str] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    # The SDK's request and entity conversion without its per-property model walk (shared.platform.table_query).
    query_filter = None if query is None else _parameter_filter_substitution(parameters, query)
    async for entity in query_entities(table, query_filter, select):
        yield entity


async def partition(table: TableClient, pk: str, select: list[str] | None = None) -> list[dict[str, Any]]:
    return [e async for e in query_all(table, "PartitionKey eq @pk", {"pk": pk}, select)]


async def get_or_none(table: TableClient, pk: str, rk: str) -> dict[str, Any] | None:
    try:
        return dict(await table.get_entity(pk, rk))
    except ResourceNotFoundError:
        return None


async def get_with_etag(table: TableClient, pk: str, rk: str) -> tuple[dict[str, Any], str | None] | None:
    """The row and its ETag, or None when there is none."""
    try:
        entity = await table.get_entity(pk, rk)
    except ResourceNotFoundError:
        return None
    return dict(entity), entity.metadata.get("etag")


class ETaggedRow(Protocol):
    """A stored row written only where its ETag still matches (removals, notifications)."""

    etag: str | None

    def to_entity(self) -> dict[str, Any]: ...


class ConflictingWrite(RuntimeError):
    """An ETag-conditional write lost against another writer."""


async def create_if_absent(table: TableClient, entity: dict[str, Any]) -> str | None:
    """Insert; the new row's ETag, or None when a row with these keys exists already."""
    try:
        result = await table.create_entity(entity)
    except ResourceExistsError:
        return None
    return str(result.get("etag") or "")


async def replace_if_unchanged(
    table: TableClient,
    entity: dict[str, Any],
    etag: str | None,
    what: str,
    mode: UpdateMode = UpdateMode.REPLACE,
) -> str:
    """Replace (or, with ``mode=MERGE``, update only the given properties of) the row only if it still
    has ``etag``; its new ETag. :class:`ConflictingWrite` (naming ``what``) when another writer changed
    or deleted it since it was read."""
    try:
        result = await table.update_entity(
            entity, mode=mode, etag=etag, match_condition=MatchConditions.IfNotModified
        )
    except (ResourceModifiedError, ResourceNotFoundError) as exc:
        raise ConflictingWrite(f"{what} was changed by another writer") from exc
    except HttpResponseError as exc:
        if exc.status_code == 412:
            raise ConflictingWrite(f"{what} was changed by another writer") from exc
        raise
    return str(result.get("etag") or "")


async def create_row(table: TableClient, row: ETaggedRow) -> bool:
    """Insert ``row``, which takes the new ETag; False when a row with its keys exists already."""
    etag = await create_if_absent(table, row.to_entity())
    if etag is None:
        return False
    row.etag = etag
    return True


async def replace_row(table: TableClient, row: ETaggedRow, what: str) -> None:
    """ETag-conditional replace of ``row``, which takes the new ETag; raises :class:`ConflictingWrite`
    (naming ``what``) when someone else wrote first."""
    row.etag = await replace_if_unchanged(table, row.to_entity(), row.etag, what)


SAFE_KEY = re.compile(r"^[^/\\#?\x00-\x1f\x7f-\x9f]{1,512}$")


def check_key(value: str) -> str:
    """Table keys may not hold / \\ # ? or control characters."""
    if not SAFE_KEY.match(value):
        raise ValueError(f"not a valid table key: {value!r}")
    return value


__all__ = [
    "ConflictingWrite",
    "Storage",
    "TableTransactionError",
    "UpdateMode",
    "check_key",
    "create_if_absent",
    "get_or_none",
    "partition",
    "query_all",
    "replace_if_unchanged",
    "shard_of",
    "upsert_all",
]
