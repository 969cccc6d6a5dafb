"""Customer shards and the sharded evaluation (shared.platform.sharding, shared.evaluation.fanout, functions/fanout.py):
the fanned-out evaluation stores exactly the report the in-process one computes, and applies the
same policy, through the real queue triggers, Azurite and the emulator."""

from __future__ import annotations

import asyncio
import json
import random
import string
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared.domain.rules import sort_rows
from shared.evaluation.audit import audit, build_report
from shared.evaluation.fanout import (
    handle_shard_message,
    handle_shard_poison,
    run_shard_messages,
    start_sharded_evaluation,
)
from shared.evaluation.report import compute_report, policy_from_settings
from shared.evaluation.store import EvaluationStore
from shared.platform.actions import list_actions
from shared.platform.settings import EVALUATION_SHARDS_QUEUE
from shared.platform.sharding import SHARDS, key_range_filter, shard_bounds, shard_containing, shard_of_tenant
from shared.platform.state import StateStore
from shared.platform.timeutil import parse_iso
from shared.runtime import close_services
from shared.services import Services
from tests.conftest import load_example, registered_functions, settings_with
from tests.oracle import comparable, expected_report
from tests.test_audit_integration import AS_OF, generate
from tests.test_enforcement import CANDIDATES, ENFORCE, estate


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_shards_are_ranges_that_hold_every_key_exactly_once() -> None:
    rnd = random.Random(5)
    keys = ["", "0", "00", "9", "9~", ":", "A", "Z", "`", "a", "f", "ff", "g", "zz", "~", "\u6771"]
    keys += ["".join(rnd.choice(string.printable) for _ in range(rnd.randint(1, 5))) for _ in range(500)]
    for key in keys:
        owners = [
            s
            for s in SHARDS
            if (shard_bounds(s)[0] is None or key >= shard_bounds(s)[0])
            and (shard_bounds(s)[1] is None or key < shard_bounds(s)[1])
        ]
        assert owners == [shard_containing(key)], key
    assert shard_of_tenant("3F98E277-4cbd-47ad-9c90-a9587403e430") == "3"
    assert key_range_filter("RowKey", "0") == ("RowKey lt @hi", {"hi": "1"})
    assert key_range_filter("RowKey", "f") == ("RowKey ge @lo", {"lo": "f"})


async def _sharded(services: Services, as_of: Any) -> dict[str, Any]:
    started = await start_sharded_evaluation(services, as_of, refresh=False)
    drained = await run_shard_messages(services)
    assert drained["shards"] == len(SHARDS) and len(drained["finished"]) == 1
    stored = await EvaluationStore(services.storage).latest()
    assert stored is not None and stored.id == started["evaluationId"]
    return stored.report


