"""Agents: standing access nobody uses. The report per partner agent (use of customers, the groups that
give it access, coverage honesty), the removal from a group (confirmation, role, re-check right before
acting, idempotency, audit trail, Graph refusing), the HTTP API and the CLI -- through the emulator and
Azurite, with the product's real clients."""

from __future__ import annotations

import asyncio
import copy
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.evaluation.audit import audit
from shared.platform.actions import PARTNER_PARTITION
from shared.platform.settings import Settings
from shared.services import Services
from shared.web.auth import READ_ROLE, REMOVE_ROLE, encode_principal
from shared.web.server import build_app
from tests.conftest import load_example, run_cli, settings_with

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

NOW = datetime(2026, 11, 21, tzinfo=UTC)
ADMIN_AGENTS = "d23f0824-128b-4f33-8c5c-7fd0a6a3a450"
HELPDESK_AGENTS = "9531985d-5d9d-49f8-9818-e811892f902b"
TIER2 = "36f675cc-81e7-4ef5-a8e2-5d940ed90475"
BUSY = "6b0d549b-6f03-475a-9600-a35a099950d8"  # AdminAgents, signs in to four customers
TIER2_BUSY = "90c192cf-d3ac-44af-8f21-ddb66cad4a26"
TIER2_IDLE = "0cb1e29c-658c-4a14-95e6-0af593bd04cf"  # Tier2-Exchange, never signs in
ADMIN_IDLE = "a170b338-3926-4059-b28c-105d1fb17c23"  # AdminAgents, never signs in
HELPDESK_RECENT = "8d116ece-1738-47d9-bd9c-172411e20b8f"  # HelpdeskAgents, one sign-in 16 days ago
LAST_GDAP = "ca02135e-92b1-43f2-8ede-0d7ac3baea9e"
READER = {"X-MS-CLIENT-PRINCIPAL": encode_principal("reader@contoso.example", [READ_ROLE])}
REMOVER = {"X-MS-CLIENT-PRINCIPAL": encode_principal("remover@contoso.example", [READ_ROLE, REMOVE_ROLE])}
BODY = {"reason": "left the team", "confirm": True}


def scenario(**extra: Any) -> dict[str, Any]:
    """The example estate; Tier2-Exchange gets an access assignment in one customer and a Helpdesk agent
    one sign-in 16 days before now."""
    s = copy.deepcopy(load_example())
    customer = next(c for c in s["customers"] if c["tenantId"] == LAST_GDAP)
    customer["gdapRelationships"][0]["accessAssignments"].append(
        {
            "id": "tier2-assignment",
            "groupId": TIER2,
            "roles": ["29232cdf-9323-42fd-ade2-1d097af3e4de"],
            "status": "active",
        }
    )
    s["signIns"].append(
        {
            "id": "5e1f0000-0000-4000-8000-000000000001",
            "createdDateTime": "2026-11-05T10:00:00.000Z",
            "userId": HELPDESK_RECENT,
            "resourceTenantId": "18f135d2-5f55-4203-b018-50c5a38fd547",
            "crossTenantAccessType": "serviceProvider",
            "errorCode": 0,
            "appDisplayName": "Microsoft Admin Portals",
        }
    )
    s.update(extra)
    return s


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def audit_now(settings: Settings) -> None:
    async def go() -> None:
        async with Services(settings) as services:
            await audit(services, NOW)

    run(go())


def report(settings: Settings) -> dict[str, Any]:
    from shared.agents.report import agents_report

    async def go() -> dict[str, Any]:
        async with Services(settings) as services:
            return await agents_report(services, NOW)

    result: dict[str, Any] = run(go())
    return result


def trail(settings: Settings) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        async with Services(settings) as services:
            table = services.storage.table("Actions")
            return [
                dict(e)
                async for e in table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": PARTNER_PARTITION}
                )
                if e.get("Action") == "agent.groupRemoval"
            ]

    result: list[dict[str, Any]] = run(go())
    return result


def deletes(emulator: Any) -> list[dict[str, Any]]:
    return [e for e in emulator.log() if e["method"] == "DELETE" and "/members/" in e["path"]]


def groups_of(emulator: Any, user: str) -> list[str]:
    agent = next(a for a in emulator.state(sign_ins=False)["agents"] if a["id"] == user)
    return [g.lower() for g in agent["groupIds"]]


