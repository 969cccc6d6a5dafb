"""The Entra sign-in archive: the hourly blobs Entra's diagnostic settings write to a storage account.

Microsoft's layout, which this module reads and nothing else:

* one container per log category, named ``insights-logs-{category}``: ``insights-logs-signinlogs``
  (interactive user sign-ins, category ``SignInLogs``) and ``insights-logs-noninteractiveusersigninlogs``
  (``NonInteractiveUserSignInLogs``) -- "Send to Azure Storage", Azure Monitor resource logs,
  https://learn.microsoft.com/azure/azure-monitor/essentials/resource-logs#send-to-azure-storage, and
  "How to archive Microsoft Entra logs to an Azure storage account",
  https://learn.microsoft.com/entra/identity/monitoring-health/howto-archive-logs-to-storage-account;
* for tenant-level logs (Entra ID) one blob per hour, named
  ``tenantId={tenant id}/y={yyyy}/m={MM}/d={dd}/h={HH}/m=00/PT1H.json`` (``m=00`` always: blobs are
  hourly), created when the hour's first event arrives and appended to as events come in;
* in each blob one record per line ("JSON lines", the format since November 2018; an older blob holds one
  ``{"records": [...]}`` object, which is read too --
  https://learn.microsoft.com/azure/azure-monitor/essentials/resource-logs-blob-format): ``time``,
  ``tenantId``, ``category``, ``operationName`` ("Sign-in activity"), ``resultType``... and
  ``properties``, the signIn resource as Graph serves it (``id``, ``createdDateTime``, ``userId``,
  ``status``, ``crossTenantAccessType``, ``homeTenantId``, ``resourceTenantId``...).

What the archive *holds* is decided per hour, from the blobs alone: an hour is held when every
configured container has its blob for that hour (``SIGNIN_ARCHIVE_QUIET_HOURS`` lets a container miss
hours between blobs close before and after, when another container has the hour's blob: a category
with no sign-in that hour). An hour nobody can show a blob for is a gap, and stays one: the coverage
grows by the held hours only. A record lands in the blob of the hour it arrived in, which may be the
hour after its ``createdDateTime``; reading a stretch therefore also reads the blob of the hour after
its end (or up to ``SIGNIN_LOG_LATENCY_MINUTES`` after it, when longer), and keeps the records by
``createdDateTime``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient

from shared.platform.retry import UpstreamError
from shared.platform.state import Interval, merge_intervals
from shared.signins.activity import INTERACTIVE, NON_INTERACTIVE, TICK

if TYPE_CHECKING:
    from shared.platform.settings import Settings

HOUR = timedelta(hours=1)
# How long after its createdDateTime a record may reach the archive, at the least: its blob is the hour it
# arrived in, so the blob of the hour after a stretch is read too (Microsoft names no bound; the Graph
# log's SIGNIN_LOG_LATENCY_MINUTES extends it when larger).
DELIVERY = HOUR

# Each record names its category; the container's name tells it for records that do not.
CATEGORY_KINDS = {"signinlogs": INTERACTIVE, "noninteractiveusersigninlogs": NON_INTERACTIVE}
CONTAINER_PREFIX = "insights-logs-"
DOWNLOADS_AT_ONCE = 8

BLOB_NAME_RE = re.compile(
    r"^tenantId=(?P<tenant>[0-9a-fA-F-]{36})/y=(?P<y>\d{4})/m=(?P<mo>\d{2})/d=(?P<d>\d{2})"
    r"/h=(?P<h>\d{2})/m=00/PT1H\.json$"
)


class ArchiveError(UpstreamError):
    """The archive could not be read, or a blob is not in Microsoft's format: the stretch it belongs to
    is not recorded as read (the error names the blob and line)."""


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def blob_name(tenant: str, hour: datetime) -> str:
    """The blob Entra writes an hour of a tenant's logs to (``tenant`` as the archive spells it)."""
    return f"tenantId={tenant}/y={hour:%Y}/m={hour:%m}/d={hour:%d}/h={hour:%H}/m=00/PT1H.json"


def hour_of_blob(name: str) -> datetime | None:
    m = BLOB_NAME_RE.match(name)
    if m is None:
        return None
    try:
        return datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), tzinfo=UTC)
    except ValueError:
        return None


