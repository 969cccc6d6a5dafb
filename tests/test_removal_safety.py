"""No race, retry or delivery can remove access twice or remove access that may be in use: one removal
per customer and stretch whoever asks, busy deliveries deferred without spending the host's retry
budget, no resend of a change answered 500, a temporary skip re-evaluated, and the last check held
until the sign-in log has settled."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

from shared.evaluation.audit import audit
from shared.evaluation.run import run_evaluation
from shared.platform.retry import UpstreamError, may_retry
from shared.platform.timeutil import utcnow
from shared.removals.request import removal_message, request_removals
from shared.removals.store import LEASE, RemovalNotYet, RemovalStore
from shared.removals.worker import handle_removal_message, handle_removal_poison, process_removal_queue
from shared.runtime import close_services
from shared.services import Services
from tests.conftest import registered_functions, settings_with
from tests.test_enforcement import (
    AS_OF,
    ENFORCE,
    WINGTIP,
    estate,
    gdap_ids,
    removal_requests,
    run,
    with_services,
)


@pytest.fixture
def enforced(env: dict[str, str], emulator: Any) -> dict[str, Any]:
    scenario = estate()
    emulator.post_scenario(scenario)
    return scenario


def removals_of(settings: Any, tenant: str) -> list[Any]:
    async def go(services: Services) -> list[Any]:
        out = []
        async for e in services.storage.table("Removals").query_entities(
            "TenantId eq @t", parameters={"t": tenant}
        ):
            out.append(dict(e))
        return out

    return run(with_services(settings, go))  # type: ignore[no-any-return]


def test_requests_at_the_same_instant_create_one_removal(enforced: dict[str, Any], emulator: Any) -> None:
    """Two operators and the policy ask for the same customer at once: one removal, one request each."""
    settings = settings_with(**ENFORCE)

    async def go(services: Services) -> list[set[str]]:
        await audit(services, AS_OF)
        rounds = []
        for _ in range(3):
            answers = await asyncio.gather(
                *(
                    request_removals(
                        services, [WINGTIP], requested_by=f"op{i}@contoso.example", reason="unused"
                    )
                    for i in range(6)
                )
            )
            rounds.append({a[0]["id"] for a in answers})
        await process_removal_queue(services)
        return rounds

    rounds = run(with_services(settings, go))
    assert all(len(ids) == 1 for ids in rounds) and len(set.union(*rounds)) == 1
    assert len(removals_of(settings, WINGTIP)) == 1
    assert removal_requests(emulator) == sorted(("GDAP", r) for r in gdap_ids(enforced, WINGTIP))


def test_a_busy_delivery_is_deferred_not_failed(enforced: dict[str, Any], emulator: Any) -> None:
    """On the host an exception counts towards maxDequeueCount: a delivery that finds the removal held by
    another must end normally and send the message again for later; the poison handler must never mark
    a removal that a live delivery is executing as failed."""
    settings = settings_with(**ENFORCE)
    function = registered_functions()["removals"].get_user_function()

    async def go() -> tuple[Any, int]:
        try:
            async with Services(settings) as services:
                summary = await run_evaluation(services, AS_OF)
                queue = services.storage.queue("removals")
                while (m := await queue.receive_message()) is not None:
                    await queue.delete_message(m)
                removal_id = next(q["removalId"] for q in summary["queued"] if q["tenantId"] == WINGTIP)
                store = RemovalStore(services.storage)
                held = await store.get(removal_id)
                assert held is not None
                held.status, held.lease_owner, held.lease_until = (
                    "requesting",
                    "another-delivery",
                    utcnow() + LEASE,
                )
                await store.replace(held)
                message = QueueMessage(id="m1", body=removal_message(held).encode(), dequeue_count=5)
                await function(message)  # the fifth delivery: must not raise
                await handle_removal_poison(services, removal_message(held))
                after = await store.get(removal_id)
                properties = await queue.get_queue_properties()
                return after, int(properties.approximate_message_count)
        finally:
            await close_services()

    after, waiting = asyncio.run(go())
    assert after.status == "requesting" and after.lease_owner == "another-delivery"  # untouched
    assert waiting == 1  # sent again, invisible until the lease ends
    assert removal_requests(emulator) == []


def test_a_terminate_answered_500_is_not_sent_again_by_the_sdk(
    enforced: dict[str, Any], emulator: Any
) -> None:
    """A 500 may come after the request took effect; the SDK's retry must not resend a change on it.
    The removal's next delivery decides from the live state instead."""
    assert may_retry("GET", 500) and may_retry("POST", 503) and not may_retry("POST", 500)
    assert not may_retry("PATCH", 502) and may_retry("PATCH", 429)
    settings = settings_with(**ENFORCE)

    async def evaluate(services: Services) -> Any:
        return await run_evaluation(services, AS_OF)

    summary = run(with_services(settings, evaluate))
    removal_id = next(q["removalId"] for q in summary["queued"] if q["tenantId"] == WINGTIP)
    emulator.add_faults(
        [
            {
                "method": "POST",
                "pathPrefix": "/v1.0/tenantRelationships/delegatedAdminRelationships/",
                "status": 500,
                "times": 1,
            }
        ]
    )

    async def deliver(services: Services) -> None:
        store = RemovalStore(services.storage)
        removal = await store.get(removal_id)
        assert removal is not None
        await handle_removal_message(services, removal_message(removal), message_id="m1")

    with pytest.raises(UpstreamError):
        run(with_services(settings, deliver))
    posts = [e for e in emulator.log() if e["method"] == "POST" and e["path"].endswith("/requests")]
    faulted = [e["path"] for e in posts if e.get("fault") == 500]
    assert len(faulted) == 1
    assert [e["path"] for e in posts].count(faulted[0]) == 1  # answered 500: not sent again by the SDK