@pytest.fixture
def estate(env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    emulator.post_scenario(scenario())
    monkeypatch.setenv("AGENT_INACTIVE_DAYS", "20")
    settings = settings_with()
    audit_now(settings)
    return {"emulator": emulator, "settings": settings}


@contextmanager
def client(settings: Settings) -> Iterator[TestClient]:
    app = build_app(settings, local_operator=False, drain_removals=False, trust_principal_header=True)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["userId"]: a for a in result["agents"]}


def test_report_values_per_agent(estate: dict[str, Any]) -> None:
    result = report(estate["settings"])
    agents = by_id(result)
    busy = agents[BUSY]
    assert busy["lastSignInAt"] == "2026-11-20T21:00:00Z"
    assert busy["lastSignInTenantId"] == "92276658-1e27-41c0-8a6a-63ec24ede6a4"
    # ca02135e's sign-in failed (errorCode 50076): not a use. Four customers in 30 days, the same in 90.
    assert busy["customersLast30Days"] == 4 and busy["customersLast90Days"] == 4
    assert [(g["groupId"], g["kind"], g["groupName"]) for g in busy["groups"]] == [
        (ADMIN_AGENTS, "adminAgents", "AdminAgents")
    ]
    # Admin Agents opens every customer with active DAP (three of the four DAP customers are enabled).
    assert busy["groups"][0]["customers"] == 3 and busy["customersReachable"] == 3
    assert busy["idle"] is False and busy["recommendation"] == "none"
    helpdesk = agents[HELPDESK_RECENT]
    # Helpdesk Agents: the DAP customers and the GDAP customers it is assigned in.
    assert helpdesk["groups"][0]["kind"] == "helpdeskAgents" and helpdesk["groups"][0]["customers"] == 5
    assert helpdesk["inactiveForAtLeastDays"] == 15 and helpdesk["idle"] is False
    tier2 = agents[TIER2_IDLE]
    assert tier2["groups"] == [
        {"groupId": TIER2, "groupName": "Tier2-Exchange", "kind": "gdap", "customers": 1}
    ]
    assert tier2["lastSignInAt"] is None and tier2["customersLast30Days"] == 0
    assert tier2["userPrincipalName"] and tier2["displayName"]  # named by the directory: never signed in
    assert tier2["idle"] is True and tier2["recommendation"] == "removeFromGroups"
    assert agents[TIER2_BUSY]["idle"] is False
    assert result["summary"]["idle"] == sum(a["idle"] for a in result["agents"])
    assert result["agents"][0]["idle"] is True  # idle agents first