def kind_of(record: dict[str, Any], container: str) -> int | None:
    """INTERACTIVE or NON_INTERACTIVE from the record's category (else the container's); None for the
    categories that are no user's sign-in (service principals, managed identities)."""
    category = str(record.get("category") or "").lower()
    if not category and container.startswith(CONTAINER_PREFIX):
        category = container[len(CONTAINER_PREFIX) :]
    return CATEGORY_KINDS.get(category)


def parse_records(data: bytes, where: str) -> list[dict[str, Any]]:
    """The records of one PT1H.json: JSON lines, or one ``{"records": [...]}`` object (older format).
    A line that is not a JSON object raises :class:`ArchiveError` naming the blob and line."""
    text = data.decode("utf-8-sig", errors="strict")
    stripped = text.strip()
    if not stripped:
        return []
    if stripped.startswith('{"records"') or stripped.startswith('{ "records"'):
        try:
            whole = json.loads(stripped)
        except ValueError:
            whole = None
        if isinstance(whole, dict) and isinstance(whole.get("records"), list):
            return [r for r in whole["records"] if isinstance(r, dict)]
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip().rstrip(",")
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ArchiveError(f"archive blob {where}, line {number}: not a JSON record ({exc})") from None
        if not isinstance(record, dict):
            raise ArchiveError(f"archive blob {where}, line {number}: not a JSON object")
        out.append(record)
    return out


def archive_service(settings: Settings) -> BlobServiceClient:
    """The archive account's blob client: a connection string, or a blob endpoint read with the app's
    identity (Storage Blob Data Reader on the archive account)."""
    from shared.platform.settings import SettingsError
    from shared.platform.storage import expand_connection_string

    value = settings.signin_archive_connection.strip()
    if value.lower().startswith(("https://", "http://")):
        from shared.platform.identity import storage_credential

        return BlobServiceClient(value.rstrip("/"), credential=storage_credential(settings))
    try:
        return BlobServiceClient.from_connection_string(expand_connection_string(value))
    except ValueError as exc:
        raise SettingsError(
            "SIGNIN_ARCHIVE_CONNECTION is neither a storage connection string nor a blob endpoint "
            f"(https://<account>.blob.core.windows.net): {exc}"
        ) from None


