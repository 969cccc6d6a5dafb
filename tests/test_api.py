"""The HTTP API (docs/definitions.md section 6): every route, both roles, and bad input that must change nothing.

Requests go through the real ASGI app (Starlette's TestClient) against Azurite and the emulator;
one test goes through the function app's HTTP function with a real ``func.HttpRequest``.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from shared.evaluation.audit import audit, build_report
from shared.evaluation.audit_runs import drain_audit_runs
from shared.evaluation.store import EvaluationStore
from shared.platform.settings import Settings
from shared.platform.storage import query_all
from shared.platform.timeutil import parse_iso
from shared.services import Services
from shared.web.auth import GRANT_ROLE, READ_ROLE, REMOVE_ROLE, encode_principal, parse_principal
from shared.web.server import build_app, served_hosts
from tests.conftest import ROOT, audited_example, load_example, settings_with
from tests.test_enforcement import with_services

with warnings.catch_warnings():  # starlette nags about its httpx transport on import
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

AS_OF = parse_iso("2026-11-21T00:00:00Z")
WINGTIP = "ca02135e-92b1-43f2-8ede-0d7ac3baea9e"  # GDAP only, 30-60, never signed in
LAMNA = "3f98e277-4cbd-47ad-9c90-a9587403e430"  # DAP + GDAP
ADATUM = "92276658-1e27-41c0-8a6a-63ec24ede6a4"  # DAP, active
FOURTH_COFFEE = "9be4bcfc-49b6-4a08-b2e6-cc3ababced20"  # DAP disabled: not under monitoring
UNKNOWN = "00000000-1111-2222-3333-444444444444"

READER = {"X-MS-CLIENT-PRINCIPAL": encode_principal("reader@contoso.example", [READ_ROLE])}
REMOVER = {
    "X-MS-CLIENT-PRINCIPAL": encode_principal(
        "admin@contoso.example", [READ_ROLE, REMOVE_ROLE], object_id="4f1c2a7e-0000-4000-8000-000000000001"
    )
}
NO_ROLES = {"X-MS-CLIENT-PRINCIPAL": encode_principal("guest@contoso.example", [])}
JSON = {"Content-Type": "application/json"}

GET_ROUTES = [
    "/api/audit",
    "/api/audit?format=csv",
    "/api/customers",
    f"/api/customers/{WINGTIP}",
    "/api/actions",
    "/api/trends",
    "/api/removals/00000000-0000-0000-0000-000000000000",
    "/api/removals?ids=00000000-0000-0000-0000-000000000000",
    "/api/removals?since=2026-11-01T00:00:00Z",
    "/api/exclusions",
    "/api/signins/coverage",
    "/api/audit/runs/" + "0" * 32,
    "/api/me",
    "/api/roles",
    "/api/openapi.json",
]
POST_ROUTES = ["/api/removals", "/api/removals/preview", "/api/audit/run"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The example estate, audited at AS_OF and stored as the latest evaluation."""
    return audited_example(monkeypatch, AS_OF)


@contextmanager
def client(
    settings: Settings, *, local_operator: bool = False, trust: bool | None = True
) -> Iterator[TestClient]:
    app = build_app(
        settings, local_operator=local_operator, drain_removals=False, trust_principal_header=trust
    )
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def storage_state(settings: Settings) -> dict[str, Any]:
    """What a removal request would change: removals, the trail, the queue."""

    async def read() -> dict[str, Any]:
        async with Services(settings) as services:
            removals = [e async for e in query_all(services.storage.table("Removals"))]
            actions = [e async for e in query_all(services.storage.table("Actions"))]
            queue = services.storage.queue("removals")
            props = await queue.get_queue_properties()
            return {
                "removals": len(removals),
                "actions": len(actions),
                "queued": props.approximate_message_count,
            }

    result: dict[str, Any] = run(read())
    return result


# --- who may do what --------------------------------------------------------------------------------


