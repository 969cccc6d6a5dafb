"""Policy enforcement end to end: Azurite + the emulator through the real clients.

The estate is the example with a few customers added so that one cycle meets every shape of
removal: DAP only (Proseware, ja-JP), GDAP only (Northwind), DAP and GDAP (Lamna), several GDAP
relationships (Wingtip), one customer to warn (Tailspin) and the active rest. With
REMOVE_AFTER_DAYS=15 the 30- and 20-day-idle customers are candidates.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from shared.domain.models import GLOBAL_ADMINISTRATOR, HELPDESK_ADMINISTRATOR
from shared.evaluation.audit import audit
from shared.evaluation.run import run_cycle, run_evaluation
from shared.notifications.worker import process_notification_queue
from shared.platform.actions import list_actions
from shared.platform.retry import UpstreamError
from shared.platform.settings import Settings
from shared.platform.timeutil import iso, parse_iso
from shared.removals.progress import get_removal
from shared.removals.request import request_removals
from shared.removals.store import RemovalStore
from shared.removals.worker import handle_removal_message, process_removal_queue
from shared.services import Services
from tests.conftest import load_example, settings_with

AS_OF = parse_iso("2026-11-21T00:00:00Z")
PARTNER = "6513270e-269e-4d37-b2a7-4de452e6b438"
ADATUM = "92276658-1e27-41c0-8a6a-63ec24ede6a4"
RELECLOUD = "18f135d2-5f55-4203-b018-50c5a38fd547"
PROSEWARE = "ec66a787-95e7-41d1-b731-af10506bf2ef"  # DAP only, ja-JP, no sign-in
LAMNA = "3f98e277-4cbd-47ad-9c90-a9587403e430"  # DAP + GDAP, last sign-in 20 days ago
WINGTIP = "ca02135e-92b1-43f2-8ede-0d7ac3baea9e"  # two GDAP relationships (one added), no sign-in
NORTHWIND = "0b5b4a3e-6a53-4c5e-8d0e-6f7e1c9a2b01"  # added: one GDAP relationship, no sign-in
TAILSPIN = "7d1c2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"  # added: signed in 10 days ago -> warned
CANDIDATES = sorted([PROSEWARE, LAMNA, WINGTIP, NORTHWIND])
INTUNE = "3a2c62db-5318-420d-8d74-23affee5d9d5"
AGENT = "8d116ece-1738-47d9-bd9c-172411e20b8f"
ADMINS = "admins@contoso.example"
SENDER = "notices@contoso.example"

ENFORCE = {
    "POLICY_MODE": "enforce",
    "RECOMMEND_AFTER_DAYS": "15",
    "REMOVE_AFTER_DAYS": "15",
    "WARN_DAYS_BEFORE_REMOVAL": "14",
    "NOTIFY_SENDER": SENDER,
    "NOTIFY_PARTNER_ADDRESSES": ADMINS,
}


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def gdap(
    rel_id: str,
    tenant: str,
    name: str,
    roles: list[str],
    activated: str = "2026-06-01T00:00:00Z",
    status: str = "active",
) -> dict[str, Any]:
    return {
        "id": f"{rel_id}-{tenant}",
        "displayName": name,
        "status": status,
        "duration": "P730D",
        "createdDateTime": activated,
        "activatedDateTime": activated,
        "endDateTime": "2028-06-01T00:00:00Z",
        "autoExtendDuration": "PT0S",
        "roles": roles,
        "accessAssignments": [
            {
                "id": f"aa-{rel_id}",
                "groupId": "d23f0824-128b-4f33-8c5c-7fd0a6a3a450",
                "roles": roles,
                "status": "active",
            }
        ],
    }


def customer(
    tenant: str,
    name: str,
    culture: str = "en-US",
    rels: list[dict[str, Any]] | None = None,
    dap: dict[str, Any] | None = None,
) -> dict[str, Any]:
    slug = "".join(ch for ch in name.lower() if ch.isalnum())[:12] or "customer"
    return {
        "tenantId": tenant,
        "displayName": name,
        "defaultDomainName": f"{slug}.onmicrosoft.com",
        "culture": culture,
        "contacts": [f"admin@{slug}.example", f"it@{slug}.example"],
        "dap": dap,
        "gdapRelationships": rels or [],
    }


def sign_in(tenant: str, when: str, sid: str) -> dict[str, Any]:
    return {
        "id": sid,
        "createdDateTime": when,
        "userId": AGENT,
        "resourceTenantId": tenant,
        "crossTenantAccessType": "serviceProvider",
        "errorCode": 0,
        "appDisplayName": "Microsoft 365 admin center",
    }


def estate() -> dict[str, Any]:
    scenario = copy.deepcopy(load_example())
    wingtip = next(c for c in scenario["customers"] if c["tenantId"] == WINGTIP)
    wingtip["gdapRelationships"].append(
        gdap(
            "11111111-2222-4333-8444-555555555555", WINGTIP, "Wingtip-intune", [GLOBAL_ADMINISTRATOR, INTUNE]
        )
    )
    scenario["customers"].append(
        customer(
            NORTHWIND,
            "Northwind Traders",
            rels=[
                gdap(
                    "22222222-3333-4444-8555-666666666666",
                    NORTHWIND,
                    "Northwind-helpdesk",
                    [HELPDESK_ADMINISTRATOR],
                )
            ],
        )
    )
    scenario["customers"].append(
        customer(
            TAILSPIN,
            "Tailspin Toys",
            rels=[
                gdap(
                    "33333333-4444-4555-8666-777777777777", TAILSPIN, "Tailspin-admin", [GLOBAL_ADMINISTRATOR]
                )
            ],
        )
    )
    scenario["signIns"].append(
        sign_in(TAILSPIN, "2026-11-11T00:00:00Z", "00000000-0000-4000-8000-00000000ta11")
    )
    return scenario


async def with_services(settings: Settings, work: Callable[[Services], Awaitable[Any]]) -> Any:
    async with Services(settings) as services:
        return await work(services)


def cycle(settings: Settings, as_of: Any = AS_OF) -> dict[str, Any]:
    return run(with_services(settings, lambda s: run_cycle(s, as_of)))  # type: ignore[no-any-return]


def actions(settings: Settings, tenant: str | None = None) -> list[dict[str, Any]]:
    return run(with_services(settings, lambda s: list_actions(s.storage, tenant_id=tenant)))  # type: ignore[no-any-return]


def mutations(emulator: Any) -> list[dict[str, Any]]:
    """Mutating requests the emulator executed (injected faults answered without executing)."""
    return [
        e for e in emulator.log() if e["method"] in ("POST", "PATCH", "DELETE", "PUT") and not e.get("fault")
    ]


def removal_requests(emulator: Any) -> list[tuple[str, str]]:
    out = []
    for entry in mutations(emulator):
        path = entry["path"]
        if entry["method"] == "PATCH" and path.startswith("/partnercenter/v1/customers/"):
            out.append(("DAP", path.rsplit("/", 1)[1]))
        elif path.endswith("/requests") and "delegatedAdminRelationships" in path:
            out.append(("GDAP", path.split("/")[-2]))
    return sorted(out)


def mails(emulator: Any) -> list[dict[str, Any]]:
    return [m["message"] for m in emulator.outbox()]


def recipients(message: dict[str, Any]) -> list[str]:
    return [r["emailAddress"]["address"] for r in message.get("toRecipients", [])]


def gdap_ids(scenario: dict[str, Any], tenant: str) -> list[str]:
    c = next(c for c in scenario["customers"] if c["tenantId"] == tenant)
    return [r["id"] for r in c["gdapRelationships"] if r["status"] == "active"]


@pytest.fixture
def enforced(env: dict[str, str], emulator: Any) -> dict[str, Any]:
    scenario = estate()
    emulator.post_scenario(scenario)
    return scenario


# --- the full cycle ---------------------------------------------------------------------------------


def test_full_cycle_removes_exactly_the_candidates_and_mails_everyone(
    enforced: dict[str, Any], emulator: Any
) -> None:
    settings = settings_with(**ENFORCE)
    summary = cycle(settings)
    assert summary["mode"] == "enforce" and summary["halted"] is None
    assert summary["asOf"] == "2026-11-21T00:00:00Z"
    assert sorted(summary["candidates"]) == CANDIDATES
    assert sorted(summary["removed"]) == CANDIDATES
    assert summary["warned"] == [TAILSPIN]
    assert all(s["tenantId"] not in CANDIDATES for s in summary["skipped"])

    # Exactly the candidates' relationships, each once: DAP by PATCH, every active GDAP by a terminate request.
    expected = sorted(
        [("DAP", PROSEWARE), ("DAP", LAMNA)]
        + [("GDAP", rid) for t in (LAMNA, WINGTIP, NORTHWIND) for rid in gdap_ids(enforced, t)]
    )
    assert removal_requests(emulator) == expected
    patches = [e for e in mutations(emulator) if e["method"] == "PATCH"]
    assert all(
        e["body"] == {"AllowDelegatedAccess": False, "attributes": {"objectType": "Customer"}}
        for e in patches
    )
    state = {c["tenantId"]: c for c in emulator.state(sign_ins=False)["customers"]}
    assert state[PROSEWARE]["dap"]["enabled"] is False and state[LAMNA]["dap"]["enabled"] is False
    assert state[ADATUM]["dap"]["enabled"] is True
    for tenant in (LAMNA, WINGTIP, NORTHWIND):
        # (the emulator moves every relationship one step on each list read)
        assert {r["status"] for r in state[tenant]["gdapRelationships"]} <= {
            "terminationRequested",
            "terminating",
            "terminated",
        }
    for tenant in (RELECLOUD, TAILSPIN):
        assert {r["status"] for r in state[tenant]["gdapRelationships"]} == {"active"}

    # Customers: one notice each, to their contacts, in their language; partner admins: warning + digest.
    sent = mails(emulator)
    by_recipient = {tuple(recipients(m)): m for m in sent}
    proseware = by_recipient[("admin@proseware.example",)]
    assert "削除しました" in proseware["subject"] and "グローバル管理者" in proseware["body"]["content"]
    assert (
        "サービス要求" in proseware["body"]["content"]
        and "Azure サブスクリプション" in proseware["body"]["content"]
    )
    lamna = by_recipient[("admin@lamna.example",)]
    assert lamna["subject"].startswith("contoso partner removed its delegated admin access to Lamna Ltd")
    body = lamna["body"]["content"]
    assert lamna["body"]["contentType"].lower() == "html"
    assert "Global Administrator" in body and "Helpdesk Administrator" in body and "Lamna-gdap-0" in body
    assert "Exchange Administrator" in body  # GDAP role ids are named
    # Resource Manager was read and shows no Azure role of the partner: the notice says so (tests/test_azure_roles.py).
    assert "service requests" in body and "holds no roles on your Azure subscriptions" in body
    assert "new granular delegated admin privileges (GDAP) relationship request" in body
    assert SENDER in body and "at least 20 days" in body
    wingtip = by_recipient[("admin@wingtip.example",)]
    assert "Wingtip-gdap-0" in wingtip["body"]["content"] and "Wingtip-intune" in wingtip["body"]["content"]
    assert "Intune Administrator" in wingtip["body"]["content"]
    assert ("admin@northwindtra.example",) in by_recipient
    partner_mail = [m for m in sent if recipients(m) == [ADMINS]]
    warning = next(m for m in partner_mail if "will lose delegated admin access" in m["subject"])
    assert "Tailspin Toys" in warning["body"]["content"] and "2026-11-27" in warning["body"]["content"]
    assert any(
        m["subject"].startswith("Delegated admin enforcement 2026-11-21: 4 queued") for m in partner_mail
    )
    assert len(sent) == 4 + 2
    assert all(m["from"] == SENDER for m in emulator.outbox())

    # The Actions trail: who, what, why, result for every request and its outcome.
    trail = actions(settings, LAMNA)
    kinds = {(a["action"], a["result"]) for a in trail}
    assert {
        ("removal.queued", "queued"),
        ("dap.disable", "completed"),
        ("gdap.terminate", "requested"),
        ("removal.requested", "requested"),
        ("notification.customer-removal", "sent"),
    } <= kinds
    assert all(a["actor"] in ("policy", "system") for a in trail)
    terminate = next(a for a in trail if a["action"] == "gdap.terminate")
    assert terminate["relationshipId"] == gdap_ids(enforced, LAMNA)[0]
    assert "no partner sign-in for at least 20 days" in terminate["reason"]
    assert ("warning.queued", "warned") in {(a["action"], a["result"]) for a in actions(settings, TAILSPIN)}

    # A second cycle: nothing requested, nothing mailed again.
    before_log, before_mail = len(mutations(emulator)), len(emulator.outbox())
    second = cycle(settings)
    assert second["candidates"] == [] and second["removed"] == [] and second["warned"] == []
    assert len(mutations(emulator)) == before_log and len(emulator.outbox()) == before_mail

    # A third, a day later: the terminate requests have completed, the removals read "completed".
    emulator.advance("P1D")
    cycle(settings, AS_OF + timedelta(hours=1))
    completed = actions(settings, WINGTIP)
    assert sum(1 for a in completed if a["action"] == "gdap.terminated") == 2
    assert any(a["action"] == "removal.completed" for a in completed)


# --- removal queue: idempotency, crash resume, live re-checks ---------------------------------------


async def _evaluate_and_take_messages(services: Services) -> list[str]:
    """Run the evaluation (as the timer does) and take the removal messages off the queue."""
    await run_evaluation(services, AS_OF)
    queue = services.storage.queue("removals")
    bodies = []
    while True:
        message = await queue.receive_message()
        if message is None:
            return bodies
        bodies.append(str(message.content))
        await queue.delete_message(message)


def _tenant_of(body: str) -> str:
    return str(json.loads(body)["tenantId"])


def test_duplicate_deliveries_send_one_request(enforced: dict[str, Any], emulator: Any) -> None:
    settings = settings_with(**ENFORCE)

    async def go(services: Services) -> tuple[list[str], list[str]]:
        bodies = {_tenant_of(b): b for b in await _evaluate_and_take_messages(services)}
        assert sorted(bodies) == CANDIDATES
        wingtip, lamna = bodies[WINGTIP], bodies[LAMNA]
        # The same message twice (host redelivery), then a copy with another message id.
        first = [
            await handle_removal_message(services, wingtip, message_id="m-1", dequeue_count=1),
            await handle_removal_message(services, wingtip, message_id="m-1", dequeue_count=2),
            await handle_removal_message(services, wingtip, message_id="m-2", dequeue_count=1),
        ]
        # Two deliveries of one message at the same moment: one executes, the other finds it held or done.
        outcomes = await asyncio.gather(
            handle_removal_message(services, lamna, message_id="a", dequeue_count=1),
            handle_removal_message(services, lamna, message_id="b", dequeue_count=1),
            return_exceptions=True,
        )
        second = [o if isinstance(o, str) else type(o).__name__ for o in outcomes]
        return first, second

    first, second = run(with_services(settings, go))
    assert first == ["requested", "requested", "requested"]
    assert "requested" in second and set(second) <= {"requested", "RemovalBusy"}
    assert removal_requests(emulator) == sorted(
        [("DAP", LAMNA)] + [("GDAP", r) for t in (LAMNA, WINGTIP) for r in gdap_ids(enforced, t)]
    )
    terminates = [a for a in actions(settings, WINGTIP) if a["action"] == "gdap.terminate"]
    assert len(terminates) == 2 and {a["result"] for a in terminates} == {"requested"}


def test_a_crash_between_requesting_and_the_call_resumes_from_the_live_state(
    enforced: dict[str, Any], emulator: Any
) -> None:
    settings = settings_with(**ENFORCE)
    wingtip_ids = gdap_ids(enforced, WINGTIP)

    async def go(services: Services) -> dict[str, Any]:
        bodies = {_tenant_of(b): b for b in await _evaluate_and_take_messages(services)}
        store = RemovalStore(services.storage)
        removal_id = json.loads(bodies[WINGTIP])["removalId"]
        # A delivery wrote "requesting" for both relationships, sent the first terminate, then died.
        removal = await store.get(removal_id)
        assert removal is not None
        removal.status, removal.lease_owner = "requesting", "dead-worker"
        removal.lease_until = AS_OF  # long expired
        for rel in removal.relationships:
            rel["state"] = "requesting"
        await store.replace(removal)
        await services.graph.request_termination(wingtip_ids[0])
        # The redelivery must not terminate the first again, and must terminate the second.
        status = await handle_removal_message(services, bodies[WINGTIP], message_id="m-2", dequeue_count=2)
        again = await handle_removal_message(services, bodies[WINGTIP], message_id="m-3", dequeue_count=1)
        # A live lease of another delivery: back off (the queue retries later), touch nothing.
        held = await store.get(json.loads(bodies[NORTHWIND])["removalId"])
        assert held is not None
        held.status, held.lease_owner = "requesting", "busy-worker"
        held.lease_until = parse_iso(iso(held.updated_at)) + timedelta(minutes=10)
        await store.replace(held)
        with pytest.raises(Exception, match="another delivery"):
            await handle_removal_message(services, bodies[NORTHWIND], message_id="m-4", dequeue_count=1)
        return {"status": status, "again": again, "removal": await get_removal(services, removal_id)}

    result = run(with_services(settings, go))
    assert result["status"] == "requested" and result["again"] == "requested"
    assert removal_requests(emulator) == sorted(("GDAP", r) for r in wingtip_ids)  # each exactly once
    rels = {r["id"]: r for r in result["removal"]["relationships"]}
    assert {r["state"] for r in rels.values()} <= {"requested", "completed"}
    resumed = [a for a in actions(settings, WINGTIP) if a["action"] == "gdap.terminate"]
    assert len(resumed) == 2 and any("on resume" in (a["detail"] or "") for a in resumed)


def test_live_state_is_rechecked_before_removal(enforced: dict[str, Any], emulator: Any) -> None:
    """Signed in since the evaluation, newly excluded, already removed elsewhere: skipped with reasons."""
    settings = settings_with(**ENFORCE)

    async def evaluate(services: Services) -> None:
        await run_evaluation(services, AS_OF)

    run(with_services(settings, evaluate))
    # Between the evaluation and the queue: an agent signs in to Wingtip, Northwind's relationship is
    # terminated by someone else, and Proseware is excluded.
    emulator.add_sign_ins([sign_in(WINGTIP, "2026-11-21T01:00:00Z", "00000000-0000-4000-8000-0000000late1")])
    emulator.set_now("2026-11-21T02:00:00Z")
    northwind_rel = gdap_ids(enforced, NORTHWIND)[0]

    async def terminate_elsewhere(services: Services) -> None:
        await services.graph.request_termination(northwind_rel)

    run(with_services(settings, terminate_elsewhere))
    later = settings_with(**ENFORCE, EXCLUDED_TENANTS=PROSEWARE)
    run(with_services(later, process_removal_queue))
    run(with_services(later, process_notification_queue))

    # Only Lamna is removed; the others are skipped, each with its reason in the Actions table.
    assert removal_requests(emulator) == sorted(
        [("DAP", LAMNA), ("GDAP", northwind_rel)] + [("GDAP", r) for r in gdap_ids(enforced, LAMNA)]
    )
    reasons = {}
    for tenant in (WINGTIP, NORTHWIND, PROSEWARE):
        skipped = [a for a in actions(settings, tenant) if a["action"] == "removal.skipped"]
        assert len(skipped) == 1, tenant
        reasons[tenant] = skipped[0]["detail"]
    assert reasons[WINGTIP].startswith("signed in since: an agent signed in at 2026-11-21T01:00:00")
    assert reasons[NORTHWIND].startswith("no longer active")
    assert reasons[PROSEWARE].startswith("excluded")
    notified = {tuple(recipients(m)) for m in mails(emulator)}
    assert ("admin@lamna.example",) in notified
    assert (
        not {("admin@wingtip.example",), ("admin@northwindtra.example",), ("admin@proseware.example",)}
        & notified
    )


# --- guards -------------------------------------------------------------------------------------------


def test_excluded_customers_are_never_touched(enforced: dict[str, Any], emulator: Any) -> None:
    settings = settings_with(**ENFORCE, EXCLUDED_TENANTS=f"{WINGTIP},{LAMNA}")
    summary = cycle(settings)
    assert sorted(summary["candidates"]) == sorted([PROSEWARE, NORTHWIND])
    assert {s["tenantId"]: s["reason"] for s in summary["skipped"]} == {
        WINGTIP: "excluded (EXCLUDED_TENANTS)",
        LAMNA: "excluded (EXCLUDED_TENANTS)",
    }
    touched = {t for _, t in removal_requests(emulator)}
    assert not touched & set(gdap_ids(enforced, WINGTIP) + gdap_ids(enforced, LAMNA) + [LAMNA])
    assert not any(
        ("admin@wingtip.example" in recipients(m) or "admin@lamna.example" in recipients(m))
        for m in mails(emulator)
    )
    assert actions(settings, WINGTIP) == [] and actions(settings, LAMNA) == []


def test_circuit_breaker_halts_every_removal_and_alerts(enforced: dict[str, Any], emulator: Any) -> None:
    settings = settings_with(**ENFORCE, MAX_REMOVALS_PER_RUN="3")
    summary = cycle(settings)
    assert sorted(summary["candidates"]) == CANDIDATES and summary["removed"] == []
    assert summary["halted"] and summary["halted"].startswith("circuit breaker: 4 removal candidates")
    assert removal_requests(emulator) == []
    alert = [
        m for m in mails(emulator) if m["subject"].startswith("ALERT: removals halted by the circuit breaker")
    ]
    assert len(alert) == 1 and recipients(alert[0]) == [ADMINS]
    assert "Northwind Traders" in alert[0]["body"]["content"]
    assert any(a["action"] == "enforcement.breaker" and a["result"] == "halted" for a in actions(settings))
    # Halted again the next run (still alerting), and still nothing removed.
    cycle(settings)
    assert removal_requests(emulator) == []


def test_stale_ingestion_halts_enforcement_and_alerts(enforced: dict[str, Any], emulator: Any) -> None:
    report_mode = settings_with(**{**ENFORCE, "POLICY_MODE": "report"})
    cycle(report_mode, AS_OF - timedelta(hours=8))
    # From now on the sign-in log refuses the app: ingestion cannot succeed.
    emulator.add_faults(
        [{"method": "GET", "pathPrefix": "/beta/auditLogs/signIns", "status": 403, "times": -1}]
    )
    with pytest.raises(UpstreamError) as failure:
        cycle(settings_with(**ENFORCE))
    summary = failure.value.summary  # type: ignore[attr-defined]
    assert summary["halted"].startswith("stale: the last successful sign-in ingestion (2026-11-20T16:00:00Z)")
    assert summary["removed"] == [] and summary["queued"] == []
    assert "sign-in ingestion failed" in summary["refreshError"]
    assert removal_requests(emulator) == []
    alerts = [m for m in mails(emulator) if m["subject"].startswith("ALERT: sign-in data is stale")]
    assert len(alerts) == 1 and "2026-11-20 16:00 UTC" in alerts[0]["body"]["content"]


def test_coverage_floor_holds_back_what_the_log_cannot_prove(enforced: dict[str, Any], emulator: Any) -> None:
    # 30 days of log cannot prove 40 days of inactivity, however long ago the relationships started.
    settings = settings_with(**{**ENFORCE, "REMOVE_AFTER_DAYS": "40", "WARN_DAYS_BEFORE_REMOVAL": "0"})
    summary = cycle(settings)
    assert summary["candidates"] == [] and removal_requests(emulator) == []
    held = {s["tenantId"]: s["reason"] for s in summary["skipped"]}
    assert set(held) == {PROSEWARE, WINGTIP, NORTHWIND}
    assert held[PROSEWARE].startswith(
        "coverage: the sign-in log held since 2026-10-22T00:00:00Z proves only 30 days"
    )
    alert = [m for m in mails(emulator) if "sign-in data too short" in m["subject"]]
    assert len(alert) == 1
    cycle(settings)  # the same floor is alerted once
    assert len([m for m in mails(emulator) if "sign-in data too short" in m["subject"]]) == 1


def test_report_mode_removes_nothing_and_says_what_enforcement_would_do(
    enforced: dict[str, Any], emulator: Any
) -> None:
    settings = settings_with(**{**ENFORCE, "POLICY_MODE": "report"})
    summary = cycle(settings)
    assert summary["mode"] == "report" and summary["halted"] is None and summary["wouldHalt"] is None
    assert summary["candidates"] == [] and summary["removed"] == [] and summary["warned"] == []
    assert sorted(w["tenantId"] for w in summary["wouldRemove"]) == CANDIDATES
    lamna = next(w for w in summary["wouldRemove"] if w["tenantId"] == LAMNA)
    assert lamna["displayName"] == "Lamna Ltd" and lamna["inactiveForAtLeastDays"] == 20
    assert [w["tenantId"] for w in summary["wouldWarn"]] == [TAILSPIN]
    assert mutations(emulator) == [] and emulator.outbox() == []


# --- failures -----------------------------------------------------------------------------------------


def test_failures_are_retried_then_set_aside_and_alerted(enforced: dict[str, Any], emulator: Any) -> None:
    settings = settings_with(**ENFORCE)
    wingtip_ids = gdap_ids(enforced, WINGTIP)
    # Northwind's terminate fails once (retried: one request), Wingtip's second relationship for good.
    emulator.add_faults(
        [
            {
                "method": "POST",
                "pathPrefix": f"/v1.0/tenantRelationships/delegatedAdminRelationships/"
                f"{gdap_ids(enforced, NORTHWIND)[0]}/requests",
                "status": 403,
                "times": 1,
            },
            {
                "method": "POST",
                "pathPrefix": f"/v1.0/tenantRelationships/delegatedAdminRelationships/"
                f"{wingtip_ids[0]}/requests",
                "status": 403,
                "times": -1,
            },
        ]
    )
    with pytest.raises(UpstreamError) as failure:
        cycle(settings)
    summary = failure.value.summary  # type: ignore[attr-defined]
    assert sorted(summary["removed"]) == sorted([PROSEWARE, LAMNA, NORTHWIND])
    assert any(s["tenantId"] == WINGTIP and s["reason"].startswith("failed") for s in summary["skipped"])
    requests = removal_requests(emulator)
    assert requests.count(("GDAP", gdap_ids(enforced, NORTHWIND)[0])) == 1
    assert ("GDAP", wingtip_ids[1]) in requests  # the part that worked is kept, and recorded
    trail = actions(settings, WINGTIP)
    attempts = [a for a in trail if a["action"] == "removal.attempt"]
    assert len(attempts) == 5 and all(a["result"] == "error" for a in attempts)
    assert [a["result"] for a in trail if a["action"] == "gdap.terminate"] == ["requested"]
    assert any(a["action"] == "removal.failed" for a in trail)
    alert = [
        m for m in mails(emulator) if m["subject"].startswith("ALERT: a removals message failed for good")
    ]
    assert len(alert) == 1 and "Wingtip Ltd" in alert[0]["subject"]
    assert [a["result"] for a in actions(settings, NORTHWIND) if a["action"] == "removal.attempt"] == [
        "error"
    ]


def test_service_answers_404_and_409_mean_their_state(enforced: dict[str, Any], emulator: Any) -> None:
    settings = settings_with(**ENFORCE)
    base = "/v1.0/tenantRelationships/delegatedAdminRelationships/"
    emulator.add_faults(
        [
            {
                "method": "POST",
                "pathPrefix": f"{base}{gdap_ids(enforced, NORTHWIND)[0]}/requests",
                "status": 404,
                "times": 1,
            },
            {
                "method": "POST",
                "pathPrefix": f"{base}{gdap_ids(enforced, LAMNA)[0]}/requests",
                "status": 409,
                "times": 1,
            },
            {
                "method": "PATCH",
                "pathPrefix": f"/partnercenter/v1/customers/{PROSEWARE}",
                "status": 404,
                "times": 1,
            },
        ]
    )
    summary = cycle(settings)
    assert sorted(summary["removed"]) == sorted([LAMNA, WINGTIP])
    skipped = {s["tenantId"]: s["reason"] for s in summary["skipped"]}
    assert "the relationship no longer exists" in skipped[NORTHWIND]
    assert "no longer exists in Partner Center" in skipped[PROSEWARE]
    lamna = [a for a in actions(settings, LAMNA) if a["action"] == "gdap.terminate"]
    assert [a["result"] for a in lamna] == ["requested"]  # 409: already being terminated


# --- portal removals ----------------------------------------------------------------------------------


def test_requested_removals_go_queued_requested_completed(enforced: dict[str, Any], emulator: Any) -> None:
    settings = settings_with(**{**ENFORCE, "POLICY_MODE": "report"})

    async def go(services: Services) -> dict[str, Any]:
        await audit(services, AS_OF)
        with pytest.raises(ValueError, match="not under monitoring"):
            await request_removals(
                services,
                [ADATUM, "9be4bcfc-49b6-4a08-b2e6-cc3ababced20"],
                requested_by="ops@contoso.example",
                reason="x",
            )
        with pytest.raises(ValueError, match="not a tenant id"):
            await request_removals(services, ["nope"], requested_by="ops@contoso.example", reason="x")
        queued = await request_removals(
            services, [RELECLOUD], requested_by="ops@contoso.example", reason="customer offboarded"
        )
        again = await request_removals(
            services, [RELECLOUD], requested_by="ops@contoso.example", reason="twice"
        )
        before = await get_removal(services, queued[0]["id"])
        processed = await process_removal_queue(services)
        requested = await get_removal(services, queued[0]["id"])
        emulator.advance("PT3H")  # a termination takes PT2H of emulator time
        completed = await get_removal(services, queued[0]["id"])  # re-reads the relationship
        if completed is not None and completed["status"] != "completed":
            completed = await get_removal(services, queued[0]["id"])
        await process_notification_queue(services)
        return {
            "queued": queued,
            "again": again,
            "before": before,
            "processed": processed,
            "requested": requested,
            "completed": completed,
            "missing": await get_removal(services, "00000000-0000-4000-8000-000000000000"),
        }

    result = run(with_services(settings, go))
    [item] = result["queued"]
    assert item["tenantId"] == RELECLOUD and item["status"] == "queued"
    assert result["again"] == [{"id": item["id"], "tenantId": RELECLOUD, "status": "queued"}]
    assert result["before"]["status"] == "queued" and result["before"]["requestedBy"] == "ops@contoso.example"
    assert result["processed"] >= 1
    assert result["requested"]["status"] == "requested"
    assert result["completed"]["status"] == "completed" and result["missing"] is None
    assert removal_requests(emulator) == [("GDAP", gdap_ids(enforced, RELECLOUD)[0])]
    trail = actions(settings, RELECLOUD)
    assert {a["actor"] for a in trail if a["action"].startswith(("removal", "gdap"))} == {
        "ops@contoso.example"
    }
    assert {
        "removal.queued",
        "gdap.terminate",
        "removal.requested",
        "gdap.terminated",
        "removal.completed",
    } <= {a["action"] for a in trail}
    assert [recipients(m) for m in mails(emulator)] == [["admin@relecloud.example"]]
    everything = actions(settings)
    assert [a["at"] for a in everything] == sorted((a["at"] for a in everything), reverse=True)


# --- the command line -------------------------------------------------------------------------------


def test_cli_enforce_prints_the_summary_and_exits_3_on_upstream_failure(
    enforced: dict[str, Any], emulator: Any
) -> None:
    import os

    from tests.conftest import run_cli

    environment = {**os.environ, **ENFORCE}
    command = ["--emulator", emulator.url, "enforce"]
    done = run_cli(*command, "--as-of", iso(AS_OF), env=environment)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert {"asOf", "mode", "candidates", "removed", "warned", "skipped", "halted", "wouldRemove"} <= set(
        summary
    )
    assert summary["asOf"] == "2026-11-21T00:00:00Z" and summary["mode"] == "enforce"
    assert sorted(summary["removed"]) == CANDIDATES and summary["halted"] is None
    assert all(set(s) >= {"tenantId", "reason"} for s in summary["skipped"])

    emulator.add_faults(
        [{"method": "GET", "pathPrefix": "/beta/auditLogs/signIns", "status": 403, "times": -1}]
    )
    # enforce acts on the present only: an asOf that is not Microsoft's now is refused, nothing written.
    elsewhere = run_cli(*command, "--as-of", iso(AS_OF + timedelta(hours=7)), env=environment)
    assert elsewhere.returncode == 2 and "present only" in elsewhere.stderr and elsewhere.stdout == ""
    emulator.set_now(iso(AS_OF + timedelta(hours=7)))
    failed = run_cli(*command, env=environment)
    assert failed.returncode == 3
    assert "upstream service failed" in failed.stderr and "sign-in ingestion failed" in failed.stderr
    # What was done so far is reported: the summary (the staleness guard halted removals) on stdout.
    partial = json.loads(failed.stdout)
    assert partial["halted"].startswith("stale") and partial["removed"] == []


def test_warnings_once_per_inactivity_stretch_and_customer_mail_switches(
    enforced: dict[str, Any], emulator: Any
) -> None:
    settings = settings_with(**ENFORCE, NOTIFY_CUSTOMERS="false", NOTIFY_CUSTOMERS_BEFORE_REMOVAL="true")

    async def go(services: Services) -> list[list[str]]:
        warned = [
            (await run_evaluation(services, AS_OF))["warned"],
            (await run_evaluation(services, AS_OF + timedelta(hours=2)))["warned"],
        ]
        await process_removal_queue(services)
        await process_notification_queue(services)
        # Tailspin's agent signs in, then it goes idle again: a new stretch, a new warning.
        emulator.add_sign_ins(
            [sign_in(TAILSPIN, "2026-11-21T03:00:00Z", "00000000-0000-4000-8000-0000000ta112")]
        )
        emulator.set_now("2026-12-02T00:00:00Z")
        warned.append((await run_evaluation(services, parse_iso("2026-12-02T00:00:00Z")))["warned"])
        return warned

    first, second, third = run(with_services(settings, go))
    assert first == [TAILSPIN] and second == [] and TAILSPIN in third
    sent = mails(emulator)
    # Customers are warned ahead (NOTIFY_CUSTOMERS_BEFORE_REMOVAL) but get no notice after removal.
    tailspin = [m for m in sent if recipients(m) == ["admin@tailspintoys.example"]]
    assert (
        len(tailspin) == 1
        and "will remove its delegated admin access to Tailspin Toys on 2026-11-27" in tailspin[0]["subject"]
    )
    assert not [m for m in sent if "removed its delegated admin access" in m["subject"]]
    assert len(removal_requests(emulator)) == 6  # the removals themselves still ran
    warnings = [a for a in actions(settings, TAILSPIN) if a["action"] == "warning.queued"]
    assert len(warnings) == 2