class SignInArchive:
    """The partner tenant's sign-ins as the archive holds them (a sign-in source of the ingestion)."""

    def __init__(
        self,
        service: BlobServiceClient,
        *,
        containers: Sequence[str],
        partner_tenant: str,
        latency: timedelta,
        quiet_hours: int = 0,
    ) -> None:
        self.service = service
        self.containers = tuple(containers)
        self.partner_tenant = partner_tenant.lower()
        self.latency = latency
        self.quiet = timedelta(hours=quiet_hours)
        # Microsoft's present (ongoing ingestion): the hour it falls in counts as held while it is younger
        # than the log's latency and the hour before is held -- its first blob may not be written yet, as
        # the Graph log may not list the last minutes' sign-ins yet; the next run reads it again.
        self.present: datetime | None = None
        self._prefixes: dict[str, str | None] = {}
        self._hours: dict[tuple[str, int, int], set[datetime]] = {}
        self.blobs_read = 0

    @classmethod
    def from_settings(cls, settings: Settings, partner_tenant: str) -> SignInArchive:
        return cls(
            archive_service(settings),
            containers=settings.signin_archive_containers,
            partner_tenant=partner_tenant,
            latency=timedelta(minutes=settings.signin_log_latency_minutes),
            quiet_hours=settings.signin_archive_quiet_hours,
        )

    async def close(self) -> None:
        await self.service.close()

    async def __aenter__(self) -> SignInArchive:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what the archive holds ------------------------------------------------------------------
    async def _tenant_prefix(self, container: str) -> str | None:
        """``tenantId=<id>`` as this container spells the partner tenant (case as written), or None when
        the container does not exist or holds none of its logs."""
        if container not in self._prefixes:
            found = None
            client = self.service.get_container_client(container)
            try:
                async for item in client.walk_blobs(name_starts_with="tenantId=", delimiter="/"):
                    name = str(item.name).rstrip("/")
                    if name.lower() == f"tenantid={self.partner_tenant}":
                        found = name
                        break
            except ResourceNotFoundError:
                found = None
            except AzureError as exc:
                raise ArchiveError(f"the sign-in archive could not be listed ({container}): {exc}") from None
            self._prefixes[container] = found
        return self._prefixes[container]

    async def _month_hours(self, container: str, year: int, month: int) -> set[datetime]:
        key = (container, year, month)
        if key not in self._hours:
            hours: set[datetime] = set()
            prefix = await self._tenant_prefix(container)
            if prefix is not None:
                client = self.service.get_container_client(container)
                try:
                    async for item in client.list_blobs(
                        name_starts_with=f"{prefix}/y={year:04d}/m={month:02d}/"
                    ):
                        hour = hour_of_blob(str(item.name))
                        if hour is not None:
                            hours.add(hour)
                except AzureError as exc:
                    raise ArchiveError(
                        f"the sign-in archive could not be listed ({container}): {exc}"
                    ) from None
            self._hours[key] = hours
        return self._hours[key]

    async def blob_hours(self, container: str, first: datetime, last: datetime) -> set[datetime]:
        """The hours in [first, last] (hour starts) this container has a blob for."""
        out: set[datetime] = set()
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            out |= {h for h in await self._month_hours(container, year, month) if first <= h <= last}
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return out

    async def held(self, start: datetime, end: datetime) -> list[Interval]:
        """The parts of [start, end] the archive holds, whole hours clipped to [start, end]."""
        first, last = hour_of(start), hour_of(end)
        per_container = [
            await self.blob_hours(c, first - HOUR - self.quiet, last + self.quiet) for c in self.containers
        ]
        if not per_container:
            return []
        any_blob = set().union(*per_container)

        def has(hour: datetime) -> bool:
            return hour in any_blob and all(self._exported(hours, hour) for hours in per_container)

        held: list[Interval] = []
        hour = first
        while hour <= last:
            young = (
                self.present is not None
                and hour == hour_of(self.present)
                and self.present - hour <= self.latency
                and has(hour - HOUR)
            )
            if has(hour) or young:
                held.append((max(start, hour), min(end, hour + HOUR - TICK)))
            hour += HOUR
        return merge_intervals(held)

    def _exported(self, hours: set[datetime], hour: datetime) -> bool:
        """The container has the hour's blob, or (quiet hours) blobs on both sides within the limit."""
        if hour in hours:
            return True
        if not self.quiet:
            return False
        before = any(hour - self.quiet <= h < hour for h in hours)
        return before and any(hour < h <= hour + self.quiet for h in hours)

    async def missing_hours(self, start: datetime, end: datetime) -> dict[str, int]:
        """Per container, how many hours of [start, end] have no blob (what the status shows)."""
        first, last = hour_of(start), hour_of(end)
        total = int((last - first) / HOUR) + 1
        out = {}
        for c in self.containers:
            out[c] = total - len(await self.blob_hours(c, first, last))
        return out

    # -- the sign-ins ----------------------------------------------------------------------------
    async def sign_ins(
        self, start: datetime, end: datetime
    ) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
        """(kind, sign-ins) per blob, for the records of the user sign-in categories whose blob hour
        may hold ``createdDateTime`` in [start, end]: the hours of [start, end + latency]. The caller
        keeps those in [start, end] by ``createdDateTime``."""
        first, last = hour_of(start), hour_of(end + max(self.latency, DELIVERY))
        wanted: list[tuple[str, str]] = []
        for container in self.containers:
            prefix = await self._tenant_prefix(container)
            if prefix is not None:
                tenant = prefix.partition("=")[2]
                hours = sorted(await self.blob_hours(container, first, last))
                wanted += [(container, blob_name(tenant, hour)) for hour in hours]
        # A few blobs downloaded at once (a window, so that memory stays bounded by it), parsed in order.
        for offset in range(0, len(wanted), DOWNLOADS_AT_ONCE):
            window = wanted[offset : offset + DOWNLOADS_AT_ONCE]
            contents = await asyncio.gather(*(self._download(c, n) for c, n in window))
            for (container, name), data in zip(window, contents, strict=True):
                if data is None:
                    continue  # deleted since it was listed: the hour is read without it
                self.blobs_read += 1
                by_kind: dict[int, list[dict[str, Any]]] = {}
                for record in parse_records(data, f"{container}/{name}"):
                    kind = kind_of(record, container)
                    properties = record.get("properties")
                    if kind is None or not isinstance(properties, dict):
                        continue
                    by_kind.setdefault(kind, []).append(properties)
                for kind, items in by_kind.items():
                    yield kind, items

    async def _download(self, container: str, name: str) -> bytes | None:
        try:
            return bytes(
                await (await self.service.get_blob_client(container, name).download_blob()).readall()
            )
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise ArchiveError(f"archive blob {container}/{name} could not be read: {exc}") from None
