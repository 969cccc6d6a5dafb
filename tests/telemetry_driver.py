"""Drives every condition an alert rule or a workbook panel reads through the product, in a process of its
own with the real azure-monitor-opentelemetry exporter (``APPLICATIONINSIGHTS_CONNECTION_STRING`` names a
loopback collector): ``python -m tests.telemetry_driver``. Used by tests/test_telemetry.py.

Conditions: a cycle that queues and removes (RemovalRequested, RemovalCompleted, EvaluationCompleted,
IngestionCompleted), a removal skipped by its live check, the circuit breaker, a store that was never
ingested (IngestionStale), a sign-in log that refuses (IngestionFailed), a sender without Mail.Send
(MailFailed), and removal and notification messages that end in the poison queues (PoisonMessage,
RemovalFailed).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import uuid
from typing import Any

import httpx

from shared.evaluation.run import run_cycle, run_evaluation
from shared.notifications.worker import handle_notification_poison
from shared.platform.retry import UpstreamError
from shared.platform.settings import Settings
from shared.platform.telemetry import configure_telemetry, flush_telemetry
from shared.relationships.sync import sync_relationships
from shared.removals.request import request_removals
from shared.removals.worker import execute_removal, handle_removal_poison
from shared.services import Services
from shared.signins.ingestion import ingest_sign_ins
from tests.test_enforcement import ADATUM, AS_OF, ENFORCE, RELECLOUD, estate


def post(scenario: dict[str, Any]) -> None:
    httpx.post(
        f"{os.environ['EMULATOR_URL']}/_emulator/scenario", json=scenario, timeout=60
    ).raise_for_status()


def settings(**overrides: str) -> Settings:
    env = {**os.environ, **ENFORCE, **overrides, "STORAGE_PREFIX": "t" + uuid.uuid4().hex[:12]}
    return Settings.from_env(env)


async def main() -> None:
    assert configure_telemetry(), "APPLICATIONINSIGHTS_CONNECTION_STRING must be set"
    post(estate())
    first = settings()
    async with Services(first) as services:
        await run_cycle(services, AS_OF)  # queues and executes removals; mail is sent
        # A policy removal of a customer that is excluded by the time the worker runs: skipped.
        [skipped] = await request_removals(
            services, [ADATUM], requested_by="policy", reason="telemetry", source="policy"
        )
        # A removal message that failed every attempt: the removal fails, the message is poison.
        [poisoned] = await request_removals(
            services, [RELECLOUD], requested_by="operator", reason="telemetry"
        )
        await handle_removal_poison(services, json.dumps({"v": 1, "removalId": poisoned["id"]}))
        await handle_notification_poison(
            services, json.dumps({"v": 2, "kind": "partner-alert", "key": "gone"})
        )
    excluded = Settings.from_env(
        {**os.environ, **ENFORCE, "STORAGE_PREFIX": first.storage_prefix, "EXCLUDED_TENANTS": ADATUM}
    )
    async with Services(excluded) as services:
        assert await execute_removal(services, skipped["id"], owner="driver") == "skipped"
    post(estate())
    async with Services(settings(MAX_REMOVALS_PER_RUN="0")) as services:
        await run_cycle(services, AS_OF)  # more candidates than allowed: the circuit breaker
    async with Services(settings()) as services:
        await run_evaluation(services, AS_OF, refresh=False)  # never ingested: stale
    unlicensed = copy.deepcopy(estate())
    unlicensed["signInLogLicensed"] = False
    post(unlicensed)
    async with Services(settings()) as services:
        await sync_relationships(services, AS_OF)
        with contextlib.suppress(Exception):  # the refusal is the point: IngestionFailed
            await ingest_sign_ins(services, AS_OF)
    no_mail = copy.deepcopy(estate())
    no_mail["missingPermissions"] = ["Mail.Send"]
    post(no_mail)
    async with Services(settings()) as services:
        with contextlib.suppress(UpstreamError):  # the notices cannot be sent: MailFailed
            await run_cycle(services, AS_OF)
    flush_telemetry()
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    asyncio.run(main())
