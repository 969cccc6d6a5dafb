"""Run records, checkpoints and sign-in coverage (``IngestionState`` table)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import (
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from shared.platform.storage import (
    ConflictingWrite,
    Storage,
    create_if_absent,
    get_or_none,
    replace_if_unchanged,
)
from shared.platform.timeutil import iso, parse_iso, parse_optional


class ConcurrentRunError(RuntimeError):
    """Another run moved the same checkpoint first; this run stops without writing it."""


Interval = tuple[datetime, datetime]


def merge_intervals(intervals: list[Interval]) -> list[Interval]:
    """Union of closed intervals. Times are kept to the microsecond, so [a, b] and [b + 1us, c] touch."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + timedelta(microseconds=1):
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


@dataclass
class Coverage:
    """The stretches of sign-in log the store holds completely."""

    intervals: list[Interval] = field(default_factory=list)
    etag: str | None = None

    def add(self, start: datetime, end: datetime) -> None:
        self.intervals = merge_intervals([*self.intervals, (start, end)])

    def covering(self, as_of: datetime) -> Interval | None:
        """The unbroken stretch that contains ``as_of`` (clipped to it), or None."""
        for start, end in self.intervals:
            if start <= as_of <= end:
                return start, as_of
        return None

    def missing(self, start: datetime, end: datetime) -> list[Interval]:
        """The parts of [start, end] the coverage does not hold, oldest first."""
        out: list[Interval] = []
        cursor = start
        for a, b in self.intervals:
            if b < cursor:
                continue
            if a > end:
                break
            if a > cursor:
                out.append((cursor, a - timedelta(microseconds=1)))
            cursor = max(cursor, b + timedelta(microseconds=1))
        if cursor <= end:
            out.append((cursor, end))
        return out

    def latest_end_before(self, moment: datetime) -> datetime | None:
        ends = [end for _, end in self.intervals if end <= moment]
        return max(ends) if ends else None

    def to_json(self) -> str:
        return json.dumps([[iso(a), iso(b)] for a, b in self.intervals])

    @classmethod
    def from_json(cls, text: str | None, etag: str | None = None) -> Coverage:
        pairs = json.loads(text or "[]")
        return cls([(parse_iso(a), parse_iso(b)) for a, b in pairs], etag)


class KeyValues:
    """Named text values in one table (PK kind, RK name, ``Value``): each purpose has its own table."""

    def __init__(self, storage: Storage, table: str) -> None:
        self.table = storage.table(table)

    async def get(self, kind: str, name: str) -> str | None:
        entity = await get_or_none(self.table, kind, name)
        return None if entity is None else str(entity.get("Value", ""))

    async def set(self, kind: str, name: str, value: str) -> None:
        await self.table.upsert_entity(
            {"PartitionKey": kind, "RowKey": name, "Value": value}, mode=UpdateMode.REPLACE
        )


def partner_state(storage: Storage) -> KeyValues:
    """What the product keeps about the partner itself (``PartnerState``)."""
    return KeyValues(storage, "PartnerState")


class StateStore:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("IngestionState")
        self._values = KeyValues(storage, "IngestionState")  # named values an earlier version kept here

    async def record_success(self, kind: str, at: datetime, details: dict[str, Any]) -> None:
        """Record a successful run at ``at``; the record never moves backwards (a what-if for a past
        moment, or a slower overlapping run finishing last, leaves a newer record in place)."""
        entity = {
            "PartitionKey": kind,
            "RowKey": "lastSuccess",
            "At": iso(at),
            "Details": json.dumps(details),
        }
        for _ in range(5):
            try:
                current = await self.table.get_entity(kind, "lastSuccess")
            except ResourceNotFoundError:
                current = None
            if current is None:
                if await create_if_absent(self.table, entity) is not None:
                    return
                continue
            recorded = parse_optional(current.get("At"))
            if recorded is not None and recorded >= at:
                return
            try:
                await replace_if_unchanged(
                    self.table, entity, current.metadata.get("etag"), f"{kind} success"
                )
                return
            except ConflictingWrite:
                continue
        raise ConflictingWrite(f"{kind} success: too many concurrent writers")

    async def last_success(self, kind: str) -> tuple[datetime | None, dict[str, Any]]:
        entity = await get_or_none(self.table, kind, "lastSuccess")
        if entity is None:
            return None, {}
        return parse_optional(entity.get("At")), json.loads(entity.get("Details") or "{}")

    async def get_value(self, kind: str, name: str) -> str | None:
        return await self._values.get(kind, name)

    async def set_value(self, kind: str, name: str, value: str) -> None:
        await self._values.set(kind, name, value)

    async def load_coverage(self) -> Coverage:
        try:
            entity = await self.table.get_entity("signins", "coverage")
        except ResourceNotFoundError:
            return Coverage()
        return Coverage.from_json(entity.get("Intervals"), entity.metadata.get("etag"))

    async def save_coverage(self, coverage: Coverage) -> None:
        """Write coverage only if nobody else changed it since it was read (ETag)."""
        entity = {"PartitionKey": "signins", "RowKey": "coverage", "Intervals": coverage.to_json()}
        if coverage.etag is None:
            etag = await create_if_absent(self.table, entity)
        else:
            try:
                etag = await replace_if_unchanged(self.table, entity, coverage.etag, "sign-in coverage")
            except ConflictingWrite as exc:
                raise ConcurrentRunError("sign-in coverage was changed by another run") from exc
        if etag is None:
            raise ConcurrentRunError("sign-in coverage was changed by another run")
        coverage.etag = etag
