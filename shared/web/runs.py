"""On-demand audit runs (``POST /api/audit/run``): sync, ingest and evaluate in the background.

The run's state is kept in the ``AuditRuns`` table, not in memory, so any instance can answer
``GET /api/audit/runs/{id}``. At most one run is under way at a time: a request while one is running
gets that run back instead of starting a second (the ingestion's coverage checkpoint would refuse
a concurrent writer anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from shared.evaluation.audit import audit
from shared.platform.state import KeyValues, StateStore
from shared.platform.timeutil import iso, parse_iso, utcnow
from shared.services import Services

log = logging.getLogger(__name__)

KIND = "auditRun"
LATEST = "latest"
# A run that has not finished after this long is taken to have died with its instance.
STALE_AFTER = timedelta(minutes=30)


def runs_table(services: Services) -> KeyValues:
    return KeyValues(services.storage, "AuditRuns")


class AuditRuns:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, services: Services, run_id: str) -> dict[str, Any] | None:
        value = await runs_table(services).get(KIND, run_id)
        if not value:  # started by an earlier version, which kept runs in IngestionState
            value = await StateStore(services.storage).get_value(KIND, run_id)
        if not value:
            return None
        run: dict[str, Any] = json.loads(value)
        if run["status"] == "running" and utcnow() - parse_iso(run["startedAt"]) > STALE_AFTER:
            run["status"] = "failed"
            run["error"] = "the run did not finish (its instance stopped)"
        return run

    async def start(self, services: Services, requested_by: str) -> tuple[dict[str, Any], bool]:
        """(the run, whether it was started now) — a run already under way is returned instead."""
        state = runs_table(services)
        latest = await state.get(KIND, LATEST)
        if latest:
            current = await self.get(services, latest)
            if current is not None and current["status"] == "running":
                return current, False
        run: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "status": "running",
            "startedAt": iso(utcnow()),
            "finishedAt": None,
            "requestedBy": requested_by,
            "asOf": None,
            "summary": None,
            "error": None,
        }
        await self._save(services, run)
        await state.set(KIND, LATEST, run["id"])
        task = asyncio.create_task(self._run(services, run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run, True

    async def wait(self) -> None:
        """Wait for the runs this process started (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(self, services: Services, run: dict[str, Any]) -> None:
        try:
            report = await audit(services, await services.now())
            run.update(status="succeeded", asOf=report["asOf"], summary=report["summary"])
        except Exception as exc:  # the run's outcome is reported to whoever polls it
            log.exception("on-demand audit %s failed", run["id"])
            first_line = (str(exc).splitlines() or [""])[0][:300]
            run.update(status="failed", error=f"{type(exc).__name__}: {first_line}".rstrip(": "))
        run["finishedAt"] = iso(utcnow())
        try:
            await self._save(services, run)
        except Exception:
            log.exception("could not record the outcome of audit run %s", run["id"])

    async def _save(self, services: Services, run: dict[str, Any]) -> None:
        await runs_table(services).set(KIND, run["id"], json.dumps(run, ensure_ascii=False))