def test_a_skip_for_a_temporary_reason_is_re_evaluated(enforced: dict[str, Any], emulator: Any) -> None:
    """Excluded when the worker ran, included again by the next evaluation: the customer is removable
    again in the same inactivity stretch (it used to stay skipped for the whole stretch)."""
    settings = settings_with(**ENFORCE)

    async def first(services: Services) -> Any:
        return await run_evaluation(services, AS_OF)

    run(with_services(settings, first))
    run(with_services(settings_with(**ENFORCE, EXCLUDED_TENANTS=WINGTIP), process_removal_queue))
    assert WINGTIP not in {t for _, t in removal_requests(emulator)}
    emulator.advance("PT1H")

    async def second(services: Services) -> Any:
        summary = await run_evaluation(services, AS_OF + timedelta(hours=1))
        await process_removal_queue(services)
        return summary

    summary = run(with_services(settings, second))
    assert WINGTIP in {q["tenantId"] for q in summary["queued"]}
    assert sorted(r for _, r in removal_requests(emulator) if r in gdap_ids(enforced, WINGTIP)) == sorted(
        gdap_ids(enforced, WINGTIP)
    )
    statuses = sorted(str(r["Status"]) for r in removals_of(settings, WINGTIP))
    assert statuses == ["requested", "skipped"]