def principal_header(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


FORGED = [
    pytest.param("not base64 at all!", id="not-base64"),
    pytest.param(base64.b64encode(b"\xff\xfe not utf-8").decode(), id="not-utf8"),
    pytest.param(base64.b64encode(b"{not json").decode(), id="not-json"),
    pytest.param(principal_header(["roles", READ_ROLE]), id="json-array"),
    pytest.param(
        principal_header({"auth_typ": "aad", "roles": [READ_ROLE, REMOVE_ROLE]}), id="roles-outside-claims"
    ),
    pytest.param(principal_header({"claims": "roles=Relationships.Read"}), id="claims-not-a-list"),
    pytest.param(
        principal_header({"claims": [{"typ": "roles", "val": READ_ROLE}]}), id="roles-but-no-identity"
    ),
    pytest.param(
        principal_header({"claims": [{"typ": "name", "val": "x"}, {"typ": "roles", "val": 7}]}),
        id="claim-value-not-text",
    ),
    pytest.param(
        principal_header({"claims": [{"typ": "name", "val": "x"}, ["roles", REMOVE_ROLE]]}),
        id="claim-not-an-object",
    ),
    pytest.param("", id="empty"),
]


def test_principal_parsing() -> None:
    principal = parse_principal(REMOVER["X-MS-CLIENT-PRINCIPAL"])
    assert principal is not None
    assert principal.roles == {READ_ROLE, REMOVE_ROLE}
    assert principal.name == "admin@contoso.example"
    assert principal.display == "admin@contoso.example (4f1c2a7e-0000-4000-8000-000000000001)"
    # Easy Auth's own role claim type is honoured when it names one; a similar-looking value is not a role.
    doc = {
        "claims": [
            {"typ": "name", "val": "u"},
            {"typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "val": READ_ROLE},
            {"typ": "roles", "val": "relationships.remove"},
        ],
        "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    }
    parsed = parse_principal(principal_header(doc))
    assert parsed is not None and parsed.has(READ_ROLE) and not parsed.has(REMOVE_ROLE)
    for forged in FORGED:
        assert parse_principal(forged.values[0]) is None, forged.id


def test_no_or_forged_principal_is_401_everywhere(settings: Settings, emulator: Any) -> None:
    with client(settings) as c:
        for path in GET_ROUTES:
            assert_error(c.get(path), 401, "unauthenticated")
        for forged in FORGED:
            header = {"X-MS-CLIENT-PRINCIPAL": forged.values[0]}
            for path in GET_ROUTES:
                assert_error(c.get(path, headers=header), 401, "unauthenticated")
            for path in POST_ROUTES:
                body = {"tenantIds": [WINGTIP], "customerNotified": True}
                response = c.post(path, json=body, headers=header)
                assert_error(response, 401, "unauthenticated")
                assert response.headers["www-authenticate"]
    assert storage_state(settings) == {"removals": 0, "actions": 0, "queued": 0}
    assert emulator.log() == []


def test_roles_decide_what_a_principal_may_do(settings: Settings, emulator: Any) -> None:
    with client(settings) as c:
        for path in GET_ROUTES:
            assert_error(c.get(path, headers=NO_ROLES), 403, "forbidden")
        for path in POST_ROUTES:
            assert_error(
                c.post(path, json={"tenantIds": [WINGTIP], "customerNotified": True}, headers=NO_ROLES),
                403,
                "forbidden",
            )
        # Read may read everything but may not remove.
        for path in (
            "/api/audit",
            "/api/customers",
            f"/api/customers/{WINGTIP}",
            "/api/actions",
            "/api/trends",
            "/api/signins/coverage",
            "/api/me",
            "/api/roles",
            "/api/openapi.json",
        ):
            assert c.get(path, headers=READER).status_code == 200, path
        assert_error(
            c.post("/api/removals", json={"tenantIds": [WINGTIP], "customerNotified": True}, headers=READER),
            403,
            "forbidden",
        )
        me = c.get("/api/me", headers=READER).json()
        assert me == {
            "name": "reader@contoso.example",
            "roles": [READ_ROLE],
            "canRemove": False,
            "canGrant": False,
            "localOperator": False,
        }
        # Remove implies Read: a remover sees what they remove.
        only_remove = {"X-MS-CLIENT-PRINCIPAL": encode_principal("r@contoso.example", [REMOVE_ROLE])}
        assert c.get("/api/customers", headers=only_remove).status_code == 200
    assert storage_state(settings) == {"removals": 0, "actions": 0, "queued": 0}
    assert emulator.log() == []


def test_local_operator_holds_every_role(settings: Settings) -> None:
    with client(settings, local_operator=True) as c:
        assert c.get("/api/me").json() == {
            "name": "local-operator",
            "roles": sorted([GRANT_ROLE, READ_ROLE, REMOVE_ROLE]),
            "canRemove": True,
            "canGrant": True,
            "localOperator": True,
        }
        assert c.get("/api/customers").status_code == 200


def test_principal_header_is_ignored_on_app_service_without_easy_auth(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_SITE_NAME", "dam-func")
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "False")
    with client(settings, trust=None) as c:
        assert_error(c.get("/api/customers", headers=REMOVER), 401)
        monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
        assert c.get("/api/customers", headers=REMOVER).status_code == 200


def test_principal_header_is_ignored_off_app_service(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside App Service nobody strips a client's own X-MS-CLIENT-PRINCIPAL: it is never believed
    (it used to be whenever WEBSITE_SITE_NAME was absent)."""
    monkeypatch.delenv("WEBSITE_SITE_NAME", raising=False)
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    with client(settings, trust=None) as c:
        assert_error(c.get("/api/customers", headers=REMOVER), 401)
        assert_error(
            c.post(
                "/api/removals",
                json={"tenantIds": [WINGTIP], "customerNotified": True},
                headers={**REMOVER, **JSON},
            ),
            401,
        )
    assert storage_state(settings)["removals"] == 0


def test_a_dns_rebinding_page_is_refused(settings: Settings) -> None:
    """serve answers only for the address it listens on: a page of another site whose name resolves to
    127.0.0.1 arrives with that name in Host (and may set X-Forwarded-Host as it likes)."""
    hosts = served_hosts("127.0.0.1", 7071)
    app = build_app(settings, local_operator=True, drain_removals=False, hosts=hosts)
    with TestClient(app, base_url="http://127.0.0.1:7071") as c:
        assert c.get("/api/customers").status_code == 200
        assert c.get("/api/customers", headers={"Host": "localhost:7071"}).status_code == 200
        for evil in ("attacker.example:7071", "attacker.example", "127.0.0.1.attacker.example:7071"):
            answer = c.get("/api/customers", headers={"Host": evil})
            assert answer.status_code == 421 and answer.json()["error"]["code"] == "misdirectedRequest"
            posted = c.post(
                "/api/removals",
                json={"tenantIds": [WINGTIP], "customerNotified": True},
                headers={"Host": evil, "Origin": f"http://{evil}", "X-Forwarded-Host": evil, **JSON},
            )
            assert posted.status_code == 421
        # Same host, another site's Origin with a forged X-Forwarded-Host: refused as cross-site.
        forged = c.post(
            "/api/removals",
            json={"tenantIds": [WINGTIP], "customerNotified": True},
            headers={
                "Origin": "http://attacker.example:7071",
                "X-Forwarded-Host": "attacker.example:7071",
                **JSON,
            },
        )
        assert forged.status_code == 403
    assert storage_state(settings)["removals"] == 0


# --- reading ---------------------------------------------------------------------------------------


def test_audit_is_the_stored_report_as_json_and_csv(settings: Settings) -> None:
    async def stored() -> dict[str, Any]:
        async with Services(settings) as services:
            latest = await EvaluationStore(services.storage).latest()
            assert latest is not None
            return latest.report

    report = run(stored())
    with client(settings) as c:
        response = c.get("/api/audit", headers=READER)
        assert response.status_code == 200
        assert response.json() == report
        assert response.headers["cache-control"] == "no-store"
        response = c.get("/api/audit?format=csv", headers=READER)
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert [r["tenantId"] for r in rows] == [r["tenantId"] for r in report["customers"]]
        assert_error(c.get("/api/audit?format=xml", headers=READER), 400, "invalidParameter")


def test_customers_filter_sort_and_page(settings: Settings) -> None:
    with client(settings) as c:
        page = c.get("/api/customers", headers=READER).json()
        assert page["total"] == 5 and page["pages"] == 1 and page["page"] == 1
        assert page["summary"]["customersUnderMonitoring"] == 5
        assert [r["displayName"] for r in page["customers"]] == [
            "Wingtip Ltd",
            "Proseware Ltd",
            "Lamna Ltd",
            "Relecloud Ltd",
            "Adatum Ltd",
        ]
        wingtip = page["customers"][0]
        assert wingtip["roleNames"] == ["Exchange Administrator", "Helpdesk Administrator"]
        assert wingtip["relationships"][0]["roleNames"] == [
            "Exchange Administrator",
            "Helpdesk Administrator",
        ]
        dap = next(r for r in page["customers"] if r["displayName"] == "Adatum Ltd")
        assert dap["roleNames"] == ["Global Administrator", "Helpdesk Administrator"]

        def names(query: str) -> list[str]:
            response = c.get("/api/customers?" + query, headers=READER)
            assert response.status_code == 200, response.text
            return [r["displayName"] for r in response.json()["customers"]]

        assert names("bucket=30-60") == ["Wingtip Ltd", "Proseware Ltd"]
        assert names("bucket=new") == ["Relecloud Ltd"]
        assert names("bucket=90%2B") == []
        assert names("q=lamna") == ["Lamna Ltd"]
        assert names("q=" + WINGTIP[:8].upper()) == ["Wingtip Ltd"]
        assert names("q=Global%20Admin") == ["Proseware Ltd", "Lamna Ltd", "Adatum Ltd"]
        assert names("q=ＬＡＭＮＡ") == ["Lamna Ltd"]  # full-width input matches
        assert names("sort=name") == [
            "Adatum Ltd",
            "Lamna Ltd",
            "Proseware Ltd",
            "Relecloud Ltd",
            "Wingtip Ltd",
        ]
        assert names("sort=-name")[0] == "Wingtip Ltd"
        # Blank days inactive (never signed in) sort last both ways.
        never = {r["displayName"] for r in page["customers"] if r["daysInactive"] is None}
        assert never and set(names("sort=daysInactive")[-len(never) :]) == never
        assert set(names("sort=-daysInactive")[-len(never) :]) == never
        ascending = [r for r in names("sort=daysInactive") if r not in never]
        assert ascending == list(reversed([r for r in names("sort=-daysInactive") if r not in never]))
        assert names("sort=name&pageSize=2&page=2") == ["Proseware Ltd", "Relecloud Ltd"]
        second = c.get("/api/customers?sort=name&pageSize=2&page=3", headers=READER).json()
        assert second["pages"] == 3 and second["total"] == 5 and len(second["customers"]) == 1
        assert names("type=DAP&sort=name") == ["Adatum Ltd", "Lamna Ltd", "Proseware Ltd"]
        assert names("type=both&sort=name") == ["Lamna Ltd"]
        assert names("excluded=true") == [] and len(names("excluded=false")) == 5
        exchange = "29232cdf-9323-42fd-ade2-1d097af3e4de"
        assert names(f"role={exchange}") == ["Wingtip Ltd", "Lamna Ltd", "Relecloud Ltd"]
        assert {"id": exchange, "name": "Exchange Administrator", "customers": 3} in page["facets"]["roles"]
        csv_text = c.get("/api/customers?bucket=30-60&format=csv", headers=READER).content.decode("utf-8-sig")
        assert [r["displayName"] for r in csv.DictReader(io.StringIO(csv_text))] == [
            "Wingtip Ltd",
            "Proseware Ltd",
        ]
        for bad in (
            "bucket=old",
            "sort=colour",
            "sort=--name",
            "page=0",
            "page=x",
            "pageSize=501",
            "pageSize=-1",
            "recommendation=maybe",
            "type=CSP",
            "excluded=maybe",
            "role=admin",
            "format=pdf",
            "q=" + "x" * 201,
        ):
            assert_error(c.get("/api/customers?" + bad, headers=READER), 400, "invalidParameter")


def test_customer_detail(settings: Settings) -> None:
    with client(settings) as c:
        detail = c.get(f"/api/customers/{LAMNA}?days=30", headers=READER).json()
        assert detail["displayName"] == "Lamna Ltd"
        assert detail["row"]["tenantId"] == LAMNA and detail["row"]["daysInactive"] == 20
        types = {r["type"]: r for r in detail["relationships"]}
        assert set(types) == {"DAP", "GDAP"}
        assert types["DAP"]["roleNames"] == ["Global Administrator", "Helpdesk Administrator"]
        gdap = types["GDAP"]
        assert gdap["accessAssignments"] and gdap["accessAssignments"][0]["roleNames"]
        # The partner's groups by name (the sync looked them up), with the id kept beside the name.
        groups = {g["id"]: g["displayName"] for g in load_example()["groups"]}
        assert all(a["groupName"] == groups[a["groupId"]] for a in gdap["accessAssignments"])
        wingtip = c.get(f"/api/customers/{WINGTIP}", headers=READER).json()
        assert [a["groupName"] for r in wingtip["relationships"] for a in r["accessAssignments"]] == [
            "HelpdeskAgents"
        ]
        csv_rows = list(
            csv.DictReader(
                io.StringIO(c.get("/api/audit?format=csv", headers=READER).content.decode("utf-8-sig"))
            )
        )
        assert next(r for r in csv_rows if r["tenantId"] == WINGTIP)["accessGroups"] == "HelpdeskAgents"
        assert next(r for r in csv_rows if r["tenantId"] == ADATUM)["accessGroups"] == ""  # DAP only
        days = detail["signIns"]["days"]
        assert len(days) == 30 and days[-1]["day"] == "2026-11-21" and days[0]["day"] == "2026-10-23"
        active_days = [d for d in days if d["signIns"]]
        assert active_days and all(d["agentCount"] == len(d["agents"]) for d in days)
        assert all(0 <= d["nonInteractiveSignIns"] <= d["signIns"] for d in days)  # zero days too
        assert sum(d["signIns"] for d in days) >= len(active_days)
        assert detail["agents"] and {a["userId"] for a in detail["agents"]} == {
            agent for d in active_days for agent in d["agents"]
        }
        # Named as the sign-in log names them (the scenario's agents).
        named = {a["id"]: (a["userPrincipalName"], a["displayName"]) for a in load_example()["agents"]}
        assert {a["userId"]: (a["userPrincipalName"], a["displayName"]) for a in detail["agents"]} == {
            a["userId"]: named[a["userId"]] for a in detail["agents"]
        }
        assert detail["actions"] == []
        assert detail["changes"]
        # Not under monitoring (DAP disabled): known, without a row.
        fourth = c.get(f"/api/customers/{FOURTH_COFFEE}", headers=READER).json()
        assert fourth["row"] is None and fourth["relationships"][0]["active"] is False
        assert_error(c.get(f"/api/customers/{UNKNOWN}", headers=READER), 404, "unknownCustomer")
        assert_error(c.get("/api/customers/not-a-guid", headers=READER), 400, "invalidTenantId")
        assert_error(c.get(f"/api/customers/{WINGTIP}?days=0", headers=READER), 400, "invalidParameter")


def test_agent_names_keep_the_newest_seen(settings: Settings) -> None:
    """A renamed agent takes its new name; an older slice read afterwards does not bring the old one back;
    an id that is not a valid table key, or a sign-in without names, is not stored."""
    from shared.signins.agents import AgentDirectory

    t0, t1 = parse_iso("2026-11-01T00:00:00Z"), parse_iso("2026-11-02T00:00:00Z")
    agent = "00000000-0000-4000-8000-00000000a9e7"  # not among the example's agents (already ingested)

    async def scenario() -> tuple[dict[str, tuple[str, str]], list[int]]:
        async with Services(settings) as services:
            await services.storage.ensure()
            writes = [
                await AgentDirectory(services.storage).learn({agent: ("old@contoso.example", "Old", t0)})
            ]
            directory = AgentDirectory(services.storage)  # another run: reads what the first one stored
            writes.append(
                await directory.learn(
                    {
                        agent: ("new@contoso.example", "New", t1),
                        "bad/id": ("x@contoso.example", "X", t1),
                        "nameless": ("", "", t1),
                    }
                )
            )
            writes.append(await directory.learn({agent: ("old@contoso.example", "Old", t0)}))
            writes.append(
                await AgentDirectory(services.storage).learn({agent: ("old@contoso.example", "Old", t0)})
            )
            return await AgentDirectory(services.storage).names(
                [agent, "bad/id", "nameless", "unknown"]
            ), writes

    names, writes = run(scenario())
    assert names == {agent: ("new@contoso.example", "New")}
    assert writes == [1, 1, 0, 0]


def test_trends_are_daily_points_from_stored_evaluations(settings: Settings) -> None:
    async def more_evaluations() -> None:
        async with Services(settings) as services:
            # An older evaluation for an earlier day (stored then: a past audit today is a what-if that
            # is never stored), and a second one for the same day as AS_OF.
            await services.evaluations.save(await build_report(services, parse_iso("2026-11-19T12:00:00Z")))
            await audit(services, AS_OF)

    run(more_evaluations())
    with client(settings) as c:
        trends = c.get("/api/trends", headers=READER).json()
        assert [p["day"] for p in trends["points"]] == ["2026-11-19", "2026-11-21"]
        last = trends["points"][-1]
        assert last["customersUnderMonitoring"] == 5 and last["inactive30To60Days"] == 2
        assert last["active"] == 3
        assert [p["day"] for p in c.get("/api/trends?days=1", headers=READER).json()["points"]] == [
            "2026-11-21"
        ]
        assert_error(c.get("/api/trends?days=abc", headers=READER), 400, "invalidParameter")


STRETCHES = [
    ("2026-08-01T00:00:00Z", "2026-09-14T05:59:59.999999Z"),  # a stretch ends a microsecond before a gap
    ("2026-09-16T00:00:00Z", "2026-11-21T00:00:00Z"),
]
BACKFILL_AT = "2026-11-21T00:20:00Z"
BACKFILL = {
    "source": "archive",
    "from": "2026-08-01T00:00:00Z",
    "to": "2026-10-22T00:00:00Z",
    "signIns": 12345,
    "slices": 82,
    "blobsRead": 3890,
    "gaps": [["2026-09-14T06:00:00Z", "2026-09-16T00:00:00Z"]],
    "missingHours": {"insights-logs-signinlogs": 42, "insights-logs-noninteractiveusersigninlogs": 0},
    "coverage": [list(s) for s in STRETCHES],
}


async def store_sign_in_evidence(services: Services) -> None:
    """Two stretches of sign-in log with a gap between them, and the archive backfill that left it."""
    from shared.platform.state import StateStore

    state = StateStore(services.storage)
    coverage = await state.load_coverage()
    coverage.intervals = [(parse_iso(a), parse_iso(b)) for a, b in STRETCHES]
    await state.save_coverage(coverage)
    await state.record_success("signinArchive", parse_iso(BACKFILL_AT), BACKFILL)


def test_sign_in_coverage_lists_the_stretches_the_gap_and_the_backfill(
    settings: Settings, env: dict[str, str], emulator: Any
) -> None:
    with client(settings) as c:
        before = c.get("/api/signins/coverage", headers=READER)
        assert before.status_code == 200, before.text
        body = before.json()
        assert body["source"] == "graph" and body["lastBackfill"] is None
        assert body["archive"] == {
            "configured": False,
            "containers": ["insights-logs-signinlogs", "insights-logs-noninteractiveusersigninlogs"],
            "quietHours": 0,
        }
        [(start, end)] = body["coverage"]  # the audit's one stretch, up to its asOf
        assert parse_iso(end) == AS_OF and parse_iso(start) < AS_OF
        assert body["lastIngestionAt"] is not None

    archived = settings_with(
        SIGNIN_ARCHIVE_CONNECTION=env["AzureWebJobsStorage"], SIGNIN_ARCHIVE_QUIET_HOURS="2"
    )
    run(with_services(archived, store_sign_in_evidence))
    with client(archived) as c:
        body = c.get("/api/signins/coverage", headers=READER).json()
        assert body["archive"]["configured"] is True and body["archive"]["quietHours"] == 2
        assert "AccountKey" not in json.dumps(body)  # the connection string itself is never answered
        assert body["coverage"] == [list(s) for s in STRETCHES]
        assert body["lastBackfill"] == {
            "at": BACKFILL_AT,
            **{
                k: BACKFILL[k]
                for k in ("from", "to", "signIns", "slices", "blobsRead", "gaps", "missingHours")
            },
        }
        # Read like the audit report: nobody else.
        assert_error(c.get("/api/signins/coverage"), 401, "unauthenticated")
        assert_error(c.get("/api/signins/coverage", headers=NO_ROLES), 403, "forbidden")
        only_remove = {"X-MS-CLIENT-PRINCIPAL": encode_principal("r@contoso.example", [REMOVE_ROLE])}
        assert c.get("/api/signins/coverage", headers=only_remove).status_code == 200
    assert emulator.log() == []  # from the store alone: nothing asked of Microsoft


def test_no_evaluation_yet_is_a_json_404(env: dict[str, str]) -> None:
    with client(settings_with()) as c:
        assert_error(c.get("/api/customers", headers=READER), 404, "noEvaluation")
        assert_error(c.get("/api/audit", headers=READER), 404, "noEvaluation")
        assert c.get("/api/trends", headers=READER).json()["points"] == []


def test_unknown_routes_and_methods_are_json(settings: Settings) -> None:
    with client(settings) as c:
        assert_error(c.get("/api/nothing", headers=READER), 404)
        assert_error(c.delete("/api/removals", headers=REMOVER), 405)
        assert_error(c.put("/api/removals", headers=REMOVER, json={}), 405)


def test_openapi_document_lists_every_route(settings: Settings) -> None:
    with client(settings) as c:
        document = c.get("/api/openapi.json", headers=READER).json()
    paths = document["paths"]
    for path, method in [
        ("/api/audit", "get"),
        ("/api/customers", "get"),
        ("/api/customers/{tenant_id}", "get"),
        ("/api/actions", "get"),
        ("/api/trends", "get"),
        ("/api/audit/run", "post"),
        ("/api/audit/runs/{run_id}", "get"),
        ("/api/removals", "post"),
        ("/api/removals", "get"),
        ("/api/removals/{removal_id}", "get"),
        ("/api/removals/preview", "post"),
        ("/api/exclusions", "get"),
        ("/api/exclusions/{tenant_id}", "put"),
        ("/api/exclusions/{tenant_id}", "delete"),
        ("/api/signins/coverage", "get"),
        ("/api/me", "get"),
    ]:
        assert method in paths[path], (path, method)
    body = paths["/api/removals"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"tenantIds", "customerNotified"}
    # Authentication as App Service Authentication really takes it: an Entra ID bearer token or its session
    # cookie (the X-MS-CLIENT-PRINCIPAL header is the platform's, not something a client sends).
    schemes = document["components"]["securitySchemes"]
    assert schemes["entraIdBearer"]["scheme"] == "bearer" and schemes["appServiceSession"]["in"] == "cookie"
    assert document["security"] == [{"entraIdBearer": []}, {"appServiceSession": []}]
    operations = [op for ops in paths.values() for op in ops.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) and "listRemovals" in ids and "gdapExtend" in ids
    assert all(op["x-app-role"].startswith("Relationships.") for op in operations)
    assert paths["/api/removals"]["post"]["x-app-role"] == "Relationships.Remove"
    # Query parameters typed with their ranges and choices; the report's schema from the product's own types.
    params = {p["name"]: p["schema"] for p in paths["/api/customers"]["get"]["parameters"]}
    assert params["pageSize"] == {**params["pageSize"], "type": "integer", "minimum": 1, "maximum": 500}
    assert params["format"]["enum"] == ["json", "csv"] and "-inactiveForAtLeastDays" in params["sort"]["enum"]
    report = document["components"]["schemas"]["Report"]
    assert {"schemaVersion", "coverage", "summary", "customers"} <= set(report["required"])
    row = document["components"]["schemas"]["ReportRow"]["properties"]
    assert row["bucket"]["enum"] == ["active", "30-60", "61-90", "90+"]


# --- removals -------------------------------------------------------------------------------------


def test_removals_are_queued_then_executed(settings: Settings, emulator: Any) -> None:
    from shared.removals.worker import process_removal_queue

    with client(settings) as c:
        response = c.post(
            "/api/removals",
            headers={**REMOVER, "Origin": "http://testserver"},
            json={
                "tenantIds": [WINGTIP, LAMNA.upper(), WINGTIP],
                "customerNotified": True,
                "reason": "unused for a month",
            },
        )
        assert response.status_code == 202, response.text
        removals = response.json()["removals"]
        assert [(r["tenantId"], r["status"]) for r in removals] == [(WINGTIP, "queued"), (LAMNA, "queued")]
        assert emulator.log() == []  # nothing is removed by the request itself
        one = c.get(f"/api/removals/{removals[0]['id']}", headers=READER).json()
        assert one["status"] == "queued" and one["requestedBy"].startswith("admin@contoso.example")

        async def drain() -> int:
            async with Services(settings) as services:
                return int(await process_removal_queue(services))

        assert run(drain()) >= 2
        ids = ",".join(r["id"] for r in removals)
        # Requested until Microsoft has terminated the GDAP relationships (the emulator takes 2 h).
        assert {
            r["status"] for r in c.get(f"/api/removals?ids={ids}", headers=READER).json()["removals"]
        } <= {"requested", "completed"}
        emulator.advance("PT3H")
        deadline = time.monotonic() + 20
        while True:
            states = c.get(f"/api/removals?ids={ids}", headers=READER).json()
            if all(r["status"] in ("completed", "skipped", "failed") for r in states["removals"]):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.3)
        assert {r["status"] for r in states["removals"]} == {"completed"}, states
        assert states["missing"] == []
        assert_error(c.get("/api/removals/does-not-exist", headers=READER), 404, "unknownRemoval")
        assert_error(c.get("/api/removals/bad%20id!", headers=READER), 400, "invalidParameter")
        assert_error(c.get("/api/removals?ids=", headers=READER), 400, "invalidParameter")
        trail = c.get(f"/api/actions?tenantId={WINGTIP}", headers=READER).json()["actions"]
        assert trail and all(a["tenantId"] == WINGTIP for a in trail)
        assert any(a["reason"] == "unused for a month" for a in trail)
        everyone = c.get("/api/actions?since=2000-01-01T00:00:00Z", headers=READER).json()
        assert {a["tenantId"] for a in everyone["actions"]} >= {WINGTIP, LAMNA}
        assert c.get("/api/actions?until=2000-01-01T00:00:00Z", headers=READER).json()["actions"] == []
        assert_error(c.get("/api/actions?since=yesterday", headers=READER), 400, "invalidParameter")
        assert_error(c.get("/api/actions?tenantId=nope", headers=READER), 400, "invalidTenantId")
        detail = c.get(f"/api/customers/{WINGTIP}", headers=READER).json()
        assert detail["actions"]
    touched = {
        json.dumps(entry).lower()
        for entry in emulator.log()
        if entry["method"] in ("PATCH", "POST") and "sendmail" not in entry["path"].lower()
    }
    assert touched and all(WINGTIP in t or LAMNA in t for t in touched), touched
    assert not any(ADATUM in t for t in touched)


def ids(n: int) -> list[str]:
    return [f"{i:08x}-0000-4000-8000-000000000000" for i in range(n)]


BAD_BODIES = [
    pytest.param(b"{", JSON, 400, "malformedJson", id="malformed-json"),
    pytest.param(b"\xff\xfe", JSON, 400, "malformedJson", id="not-utf8"),
    pytest.param(b'["' + WINGTIP.encode() + b'"]', JSON, 400, "malformedBody", id="array-body"),
    pytest.param(b"null", JSON, 400, "malformedBody", id="null-body"),
    pytest.param(b'{"customerNotified": true}', JSON, 400, "malformedBody", id="no-tenant-ids"),
    pytest.param(b'{"tenantIds": [], "customerNotified": true}', JSON, 400, "malformedBody", id="empty-ids"),
    pytest.param(
        b'{"tenantIds": "' + WINGTIP.encode() + b'", "customerNotified": true}',
        JSON,
        400,
        "malformedBody",
        id="ids-not-a-list",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP, *ids(100)], "customerNotified": True}).encode(),
        JSON,
        400,
        "tooManyTenantIds",
        id="101-ids",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP, "not-a-guid"], "customerNotified": True}).encode(),
        JSON,
        400,
        "invalidTenantId",
        id="malformed-id",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP + "\n"], "customerNotified": True}).encode(),
        JSON,
        400,
        "invalidTenantId",
        id="id-with-newline",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP, 42], "customerNotified": True}).encode(),
        JSON,
        400,
        "invalidTenantId",
        id="id-not-text",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP, UNKNOWN], "customerNotified": True}).encode(),
        JSON,
        400,
        "unknownTenantId",
        id="unknown-id",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP, FOURTH_COFFEE], "customerNotified": True}).encode(),
        JSON,
        400,
        "unknownTenantId",
        id="not-under-monitoring",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP]}).encode(),
        JSON,
        400,
        "customerNotNotified",
        id="no-acknowledgement",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": False}).encode(),
        JSON,
        400,
        "customerNotNotified",
        id="not-notified",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": "true"}).encode(),
        JSON,
        400,
        "customerNotNotified",
        id="notified-as-text",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": 1}).encode(),
        JSON,
        400,
        "customerNotNotified",
        id="notified-as-number",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": True, "reason": 5}).encode(),
        JSON,
        400,
        "malformedBody",
        id="reason-not-text",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": True, "reason": "x" * 501}).encode(),
        JSON,
        400,
        "malformedBody",
        id="reason-too-long",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": True, "reason": "a\x00b"}).encode(),
        JSON,
        400,
        "malformedBody",
        id="reason-control-chars",
    ),
    pytest.param(
        f"tenantIds={WINGTIP}&customerNotified=true".encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "unsupportedMediaType",
        id="form-post",
    ),
    pytest.param(
        b'--b\r\nContent-Disposition: form-data; name="tenantIds"\r\n\r\n'
        + WINGTIP.encode()
        + b"\r\n--b--\r\n",
        {"Content-Type": "multipart/form-data; boundary=b"},
        415,
        "unsupportedMediaType",
        id="multipart-form-post",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": True}).encode(),
        {"Content-Type": "text/plain"},
        415,
        "unsupportedMediaType",
        id="text-plain-json",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": True}).encode(),
        {},
        415,
        "unsupportedMediaType",
        id="no-content-type",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": True}).encode(),
        {**JSON, "Origin": "https://evil.example"},
        403,
        "crossSiteRequest",
        id="cross-site-origin",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": True}).encode(),
        {**JSON, "Origin": "null"},
        403,
        "crossSiteRequest",
        id="null-origin",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": True}).encode(),
        {**JSON, "Sec-Fetch-Site": "cross-site"},
        403,
        "crossSiteRequest",
        id="sec-fetch-cross-site",
    ),
    pytest.param(
        json.dumps({"tenantIds": [WINGTIP], "customerNotified": True}).encode(),
        {**JSON, "Origin": "http://testserver.evil.example"},
        403,
        "crossSiteRequest",
        id="lookalike-origin",
    ),
    pytest.param(b"{" + b'"a":1,' * 12000 + b'"b":1}', JSON, 413, "bodyTooLarge", id="too-large"),
]


def test_bad_removal_requests_change_nothing(settings: Settings, emulator: Any) -> None:
    # One estate for every case (an audit per case would cost a minute); the state is checked after each.
    with client(settings) as c:
        for case in BAD_BODIES:
            body, headers, status, code = case.values
            response = c.post("/api/removals", content=body, headers={**REMOVER, **headers})
            try:
                assert_error(response, status, code)
            except AssertionError as exc:
                raise AssertionError(f"{case.id}: {exc}") from None
            assert storage_state(settings) == {"removals": 0, "actions": 0, "queued": 0}, case.id
            assert emulator.log() == [], case.id


def test_a_cross_site_form_cannot_refresh_either(settings: Settings) -> None:
    with client(settings) as c:
        assert_error(
            c.post(
                "/api/audit/run",
                content=b"x=1",
                headers={**READER, "Content-Type": "application/x-www-form-urlencoded"},
            ),
            415,
        )
        assert_error(
            c.post("/api/audit/run", json={}, headers={**READER, "Origin": "https://evil.example"}), 403
        )
        assert_error(
            c.post("/api/audit/run", content=b"[1]", headers={**READER, **JSON}), 400, "malformedBody"
        )


def test_removals_refused_when_customers_cannot_be_notified(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SENDER")
    with client(settings_with()) as c:
        assert_error(
            c.post("/api/removals", json={"tenantIds": [WINGTIP], "customerNotified": True}, headers=REMOVER),
            503,
            "notConfigured",
        )
    assert storage_state(settings)["removals"] == 0


# --- on-demand refresh ---------------------------------------------------------------------------------


def test_audit_run_refreshes_in_the_background(settings: Settings, emulator: Any) -> None:
    with client(settings) as c:
        before = c.get("/api/customers", headers=READER).json()["evaluationId"]
        started = c.post("/api/audit/run", json={}, headers={**READER, "Origin": "http://testserver"})
        assert started.status_code == 202, started.text
        run_ = started.json()
        assert run_["status"] == "running" and run_["statusUrl"] == f"/api/audit/runs/{run_['id']}"
        again = c.post("/api/audit/run", headers={**READER, **JSON})  # an empty JSON body is fine
        assert again.status_code == 202
        if again.json()["status"] == "running":
            assert again.json()["id"] == run_["id"] and again.json()["started"] is False
        # The run is a queue message: in Azure the audit_runs function takes it; here, as serve does.
        assert c.get(run_["statusUrl"], headers=READER).json()["status"] == "running"
        drained = run(with_services(settings, drain_audit_runs))
        assert drained.processed >= 1 and not drained.poisoned
        state = c.get(run_["statusUrl"], headers=READER).json()
        assert state["status"] == "succeeded", state
        assert state["summary"]["customersUnderMonitoring"] == 5
        time.sleep(2.1)  # the index re-checks for a newer evaluation at most every 2 s
        assert c.get("/api/customers", headers=READER).json()["evaluationId"] != before
        assert_error(c.get("/api/audit/runs/" + "f" * 32, headers=READER), 404, "unknownRun")
        assert_error(c.get("/api/audit/runs/nope", headers=READER), 400, "invalidParameter")
    assert emulator.log() == []  # a refresh reads; it never changes anything at Microsoft


def test_serve_runs_an_on_demand_audit_itself(settings: Settings, emulator: Any) -> None:
    """No queue function runs locally: serve's drainer takes the run's message, soon after the request."""
    app = build_app(settings, local_operator=False, drain_removals=True, trust_principal_header=True)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        started = c.post("/api/audit/run", json={}, headers={**READER, "Origin": "http://testserver"}).json()
        deadline = time.monotonic() + 60
        while (state := c.get(started["statusUrl"], headers=READER).json())["status"] == "running":
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
    assert state["status"] == "succeeded", state


# --- the portal's HTTP surface ----------------------------------------------------------------------

STATIC = Path(__file__).resolve().parent.parent / "shared" / "web" / "static"


def test_security_headers_on_every_answer(settings: Settings) -> None:
    with client(settings) as c:
        for path, headers in [
            ("/", {}),
            ("/static/app.js", {}),
            ("/static/app.css", {}),
            ("/api/customers", READER),
            ("/api/customers", {}),
            ("/api/nothing", READER),
        ]:
            response = c.get(path, headers=headers)
            csp = response.headers["content-security-policy"]
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert (
                "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
            )
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["x-frame-options"] == "DENY"
        assert c.get("/static/app.js").headers["content-type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
        )


def test_portal_has_no_inline_script_style_or_handlers() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script src="/static/i18n.js" defer>',
        '<script src="/static/app.js" defer>',
        '<script src="/static/gdap.js" defer>',
        '<script src="/static/lost.js" defer>',
        '<script src="/static/webhook.js" defer>',
        '<script src="/static/agents.js" defer>',
        '<script src="/static/evidence.js" defer>',
    ]
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert "http://" not in html and "https://" not in html  # no CDN, no external fonts
    script = "".join(
        (STATIC / name).read_text(encoding="utf-8")
        for name in ("app.js", "gdap.js", "lost.js", "webhook.js", "agents.js", "evidence.js")
    )
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script
    assert "eval(" not in script and "new Function" not in script
    css = (STATIC / "app.css").read_text(encoding="utf-8")
    assert "@import" not in css and "url(" not in css


# --- the function app ----------------------------------------------------------------------------------


def http_function() -> Any:
    # test_function_app indexes function_app.app once (the host does too); share that index.
    from tests.conftest import registered_functions as functions_by_name

    return functions_by_name()["http_api"].get_user_function()


class Context:
    function_name = "http_api"
    function_directory = "."
    invocation_id = "test"
    thread_local_storage = None
    trace_context = None
    retry_context = None


def test_http_function_serves_the_app(
    settings: Settings, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.runtime import close_services

    # As App Service runs it: Easy Auth on (the principal header is the platform's), one host name.
    for name, value in {
        "WEBSITE_SITE_NAME": "dam",
        "WEBSITE_AUTH_ENABLED": "True",
        "WEBSITE_HOSTNAME": "dam.example",
    }.items():
        monkeypatch.setenv(name, value)

    handler = http_function()

    async def call() -> list[func.HttpResponse]:
        try:
            requests = [
                func.HttpRequest(
                    "GET",
                    "https://dam.example/api/customers?bucket=30-60",
                    params={"bucket": "30-60"},
                    headers=READER,
                    body=b"",
                ),
                func.HttpRequest("GET", "https://dam.example/api/customers", headers={}, body=b""),
                func.HttpRequest(
                    "POST",
                    "https://dam.example/api/removals",
                    headers={
                        **REMOVER,
                        "Content-Type": "application/x-www-form-urlencoded",
                        "Origin": "https://evil.example",
                    },
                    body=f"tenantIds={WINGTIP}&customerNotified=true".encode(),
                ),
                func.HttpRequest("GET", "https://dam.example/", headers={}, body=b""),
                func.HttpRequest(
                    "GET",
                    "https://dam.example/api/customers",
                    headers={**READER, "Host": "evil.example"},
                    body=b"",
                ),
                func.HttpRequest("HEAD", "https://dam.example/api/me", headers=READER, body=b""),
                func.HttpRequest("OPTIONS", "https://dam.example/api/removals", headers={}, body=b""),
            ]
            return [await handler(r, Context()) for r in requests]
        finally:
            await close_services()

    ok, anonymous, form, portal, rebound, head, options = run(call())
    # HEAD is the GET without its body; OPTIONS names the path's methods (the function takes both).
    assert head.status_code == 200 and head.get_body() == b""
    assert head.headers["Content-Type"].startswith("application/json")
    assert options.status_code == 204 and options.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert rebound.status_code == 421
    assert ok.status_code == 200, ok.get_body()
    assert [r["displayName"] for r in json.loads(ok.get_body())["customers"]] == [
        "Wingtip Ltd",
        "Proseware Ltd",
    ]
    assert ok.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert ok.headers["Strict-Transport-Security"]
    assert (
        anonymous.status_code == 401
        and json.loads(anonymous.get_body())["error"]["code"] == "unauthenticated"
    )
    assert form.status_code == 403
    assert portal.status_code == 200 and b"/static/app.js" in portal.get_body()
    assert storage_state(settings)["removals"] == 0
    assert emulator.log() == []


# --- hostile readers and a storage reset --------------------------------------------------------------------


def test_head_and_options_answer_as_http_means_them(settings: Settings) -> None:
    with client(settings) as c:
        head = c.head("/api/me", headers=READER)
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
        assert c.head("/api/me").status_code == 401  # the same checks as the GET
        assert c.head("/").status_code == 200
        assert c.options("/api/customers").headers["allow"] == "GET, HEAD, OPTIONS"
        assert c.options("/api/removals").headers["allow"] == "GET, HEAD, OPTIONS, POST"
        assert c.options("/api/nothing-here").status_code == 404


def test_extreme_dates_are_a_400_not_a_500(settings: Settings) -> None:
    with client(settings) as c:
        for path in (
            "/api/actions?until=9999-12-31T23:59:59Z",
            "/api/actions?since=0001-01-01T00:00:00Z",
            "/api/gdap/summary?asOf=0001-01-01T00:00:00Z",
            "/api/gdap/expiring?asOf=9999-12-31T23:59:59Z",
            "/api/gdap/least-privilege?asOf=9999-12-31T00:00:00Z",
        ):
            assert_error(c.get(path, headers=READER), 400, "invalidParameter")


def test_a_chunked_body_is_measured_as_it_arrives(settings: Settings) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"tenantIds": ["' + WINGTIP.encode() + b'"], "customerNotified": true, "reason": "'
        for _ in range(200):
            yield b"x" * 1024
        yield b'"}'

    with client(settings) as c:
        answer = c.post("/api/removals", content=chunks(), headers={**REMOVER, **JSON})
        assert "content-length" not in {k.lower() for k in answer.request.headers}
        assert_error(answer, 413, "bodyTooLarge")
    assert storage_state(settings)["removals"] == 0


def test_a_running_server_recovers_from_a_storage_reset(settings: Settings) -> None:
    """The tables vanish under a running server (Azurite or the account reset): one 503 that says so,
    then the server works again without a restart."""
    from shared.platform.storage import TABLES

    async def reset() -> None:
        async with Services(settings) as services:
            for name in TABLES:
                await services.storage.table_service.delete_table(settings.table_name(name))

    with client(settings) as c:
        assert c.get("/api/actions", headers=READER).status_code == 200
        run(reset())
        first = c.get("/api/actions", headers=READER)
        assert first.status_code == 503, first.text
        assert first.json()["error"]["code"] == "storageReset" and first.headers["Retry-After"] == "1"
        again = c.get("/api/actions", headers=READER)  # the tables are there again: empty, not broken
        assert again.status_code == 200 and again.json()["actions"] == []


def test_recipients_addresses_only_to_removers(settings: Settings, emulator: Any) -> None:
    """Every reader sees that a customer was mailed; only holders of Relationships.Remove see to whom."""

    async def mail_one() -> None:
        from shared.platform.actions import record_action

        async with Services(settings) as services:
            await record_action(
                services.storage,
                tenant_id=WINGTIP,
                actor="system",
                action="notification.customer-removal",
                result="sent",
                detail="Access removed -> admin@wingtip.example, it@wingtip.example",
            )

    run(mail_one())
    with client(settings) as c:
        for path in ("/api/actions", f"/api/actions?tenantId={WINGTIP}", f"/api/customers/{WINGTIP}"):
            as_reader = json.dumps(c.get(path, headers=READER).json())
            as_remover = json.dumps(c.get(path, headers=REMOVER).json())
            assert "wingtip.example" not in as_reader and "(address hidden)" in as_reader, path
            assert "admin@wingtip.example" in as_remover, path


def test_group_names_a_sync_may_not_read_stay_ids(
    env: dict[str, str], emulator: Any, monkeypatch: Any
) -> None:
    """Without GroupMember.Read.All the groups cannot be named: the sync and the report go on, the
    customer view and the CSV show the group's id, and the names come with the next sync that may."""
    scenario = load_example()
    scenario["missingPermissions"] = ["GroupMember.Read.All"]
    emulator.post_scenario(scenario)
    settings = settings_with()
    run(_audit(settings))
    with client(settings) as c:
        wingtip = c.get(f"/api/customers/{WINGTIP}", headers=READER).json()
        assignments = [a for r in wingtip["relationships"] for a in r["accessAssignments"]]
        assert assignments and all(a["groupName"] == "" for a in assignments)
        rows = list(
            csv.DictReader(
                io.StringIO(c.get("/api/audit?format=csv", headers=READER).content.decode("utf-8-sig"))
            )
        )
        assert next(r for r in rows if r["tenantId"] == WINGTIP)["accessGroups"] == assignments[0]["groupId"]
    scenario["missingPermissions"] = []
    emulator.post_scenario(scenario)
    run(_audit(settings))
    with client(settings) as c:
        wingtip = c.get(f"/api/customers/{WINGTIP}", headers=READER).json()
        assert [a["groupName"] for r in wingtip["relationships"] for a in r["accessAssignments"]] == [
            "HelpdeskAgents"
        ]


async def _audit(settings: Settings) -> None:
    async with Services(settings) as services:
        await audit(services, AS_OF)


def test_the_stylesheet_is_well_formed() -> None:
    """Every block of app.css is closed: one lost brace nests every later rule in the block before it
    (a merge once put the desktop layout inside a phone-width media query)."""
    css = re.sub(r"/\*.*?\*/", "", (ROOT / "shared" / "web" / "static" / "app.css").read_text(), flags=re.S)
    depth = 0
    for line_number, line in enumerate(css.split("\n"), 1):
        if line.startswith("@media") and depth != 0:
            raise AssertionError(f"app.css line {line_number}: @media inside an open block")
        depth += line.count("{") - line.count("}")
        assert depth >= 0, f"app.css line {line_number}: a brace closes nothing"
    assert depth == 0, "app.css ends with an open block"