def test_idle_only_as_long_as_the_stored_log_proves(
    estate: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log holds 30 days: an agent without a sign-in is idle for at least 30 days, never 90."""
    agents = by_id(report(estate["settings"]))
    assert agents[TIER2_IDLE]["inactiveForAtLeastDays"] == 30
    monkeypatch.setenv("AGENT_INACTIVE_DAYS", "90")  # the default
    at_default = report(settings_with())
    assert at_default["inactiveDays"] == 90
    assert not any(a["idle"] for a in at_default["agents"])
    assert by_id(at_default)[TIER2_IDLE]["inactiveForAtLeastDays"] == 30


def test_without_sign_in_data_nobody_is_idle(
    env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.post_scenario(scenario())
    monkeypatch.setenv("AGENT_INACTIVE_DAYS", "1")
    result = report(settings_with())  # nothing ingested
    assert result["coverageFrom"] is None and result["note"]
    assert result["agents"] and not any(a["idle"] for a in result["agents"])


def test_removal_from_group_rechecked_recorded_and_idempotent(estate: dict[str, Any]) -> None:
    emulator = estate["emulator"]
    path = f"/api/agents/{TIER2_IDLE}/groups/{TIER2}/remove"
    with client(estate["settings"]) as c:
        # Reader refused, bad input refused: nothing sent to Graph.
        assert c.post(path, json=BODY, headers=READER).status_code == 403
        for body in (
            {"reason": "x"},
            {"confirm": True},
            {"reason": "  ", "confirm": True},
            {"reason": "x", "confirm": "yes"},
        ):
            answer = c.post(path, json=body, headers=REMOVER)
            assert answer.status_code == 400, body
        assert (
            c.post(f"/api/agents/not-a-guid/groups/{TIER2}/remove", json=BODY, headers=REMOVER).status_code
            == 400
        )
        assert deletes(emulator) == []
        # An agent in use is refused, recorded, never removed.
        busy = c.post(f"/api/agents/{BUSY}/groups/{ADMIN_AGENTS}/remove", json=BODY, headers=REMOVER)
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "agentInUse"
        assert deletes(emulator) == [] and ADMIN_AGENTS in groups_of(emulator, BUSY)
        # The idle agent is removed from the group, once.
        done = c.post(path, json=BODY, headers=REMOVER)
        assert done.status_code == 200, done.text
        assert done.json()["result"] == "removed"
        assert TIER2 not in groups_of(emulator, TIER2_IDLE)
        assert len(deletes(emulator)) == 1
        again = c.post(path, json=BODY, headers=REMOVER)
        assert again.status_code == 200 and again.json()["result"] == "unchanged"
        assert len(deletes(emulator)) == 1
        listed = by_id(c.get("/api/agents", headers=READER).json())
        assert TIER2_IDLE not in listed  # no membership and no sign-in left: no standing access
    rows = trail(estate["settings"])
    results = sorted(r["Result"] for r in rows)
    assert results == ["completed", "refused"]
    completed = next(r for r in rows if r["Result"] == "completed")
    assert completed["Actor"].startswith("remover@contoso.example") and completed["Reason"] == "left the team"
    assert json.loads(completed["Detail"])["groupId"] == TIER2


def test_sign_in_since_the_last_ingestion_stops_the_removal(estate: dict[str, Any]) -> None:
    emulator = estate["emulator"]
    emulator.add_sign_ins(
        [
            {
                "id": "5e1f0000-0000-4000-8000-000000000002",
                "createdDateTime": "2026-11-20T23:30:00.000Z",
                "userId": ADMIN_IDLE,
                "resourceTenantId": "92276658-1e27-41c0-8a6a-63ec24ede6a4",
                "crossTenantAccessType": "serviceProvider",
                "errorCode": 0,
                "appDisplayName": "Microsoft Admin Portals",
            }
        ]
    )
    with client(estate["settings"]) as c:
        refused = c.post(f"/api/agents/{ADMIN_IDLE}/groups/{ADMIN_AGENTS}/remove", json=BODY, headers=REMOVER)
    assert refused.status_code == 409, refused.text
    assert deletes(emulator) == [] and ADMIN_AGENTS in groups_of(emulator, ADMIN_IDLE)


def test_graph_refusing_the_write_removes_nothing(
    env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.post_scenario(scenario(missingPermissions=["GroupMember.ReadWrite.All"]))
    monkeypatch.setenv("AGENT_INACTIVE_DAYS", "20")
    settings = settings_with()
    audit_now(settings)
    with client(settings) as c:
        answer = c.post(f"/api/agents/{TIER2_IDLE}/groups/{TIER2}/remove", json=BODY, headers=REMOVER)
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstreamFailed"
    assert TIER2 in groups_of(emulator, TIER2_IDLE)
    assert [r["Result"] for r in trail(settings)] == ["failed"]


def test_api_csv_and_cli(estate: dict[str, Any], env: dict[str, str]) -> None:
    with client(estate["settings"]) as c:
        assert c.get("/api/agents").status_code == 401
        csv_answer = c.get("/api/agents?format=csv", headers=READER)
        assert csv_answer.status_code == 200 and csv_answer.text.lstrip("\ufeff").startswith("userId,")
        assert "Tier2-Exchange(1),true,removeFromGroups" in csv_answer.text
        assert c.get("/api/agents?format=xml", headers=READER).status_code == 400
    done = run_cli("agents", "--format", "json")
    assert done.returncode == 0, done.stderr
    agents = by_id(json.loads(done.stdout))
    assert agents[TIER2_IDLE]["groups"][0]["groupId"] == TIER2
    table = run_cli("agents")
    assert table.returncode == 0 and "removeFromGroups" in table.stdout
    bad = run_cli("agents", "--format", "xml")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_partner_digest_lists_newly_idle_agents_once(
    env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.evaluation.run import run_cycle
    from shared.notifications.worker import drain_notifications

    emulator.post_scenario(scenario())
    monkeypatch.setenv("AGENT_INACTIVE_DAYS", "20")
    monkeypatch.setenv("NOTIFY_SENDER", "notices@contoso.example")
    monkeypatch.setenv("NOTIFY_PARTNER_ADDRESSES", "admins@contoso.example")
    monkeypatch.setenv("POLICY_MODE", "enforce")  # the partner digest is the enforcement run's
    settings = settings_with()

    async def cycle() -> None:
        async with Services(settings) as services:
            await run_cycle(services, await services.now())
            await drain_notifications(services)

    run(cycle())
    digests = [m for m in emulator.outbox() if "idle agents" in str(m)]
    assert len(digests) == 1, emulator.outbox()
    text = str(digests[0])
    assert TIER2_IDLE in text and "Tier2-Exchange" in text and BUSY not in text
    emulator.advance("PT1H")
    run(cycle())
    assert len([m for m in emulator.outbox() if "idle agents" in str(m)]) == 1  # listed once
    assert deletes(emulator) == []  # AGENT_REMOVAL_MODE is off by default: never automatic


def run_evaluation_now(settings: Settings) -> dict[str, Any]:
    from shared.evaluation.run import run_evaluation

    async def go() -> dict[str, Any]:
        async with Services(settings) as services:
            return await run_evaluation(services, await services.now())

    result: dict[str, Any] = run(go())
    return result


def test_agent_removal_mode_enforce_removes_idle_agents(
    env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.platform.settings import SettingsError

    with pytest.raises(SettingsError, match="AGENT_REMOVAL_MODE"):
        settings_with(AGENT_REMOVAL_MODE="auto")
    emulator.post_scenario(scenario())
    monkeypatch.setenv("AGENT_INACTIVE_DAYS", "20")
    monkeypatch.setenv("AGENT_REMOVAL_MODE", "enforce")
    # More memberships to remove than the breaker allows: none is removed.
    halted = run_evaluation_now(settings_with(MAX_REMOVALS_PER_RUN="1"))
    assert halted["agentRemovals"]["halted"] and deletes(emulator) == []
    summary = run_evaluation_now(settings_with())
    removed = {(r["userId"], r["groupId"]) for r in summary["agentRemovals"]["removed"]}
    assert (TIER2_IDLE, TIER2) in removed and (ADMIN_IDLE, ADMIN_AGENTS) in removed
    assert not any(user in (BUSY, TIER2_BUSY, HELPDESK_RECENT) for user, _ in removed)
    assert TIER2 not in groups_of(emulator, TIER2_IDLE) and ADMIN_AGENTS in groups_of(emulator, BUSY)
    rows = [r for r in trail(settings_with()) if r["Result"] == "completed"]
    assert len(rows) == len(removed) and {r["Actor"] for r in rows} == {"policy"}
    again = run_evaluation_now(settings_with())  # nothing left to remove: nothing sent again
    assert again["agentRemovals"]["removed"] == [] and len(deletes(emulator)) == len(removed)


def test_emulator_serves_member_removal_with_graph_semantics(emulator: Any) -> None:
    """``DELETE /groups/{id}/members/{id}/$ref``: 204, then 404 (no longer a member); unknown group 404;
    without GroupMember.ReadWrite.All 403 and nothing changes."""
    import httpx

    emulator.post_scenario(scenario())
    path = f"/v1.0/groups/{TIER2}/members/{TIER2_IDLE}/$ref"
    with httpx.Client(
        base_url=emulator.url, headers={"Authorization": "Bearer test-token"}, timeout=30
    ) as api:
        first = api.delete(path)
        assert first.status_code == 204 and not first.content
        assert TIER2 not in groups_of(emulator, TIER2_IDLE)
        again = api.delete(path)
        assert again.status_code == 404 and again.json()["error"]["code"] == "Request_ResourceNotFound"
        unknown = api.delete(f"/v1.0/groups/00000000-0000-4000-8000-000000000000/members/{TIER2_IDLE}/$ref")
        assert unknown.status_code == 404
        emulator.post_scenario(scenario(missingPermissions=["GroupMember.ReadWrite.All"]))
        refused = api.delete(path)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "Authorization_RequestDenied"
        assert TIER2 in groups_of(emulator, TIER2_IDLE)
        # Reads need GroupMember.Read.All, not the write permission.
        assert api.get(f"/v1.0/groups/{TIER2}/transitiveMembers").status_code == 200