def test_the_sharded_evaluation_stores_the_in_process_report(
    env: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    scenario = generate(
        tmp_path, customers=400, signins=6000, days=90, seed=13, now="2026-11-21T00:00:00Z", retention=120
    )
    emulator.post_scenario(scenario)
    settings = settings_with(SIGNIN_BACKFILL_DAYS="120")

    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with Services(settings) as services:
            in_process = await audit(services, AS_OF)
            sharded = await _sharded(services, AS_OF)
            # A redelivered shard message recomputes the same rows and does not finish twice.
            again = await handle_shard_message(
                services,
                json.dumps(
                    {"v": 1, "evaluationId": (await services.evaluations.heads(1))[0]["id"], "shard": "a"}
                ),
            )
            assert again["finished"] is None and again["shardsDone"] == len(SHARDS)
            return in_process, sharded, await build_report(services, AS_OF)

    in_process, sharded, recomputed = run(go())
    assert sharded == in_process == recomputed
    assert comparable(sharded) == expected_report(emulator.state(), AS_OF, 120)["customers"]
    assert len({r["tenantId"][0] for r in sharded["customers"]}) == len(SHARDS)  # every shard had customers


def test_shards_read_back_in_time_like_the_whole(env: dict[str, str]) -> None:
    """An asOf in the past walks the day partitions back per shard (the scan-back path)."""
    settings = settings_with()

    async def go() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with Services(settings) as services:
            await audit(services, AS_OF)
            earlier = parse_iso("2026-11-20T18:00:00Z")
            whole = await build_report(services, earlier)
            coverage = await StateStore(services.storage).load_coverage()
            parts = await asyncio.gather(
                *(
                    compute_report(
                        services.storage,
                        as_of=earlier,
                        partner_tenant_id=whole["partnerTenantId"],
                        policy=policy_from_settings(settings),
                        shard=s,
                        coverage=coverage,
                    )
                    for s in SHARDS
                )
            )
            return whole, sort_rows([r for p in parts for r in p["customers"]])

    whole, rows = run(go())
    assert rows == whole["customers"] and len(rows) == 5
    assert next(r for r in rows if r["displayName"] == "Adatum Ltd")["lastSignInAt"] == "2026-11-20T15:00:00Z"


def test_evaluations_stored_before_rows_were_sharded_are_still_read(env: dict[str, str]) -> None:
    settings = settings_with()

    async def go() -> tuple[dict[str, Any], Any]:
        async with Services(settings) as services:
            report = await build_report(services, AS_OF - timedelta(days=1))
            table = services.storage.table("EvaluationRows")
            for row in report["customers"]:  # the earlier layout: one partition, no RowShards on the head
                await table.upsert_entity(
                    {
                        "PartitionKey": "0000000000001-legacy",
                        "RowKey": row["tenantId"],
                        "Row": json.dumps(row),
                    }
                )
            head = {k: v for k, v in report.items() if k != "customers"}
            await services.storage.table("Evaluations").upsert_entity(
                {
                    "PartitionKey": "evaluation",
                    "RowKey": "0000000000001-legacy",
                    "CreatedAt": report["asOf"],
                    "AsOf": report["asOf"],
                    "Head": json.dumps(head),
                    "Rows": len(report["customers"]),
                }
            )
            return report, await EvaluationStore(services.storage).latest()

    report, stored = run(go())
    assert stored is not None and stored.report == report


def test_the_timer_fans_out_and_the_shard_trigger_applies_the_policy(
    env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enforce mode through the registered functions: the same removal messages as the in-process run."""
    from shared.platform.settings import get_settings

    emulator.post_scenario(estate())
    for key, value in {**ENFORCE, "EVALUATION_SHARD_THRESHOLD": "0"}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    functions = registered_functions()

    async def take(services: Services, name: str) -> list[func.QueueMessage]:
        queue, out = services.storage.queue(name), []
        while (message := await queue.receive_message()) is not None:
            out.append(func.QueueMessage(id=str(message.id), body=str(message.content).encode("utf-8")))
            await queue.delete_message(message)
        return out

    async def go() -> tuple[list[str], int, Any]:
        try:
            await functions["evaluation"].get_user_function()(TimerRequest(past_due=False))
            async with Services(settings_with()) as services:
                assert await services.evaluations.latest() is None  # not visible before every shard is stored
                shards = await take(services, EVALUATION_SHARDS_QUEUE)
                assert sorted(json.loads(m.get_body())["shard"] for m in shards) == sorted(SHARDS)
                shard_function = functions["evaluation_shard"].get_user_function()
                for message in shards:
                    await shard_function(message)
                removals = await take(services, "removals")
                notifications = await take(services, "notifications")
                return (
                    sorted(json.loads(m.get_body())["tenantId"] for m in removals),
                    len(notifications),
                    await services.evaluations.latest(),
                )
        finally:
            await close_services()

    removal_tenants, notifications, stored = run(go())
    assert removal_tenants == CANDIDATES
    assert notifications == 2  # the partner warning and the digest, as in the in-process evaluation
    assert stored is not None and stored.report["summary"]["customersUnderMonitoring"] == 7


def test_a_poisoned_shard_is_recorded_and_alerted(env: dict[str, str]) -> None:
    settings = settings_with(
        NOTIFY_PARTNER_ADDRESSES="admins@contoso.example", NOTIFY_SENDER="n@contoso.example"
    )

    async def go() -> tuple[list[dict[str, Any]], int]:
        async with Services(settings) as services:
            body = json.dumps({"v": 1, "evaluationId": "0000000000001-abc", "shard": "7"}).encode()
            await handle_shard_poison(services, body)
            await handle_shard_poison(services, body)  # a second copy: recorded once
            actions = await list_actions(services.storage)
            queue = services.storage.queue("notifications")
            count = 0
            while (m := await queue.receive_message()) is not None:
                count += 1
                await queue.delete_message(m)
            return actions, count

    actions, alerts = run(go())
    assert [a["action"] for a in actions] == ["evaluation.failed"]
    assert "shard 7" in actions[0]["detail"] and alerts >= 1


def test_example_estate_fans_out(env: dict[str, str], emulator: Any) -> None:
    emulator.post_scenario(load_example())

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        async with Services(settings_with()) as services:
            report = await audit(services, AS_OF)
            return report, await _sharded(services, AS_OF)

    report, sharded = run(go())
    assert sharded == report
