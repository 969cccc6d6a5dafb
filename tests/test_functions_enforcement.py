"""The enforcement triggers as the host calls them: real TimerRequest / QueueMessage objects, the
registered user functions, Azurite and the emulator behind them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared.platform.actions import list_actions
from shared.platform.settings import Settings
from shared.removals.store import RemovalStore
from shared.runtime import close_services
from shared.services import Services
from tests.conftest import registered_functions, settings_with
from tests.test_enforcement import (
    CANDIDATES,
    ENFORCE,
    LAMNA,
    PROSEWARE,
    WINGTIP,
    estate,
    gdap_ids,
    mails,
    removal_requests,
)

ENFORCEMENT_FUNCTIONS = {"evaluation", "removals", "removals_poison", "notifications", "notifications_poison"}


functions_by_name = registered_functions


def test_enforcement_functions_are_registered_with_their_bindings() -> None:
    functions = functions_by_name()
    assert set(functions) >= ENFORCEMENT_FUNCTIONS
    triggers = {name: functions[name].get_trigger().get_dict_repr() for name in ENFORCEMENT_FUNCTIONS}
    assert triggers["evaluation"]["type"] == "timerTrigger"
    assert triggers["evaluation"]["schedule"] == "%EVALUATION_SCHEDULE%"
    assert "EVALUATION_SCHEDULE" in Settings.setting_names()
    for name, queue in (
        ("removals", "removals"),
        ("removals_poison", "removals-poison"),
        ("notifications", "notifications"),
        ("notifications_poison", "notifications-poison"),
    ):
        assert triggers[name]["type"] == "queueTrigger"
        assert triggers[name]["queueName"] == queue
        assert triggers[name]["connection"] == "AzureWebJobsStorage"


async def _take(services: Services, queue_name: str) -> list[func.QueueMessage]:
    """Messages off a queue as the host would hand them over (plain JSON: messageEncoding none)."""
    queue = services.storage.queue(queue_name)
    out = []
    while True:
        message = await queue.receive_message()
        if message is None:
            return out
        out.append(func.QueueMessage(id=str(message.id), body=str(message.content).encode("utf-8")))
        await queue.delete_message(message)


@pytest.fixture
def function_env(env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from shared.platform.settings import get_settings

    scenario = estate()
    emulator.post_scenario(scenario)
    for key, value in ENFORCE.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return scenario


def test_timer_and_queue_functions_run_the_cycle(function_env: dict[str, Any], emulator: Any) -> None:
    functions = functions_by_name()
    settings = settings_with()

    async def go() -> dict[str, Any]:
        try:
            await functions["evaluation"].get_user_function()(TimerRequest(past_due=False))
            async with Services(settings) as services:
                removal_messages = await _take(services, "removals")
                assert sorted(json.loads(m.get_body())["tenantId"] for m in removal_messages) == CANDIDATES
                removals = functions["removals"].get_user_function()
                for message in removal_messages:
                    await removals(message)
                await removals(removal_messages[0])  # a redelivery: no second request
                # A stray copy on the poison queue of a removal that did finish: nothing failed, no alert.
                await functions["removals_poison"].get_user_function()(removal_messages[0])
                finished = await RemovalStore(services.storage).get(
                    json.loads(removal_messages[0].get_body())["removalId"]
                )
                assert finished is not None and finished.status == "requested"
                notification_messages = await _take(services, "notifications")
                notify = functions["notifications"].get_user_function()
                for message in notification_messages:
                    await notify(message)
                for message in notification_messages:  # every one delivered twice: still one mail each
                    await notify(message)
                return {"notifications": len(notification_messages)}
        finally:
            await close_services()

    result = asyncio.run(go())
    expected = sorted(
        [("DAP", PROSEWARE), ("DAP", LAMNA)]
        + [("GDAP", r) for t in CANDIDATES for r in gdap_ids(function_env, t)]
    )
    assert removal_requests(emulator) == expected
    # The timer ran before the queue: the warning and the digest, then four customer notices.
    assert result["notifications"] == 2 + 4
    assert len(mails(emulator)) == 6


def test_failures_stay_on_the_queue_and_poison_is_recorded_and_alerted(
    function_env: dict[str, Any], emulator: Any
) -> None:
    functions = functions_by_name()
    settings = settings_with()
    wingtip_ids = gdap_ids(function_env, WINGTIP)
    emulator.add_faults(
        [
            {
                "method": "POST",
                "pathPrefix": f"/v1.0/tenantRelationships/delegatedAdminRelationships/"
                f"{wingtip_ids[0]}/requests",
                "status": 403,
                "times": -1,
            }
        ]
    )

    async def go() -> dict[str, Any]:
        try:
            await functions["evaluation"].get_user_function()(TimerRequest(past_due=False))
            async with Services(settings) as services:
                messages = {
                    json.loads(m.get_body())["tenantId"]: m for m in await _take(services, "removals")
                }
                wingtip = messages[WINGTIP]
                removals = functions["removals"].get_user_function()
                for _ in range(5):  # the host's deliveries up to maxDequeueCount: each one raises
                    with pytest.raises(Exception, match="403"):
                        await removals(wingtip)
                removal_id = json.loads(wingtip.get_body())["removalId"]
                before = await RemovalStore(services.storage).get(removal_id)
                # The host moves it to removals-poison; the poison function records and alerts.
                await functions["removals_poison"].get_user_function()(
                    func.QueueMessage(id="poison-1", body=wingtip.get_body())
                )
                after = await RemovalStore(services.storage).get(removal_id)
                alerts = await _take(services, "notifications")
                notify = functions["notifications"].get_user_function()
                for message in alerts:
                    await notify(message)
                # An unsendable notification: the poison function records it and alerts partner admins.
                bad = func.QueueMessage(
                    id="n-1",
                    body=json.dumps(
                        {
                            "key": "customer-removal:test",
                            "kind": "customer-removal",
                            "tenantId": WINGTIP,
                            "data": {"recipients": ["admin@wingtip.example"]},
                        }
                    ).encode(),
                )
                await functions["notifications_poison"].get_user_function()(bad)
                follow_up = await _take(services, "notifications")
                trail = await list_actions(services.storage, tenant_id=WINGTIP)
                return {
                    "before": before,
                    "after": after,
                    "alerts": alerts,
                    "follow_up": follow_up,
                    "trail": trail,
                }
        finally:
            await close_services()

    result = asyncio.run(go())
    assert result["before"] is not None and result["before"].status == "requesting"
    assert result["after"] is not None and result["after"].status == "failed"
    assert "gave up after 5 attempts" in result["after"].status_reason
    trail = result["trail"]
    assert [a["result"] for a in trail if a["action"] == "removal.attempt"] == ["error"] * 5
    assert [a["result"] for a in trail if a["action"] == "gdap.terminate"] == ["requested"]  # the other one
    assert any(a["action"] == "removal.failed" for a in trail)
    assert any(a["action"] == "notification.customer-removal" and a["result"] == "failed" for a in trail)
    assert ("GDAP", wingtip_ids[1]) in removal_requests(emulator)
    assert ("GDAP", wingtip_ids[0]) not in removal_requests(emulator)
    alert_mail = [m for m in mails(emulator) if m["subject"].startswith("ALERT: a removals message failed")]
    assert len(alert_mail) == 1
    assert [json.loads(m.get_body())["kind"] for m in result["follow_up"]] == ["partner-alert"]
