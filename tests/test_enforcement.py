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

from shared.enforcement import run_cycle, run_evaluation
from shared.models import GLOBAL_ADMINISTRATOR, HELPDESK_ADMINISTRATOR
from shared.notifications import process_notification_queue
from shared.removals import (
    RemovalStore,
    execute_removal,
    get_removal,
    handle_removal_message,
    list_actions,
    process_removal_queue,
    request_removals,
)
from shared.retry import UpstreamError
from shared.services import Services
from shared.settings import Settings
from shared.timeutil import iso, parse_iso
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

ENFORCE = {"POLICY_MODE": "enforce", "REMOVE_AFTER_DAYS": "15", "WARN_DAYS_BEFORE_REMOVAL": "14",
           "NOTIFY_SENDER": SENDER, "NOTIFY_PARTNER_ADDRESSES": ADMINS}


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def gdap(rel_id: str, tenant: str, name: str, roles: list[str], activated: str = "2026-06-01T00:00:00Z",
         status: str = "active") -> dict[str, Any]:
    return {"id": f"{rel_id}-{tenant}", "displayName": name, "status": status, "duration": "P730D",
            "createdDateTime": activated, "activatedDateTime": activated, "endDateTime": "2028-06-01T00:00:00Z",
            "autoExtendDuration": "PT0S", "roles": roles,
            "accessAssignments": [{"id": f"aa-{rel_id}", "groupId": "d23f0824-128b-4f33-8c5c-7fd0a6a3a450",
                                   "roles": roles, "status": "active"}]}


def customer(tenant: str, name: str, culture: str = "en-US", rels: list[dict[str, Any]] | None = None,
             dap: dict[str, Any] | None = None) -> dict[str, Any]:
    slug = "".join(ch for ch in name.lower() if ch.isalnum())[:12] or "customer"
    return {"tenantId": tenant, "displayName": name, "defaultDomainName": f"{slug}.onmicrosoft.com",
            "culture": culture, "contacts": [f"admin@{slug}.example", f"it@{slug}.example"], "dap": dap,
            "gdapRelationships": rels or []}


def sign_in(tenant: str, when: str, sid: str) -> dict[str, Any]:
    return {"id": sid, "createdDateTime": when, "userId": AGENT, "resourceTenantId": tenant,
            "crossTenantAccessType": "serviceProvider", "errorCode": 0, "appDisplayName": "Microsoft 365 admin center"}


def estate() -> dict[str, Any]:
    scenario = copy.deepcopy(load_example())
    wingtip = next(c for c in scenario["customers"] if c["tenantId"] == WINGTIP)
    wingtip["gdapRelationships"].append(
        gdap("11111111-2222-4333-8444-555555555555", WINGTIP, "Wingtip-intune", [GLOBAL_ADMINISTRATOR, INTUNE]))
    scenario["customers"].append(customer(NORTHWIND, "Northwind Traders", rels=[
        gdap("22222222-3333-4444-8555-666666666666", NORTHWIND, "Northwind-helpdesk", [HELPDESK_ADMINISTRATOR])]))
    scenario["customers"].append(customer(TAILSPIN, "Tailspin Toys", rels=[
        gdap("33333333-4444-4555-8666-777777777777", TAILSPIN, "Tailspin-admin", [GLOBAL_ADMINISTRATOR])]))
    scenario["signIns"].append(sign_in(TAILSPIN, "2026-11-11T00:00:00Z", "00000000-0000-4000-8000-00000000ta11"))
    return scenario


async def with_services(settings: Settings, work: Callable[[Services], Awaitable[Any]]) -> Any:
    async with Services(settings) as services:
        return await work(services)


def cycle(settings: Settings, as_of: Any = AS_OF) -> dict[str, Any]:
    return run(with_services(settings, lambda s: run_cycle(s, as_of)))  # type: ignore[no-any-return]


def actions(settings: Settings, tenant: str | None = None) -> list[dict[str, Any]]:
    return run(with_services(settings, lambda s: list_actions(s, tenant_id=tenant)))  # type: ignore[no-any-return]


def mutations(emulator: Any) -> list[dict[str, Any]]:
    return [e for e in emulator.log() if e["method"] in ("POST", "PATCH", "DELETE", "PUT")]


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

