"""The function app as the host sees it: names, triggers, schedules; and the triggers called directly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from azure.functions.timer import TimerRequest

from shared.evaluation.audit import build_report
from shared.evaluation.store import EvaluationStore
from shared.platform.settings import Settings
from shared.runtime import close_services
from shared.services import Services
from shared.signins.ingestion import ingestion_for
from tests.conftest import registered_functions, settings_with

functions_by_name = registered_functions


def test_timer_triggers_are_registered_with_schedules_from_settings() -> None:
    functions = functions_by_name()
    assert set(functions) == {
        "relationship_sync",
        "signin_ingest",
        "evaluation",
        "removals",
        "removals_poison",
        "notifications",
        "notifications_poison",
        "http_api",
        "evaluation_shard",
        "evaluation_shard_poison",
        "audit_runs",
        "audit_runs_poison",
        "webhooks",
        "webhooks_poison",
        "signin_archive_signinlogs",
        "signin_archive_noninteractiveusersigninlogs",
    }
    timers = {
        name: f.get_trigger().get_dict_repr()
        for name, f in functions.items()
        if f.get_trigger().get_dict_repr()["type"] == "timerTrigger"
    }
    assert timers["relationship_sync"]["schedule"] == "%RELATIONSHIP_SYNC_SCHEDULE%"
    assert timers["signin_ingest"]["schedule"] == "%SIGNIN_INGEST_SCHEDULE%"
    assert timers["evaluation"]["schedule"] == "%EVALUATION_SCHEDULE%"
    # Every %SETTING% a trigger references is a setting the app knows (and the Bicep sets).
    names = set(Settings.setting_names())
    for trigger in timers.values():
        assert trigger["schedule"].strip("%") in names
    # The host refuses duplicate names; get_functions() does the same check.
    assert len(functions) == len(set(functions))


def test_function_json_is_serialisable() -> None:
    for function in functions_by_name().values():
        document = json.loads(function.get_function_json())
        assert document["bindings"], function.get_function_name()


def test_ingestion_timers_run_the_services(env: dict[str, str]) -> None:
    functions = functions_by_name()
    timer = TimerRequest(past_due=False)

    async def go() -> dict[str, Any]:
        try:
            await functions["relationship_sync"].get_user_function()(timer)
            await functions["signin_ingest"].get_user_function()(timer)
        finally:
            await close_services()
        async with Services(settings_with()) as services:
            estate = (
                await services.storage.table("Relationships")
                .query_entities("PartitionKey ne @x", parameters={"x": ""})
                .__anext__()
            )
            coverage = await ingestion_for(services, await services.partner_tenant_id()).state.load_coverage()
            report = await build_report(services, coverage.intervals[-1][1])
            assert await EvaluationStore(services.storage).latest() is None  # timers do not evaluate
            return {"relationship": dict(estate), "coverage": coverage, "report": report}

    result = asyncio.run(go())
    assert result["relationship"]["Type"] in ("DAP", "GDAP")
    assert result["coverage"].intervals, "ingestion recorded coverage"
    assert result["report"]["summary"]["customersUnderMonitoring"] == 5
