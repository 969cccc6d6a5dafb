"""The GDAP lifecycle (shared/gdap/) through the emulator, the real msgraph-sdk and Azurite:
requests from role templates, approval follow-up and access assignments, expiry and bulk
auto-extend, removing Global Administrator, unused access assignments, re-establishing access,
and the report's additions. Faults are injected on specific paths (``emulator.add_faults``)."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from shared.cli.main import main
from shared.domain.models import GLOBAL_ADMINISTRATOR, Relationship
from shared.domain.rules import Policy, customer_row, summarize
from shared.evaluation.audit import audit as audit_once
from shared.gdap.base import GdapError
from shared.gdap.service import GdapService
from shared.gdap.store import INVITATION_URL, GdapRequestStore
from shared.gdap.templates import TemplateError, load_templates, parse_templates
from shared.notifications.mail import render
from shared.platform.storage import query_all
from shared.platform.timeutil import iso, parse_iso
from shared.relationships.store import RelationshipStore
from shared.runtime import close_services
from shared.services import Services
from tests.conftest import load_example, registered_functions, settings_with
from tests.test_cli import tables_with_prefix

NOW = "2026-11-21T00:00:00Z"
AS_OF = parse_iso(NOW)
ADMIN_AGENTS = "d23f0824-128b-4f33-8c5c-7fd0a6a3a450"
HELPDESK_AGENTS = "9531985d-5d9d-49f8-9818-e811892f902b"
ADATUM = "92276658-1e27-41c0-8a6a-63ec24ede6a4"  # DAP active, no GDAP
RELECLOUD = "18f135d2-5f55-4203-b018-50c5a38fd547"  # GDAP ending in 5 days
PROSEWARE = "ec66a787-95e7-41d1-b731-af10506bf2ef"  # ja-JP, DAP active
LAMNA = "3f98e277-4cbd-47ad-9c90-a9587403e430"  # GDAP ending in 20 days, two assignments
FOURTH_COFFEE = "9be4bcfc-49b6-4a08-b2e6-cc3ababced20"  # DAP disabled: access removed
MUNSON = "5790f82e-c1d3-4cff-aa3a-f4d46b0a18e8"  # GDAP approvalPending (with Global Administrator here)
WINGTIP = "ca02135e-92b1-43f2-8ede-0d7ac3baea9e"  # GDAP with Global Administrator, ending in 12 hours
TAILSPIN = "7a1c2e4b-0000-4c3d-9e8f-000000000001"  # GDAP terminated (Exchange roles): access removed
EXCHANGE = "29232cdf-9323-42fd-ade2-1d097af3e4de"
EXCHANGE_RECIPIENT = "31392ffb-586c-42d1-9346-e59415a2cc4e"
HELPDESK = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
DIRECTORY_READERS = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"
REL_PATH = "/v1.0/tenantRelationships/delegatedAdminRelationships"
GROUP_ENV = {"GDAP_GROUP_ADMINAGENTS": ADMIN_AGENTS, "GDAP_GROUP_HELPDESKAGENTS": HELPDESK_AGENTS}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def ts(moment: Any) -> str:
    return iso(moment)


def bulk_tenant(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gdap-bulk-{i}"))


def gdap_scenario(bulk: int = 0) -> dict[str, Any]:
    """The example estate with relationships near their end, Global Administrator, removed access,
    and ``bulk`` more customers whose one relationship ends within 1..bulk days (+1 hour)."""
    scenario = copy.deepcopy(load_example())
    customers = {c["tenantId"]: c for c in scenario["customers"]}
    customers[RELECLOUD]["gdapRelationships"][0]["endDateTime"] = ts(AS_OF + timedelta(days=5))
    lamna = customers[LAMNA]["gdapRelationships"][0]
    lamna["endDateTime"] = ts(AS_OF + timedelta(days=20))
    lamna["accessAssignments"].append(
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "lamna-admin")),
            "groupId": ADMIN_AGENTS,
            "roles": [EXCHANGE],
            "status": "active",
        }
    )
    wingtip = customers[WINGTIP]["gdapRelationships"][0]
    wingtip["roles"].append(GLOBAL_ADMINISTRATOR)
    wingtip["endDateTime"] = ts(AS_OF + timedelta(hours=12))
    customers[MUNSON]["gdapRelationships"][0]["roles"].append(GLOBAL_ADMINISTRATOR)
    scenario["customers"].append(
        {
            "tenantId": TAILSPIN,
            "displayName": "Tailspin Ltd",
            "defaultDomainName": "tailspin.onmicrosoft.com",
            "culture": "en-US",
            "contacts": ["admin@tailspin.example"],
            "dap": None,
            "gdapRelationships": [
                {
                    "id": f"0b5e0c1d-1111-4222-8333-444455556666-{TAILSPIN}",
                    "displayName": "Tailspin-gdap-0",
                    "status": "terminated",
                    "duration": "P730D",
                    "createdDateTime": "2025-01-01T00:00:00.000Z",
                    "activatedDateTime": "2025-01-02T00:00:00.000Z",
                    "endDateTime": "2026-10-01T00:00:00.000Z",
                    "autoExtendDuration": "PT0S",
                    "roles": [EXCHANGE, EXCHANGE_RECIPIENT, DIRECTORY_READERS],
                    "accessAssignments": [],
                }
            ],
        }
    )
    for i in range(bulk):
        tenant = bulk_tenant(i)
        scenario["customers"].append(
            {
                "tenantId": tenant,
                "displayName": f"Bulk {i:02d} Ltd",
                "defaultDomainName": f"bulk{i}.onmicrosoft.com",
                "culture": "en-US",
                "contacts": [f"admin@bulk{i}.example"],
                "dap": None,
                "gdapRelationships": [
                    {
                        "id": f"{uuid.uuid5(uuid.NAMESPACE_URL, f'bulk-rel-{i}')}-{tenant}",
                        "displayName": f"Bulk-gdap-{i}",
                        "status": "active",
                        "duration": "P730D",
                        "createdDateTime": "2025-01-01T00:00:00.000Z",
                        "activatedDateTime": "2025-01-02T00:00:00.000Z",
                        "endDateTime": ts(AS_OF + timedelta(days=i + 1, hours=1)),
                        "autoExtendDuration": "PT0S",
                        "roles": [HELPDESK],
                        "accessAssignments": [],
                    }
                ],
            }
        )
    return scenario


def rel_id(scenario: dict[str, Any], tenant: str) -> str:
    return str(
        next(c for c in scenario["customers"] if c["tenantId"] == tenant)["gdapRelationships"][0]["id"]
    )


@pytest.fixture
def gdap_env(env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The GDAP estate, the partner's group ids as GDAP_GROUP_* settings, a sender mailbox."""
    scenario = gdap_scenario()
    emulator.post_scenario(scenario)
    for key, value in GROUP_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NOTIFY_SENDER", "notices@contoso.example")
    yield {"env": env, "emulator": emulator, "scenario": scenario}


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = main(argv)
    captured = capsys.readouterr()
    try:
        document = json.loads(captured.out) if captured.out.strip() else None
    except ValueError:
        document = captured.out
    return code, document, captured.err