def test_full_cycle_removes_exactly_the_candidates_and_mails_everyone(enforced: dict[str, Any],
                                                                      emulator: Any) -> None:
    settings = settings_with(**ENFORCE)
    summary = cycle(settings)
    assert summary["mode"] == "enforce" and summary["halted"] is None
    assert summary["asOf"] == "2026-11-21T00:00:00Z"
    assert sorted(summary["candidates"]) == CANDIDATES
    assert sorted(summary["removed"]) == CANDIDATES
    assert summary["warned"] == [TAILSPIN]
    assert all(s["tenantId"] not in CANDIDATES for s in summary["skipped"])

    # Exactly the candidates' relationships, each once: DAP by PATCH, every active GDAP by a terminate request.
    expected = sorted([("DAP", PROSEWARE), ("DAP", LAMNA)]
                      + [("GDAP", rid) for t in (LAMNA, WINGTIP, NORTHWIND) for rid in gdap_ids(enforced, t)])
    assert removal_requests(emulator) == expected
    patches = [e for e in mutations(emulator) if e["method"] == "PATCH"]
    assert all(e["body"] == {"AllowDelegatedAccess": False, "attributes": {"objectType": "Customer"}}
               for e in patches)
    state = {c["tenantId"]: c for c in emulator.state(sign_ins=False)["customers"]}
    assert state[PROSEWARE]["dap"]["enabled"] is False and state[LAMNA]["dap"]["enabled"] is False
    assert state[ADATUM]["dap"]["enabled"] is True
    for tenant in (LAMNA, WINGTIP, NORTHWIND):
        # (the emulator moves every relationship one step on each list read)
        assert {r["status"] for r in state[tenant]["gdapRelationships"]} <= {"terminationRequested", "terminating",
                                                                             "terminated"}
    for tenant in (RELECLOUD, TAILSPIN):
        assert {r["status"] for r in state[tenant]["gdapRelationships"]} == {"active"}

    # Customers: one notice each, to their contacts, in their language; partner admins: warning + digest.
    sent = mails(emulator)
    by_recipient = {tuple(recipients(m)): m for m in sent}
    proseware = by_recipient[("admin@proseware.example",)]
    assert "削除しました" in proseware["subject"] and "グローバル管理者" in proseware["body"]["content"]
    assert "サービス要求" in proseware["body"]["content"] and "Azure サブスクリプション" in proseware["body"]["content"]
    lamna = by_recipient[("admin@lamna.example",)]
    assert lamna["subject"].startswith("contoso partner removed its delegated admin access to Lamna Ltd")
    body = lamna["body"]["content"]
    assert lamna["body"]["contentType"].lower() == "html"
    assert "Global Administrator" in body and "Helpdesk Administrator" in body and "Lamna-gdap-0" in body
    assert "Exchange Administrator" in body  # GDAP role ids are named
    assert "service requests" in body and "Azure subscriptions are not removed" in body
    assert "new granular delegated admin privileges (GDAP) relationship request" in body
    assert SENDER in body and "at least 20 days" in body
    wingtip = by_recipient[("admin@wingtip.example",)]
    assert "Wingtip-gdap-0" in wingtip["body"]["content"] and "Wingtip-intune" in wingtip["body"]["content"]
    assert "Intune Administrator" in wingtip["body"]["content"]
    assert ("admin@northwindtra.example",) in by_recipient
    partner_mail = [m for m in sent if recipients(m) == [ADMINS]]
    warning = next(m for m in partner_mail if "will lose delegated admin access" in m["subject"])
    assert "Tailspin Toys" in warning["body"]["content"] and "2026-11-27" in warning["body"]["content"]
    assert any(m["subject"].startswith("Delegated admin enforcement 2026-11-21: 4 queued") for m in partner_mail)
    assert len(sent) == 4 + 2
    assert all(m["from"] == SENDER for m in emulator.outbox())

    # The Actions trail: who, what, why, result for every request and its outcome.
    trail = actions(settings, LAMNA)
    kinds = {(a["action"], a["result"]) for a in trail}
    assert {("removal.queued", "queued"), ("dap.disable", "completed"), ("gdap.terminate", "requested"),
            ("removal.requested", "requested"), ("notification.customer-removal", "sent")} <= kinds
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