def test_the_last_check_waits_for_the_sign_in_log_to_settle(
    enforced: dict[str, Any], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal decided at T is checked and executed only once Microsoft's clock passes T plus
    SIGNIN_LOG_LATENCY_MINUTES; its message stays invisible meanwhile."""
    from shared.platform.settings import get_settings

    for key, value in {**ENFORCE, "SIGNIN_LOG_LATENCY_MINUTES": "10"}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = settings_with()
    function = registered_functions()["removals"].get_user_function()

    async def decide(services: Services) -> tuple[str, Any, int]:
        summary = await run_evaluation(services, AS_OF)
        removal_id = next(q["removalId"] for q in summary["queued"] if q["tenantId"] == WINGTIP)
        visible = await services.storage.queue("removals").peek_messages(max_messages=32)
        removal = await RemovalStore(services.storage).get(removal_id)
        with pytest.raises(RemovalNotYet):
            await handle_removal_message(services, removal_message(removal), message_id="early")
        return removal_id, removal, len(visible)

    removal_id, removal, visible = run(with_services(settings, decide))
    assert visible == 0 and removal_requests(emulator) == []
    emulator.advance("PT11M")

    async def later() -> Any:
        try:
            await function(QueueMessage(id="m2", body=removal_message(removal).encode(), dequeue_count=1))
            async with Services(settings) as services:
                return await RemovalStore(services.storage).get(removal_id)
        finally:
            await close_services()

    done = asyncio.run(later())
    assert done.status in ("requested", "completed")
    assert sorted(r for _, r in removal_requests(emulator)) == sorted(gdap_ids(enforced, WINGTIP))
    assert json.loads(removal_message(done))["removalId"] == removal_id


def test_a_failure_that_is_not_microsofts_is_contained_and_alerted(
    enforced: dict[str, Any], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An expired Partner Center refresh token raises PermissionError inside the sync: the evaluation
    still runs on what the store holds, removes nothing on stale data, and tells the partner admins.
    A failure of the evaluation itself is recorded and alerted before it is raised."""
    from shared.platform.actions import list_actions

    settings = settings_with(**ENFORCE)

    async def expired(services: Services, now: Any) -> Any:
        raise PermissionError("Partner Center token refused: AADSTS700082: The refresh token has expired")

    import shared.evaluation.run

    monkeypatch.setattr(shared.evaluation.run, "sync_relationships", expired)

    async def evaluate(services: Services) -> Any:
        return await run_evaluation(services, AS_OF)

    summary = run(with_services(settings, evaluate))
    assert "PermissionError" in summary["refreshError"] and summary["queued"] == []
    assert removal_requests(emulator) == []

    async def broken_report(services: Services, as_of: Any) -> Any:
        raise KeyError("lastSignInAt")

    monkeypatch.setattr(shared.evaluation.run, "build_report", broken_report)
    with pytest.raises(KeyError):
        run(with_services(settings, evaluate))

    async def trail(services: Services) -> list[dict[str, Any]]:
        return await list_actions(services.storage)

    failed = [a for a in run(with_services(settings, trail)) if a["action"] == "enforcement.failed"]
    assert len(failed) == 2
    assert any("PermissionError" in a["detail"] for a in failed) and any(
        "KeyError" in a["detail"] for a in failed
    )


def test_people_fall_under_the_circuit_breaker_too(enforced: dict[str, Any], emulator: Any) -> None:
    from tests.test_enforcement import LAMNA

    settings = settings_with(**{**ENFORCE, "MAX_REMOVALS_PER_RUN": "1"})

    async def go(services: Services) -> tuple[str, list[Any]]:
        await audit(services, AS_OF)
        with pytest.raises(ValueError, match="circuit breaker") as refused:
            await request_removals(
                services, [WINGTIP, LAMNA], requested_by="op@contoso.example", reason="bulk"
            )
        first = await request_removals(services, [WINGTIP], requested_by="op@contoso.example", reason="one")
        again = await request_removals(services, [WINGTIP], requested_by="op@contoso.example", reason="same")
        assert again[0]["id"] == first[0]["id"]  # the same customer again does not count twice
        with pytest.raises(ValueError, match="circuit breaker"):
            await request_removals(services, [LAMNA], requested_by="op2@contoso.example", reason="second")
        return str(refused.value), first

    message, first = run(with_services(settings, go))
    assert "nothing was queued" in message and len(first) == 1
    assert len(removals_of(settings, LAMNA)) == 0 and len(removals_of(settings, WINGTIP)) == 1


def test_a_forged_notification_message_mails_nobody_it_names(enforced: dict[str, Any], emulator: Any) -> None:
    """Anyone with write access to the queue could mail anyone from NOTIFY_SENDER if messages were
    mailed as queued. The worker takes recipients and content from the store; the message is a key."""
    from shared.notifications.worker import handle_notification_message
    from tests.test_enforcement import mails, recipients

    settings = settings_with(**ENFORCE)

    async def go(services: Services) -> tuple[list[str], dict[str, Any]]:
        await run_evaluation(services, AS_OF)
        queue = services.storage.queue("notifications")
        genuine = json.loads(str((await queue.receive_message()).content))
        evil = {
            "recipients": ["victim@evil.example"],
            "alert": "phish",
            "detail": "click https://evil.example",
        }
        results = [
            await handle_notification_message(
                services, json.dumps({**genuine, "data": evil}), message_id="forged"
            ),
            await handle_notification_message(
                services,
                json.dumps({"v": 1, "key": "alert:made-up", "kind": "partner-alert", "data": evil}),
                message_id="unknown",
            ),
            await handle_notification_message(services, json.dumps(genuine), message_id="genuine"),
        ]
        return results, genuine

    results, genuine = run(with_services(settings, go))
    assert results == ["sent", "refused", "sent"]
    sent = mails(emulator)
    assert len(sent) == 1 and "data" not in genuine  # the queue carries only the key
    assert recipients(sent[0]) == ENFORCE["NOTIFY_PARTNER_ADDRESSES"].split(",")
    assert "evil.example" not in json.dumps(sent[0])


def test_a_termination_that_takes_hours_is_requested_until_it_is_done(
    env: dict[str, str], emulator: Any
) -> None:
    from shared.removals.progress import refresh_requested_removals

    scenario = estate()
    scenario["asyncDurations"] = {"termination": "PT6H"}
    emulator.post_scenario(scenario)
    settings = settings_with(**ENFORCE)

    async def go(services: Services) -> list[str]:
        summary = await run_evaluation(services, AS_OF)
        removal_id = next(q["removalId"] for q in summary["queued"] if q["tenantId"] == WINGTIP)
        await process_removal_queue(services)
        store = RemovalStore(services.storage)
        seen = [(await store.get(removal_id)).status]
        for hours in (5, 2):
            emulator.advance(f"PT{hours}H")
            await refresh_requested_removals(services)
            seen.append((await store.get(removal_id)).status)
        return seen

    assert run(with_services(settings, go)) == ["requested", "requested", "completed"]


def test_a_termination_that_fails_is_reported_failed_with_the_reason(
    env: dict[str, str], emulator: Any
) -> None:
    from shared.platform.actions import list_actions
    from shared.removals.progress import refresh_requested_removals

    scenario = estate()
    for customer in scenario["customers"]:
        if customer["tenantId"] == WINGTIP:
            for rel in customer["gdapRelationships"]:
                rel["failTermination"] = True
    emulator.post_scenario(scenario)
    settings = settings_with(**ENFORCE)

    async def go(services: Services) -> tuple[Any, list[dict[str, Any]]]:
        summary = await run_evaluation(services, AS_OF)
        removal_id = next(q["removalId"] for q in summary["queued"] if q["tenantId"] == WINGTIP)
        await process_removal_queue(services)
        emulator.advance("PT3H")
        await refresh_requested_removals(services)
        return await RemovalStore(services.storage).get(removal_id), await list_actions(
            services.storage, tenant_id=WINGTIP
        )

    removal, trail = run(with_services(settings, go))
    assert removal.status == "failed" and "terminate request" in removal.status_reason
    assert "access is kept" in removal.status_reason
    failed = [a for a in trail if a["action"] == "gdap.terminate" and a["result"] == "failed"]
    assert len(failed) == len(gdap_ids(scenario, WINGTIP))
    assert any(a["action"] == "removal.failed" for a in trail)


def test_no_removal_goes_on_while_customer_notices_cannot_be_sent(
    enforced: dict[str, Any], emulator: Any
) -> None:
    """sendMail refused (403: Mail.Send missing or restricted): the next evaluation halts, queued
    removals wait, and both go on once a mail is sent again."""
    from shared.notifications.enqueue import enqueue_partner_alert
    from shared.notifications.store import mail_broken
    from shared.notifications.worker import process_notification_queue

    settings = settings_with(**ENFORCE)
    emulator.add_faults([{"method": "POST", "pathPrefix": "/v1.0/users/", "status": 403, "times": 40}])

    async def broken(services: Services) -> tuple[Any, Any, Any]:
        first = await run_evaluation(services, AS_OF)
        await process_notification_queue(services)  # the warning and the digest: refused
        why = await mail_broken(services)
        removal = await RemovalStore(services.storage).get(first["queued"][0]["removalId"])
        with pytest.raises(RemovalNotYet, match="customer notices cannot be sent"):
            await handle_removal_message(services, removal_message(removal), message_id="m1")
        emulator.advance("PT1H")
        second = await run_evaluation(services, AS_OF + timedelta(hours=1))
        return why, second, removal

    why, second, removal = run(with_services(settings, broken))
    assert why and "403" in why
    assert second["halted"].startswith("mail: customer notices cannot be sent") and second["queued"] == []
    assert removal_requests(emulator) == []

    emulator.clear_faults()

    async def working(services: Services) -> tuple[Any, str]:
        await enqueue_partner_alert(
            services, "failed", "probe", {"run": "probe", "detail": "mail works again"}
        )
        await process_notification_queue(services)
        status = await handle_removal_message(services, removal_message(removal), message_id="m2")
        return await mail_broken(services), status

    still, status = run(with_services(settings, working))
    assert still is None and status in ("requested", "completed")
    assert removal_requests(emulator) != []  # removed once mail worked again


def test_the_trail_has_a_tamper_evident_copy(env: dict[str, str]) -> None:
    """Every Actions row is also appended to an append blob (immutable in Azure): a row deleted or
    altered in the table afterwards is found by comparing the two."""
    from azure.data.tables import UpdateMode

    from shared.platform.actions import record_action, verify_trail

    settings = settings_with()

    async def go(services: Services) -> tuple[dict[str, Any], dict[str, Any], int]:
        rows = [
            await record_action(
                services.storage,
                tenant_id=WINGTIP,
                actor="op@contoso.example",
                action="removal.requested",
                result="requested",
                detail=f"step {n}",
                action_id=f"evidence-{n}",
            )
            for n in range(3)
        ]
        again = await record_action(
            services.storage,
            tenant_id=WINGTIP,
            actor="op@contoso.example",
            action="removal.requested",
            result="requested",
            detail="step 0",
            action_id="evidence-0",
        )  # idempotent: no second row, no second line
        assert again["id"] == rows[0]["id"]
        clean = await verify_trail(services.storage)
        table = services.storage.table("Actions")
        entities = sorted(
            [dict(e) async for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": WINGTIP})],
            key=lambda e: str(e["RowKey"]),
        )
        await table.delete_entity(entities[0]["PartitionKey"], entities[0]["RowKey"])  # someone hides it
        await table.update_entity(
            {
                "PartitionKey": entities[1]["PartitionKey"],
                "RowKey": entities[1]["RowKey"],
                "Result": "skipped",
            },
            mode=UpdateMode.MERGE,
        )  # someone rewrites it
        return clean, await verify_trail(services.storage), len(await services.storage.audit_records())

    clean, tampered, lines = run(with_services(settings, go))
    assert clean == {"deleted": [], "altered": [], "uncopied": []} and lines == 3
    assert [r["Detail"] for r in tampered["deleted"]] == ["step 0"]
    assert [(a["written"]["Result"], a["stored"]["Result"]) for a in tampered["altered"]] == [
        ("requested", "skipped")
    ]


def test_a_sender_that_cannot_send_stops_the_first_cycles_removals(
    env: dict[str, str], emulator: Any
) -> None:
    """The sender lost Mail.Send since the last mail went out: the cycle sends its mail (the digest that
    lists the removals) before any removal starts, learns that mail cannot be sent, and removes nobody.
    (The removals ran first and four customers lost access untold; only the next cycle halted.)"""
    from shared.evaluation.run import run_cycle

    scenario = estate()
    scenario["missingPermissions"] = ["Mail.Send"]
    emulator.post_scenario(scenario)
    settings = settings_with(**ENFORCE)
    with pytest.raises(UpstreamError) as failed:
        run(with_services(settings, lambda s: run_cycle(s, AS_OF)))
    summary = failed.value.summary  # type: ignore[attr-defined]
    assert summary["queued"] and summary["removed"] == []
    assert removal_requests(emulator) == []
    assert all(
        "not finished in this run" in s["reason"]
        for s in summary["skipped"]
        if s["tenantId"] in {q["tenantId"] for q in summary["queued"]}
    )