def audit() -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with Services(settings_with()) as services:
            return await audit_once(services, AS_OF)

    result: dict[str, Any] = run(go())
    return result


def with_service(work: Any) -> Any:
    async def go() -> Any:
        async with Services(settings_with()) as services:
            return await work(GdapService(services), services)

    return run(go())


def actions_of(tenant: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        async with Services(settings_with()) as services:
            return [
                e
                async for e in query_all(
                    services.storage.table("Actions"), "PartitionKey eq @pk", {"pk": tenant}
                )
            ]

    rows: list[dict[str, Any]] = run(go())
    return sorted(rows, key=lambda e: e["RowKey"])


def mutations(emulator: Any, method: str, needle: str = "") -> list[dict[str, Any]]:
    return [e for e in emulator.log() if e["method"] == method and needle in e["path"]]


# --- templates and the report ---------------------------------------------------------------------


def test_repo_templates_are_valid_and_the_rules_are_enforced() -> None:
    templates = load_templates()
    assert {"helpdesk", "exchange-admin", "security-reader"} <= set(templates)
    for t in templates.values():
        assert t.display_name["en"] and t.display_name["ja"]
        assert not (t.auto_extend and t.includes_global_administrator), t.name
        assert all(set(a.roles) <= set(t.roles) for a in t.access_assignments)
    assert templates["helpdesk"].auto_extend_duration == "P180D"
    assert templates["onboarding-global-admin"].auto_extend_duration == "PT0S"

    good = {
        "name": "x",
        "displayName": {"en": "X"},
        "roles": [HELPDESK],
        "duration": "P730D",
        "autoExtend": True,
        "accessAssignments": [{"group": "HelpdeskAgents", "roles": [HELPDESK]}],
    }
    assert parse_templates({"templates": [good]})["x"].duration == "P730D"
    bad_cases = [
        ({"roles": [GLOBAL_ADMINISTRATOR]}, "cannot auto-extend"),
        ({"duration": "P731D"}, "P1D..P730D"),
        ({"duration": "P2Y"}, "P1D..P730D"),
        ({"accessAssignments": [{"group": "AdminAgents", "roles": [EXCHANGE]}]}, "does not ask for"),
        ({"name": "Has Spaces"}, "template name"),
        ({"roles": ["not-a-guid"]}, "role definition ids"),
        ({"displayName": "Helpdesk"}, "displayName"),
    ]
    for change, needle in bad_cases:
        with pytest.raises(TemplateError, match=re.escape(needle)):
            parse_templates({"templates": [{**good, **change}]})
    with pytest.raises(TemplateError, match="defined twice"):
        parse_templates({"templates": [good, good]})


def _rel(
    rel_id: str, ends: Any, roles: list[str], auto: str = "PT0S", status: str = "active"
) -> Relationship:
    return Relationship(
        tenant_id="t",
        type="GDAP",
        id=rel_id,
        display_name=rel_id,
        status=status,
        established_at=AS_OF - timedelta(days=100),
        ends_at=ends,
        auto_extend_duration=auto,
        roles=roles,
    )


def test_report_relationships_gain_expiry_and_global_admin_and_the_summary_counts_them() -> None:
    second = timedelta(seconds=1)
    rels = [
        _rel("edge-30", AS_OF + timedelta(days=30), [HELPDESK]),  # endsAt == asOf + 30 days: counts
        _rel("past-30", AS_OF + timedelta(days=30) + second, [HELPDESK]),  # a second later: does not
        _rel("auto", AS_OF + timedelta(days=3), [HELPDESK], auto="P180D"),  # auto-extends: does not
        _rel("ga", AS_OF + timedelta(hours=1), [HELPDESK, GLOBAL_ADMINISTRATOR]),
        _rel("overdue", AS_OF - timedelta(hours=1), [EXCHANGE]),
        _rel("open", None, [EXCHANGE]),
        Relationship(
            tenant_id="t",
            type="DAP",
            id="t",
            display_name="DAP",
            status="active",
            established_at=AS_OF - timedelta(days=400),
            roles=[GLOBAL_ADMINISTRATOR, HELPDESK],
        ),
    ]
    row = customer_row(
        tenant_id="t",
        display_name="T",
        relationships=rels,
        as_of=AS_OF,
        last_sign_in=None,
        agents_last_day=0,
        sign_ins_last_day=0,
        coverage_from=AS_OF - timedelta(days=30),
        policy=Policy(),
    )
    assert row is not None
    by_id = {r["id"]: r for r in row["relationships"]}
    assert by_id["edge-30"]["expiresInDays"] == 30 and by_id["past-30"]["expiresInDays"] == 30
    assert by_id["ga"]["expiresInDays"] == 0 and by_id["overdue"]["expiresInDays"] == -1
    assert by_id["open"]["expiresInDays"] is None and by_id["t"]["expiresInDays"] is None
    assert by_id["ga"]["includesGlobalAdministrator"] and by_id["t"]["includesGlobalAdministrator"]
    assert not by_id["edge-30"]["includesGlobalAdministrator"]
    summary = summarize([row], AS_OF)
    # edge-30, ga, overdue (not: a second past 30 days, auto-extending, no end, DAP); GA: GDAP only.
    assert summary["gdapExpiringWithin30Days"] == 3
    assert summary["gdapWithGlobalAdministrator"] == 1
    assert "gdapExpiringWithin30Days" not in summarize([row])  # without asOf: the original six counts


def test_removal_mail_tells_the_customer_about_azure_rbac() -> None:
    context = {
        "customerName": "C",
        "domain": "",
        "partnerName": "P",
        "contact": "p@x.example",
        "tenantId": "t",
        "removedAt": NOW,
        "source": "user",
        "inactiveDays": 91,
        "lastSignInAt": None,
        "dap": True,
        "gdap": [],
        "removeAfterDays": 90,
    }
    english = render("customer-removal", "en", context)
    japanese = render("customer-removal", "ja", context)
    assert "Azure subscriptions are NOT removed" in english.text and "Azure subscriptions" in english.html
    assert "Azure サブスクリプションのロールの割り当ては、今回の変更では削除されません" in japanese.text
    assert "Azure サブスクリプション" in japanese.html


# --- request -------------------------------------------------------------------------------------------


def test_request_from_a_template_through_the_cli(
    gdap_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = gdap_env["emulator"]
    # Without GDAP_GROUP_HELPDESKAGENTS the template's group is looked up in Graph by display name. Two
    # groups of that name: refused up front, one line naming the setting, nothing created. (The store
    # was empty: the command read the customers first.)
    monkeypatch.delenv("GDAP_GROUP_HELPDESKAGENTS")
    ambiguous = copy.deepcopy(gdap_env["scenario"])
    ambiguous["groups"].append({"id": str(uuid.uuid4()), "displayName": "HelpdeskAgents"})
    emulator.post_scenario(ambiguous)
    code, _, err = cli(["gdap", "request", "--customer", ADATUM, "--template", "helpdesk"], capsys)
    assert code == 2 and "GDAP_GROUP_HELPDESKAGENTS" in err and "2 partner security groups" in err, err
    assert len(err.strip().splitlines()) == 1 and mutations(emulator, "POST") == []
    lookups = [
        e for e in emulator.log(all_requests=True) if e["method"] == "GET" and e["path"] == "/v1.0/groups"
    ]
    assert lookups, "the group was not looked up in Graph"
    # One group of that name: it is the one used.
    emulator.post_scenario(gdap_env["scenario"])
    code, result, err = cli(["gdap", "request", "--customer", ADATUM, "--template", "helpdesk"], capsys)
    assert code == 0, err
    rid = result["id"]
    assert {a["groupId"] for a in result["accessAssignments"]} == {HELPDESK_AGENTS}, result
    assert result["status"] == "approvalPending" and result["template"] == "helpdesk"
    assert result["invitationLink"] == INVITATION_URL.format(id=rid)
    assert result["invitationLink"].startswith(
        "https://admin.microsoft.com/AdminPortal/Home#/partners/invitation/granularAdminRelationships/"
    )
    assert len(result["displayName"]) <= 50 and result["displayName"].startswith("helpdesk-92276658-")

    [create] = mutations(emulator, "POST", "/delegatedAdminRelationships")[:1]
    helpdesk = load_templates()["helpdesk"]
    assert create["path"] == REL_PATH
    assert create["body"]["duration"] == "P730D" and create["body"]["autoExtendDuration"] == "P180D"
    assert create["body"]["customer"]["tenantId"] == ADATUM
    assert [r["roleDefinitionId"] for r in create["body"]["accessDetails"]["unifiedRoles"]] == list(
        helpdesk.roles
    )
    [lock] = mutations(emulator, "POST", "/requests")
    assert lock["path"] == f"{REL_PATH}/{rid}/requests" and lock["body"] == {"action": "lockForApproval"}
    assert emulator.gdap_relationship(rid)["status"] == "approvalPending"
    actions = [(a["Action"], a["Result"]) for a in actions_of(ADATUM)]
    assert ("gdap.request", "created") in actions and ("gdap.lockForApproval", "approvalPending") in actions

    # The same request again: the open one comes back, nothing new is created.
    before = len(emulator.log())
    code, again, _ = cli(["gdap", "request", "--customer", ADATUM, "--template", "helpdesk"], capsys)
    assert code == 0 and again["id"] == rid and len(emulator.log()) == before
    code, pending, _ = cli(["gdap", "requests"], capsys)
    assert code == 0
    [item] = pending["requests"]
    assert item["id"] == rid and item["ageDays"] == 0 and item["state"] == "approvalPending"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["gdap", "request", "--customer", "nope", "--template", "helpdesk"], "tenant id"),
        (["gdap", "request", "--customer", ADATUM, "--template", "nope"], "unknown template"),
        (["gdap", "remove-global-admin", "--relationship", "x y"], "relationship id"),
        (["gdap", "extend", "--all-expiring", "--within", "0"], "between 1 and 730"),
        (["gdap", "expiring", "--as-of", "soon"], "ISO 8601"),
    ],
)
def test_bad_gdap_arguments_write_nothing(
    env: dict[str, str], azurite: Any, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = cli(argv, capsys)
    assert code == 2 and out is None and needle in err and len(err.strip().splitlines()) == 1, err
    assert tables_with_prefix(azurite.connection_string, env["STORAGE_PREFIX"]) == []


def test_request_mails_the_invitation_in_the_customers_language(gdap_env: dict[str, Any]) -> None:
    emulator = gdap_env["emulator"]
    audit()

    async def work(service: GdapService, services: Services) -> dict[str, Any]:
        result, created = await service.request(
            PROSEWARE, "security-reader", requested_by="tester", notify_customer=True
        )
        assert created
        return result

    result = with_service(work)
    [mail] = emulator.outbox()
    text = json.dumps(mail, ensure_ascii=False)
    assert result["invitationLink"] in text
    assert "委任された管理者アクセス許可の要求" in text and "セキュリティ閲覧者" in text
    assert result["notifiedTo"] == ["admin@proseware.example"]  # the billing profile e-mail
    assert ("gdap.invitation", "sent") in [(a["Action"], a["Result"]) for a in actions_of(PROSEWARE)]
    # On the one mail path: a Notifications row keyed by the relationship, sent once; its queued message
    # finds it sent and mails nothing more.

    async def row_and_drain(service: GdapService, services: Services) -> tuple[Any, Any]:
        from shared.notifications.store import NotificationStore
        from shared.notifications.worker import drain_notifications

        stored = await NotificationStore(services.storage).get(f"gdap-invitation:{result['id']}")
        return stored, await drain_notifications(services)

    stored, drained = with_service(row_and_drain)
    assert stored is not None and stored.status == "sent" and stored.kind == "customer-gdap-invitation"
    assert drained.processed == 1 and len(emulator.outbox()) == 1


def test_a_taken_name_and_a_failed_lock_are_recovered(gdap_env: dict[str, Any]) -> None:
    emulator = gdap_env["emulator"]
    audit()
    emulator.add_faults(
        [
            {"method": "POST", "pathPrefix": REL_PATH, "status": 409, "times": 1},  # the name is taken
            {"method": "POST", "pathPrefix": REL_PATH + "/", "status": 403, "times": 1},  # the lock fails
        ]
    )

    async def work(service: GdapService, services: Services) -> tuple[dict[str, Any], dict[str, Any]]:
        first, created = await service.request(LAMNA, "helpdesk", requested_by="tester")
        assert created
        return first, await service.follow_up()

    first, follow = with_service(work)
    creates = [e for e in emulator.log() if e["method"] == "POST" and e["path"] == REL_PATH]
    assert len(creates) == 2 and creates[0]["body"]["displayName"] != creates[1]["body"]["displayName"]
    assert first["displayName"] == creates[1]["body"]["displayName"]
    # Created but not locked: the follow-up locks it.
    assert first["status"] == "created" and "lockForApproval" in first["error"]
    assert follow["requests"][0]["state"] == "approvalPending" and follow["requests"][0]["error"] is None
    assert emulator.gdap_relationship(first["id"])["status"] == "approvalPending"
    assert [e["body"] for e in mutations(emulator, "POST", "/requests") if "fault" not in e] == [
        {"action": "lockForApproval"}
    ]


# --- approval follow-up ----------------------------------------------------------------------------------


def test_follow_up_takes_an_approved_request_to_active_access_assignments(gdap_env: dict[str, Any]) -> None:
    emulator = gdap_env["emulator"]
    audit()

    async def request(service: GdapService, services: Services) -> str:
        result, _ = await service.request(ADATUM, "exchange-admin", requested_by="tester")
        return str(result["id"])

    rid = with_service(request)

    def follow() -> dict[str, Any]:
        async def work(service: GdapService, services: Services) -> dict[str, Any]:
            return await service.follow_up()

        result: dict[str, Any] = with_service(work)
        return result

    assert follow()["requests"][0]["state"] == "approvalPending"
    assert mutations(emulator, "POST", "/accessAssignments") == []
    emulator.approve(rid)
    assert follow()["requests"][0]["state"] == "approved"  # activation takes emulator time (PT5M)
    emulator.advance("PT3M")
    assert follow()["requests"][0]["state"] == "activating"
    emulator.advance("PT2M")
    assigning = follow()["requests"][0]  # active: assignments created, still pending (PT10M)
    assert assigning["state"] == "assigning" and assigning["error"] is None, assigning
    emulator.advance("PT10M")
    done = follow()["requests"][0]
    assert done["state"] == "active" and done["error"] is None, done
    posts = mutations(emulator, "POST", "/accessAssignments")
    assert [p["path"] for p in posts] == [f"{REL_PATH}/{rid}/accessAssignments"] * 2
    template = load_templates()["exchange-admin"]
    sent = {
        p["body"]["accessContainer"]["accessContainerId"]: [
            r["roleDefinitionId"] for r in p["body"]["accessDetails"]["unifiedRoles"]
        ]
        for p in posts
    }
    assert sent == {
        ADMIN_AGENTS: list(template.access_assignments[0].roles),
        HELPDESK_AGENTS: list(template.access_assignments[1].roles),
    }
    assert {a["status"] for a in emulator.gdap_relationship(rid)["accessAssignments"]} == {"active"}

    # Done: later follow-ups create nothing (and do not even read it).
    before = len(emulator.log(all_requests=True))
    assert follow()["requests"] == []
    assert len(emulator.log(all_requests=True)) == before

    async def stored(service: GdapService, services: Services) -> Any:
        _, rels = await RelationshipStore(services.storage).load_customer(ADATUM)
        return next(r for r in rels if r.id == rid)

    rel = with_service(stored)
    assert rel.status == "active" and {a.status for a in rel.access_assignments} == {"active"}
    actions = [(a["Action"], a["Result"]) for a in actions_of(ADATUM)]
    assert actions.count(("gdap.accessAssignment", "created")) == 2
    assert ("gdap.approved", "active") in actions and ("gdap.accessAssignments", "active") in actions


def test_follow_up_partial_failure_keeps_the_others_going_and_retries_later(gdap_env: dict[str, Any]) -> None:
    emulator = gdap_env["emulator"]
    audit()

    async def requests(service: GdapService, services: Services) -> list[str]:
        first, _ = await service.request(ADATUM, "helpdesk", requested_by="tester")
        second, _ = await service.request(PROSEWARE, "security-reader", requested_by="tester")
        return [str(first["id"]), str(second["id"])]

    failing, fine = with_service(requests)
    for rid in (failing, fine):
        emulator.approve(rid)
    emulator.add_faults(
        [
            {
                "method": "POST",
                "pathPrefix": f"{REL_PATH}/{failing}/accessAssignments",
                "status": 403,
                "times": -1,
            }
        ]
    )

    async def follow(service: GdapService, services: Services) -> dict[str, Any]:
        await service.follow_up()  # approved
        emulator.advance("PT5M")  # active: assignments created, pending
        await service.follow_up()
        emulator.advance("PT10M")
        return await service.follow_up()

    result = with_service(follow)
    states = {r["id"]: r for r in result["requests"]}
    assert states[fine]["state"] == "active" and states[failing]["state"] == "assigning"
    assert "403" in states[failing]["error"] and result["errors"] == 1
    assert ("gdap.accessAssignment", "failed") in [(a["Action"], a["Result"]) for a in actions_of(ADATUM)]

    emulator.clear_faults()
    with_service(lambda service, services: service.follow_up())  # created now, pending for PT10M
    emulator.advance("PT10M")
    retried = with_service(lambda service, services: service.follow_up())
    assert [(r["id"], r["state"]) for r in retried["requests"]] == [(failing, "active")]
    created = [
        e
        for e in emulator.log()
        if e["method"] == "POST" and e["path"].endswith("/accessAssignments") and "fault" not in e
    ]
    assert sorted(e["path"].split("/")[-2] for e in created) == sorted([failing, fine])


def test_relationship_sync_timer_runs_the_follow_up_and_the_daily_digest(
    gdap_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = gdap_env["emulator"]
    monkeypatch.setenv("NOTIFY_PARTNER_ADDRESSES", "admins@contoso.example")
    audit()

    async def request(service: GdapService, services: Services) -> str:
        result, _ = await service.request(LAMNA, "security-reader", requested_by="tester")
        return str(result["id"])

    rid = with_service(request)
    emulator.approve(rid)
    sync = registered_functions()["relationship_sync"].get_user_function()

    async def timers() -> None:
        try:
            # approved; active after activation (PT5M: assignments created, pending); assigned after PT10M
            for advance in ("PT5M", "PT10M", None):
                await sync(TimerRequest(past_due=False))
                if advance:
                    emulator.advance(advance)
        finally:
            await close_services()

    run(timers())
    assert [
        e["body"]["accessContainer"]["accessContainerId"]
        for e in mutations(emulator, "POST", f"{rid}/accessAssignments")
    ] == [ADMIN_AGENTS]

    async def row(service: GdapService, services: Services) -> Any:
        return await GdapRequestStore(services.storage).get(LAMNA, rid)

    assert with_service(row).state == "active"
    # Two syncs, one digest a day: what ends within 30 days, and Global Administrator.
    [digest] = [m for m in emulator.outbox() if "admins@contoso.example" in json.dumps(m)]
    text = json.dumps(digest)
    assert "end within 30 days" in text and "Relecloud-gdap-0" in text and "Lamna-gdap-0" in text
    assert "Wingtip-gdap-0" in text and "include Global Administrator" in text
    assert "gdap extend --all-expiring" in text


# --- expiry and bulk auto-extend --------------------------------------------------------------------------


def test_expiring_and_bulk_extend_without_a_batch_limit(
    env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = gdap_scenario(bulk=26)
    emulator.post_scenario(scenario)
    report = audit()
    assert report["summary"]["gdapExpiringWithin30Days"] == 29
    assert report["summary"]["gdapWithGlobalAdministrator"] == 1
    wingtip_row = next(r for r in report["customers"] if r["tenantId"] == WINGTIP)
    assert wingtip_row["relationships"][0]["expiresInDays"] == 0
    assert wingtip_row["relationships"][0]["includesGlobalAdministrator"] is True

    code, expiring, err = cli(["gdap", "expiring", "--as-of", NOW], capsys)
    assert code == 0, err
    assert expiring["counts"] == {"30": 29, "7": 8, "1": 1}
    assert len(expiring["relationships"]) == 29
    assert expiring["relationships"][0]["relationshipId"] == rel_id(scenario, WINGTIP)
    assert expiring["relationships"][0]["canAutoExtend"] is False
    code, within7, _ = cli(["gdap", "expiring", "--within", "7", "--as-of", NOW], capsys)
    assert len(within7["relationships"]) == 8

    failing = rel_id(scenario, bulk_tenant(3))
    raced = rel_id(scenario, bulk_tenant(4))
    emulator.add_faults(
        [
            {"method": "PATCH", "pathPrefix": f"{REL_PATH}/{failing}", "status": 403, "times": -1},
            {
                "method": "PATCH",
                "pathPrefix": f"{REL_PATH}/{raced}",
                "status": 412,
                "times": 1,
            },  # changed under us
        ]
    )
    code, summary, err = cli(["gdap", "extend", "--all-expiring", "--as-of", NOW], capsys)
    assert code == 3, err  # one relationship failed; every result is reported
    results = {r["relationshipId"]: r for r in summary["results"]}
    assert summary["requested"] == 29 and len(results) == 29
    assert (summary["extended"], summary["skipped"], summary["failed"]) == (27, 1, 1)
    assert results[rel_id(scenario, WINGTIP)]["result"] == "skipped"
    assert "Global Administrator" in results[rel_id(scenario, WINGTIP)]["reason"]
    assert results[failing]["result"] == "failed" and "403" in results[failing]["reason"]
    assert results[raced]["result"] == "extended"

    patches = mutations(emulator, "PATCH")
    assert all(
        p["body"] == {"autoExtendDuration": "P180D"} and p["headers"]["if-match"].startswith('W/"')
        for p in patches
    )
    assert len([p for p in patches if p["path"].endswith(raced)]) == 2
    state = {r["id"]: r for c in emulator.state(sign_ins=False)["customers"] for r in c["gdapRelationships"]}
    extended = [i for i, r in results.items() if r["result"] == "extended"]
    assert all(state[i]["autoExtendDuration"] == "P180D" for i in extended)
    assert state[failing]["autoExtendDuration"] == "PT0S"
    assert state[rel_id(scenario, WINGTIP)]["autoExtendDuration"] == "PT0S"

    # The store follows: only what was not extended is still expiring.
    code, after, _ = cli(["gdap", "expiring", "--as-of", NOW], capsys)
    assert sorted(r["relationshipId"] for r in after["relationships"]) == sorted(
        [failing, rel_id(scenario, WINGTIP)]
    )
    trail = [(a["Action"], a["Result"]) for a in actions_of(bulk_tenant(3)) + actions_of(bulk_tenant(0))]
    assert ("gdap.extend", "failed") in trail and ("gdap.extend", "extended") in trail


def test_extend_of_an_unknown_relationship_is_an_error_and_extends_nothing(
    gdap_env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """``gdap extend`` naming a relationship that does not exist answered exit 0 with a "skipped" row. Now
    it is bad input: one line, exit 2, and the known relationship named beside it is not extended either."""
    scenario, emulator = gdap_env["scenario"], gdap_env["emulator"]
    audit()
    known = rel_id(scenario, RELECLOUD)  # active, no Global Administrator: would be extended
    unknown = "00000000-1111-4222-8333-444444444444-" + WINGTIP
    code, out, err = cli(["gdap", "extend", "--relationship", known, "--relationship", unknown], capsys)
    assert code == 2 and out is None and len(err.strip().splitlines()) == 1, err
    assert "no such GDAP relationship" in err and unknown in err
    assert mutations(emulator, "PATCH") == []


def test_extend_reads_a_named_relationship_once(
    gdap_env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The check that a named relationship exists is the read its extension uses: one GET, one PATCH."""
    scenario, emulator = gdap_env["scenario"], gdap_env["emulator"]
    audit()
    known = rel_id(scenario, RELECLOUD)
    before = len(emulator.log(all_requests=True))
    code, summary, err = cli(["gdap", "extend", "--relationship", known], capsys)
    assert code == 0 and summary["extended"] == 1, err
    path = f"{REL_PATH}/{known}"
    calls = [(e["method"], e["path"]) for e in emulator.log(all_requests=True)[before:] if e["path"] == path]
    assert calls == [("GET", path), ("PATCH", path)], calls


def test_template_names_match_whatever_their_case(
    gdap_env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The documentation writes "Helpdesk"; the template is called "helpdesk": both name it."""
    audit()
    code, result, err = cli(["gdap", "request", "--customer", ADATUM, "--template", "Helpdesk"], capsys)
    assert code == 0, err
    assert result["template"] == "helpdesk"


# --- least privilege ---------------------------------------------------------------------------------------


def test_remove_global_admin_with_if_match_and_the_long_running_operation(
    gdap_env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    scenario, emulator = gdap_env["scenario"], gdap_env["emulator"]
    audit()
    wingtip = rel_id(scenario, WINGTIP)
    emulator.add_faults(
        [{"method": "PATCH", "pathPrefix": f"{REL_PATH}/{wingtip}", "status": 412, "times": 1}]
    )
    code, result, err = cli(["gdap", "remove-global-admin", "--relationship", wingtip], capsys)
    assert code == 0, err
    # The operation takes emulator time (PT1H): until then it is requested, not completed.
    assert result["result"] == "requested" and result["operationStatus"] == "notStarted", result
    assert GLOBAL_ADMINISTRATOR in emulator.gdap_relationship(wingtip)["roles"]
    emulator.advance("PT1H")
    code, result, err = cli(["gdap", "remove-global-admin", "--relationship", wingtip], capsys)
    assert code == 0, err
    assert result["result"] == "completed" and result["operationStatus"] == "succeeded"
    assert GLOBAL_ADMINISTRATOR not in result["rolesAfter"] and result["rolesAfter"]
    patches = mutations(emulator, "PATCH", wingtip)
    assert len(patches) == 2  # the first met a changed ETag (412); read again, sent again
    assert all(p["headers"]["if-match"] for p in patches)
    sent = [r["roleDefinitionId"] for r in patches[-1]["body"]["accessDetails"]["unifiedRoles"]]
    assert GLOBAL_ADMINISTRATOR not in sent and set(sent) == set(result["rolesAfter"])
    assert GLOBAL_ADMINISTRATOR not in emulator.gdap_relationship(wingtip)["roles"]
    assert emulator.gdap_relationship(wingtip)["operations"][0]["status"] == "succeeded"

    async def stored(service: GdapService, services: Services) -> Any:
        _, rels = await RelationshipStore(services.storage).load_customer(WINGTIP)
        return next(r for r in rels if r.id == wingtip)

    assert GLOBAL_ADMINISTRATOR not in with_service(stored).roles
    actions = [(a["Action"], a["Result"]) for a in actions_of(WINGTIP)]
    assert ("gdap.removeGlobalAdministrator", "requested") in actions
    assert ("gdap.removeGlobalAdministrator", "completed") in actions

    code, again, _ = cli(["gdap", "remove-global-admin", "--relationship", wingtip], capsys)
    assert code == 0 and again["result"] == "unchanged"
    # Only while active: an approvalPending relationship with Global Administrator is refused, unchanged.
    munson = rel_id(scenario, MUNSON)
    code, _, err = cli(["gdap", "remove-global-admin", "--relationship", munson], capsys)
    assert code == 2 and "only while the relationship is active" in err
    assert mutations(emulator, "PATCH", munson) == []


def test_global_admin_removal_that_takes_hours_is_requested_until_the_clock_passes(
    gdap_env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    scenario, emulator = gdap_env["scenario"], gdap_env["emulator"]
    emulator.post_scenario({**scenario, "asyncDurations": {"operation": "PT6H"}})
    audit()
    wingtip = rel_id(scenario, WINGTIP)
    code, result, err = cli(["gdap", "remove-global-admin", "--relationship", wingtip, "--no-wait"], capsys)
    assert code == 0 and result["result"] == "requested", (result, err)
    emulator.advance("PT5H")
    followed = with_service(lambda service, services: service.follow_up())
    [op] = followed["operations"]
    assert op["state"] == "requested" and op["operationStatus"] == "running"
    assert "still running" in op["reason"]
    assert GLOBAL_ADMINISTRATOR in emulator.gdap_relationship(wingtip)["roles"]
    assert ("gdap.removeGlobalAdministrator", "completed") not in [
        (a["Action"], a["Result"]) for a in actions_of(WINGTIP)
    ]
    emulator.advance("PT1H")
    [op] = with_service(lambda service, services: service.follow_up())["operations"]
    assert op["state"] == "succeeded" and op["operationStatus"] == "succeeded" and op["reason"] is None
    assert GLOBAL_ADMINISTRATOR not in emulator.gdap_relationship(wingtip)["roles"]
    assert ("gdap.removeGlobalAdministrator", "completed") in [
        (a["Action"], a["Result"]) for a in actions_of(WINGTIP)
    ]
    assert (
        with_service(lambda service, services: service.follow_up())["operations"] == []
    )  # finished: not read again


def test_global_admin_removal_that_fails_is_reported_failed_with_the_reason(
    gdap_env: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario, emulator = gdap_env["scenario"], gdap_env["emulator"]
    wingtip = rel_id(scenario, WINGTIP)
    failing = copy.deepcopy(scenario)
    for customer in failing["customers"]:
        for rel in customer["gdapRelationships"]:
            if rel["id"] == wingtip:
                rel["failOperations"] = True
    emulator.post_scenario({**failing, "asyncDurations": {"operation": "PT3H"}})
    monkeypatch.setenv("NOTIFY_PARTNER_ADDRESSES", "admins@contoso.example")
    audit()
    code, result, err = cli(["gdap", "remove-global-admin", "--relationship", wingtip], capsys)
    assert code == 0 and result["result"] == "requested", (result, err)
    emulator.advance("PT3H")
    code, result, err = cli(["gdap", "remove-global-admin", "--relationship", wingtip], capsys)
    assert code == 0 and result["result"] == "failed" and result["operationStatus"] == "failed", (result, err)
    assert "failed at 2026-" in result["reason"] and "still granted" in result["reason"]
    assert GLOBAL_ADMINISTRATOR in emulator.gdap_relationship(wingtip)["roles"]
    trail = [a for a in actions_of(WINGTIP) if a["Action"] == "gdap.removeGlobalAdministrator"]
    assert [a["Result"] for a in trail if a["Result"] in ("completed", "failed")] == ["failed"]
    assert any("Global Administrator is still granted" in a.get("Detail", "") for a in trail), trail
    digest = with_service(lambda service, services: service.expiry_digest())
    assert digest["result"] == "sent", digest
    [mail] = [m for m in emulator.outbox() if "admins@contoso.example" in json.dumps(m)]
    assert "removal: failed: Microsoft reports operation" in json.dumps(mail), mail


def test_least_privilege_flags_global_admin_and_unused_assignments(gdap_env: dict[str, Any]) -> None:
    scenario, emulator = gdap_env["scenario"], gdap_env["emulator"]
    audit()
    result = with_service(lambda service, services: service.least_privilege(AS_OF, 90))
    assert [g["relationshipId"] for g in result["globalAdministrator"]] == [rel_id(scenario, WINGTIP)]
    assert result["coverageFrom"] == "2026-10-22T00:00:00Z"
    flagged = {(u["tenantId"], u["groupId"]) for u in result["unusedAssignments"]}
    # Helpdesk Agents never signed in to Lamna or Wingtip; Agent 0 (Admin Agents) signed in to Lamna on
    # 2026-11-01; Relecloud's relationship is 3 days old: too little evidence to call anything unused.
    assert flagged == {(LAMNA, HELPDESK_AGENTS), (WINGTIP, HELPDESK_AGENTS)}
    lamna = next(u for u in result["unusedAssignments"] if u["tenantId"] == LAMNA)
    assert lamna["groupName"] == "HelpdeskAgents" and lamna["members"] == 3
    assert lamna["recommendation"] == "removeAssignment" and lamna["evidenceDays"] == 30
    assert result["assignmentsChecked"] == 4
    assert any("transitiveMembers" in e["path"] for e in emulator.log(all_requests=True))


# --- re-establish -----------------------------------------------------------------------------------------


def test_reestablish_uses_the_template_used_before(
    gdap_env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = gdap_env["emulator"]
    audit()
    # Tailspin's terminated relationship held Exchange roles: the best matching template.
    code, tailspin, err = cli(["gdap", "reestablish", "--customer", TAILSPIN], capsys)
    assert code == 0, err
    assert (tailspin["template"], tailspin["basis"], tailspin["status"]) == (
        "exchange-admin",
        "matchingRoles",
        "approvalPending",
    )
    assert tailspin["source"] == "reestablish"
    # Fourth Coffee lost DAP (Global Administrator + Helpdesk Administrator): never Global Administrator by guesswork.
    code, fourth, _ = cli(["gdap", "reestablish", "--customer", FOURTH_COFFEE], capsys)
    assert (fourth["template"], fourth["basis"]) == ("helpdesk", "matchingRoles")
    # Asking again while that request is open returns it.
    code, again, _ = cli(["gdap", "reestablish", "--customer", FOURTH_COFFEE], capsys)
    assert again["id"] == fourth["id"] and again["basis"] == "pendingRequest"

    # A request recorded before wins over role matching: Tailspin's request ended; re-establish uses its template.
    async def end_it(service: GdapService, services: Services) -> None:
        store = GdapRequestStore(services.storage)
        row = await store.get(TAILSPIN, tailspin["id"])
        assert row is not None
        row.state, row.template = "terminated", "security-reader"
        await store.save(row)

    with_service(end_it)
    code, recorded, _ = cli(["gdap", "reestablish", "--customer", TAILSPIN], capsys)
    assert (recorded["template"], recorded["basis"]) == ("security-reader", "previousRequest")
    assert recorded["id"] != tailspin["id"]
    assert ("gdap.reestablish", "created") in [(a["Action"], a["Result"]) for a in actions_of(TAILSPIN)]

    # Active access is not "removed": refused, nothing created.
    before = len(mutations(emulator, "POST"))
    code, _, err = cli(["gdap", "reestablish", "--customer", ADATUM], capsys)
    assert code == 2 and "still has active" in err
    assert len(mutations(emulator, "POST")) == before


def test_unknown_customer_and_bad_ids_are_refused(gdap_env: dict[str, Any]) -> None:
    audit()

    async def work(service: GdapService, services: Services) -> list[str]:
        codes = []
        for call in (
            lambda: service.request("00000000-1111-2222-3333-444444444444", "helpdesk", requested_by="x"),
            lambda: service.remove_global_admin("bad id/../x", actor="x"),
            lambda: service.remove_global_admin("00000000-0000-0000-0000-000000000000", actor="x"),
            lambda: service.extend([], actor="x"),
        ):
            with pytest.raises(GdapError) as info:
                await call()
            codes.append(info.value.code)
        return codes

    assert with_service(work) == [
        "unknownCustomer",
        "invalidRelationshipId",
        "unknownRelationship",
        "malformedBody",
    ]
