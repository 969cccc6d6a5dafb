"""The Graph / Partner Center emulator (tools/emulator) against the wire formats the product relies on.

One emulator process serves the whole module; each test loads its own scenario with ``post_scenario``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tools.emulator.generate import command as generate_command
from tools.emulator.testing import EXAMPLE_SCENARIO, REPO_ROOT, RunningEmulator, start_emulator

LIFECYCLE = Path(__file__).parent / "scenarios" / "emulator_lifecycle.json"
AUTH = {"Authorization": "Bearer test-token"}
GA = "62e90394-69f5-4237-9190-012177145e10"
HELPDESK = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
EXCHANGE = "29232cdf-9323-42fd-ade2-1d097af3e4de"
REL = "/beta/tenantRelationships/delegatedAdminRelationships"
GA_REL = "11111111-1111-4111-8111-111111111111-a1b2c3d4-0000-4000-8000-000000000001"
DRAFT_REL = "33333333-3333-4333-8333-333333333333-a1b2c3d4-0000-4000-8000-000000000003"
PENDING_REL = "44444444-4444-4444-8444-444444444444-a1b2c3d4-0000-4000-8000-000000000004"
DAP_TENANT = "a1b2c3d4-0000-4000-8000-000000000005"
DAP_REMOVED_TENANT = "a1b2c3d4-0000-4000-8000-000000000006"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


EXAMPLE = load(EXAMPLE_SCENARIO)
LIFE = load(LIFECYCLE)


@pytest.fixture(scope="module")
def emu() -> Iterator[RunningEmulator]:
    emulator = start_emulator(EXAMPLE_SCENARIO)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture()
def api(emu: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, headers=AUTH, timeout=30) as client:
        yield client


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def follow(api: httpx.Client, url: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        resp = api.get(next_url)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items.extend(body["value"])
        next_url = body.get("@odata.nextLink")
    return items


def etag_of(api: httpx.Client, rel_id: str) -> str:
    return str(api.get(f"{REL}/{rel_id}").json()["@odata.etag"])


# ---------------------------------------------------------------------------------------------- auth


def test_requires_bearer_token_and_sets_request_ids(emu: RunningEmulator) -> None:
    emu.post_scenario(EXAMPLE)
    with httpx.Client(base_url=emu.url) as anon:
        for path in (
            "/v1.0/organization",
            "/beta/auditLogs/signIns",
            "/partnercenter/v1/customers",
            "/customeradmin/v1/delegatedAdminCustomers",
        ):
            resp = anon.get(path)
            assert resp.status_code == 401, path
            assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert anon.get("/v1.0/organization", headers={"Authorization": "Bearer"}).status_code == 401
        assert anon.get("/v1.0/organization", headers={"Authorization": "Basic abc"}).status_code == 401
        assert anon.get("/_emulator/log").status_code == 200
        resp = anon.get("/v1.0/organization", headers={**AUTH, "client-request-id": "my-id"})
    assert resp.status_code == 200
    assert resp.headers["client-request-id"] == "my-id" and resp.headers["request-id"]
    org = resp.json()["value"][0]
    assert org["id"] == EXAMPLE["partner"]["tenantId"] and org["verifiedDomains"]


def test_date_header_is_the_emulator_clock(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(EXAMPLE)  # now = 2026-11-21T00:00:00Z
    for path in (
        "/v1.0/organization",
        "/beta/auditLogs/signIns",
        "/partnercenter/v1/customers",
        "/beta/nope",
    ):
        assert api.get(path).headers["Date"] == "Sat, 21 Nov 2026 00:00:00 GMT", path
    with httpx.Client(base_url=emu.url) as anon:  # errors and the control API carry it too
        assert anon.get("/v1.0/organization").headers["Date"] == "Sat, 21 Nov 2026 00:00:00 GMT"
    emu.advance("PT90M")
    assert api.get("/v1.0/organization").headers["Date"] == "Sat, 21 Nov 2026 01:30:00 GMT"


# ----------------------------------------------------------------------------------------- sign-ins


def test_beta_and_v1_sign_in_shapes(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(EXAMPLE)
    beta = api.get("/beta/auditLogs/signIns").json()
    v1 = api.get("/v1.0/auditLogs/signIns").json()
    assert [s["id"] for s in beta["value"]] == [s["id"] for s in v1["value"]]
    first = beta["value"][0]
    assert first["createdDateTime"] == "2026-11-20T21:00:00.0000000Z"
    assert first["crossTenantAccessType"] == "serviceProvider" and first["userType"] == "member"
    assert first["homeTenantId"] == EXAMPLE["partner"]["tenantId"]
    assert first["userPrincipalName"] == "agent0@contoso.example" and first["userDisplayName"] == "Agent 0"
    assert first["status"] == {"errorCode": 0, "failureReason": None, "additionalDetails": None}
    for field in (
        "crossTenantAccessType",
        "homeTenantName",
        "userType",
        "signInEventTypes",
        "resourceOwnerTenantId",
    ):
        assert field not in v1["value"][0]
    assert v1["value"][0]["resourceTenantId"] == first["resourceTenantId"]
    failed = next(s for s in beta["value"] if s["status"]["errorCode"])
    assert failed["status"]["errorCode"] == 50076 and isinstance(failed["status"]["failureReason"], str)

    resp = api.get(
        "/v1.0/auditLogs/signIns", params={"$filter": "crossTenantAccessType eq 'serviceProvider'"}
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == (
        "Invalid filter clause: Could not find a property named 'crossTenantAccessType' on type "
        "'microsoft.graph.signIn'."
    )
    assert set(resp.json()["error"]["innerError"]) >= {"date", "request-id", "client-request-id"}

    sel = api.get("/beta/auditLogs/signIns", params={"$select": "createdDateTime,resourceTenantId"}).json()
    assert set(sel["value"][0]) == {"id", "createdDateTime", "resourceTenantId"}
    assert api.get("/beta/auditLogs/signIns", params={"$top": "1001"}).status_code == 400
    assert (
        api.get("/beta/auditLogs/signIns", params={"$filter": "appId eq 'x' or userId eq 'y'"}).status_code
        == 400
    )
    assert (
        api.get("/beta/auditLogs/signIns", params={"$filter": "startswith(appDisplayName,'A')"}).status_code
        == 400
    )


def test_fast_sign_in_encoding_matches_the_object_form() -> None:
    from tools.emulator.estate import SimEstate
    from tools.emulator.scenario import load_scenario_text
    from tools.emulator.wire import apply_select

    scenario = load_scenario_text(LIFECYCLE.read_bytes())
    scenario["signIns"].append(
        {
            "id": 'odd"id',
            "createdDateTime": "2026-11-20T01:02:03.1234567Z",
            "userId": "stranger",
            "resourceTenantId": DAP_TENANT,
            "crossTenantAccessType": "serviceProvider",
            "errorCode": 53003,
            "appDisplayName": "Some \\ App",
        }
    )
    scenario["signIns"].append(
        {
            "id": "non-interactive",
            "createdDateTime": "2026-11-20T01:02:04Z",
            "userId": LIFE["agents"][0]["id"],
            "resourceTenantId": DAP_TENANT,
            "crossTenantAccessType": "serviceProvider,b2bCollaboration",
            "signInEventTypes": ["nonInteractiveUser"],
        }
    )
    estate = SimEstate(scenario)
    assert {r.event_type for r in estate.signins.rows} == {"interactiveUser", "nonInteractiveUser"}
    fields = [
        "createdDateTime",
        "userPrincipalName",
        "status",
        "location",
        "isInteractive",
        "signInEventTypes",
        "crossTenantAccessType",
    ]
    for row in estate.signins.rows:
        for beta in (True, False):
            assert json.loads(estate.signin_json(row, beta)) == estate.signin_wire(row, beta)
            picked = fields if beta else fields[:-2]
            assert json.loads(estate.signin_select_json(row, beta, picked)) == apply_select(
                estate.signin_wire(row, beta), picked
            )


def test_sign_in_filters(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    tenant = DAP_TENANT

    def ids(flt: str, version: str = "beta") -> list[str]:
        resp = api.get(f"/{version}/auditLogs/signIns", params={"$filter": flt})
        assert resp.status_code == 200, resp.text
        return [s["id"][-2:] for s in resp.json()["value"]]

    assert ids("createdDateTime ge 2026-11-20T22:00:00Z") == ["01", "02"]
    assert ids("createdDateTime gt 2026-11-20T22:00:00Z") == ["01"]
    assert ids(
        "createdDateTime ge 2026-11-19T00:00:00Z and createdDateTime le 2026-11-20T21:00:00.0000000Z"
    ) == ["03", "04"]
    assert ids("createdDateTime lt 2026-11-20T21:00:00Z") == ["04", "05"]
    assert ids("createdDateTime ge 2026-11-20T07:00:00+09:00") == ["01", "02", "03"]
    flt = f"crossTenantAccessType eq 'serviceProvider' and resourceTenantId eq '{tenant}' and status/errorCode eq 0"
    assert ids(flt) == ["01", "02"]
    assert ids("crossTenantAccessType ne 'none' and status/errorCode eq 50126") == ["03"]
    assert ids("crossTenantAccessType eq 'b2bCollaboration'") == ["04"]
    partner = LIFE["partner"]["tenantId"]
    assert len(ids(f"homeTenantId eq '{partner}'")) == 5
    assert ids(f"userId eq '{LIFE['agents'][1]['id']}'", "v1.0") == ["02"]
    resp = api.get("/beta/auditLogs/signIns", params={"$filter": "ipAddress eq '1.2.3.4'"})
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith("Invalid filter clause")


def test_retention_and_future_sign_ins(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    seen = {s["id"][-2:] for s in api.get("/beta/auditLogs/signIns").json()["value"]}
    assert seen == {"01", "02", "03", "04", "05"}  # 06 is older than 30 days, 07 lies after now
    emu.advance("PT7H")
    seen = {s["id"][-2:] for s in api.get("/beta/auditLogs/signIns").json()["value"]}
    assert "07" in seen and "06" not in seen
    emu.advance(now="2026-12-21T01:00:00Z")  # everything before 2026-11-21T01:00 is now too old
    seen = {s["id"][-2:] for s in api.get("/beta/auditLogs/signIns").json()["value"]}
    assert seen == {"07"}


def test_paging_past_1000_is_stable_while_sign_ins_arrive(emu: RunningEmulator, api: httpx.Client) -> None:
    scenario = copy.deepcopy(EXAMPLE)
    now = datetime(2026, 11, 21, tzinfo=UTC)
    tenant = EXAMPLE["customers"][0]["tenantId"]
    user = EXAMPLE["agents"][0]["id"]
    scenario["signIns"] = [
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "createdDateTime": iso(now - timedelta(minutes=10 * (i // 2))),
            "userId": user,
            "resourceTenantId": tenant,
            "crossTenantAccessType": "serviceProvider",
            "errorCode": 0,
        }
        for i in range(2500)
    ]  # pairs share a timestamp: the cursor must order by (time, id)
    emu.post_scenario(scenario)
    flt = "createdDateTime ge 2026-10-25T00:00:00Z and crossTenantAccessType eq 'serviceProvider'"
    first = api.get("/beta/auditLogs/signIns", params={"$filter": flt})
    body = first.json()
    assert len(body["value"]) == 1000
    link = body["@odata.nextLink"]
    parsed = urlsplit(link)
    assert link.startswith(emu.url + "/beta/auditLogs/signIns?")
    assert dict(parse_qsl(parsed.query))["$filter"] == flt and "$skiptoken" in dict(parse_qsl(parsed.query))
    collected = [s["id"] for s in body["value"]]
    # New activity arrives between pages: newer than the cursor (must not show up) and older (must).
    newer = [
        {
            "id": f"11111111-0000-4000-8000-{i:012d}",
            "createdDateTime": iso(now - timedelta(seconds=i + 1)),
            "userId": user,
            "resourceTenantId": tenant,
        }
        for i in range(30)
    ]
    older = [
        {
            "id": "22222222-0000-4000-8000-000000000001",
            "createdDateTime": iso(now - timedelta(days=10)),
            "userId": user,
            "resourceTenantId": tenant,
        }
    ]
    assert emu.add_sign_ins(newer + older) == 31
    collected += [s["id"] for s in follow(api, link)]
    expected = {s["id"] for s in scenario["signIns"]} | {older[0]["id"]}
    assert len(collected) == len(set(collected)) == len(expected)
    assert set(collected) == expected
    times = [
        s["createdDateTime"]
        for s in api.get("/beta/auditLogs/signIns", params={"$top": "50"}).json()["value"]
    ]
    assert times == sorted(times, reverse=True)

    resp = api.get("/beta/auditLogs/signIns", params={"$filter": flt, "$top": "1000"})
    assert resp.status_code == 200  # how fast: make bench, not a timed test


# --------------------------------------------------------------------- the sign-in log as beta serves it

NOW = datetime(2026, 11, 21, tzinfo=UTC)
SIGNINS = "/beta/auditLogs/signIns"


def sign_in(i: int, minutes_ago: float, **fields: Any) -> dict[str, Any]:
    """A scenario sign-in numbered ``i`` (the last digits of its id), ``minutes_ago`` before the clock."""
    row = {
        "id": f"5a000000-0000-4000-8000-{i:012d}",
        "createdDateTime": iso(NOW - timedelta(minutes=minutes_ago)),
        "userId": EXAMPLE["agents"][0]["id"],
        "resourceTenantId": EXAMPLE["customers"][0]["tenantId"],
        "crossTenantAccessType": "serviceProvider",
        "errorCode": 0,
    }
    row.update(fields)
    return row


def with_sign_ins(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    scenario = copy.deepcopy(EXAMPLE)
    scenario["signIns"] = rows
    scenario.update(extra)
    return scenario


def numbers(api: httpx.Client, flt: str | None = None, version: str = "beta", **params: str) -> list[int]:
    """The sign-ins a query returns, every page, as their numbers (newest first)."""
    query = {**({"$filter": flt} if flt else {}), **params}
    resp = api.get(f"/{version}/auditLogs/signIns", params=query)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    items = body["value"] + (follow(api, body["@odata.nextLink"]) if "@odata.nextLink" in body else [])
    return [int(s["id"][-12:]) for s in items]


NON = "signInEventTypes/any(t: t eq 'nonInteractiveUser')"
BOTH = "signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser')"


def event_type_estate() -> dict[str, Any]:
    non = {"signInEventTypes": ["nonInteractiveUser"]}
    return with_sign_ins(
        [
            sign_in(1, 10),
            sign_in(2, 20, **non),
            sign_in(3, 30, **non),
            sign_in(4, 40, signInEventTypes=["interactiveUser"]),
            sign_in(5, 50, **non, errorCode=50126),
            sign_in(6, 60, **non, crossTenantAccessType="b2bCollaboration"),
            sign_in(7, 70),
        ]
    )


def test_without_an_event_type_filter_only_interactive_sign_ins(
    emu: RunningEmulator, api: httpx.Client
) -> None:
    emu.post_scenario(event_type_estate())
    assert numbers(api) == [1, 4, 7]
    assert numbers(api, "createdDateTime ge 2026-11-20T22:00:00Z and status/errorCode eq 0") == [1, 4, 7]
    assert numbers(api, version="v1.0") == [1, 4, 7]
    first = api.get(SIGNINS, params={"$top": "1"}).json()["value"][0]
    assert first["signInEventTypes"] == ["interactiveUser"] and first["isInteractive"] is True
    v1 = api.get("/v1.0/auditLogs/signIns", params={"$top": "1"}).json()["value"][0]
    assert v1["isInteractive"] is True and "signInEventTypes" not in v1


def test_sign_in_event_type_filters(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(event_type_estate())
    assert numbers(api, NON) == [2, 3, 5, 6]
    assert numbers(api, "signInEventTypes/any(t:t eq 'interactiveUser')") == [1, 4, 7]
    assert numbers(api, "(signInEventTypes/any(t: t eq 'nonInteractiveUser'))") == [2, 3, 5, 6]
    assert numbers(api, "SignInEventTypes/ANY(x: x EQ 'NONINTERACTIVEUSER')") == [2, 3, 5, 6]
    assert numbers(api, "signInEventTypes/any(t: t ne 'interactiveUser')") == [
        2,
        3,
        5,
        6,
    ]  # Microsoft's example
    # ANDed with the other clauses, in any position
    assert numbers(api, f"createdDateTime ge 2026-11-20T23:15:00Z and {NON} and status/errorCode eq 0") == [
        2,
        3,
    ]
    assert numbers(
        api, f"{NON} and crossTenantAccessType eq 'serviceProvider' and status/errorCode eq 0"
    ) == [2, 3]
    # both user types: inside one lambda, or as an 'or' of two lambdas; newest first across both, paged
    assert numbers(api, BOTH) == [1, 2, 3, 4, 5, 6, 7]
    assert numbers(api, BOTH, **{"$top": "2"}) == [1, 2, 3, 4, 5, 6, 7]
    either = "(signInEventTypes/any(t: t eq 'interactiveUser') or signInEventTypes/any(t: t eq 'nonInteractiveUser'))"
    assert numbers(api, f"{either} and status/errorCode eq 0", **{"$top": "3"}) == [1, 2, 3, 4, 6, 7]
    # a contradiction selects nothing; service principal sign-ins are not in this log
    assert numbers(api, f"{NON} and signInEventTypes/any(t: t eq 'interactiveUser')") == []
    assert numbers(api, "signInEventTypes/any(t: t eq 'servicePrincipal')") == []

    non = api.get(SIGNINS, params={"$filter": NON, "$top": "1"}).json()["value"][0]
    assert non["signInEventTypes"] == ["nonInteractiveUser"] and non["isInteractive"] is False
    picked = api.get(
        SIGNINS, params={"$filter": NON, "$top": "1", "$select": "isInteractive,signInEventTypes"}
    )
    assert picked.json()["value"][0] == {
        "id": non["id"],
        "isInteractive": False,
        "signInEventTypes": ["nonInteractiveUser"],
    }
    assert api.get(f"{SIGNINS}/{non['id']}").json()["isInteractive"] is False  # get by id: any event type
    assert emu.state()["signIns"][1]["signInEventTypes"] == ["nonInteractiveUser"]

    def refused(flt: str, version: str = "beta") -> str:
        resp = api.get(f"/{version}/auditLogs/signIns", params={"$filter": flt})
        assert resp.status_code == 400, (flt, resp.text)
        return str(resp.json()["error"]["message"])

    # Graph: "the filter for getting both user and service principal sign-in event types is not supported"
    assert "not supported" in refused(
        "signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'servicePrincipal')"
    )
    assert "not supported" in refused(
        "signInEventTypes/any(t: t eq 'nonInteractiveUser') or signInEventTypes/any(t: t eq 'managedIdentity')"
    )
    assert refused(NON, "v1.0") == (
        "Invalid filter clause: Could not find a property named 'signInEventTypes' "
        "on type 'microsoft.graph.signIn'."
    )
    for bad in (
        "signInEventTypes/all(t: t eq 'interactiveUser')",
        "signInEventTypes/any(t: u eq 'interactiveUser')",
        "signInEventTypes/any(t eq 'interactiveUser')",
        "signInEventTypes/any(t: t eq 'interactiveUser'",
        f"{NON} or status/errorCode eq 0",
        f"not {NON}",
        "riskEventTypes_v2/any(t: t eq 'generic')",
    ):
        assert refused(bad).startswith("Invalid filter clause"), bad


def test_cross_tenant_access_type_is_a_flags_enum(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(
        with_sign_ins(
            [
                sign_in(1, 10),
                sign_in(2, 20, crossTenantAccessType="serviceProvider, b2bCollaboration"),
                sign_in(3, 30, crossTenantAccessType="b2bCollaboration"),
                sign_in(4, 40, crossTenantAccessType="none"),
                sign_in(5, 50, crossTenantAccessType="b2bDirectConnect,serviceProvider"),
            ]
        )
    )
    wire = {int(s["id"][-12:]): s["crossTenantAccessType"] for s in api.get(SIGNINS).json()["value"]}
    assert wire == {
        1: "serviceProvider",
        2: "b2bCollaboration,serviceProvider",
        3: "b2bCollaboration",
        4: "none",
        5: "b2bDirectConnect,serviceProvider",
    }  # as Graph writes flags: declaration order, commas
    cta = "crossTenantAccessType"
    assert numbers(api, f"{cta} eq 'serviceProvider'") == [1]  # the whole value, not one flag
    assert numbers(api, f"{cta} eq 'serviceProvider,b2bCollaboration'") == [2]  # a set: order does not matter
    assert numbers(api, f"{cta} ne 'serviceProvider'") == [2, 3, 4, 5]
    assert numbers(api, f"{cta} has 'serviceProvider'") == [1, 2, 5]
    assert numbers(api, f"{cta} has microsoft.graph.signInAccessType'b2bCollaboration'") == [2, 3]
    assert numbers(api, f"{cta} ne 'none'") == [1, 2, 3, 5]  # MSIdentityTools' query
    assert numbers(api, f"{cta} eq 'none'") == [4]
    assert numbers(api, f"{cta} eq 'microsoftSupport'") == []
    resp = api.get(SIGNINS, params={"$filter": f"{cta} eq 'partnerAccess'"})
    assert resp.status_code == 400 and "not a valid enumeration" in resp.json()["error"]["message"]
    assert api.get(SIGNINS, params={"$filter": f"{cta} gt 'none'"}).status_code == 400
    assert api.get(SIGNINS, params={"$filter": "appDisplayName has 'x'"}).status_code == 400


def test_sign_ins_are_served_after_the_log_latency(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(
        with_sign_ins(
            [
                sign_in(1, 2),
                sign_in(2, 4.5),
                sign_in(3, 6, signInEventTypes=["nonInteractiveUser"]),
                sign_in(4, 30),
            ],
            signInLatencySeconds=300,
        )
    )
    assert numbers(api, BOTH) == [3, 4]  # 1 and 2 happened less than 5 minutes ago
    late = sign_in(1, 2)["id"]
    assert api.get(f"{SIGNINS}/{late}").status_code == 404
    emu.advance("PT30S")
    assert numbers(api, BOTH) == [2, 3, 4]
    emu.advance("PT3M")
    assert numbers(api, BOTH) == [1, 2, 3, 4] and api.get(f"{SIGNINS}/{late}").status_code == 200
    assert emu.state(sign_ins=False)["signInLatencySeconds"] == 300


def test_empty_pages_and_short_pages_continue_the_query(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(with_sign_ins([sign_in(i, i) for i in range(1, 8)]))
    everything = list(range(1, 8))
    emu.add_faults({"method": "GET", "pathPrefix": SIGNINS, "empty": True, "times": 2})
    # a get by id is not a list: the fault lets it through and is still there for the list
    assert api.get(f"{SIGNINS}/{sign_in(1, 1)['id']}").status_code == 200
    first = api.get(SIGNINS, params={"$top": "3", "$filter": "status/errorCode eq 0"})
    body = first.json()
    assert (
        first.status_code == 200
        and body["value"] == []
        and body["@odata.context"].endswith("auditLogs/signIns")
    )
    link = body["@odata.nextLink"]
    assert dict(parse_qsl(urlsplit(link).query))["$filter"] == "status/errorCode eq 0"
    second = api.get(link).json()
    assert second["value"] == [] and second["@odata.nextLink"] != link  # the second empty page
    third = api.get(second["@odata.nextLink"]).json()
    assert [int(s["id"][-12:]) for s in third["value"]] == [1, 2, 3]  # the real first page
    assert [int(s["id"][-12:]) for s in third["value"] + follow(api, third["@odata.nextLink"])] == everything
    # mid-collection: page 2 comes back empty, its nextLink resumes at page 2
    emu.add_faults({"method": "GET", "pathPrefix": SIGNINS, "empty": True, "after": 1, "times": 1})
    assert numbers(api, **{"$top": "3"}) == everything
    # short pages: at most 2 items for the next 2 list requests, with nextLinks; then the $top asked for
    emu.add_faults({"method": "GET", "pathPrefix": SIGNINS, "pageSize": 2, "times": 2})
    page = api.get(SIGNINS, params={"$top": "3"}).json()
    sizes = [len(page["value"])]
    collected = [int(s["id"][-12:]) for s in page["value"]]
    while "@odata.nextLink" in page:
        page = api.get(page["@odata.nextLink"]).json()
        sizes.append(len(page["value"]))
        collected += [int(s["id"][-12:]) for s in page["value"]]
    assert sizes == [2, 2, 3] and collected == everything
    labels = [e.get("fault") for e in emu.log(all_requests=True) if e["path"] == SIGNINS]
    assert labels.count("empty") == 3 and labels.count("pageSize") == 2
    for bad in (
        {"pathPrefix": SIGNINS, "empty": True, "status": 500},
        {"pathPrefix": SIGNINS, "pageSize": 0},
        {"pathPrefix": SIGNINS, "empty": "yes"},
    ):
        assert httpx.post(f"{emu.url}/_emulator/faults", json=bad).status_code == 400, bad
    exported = emu.state()
    emu.post_scenario(exported)  # the export (faults and sign-ins included) loads back
    assert emu.faults() == [
        {**f, "served": 0, **({"passed": 0} if "passed" in f else {})} for f in exported["faults"]
    ]


def test_empty_and_short_pages_on_every_graph_list(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    group = LIFE["groups"][0]["id"]
    assign = f"{REL}/{GA_REL}/accessAssignments"
    second = (
        "22222222-2222-4222-8222-222222222222-a1b2c3d4-0000-4000-8000-000000000002"  # customer 02 has two
    )
    assert api.post(f"{REL}/{second}/requests", json={"action": "terminate"}).status_code == 201
    lists = [
        REL,
        assign,
        f"{REL}/{second}/requests",
        f"/v1.0/groups/{group}/transitiveMembers",
        "/v1.0/groups",
        "/v1.0/tenantRelationships/delegatedAdminCustomers",
        "/v1.0/contracts",
    ]
    expected = {path: follow(api, f"{emu.url}{path}") for path in lists}
    assert all(len(items) >= 1 for items in expected.values()) and len(expected["/v1.0/groups"]) >= 3
    for path in lists:
        emu.add_faults(
            [
                {"method": "GET", "pathPrefix": path.split("?")[0], "empty": True, "times": 1},
                {"method": "GET", "pathPrefix": path.split("?")[0], "pageSize": 1, "times": 2},
            ]
        )
        body = api.get(path).json()
        assert body["value"] == [] and "@odata.nextLink" in body, path
        pages = []
        link: str | None = body["@odata.nextLink"]
        while link:
            page = api.get(link).json()
            pages.append([i["id"] for i in page["value"]])
            link = page.get("@odata.nextLink")
        assert [i for page in pages for i in page] == [i["id"] for i in expected[path]], path
        assert all(len(page) <= 1 for page in pages[:2]), (path, pages)
        emu.clear_faults()
    # entity routes under a list's prefix are not touched
    emu.add_faults({"method": "GET", "pathPrefix": REL, "empty": True, "times": 1})
    assert api.get(f"{REL}/{GA_REL}").json()["id"] == GA_REL
    assert emu.faults()[0]["served"] == 0


def test_sign_in_log_throttle(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(with_sign_ins([sign_in(1, 1)], throttle={"requests": 3, "windowSeconds": 0.5}))
    started = time.monotonic()
    for path in (SIGNINS, "/v1.0/auditLogs/signIns", f"{SIGNINS}/{sign_in(1, 1)['id']}"):
        assert api.get(path).status_code == 200, path  # list and get, v1.0 and beta share the budget
    assert api.get("/v1.0/organization").status_code == 200  # other routes are not limited
    throttled = api.get(SIGNINS)
    assert throttled.status_code == 429 and time.monotonic() - started < 0.25
    assert throttled.headers["Retry-After"] == "1"  # whole seconds, at least 1
    error = throttled.json()["error"]
    assert error["code"] == "TooManyRequests" and error["innerError"]["status"] == "429"
    time.sleep(max(0.0, started + 0.3 - time.monotonic()))
    assert api.get(SIGNINS).status_code == 429  # still inside the window ...
    time.sleep(max(0.0, started + 0.56 - time.monotonic()))
    # ... and the rejected requests took no slot: once the first three age out, three more are admitted
    assert [api.get(SIGNINS).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert emu.state(sign_ins=False)["throttle"] == {"requests": 3, "windowSeconds": 0.5}
    emu.post_scenario(with_sign_ins([sign_in(1, 1)]))  # absent: no limit
    assert {api.get(SIGNINS).status_code for _ in range(8)} == {200}


def test_sign_in_log_licence_and_missing_permissions(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario({**LIFE, "signInLogLicensed": False})
    for path in (SIGNINS, "/v1.0/auditLogs/signIns", f"{SIGNINS}/{LIFE['signIns'][0]['id']}"):
        resp = api.get(path)
        assert resp.status_code == 403, path
        assert resp.json()["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
        assert (
            resp.json()["error"]["message"] == "Neither tenant is B2C or tenant doesn't have premium license"
        )
    assert api.get(REL).status_code == 200

    def code(resp: httpx.Response) -> tuple[int, str]:
        return resp.status_code, str(resp.json()["error"]["code"]) if resp.content else ""

    sender = LIFE["partner"]["senderMailbox"]
    mail = {
        "message": {
            "subject": "s",
            "body": {"contentType": "Text", "content": "c"},
            "toRecipients": [{"emailAddress": {"address": "a@b.example"}}],
        }
    }
    group = LIFE["groups"][0]["id"]
    emu.post_scenario(
        {
            **LIFE,
            "signInLogLicensed": False,
            "missingPermissions": [
                "AuditLog.Read.All",
                "delegatedadminrelationship.readwrite.all",
                "Mail.Send",
                "GroupMember.Read.All",
            ],
        }
    )
    resp = api.get(SIGNINS)  # the permission is checked before the licence
    assert code(resp) == (403, "Authentication_MSGraphPermissionMissing")
    assert (
        resp.json()["error"]["message"]
        == "Calling principal does not have required MSGraph permissions AuditLog.Read.All"
    )
    assert api.get(REL).status_code == 200  # DelegatedAdminRelationship.Read.All still reads
    assert code(api.post(f"{REL}/{GA_REL}/requests", json={"action": "terminate"})) == (
        403,
        "Authorization_RequestDenied",
    )
    assert api.post(f"{REL}/{GA_REL}/requests", json={"action": "terminate"}).json()["error"]["message"] == (
        "Insufficient privileges to complete the operation."
    )
    assert code(api.post(f"/v1.0/users/{sender}/sendMail", json=mail)) == (403, "ErrorAccessDenied")
    assert code(api.get(f"/v1.0/groups/{group}/transitiveMembers")) == (403, "Authorization_RequestDenied")
    assert code(api.get("/v1.0/groups")) == (403, "Authorization_RequestDenied")
    assert api.get("/v1.0/organization").status_code == 200 and emu.outbox() == []
    assert emu.gdap_relationship(GA_REL)["status"] == "active"
    emu.post_scenario(
        {
            **LIFE,
            "missingPermissions": [
                "DelegatedAdminRelationship.Read.All",
                "DelegatedAdminRelationship.ReadWrite.All",
            ],
        }
    )
    assert code(api.get(REL)) == (403, "Authorization_RequestDenied")
    assert code(api.get("/v1.0/tenantRelationships/delegatedAdminCustomers")) == (
        403,
        "Authorization_RequestDenied",
    )
    assert api.get(SIGNINS).status_code == 200
    assert emu.state(sign_ins=False)["missingPermissions"] == [
        "DelegatedAdminRelationship.Read.All",
        "DelegatedAdminRelationship.ReadWrite.All",
    ]


# ---------------------------------------------------------------------------------------------- GDAP


def many_relationships(n: int) -> dict[str, Any]:
    scenario = copy.deepcopy(EXAMPLE)
    statuses = ["active", "terminated", "expired", "approvalPending", "created"]
    for i in range(n):
        tenant = str(uuid.UUID(int=0xABC0000000000000 + i))
        scenario["customers"].append(
            {
                "tenantId": tenant,
                "displayName": f"Bulk {i:03d} Ltd",
                "culture": "en-US",
                "contacts": [],
                "dap": None,
                "gdapRelationships": [
                    {
                        "id": f"{uuid.UUID(int=i + 7)}-{tenant}",
                        "displayName": f"bulk-{i:03d}",
                        "status": statuses[i % len(statuses)],
                        "duration": "P730D",
                        "createdDateTime": iso(datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=i)),
                        "activatedDateTime": "2025-02-01T00:00:00Z",
                        "endDateTime": "2027-02-01T00:00:00Z",
                        "roles": [HELPDESK],
                        "accessAssignments": [],
                    }
                ],
            }
        )
    return scenario


def test_gdap_list_paging_and_filters(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(many_relationships(350))
    first = api.get(REL).json()
    assert len(first["value"]) == 300 and "@odata.nextLink" in first
    rel = first["value"][0]
    assert rel["@odata.type"] == "#microsoft.graph.delegatedAdminRelationship"
    assert rel["@odata.etag"].startswith('W/"')
    assert {
        "id",
        "displayName",
        "duration",
        "customer",
        "accessDetails",
        "status",
        "autoExtendDuration",
        "createdDateTime",
        "activatedDateTime",
        "lastModifiedDateTime",
        "endDateTime",
    } <= set(rel)
    everything = follow(api, f"{emu.url}{REL}")
    assert len(everything) == len({r["id"] for r in everything}) == 350 + 4
    assert api.get(REL, params={"$top": "301"}).status_code == 400
    paged = follow(api, f"{emu.url}{REL}?$top=40&$filter=status eq 'active'")
    assert len(paged) == 70 + 3 and all(r["status"] == "active" for r in paged)
    tenant = str(uuid.UUID(int=0xABC0000000000000 + 5))
    combined = api.get(
        REL, params={"$filter": f"(status eq 'active') AND (customer/tenantId eq '{tenant}')"}
    ).json()
    assert [r["customer"]["tenantId"] for r in combined["value"]] == [tenant]
    either = api.get(REL, params={"$filter": "status eq 'created' or status eq 'approvalPending'"}).json()[
        "value"
    ]
    assert len(either) == 141 and {r["status"] for r in either} == {"created", "approvalPending"}
    assert api.get(REL, params={"$filter": "nope eq 'x'"}).status_code == 400
    missing = api.get(f"{REL}/does-not-exist")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"


def test_if_match_etags_and_updates(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    old = etag_of(api, DRAFT_REL)
    resp = api.patch(f"{REL}/{DRAFT_REL}", json={"displayName": "Draft renamed"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "MissingIfMatchHeader"
    resp = api.patch(
        f"{REL}/{DRAFT_REL}", json={"displayName": "Draft renamed"}, headers={"If-Match": 'W/"stale"'}
    )
    assert resp.status_code == 412 and resp.json()["error"]["code"] == "PreconditionFailed"
    resp = api.patch(
        f"{REL}/{DRAFT_REL}",
        json={"displayName": "Draft renamed", "duration": "P365D"},
        headers={"If-Match": old},
    )
    assert resp.status_code == 200 and resp.json()["displayName"] == "Draft renamed"
    new = resp.json()["@odata.etag"]
    assert new != old and etag_of(api, DRAFT_REL) == new
    assert (
        api.patch(f"{REL}/{DRAFT_REL}", json={"duration": "P800D"}, headers={"If-Match": new}).status_code
        == 400
    )
    assert (
        api.patch(f"{REL}/{DRAFT_REL}", json={"displayName": "x" * 51}, headers={"If-Match": new}).status_code
        == 400
    )

    # active: autoExtend allowed (not with Global Administrator), GA removal is a long-running operation
    ga_etag = etag_of(api, GA_REL)
    resp = api.patch(f"{REL}/{GA_REL}", json={"autoExtendDuration": "P180D"}, headers={"If-Match": ga_etag})
    assert resp.status_code == 400
    resp = api.patch(f"{REL}/{GA_REL}", json={"displayName": "renamed"}, headers={"If-Match": ga_etag})
    assert resp.status_code == 400
    body = {
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": HELPDESK}, {"roleDefinitionId": EXCHANGE}]}
    }
    resp = api.patch(f"{REL}/{GA_REL}", json=body, headers={"If-Match": ga_etag})
    assert resp.status_code == 202 and resp.headers["Retry-After"] == "10"
    op_url = resp.headers["Location"]
    assert op_url.startswith(f"{emu.url}{REL}/{GA_REL}/operations/")
    statuses = [api.get(op_url).json()["status"] for _ in range(3)]
    assert statuses == ["notStarted"] * 3  # reads do not move it: the clock does (operation: PT1H)
    assert (
        api.patch(f"{REL}/{GA_REL}", json=body, headers={"If-Match": etag_of(api, GA_REL)}).status_code == 409
    )
    emu.advance("PT30M")
    assert api.get(op_url).json()["status"] == "running"
    assert GA in [
        r["roleDefinitionId"] for r in api.get(f"{REL}/{GA_REL}").json()["accessDetails"]["unifiedRoles"]
    ]
    emu.advance("PT30M")
    done = api.get(op_url).json()
    assert done["status"] == "succeeded" and done["lastModifiedDateTime"] == "2026-11-21T01:00:00.0000000Z"
    roles = [
        r["roleDefinitionId"] for r in api.get(f"{REL}/{GA_REL}").json()["accessDetails"]["unifiedRoles"]
    ]
    assert roles == [HELPDESK, EXCHANGE]
    ops = api.get(f"{REL}/{GA_REL}/operations").json()["value"]
    assert ops[0]["operationType"] == "delegatedAdminRelationshipUpdate"
    resp = api.patch(
        f"{REL}/{GA_REL}", json={"autoExtendDuration": "P180D"}, headers={"If-Match": etag_of(api, GA_REL)}
    )
    assert resp.status_code == 200 and resp.json()["autoExtendDuration"] == "P180D"
    assert emu.gdap_relationship(GA_REL)["roles"] == [HELPDESK, EXCHANGE]

    # DELETE only in created
    assert api.delete(f"{REL}/{GA_REL}", headers={"If-Match": etag_of(api, GA_REL)}).status_code == 409
    assert api.delete(f"{REL}/{DRAFT_REL}").status_code == 400
    assert api.delete(f"{REL}/{DRAFT_REL}", headers={"If-Match": etag_of(api, DRAFT_REL)}).status_code == 204
    assert api.get(f"{REL}/{DRAFT_REL}").status_code == 404


def test_terminate_progresses_on_later_reads(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    resp = api.post(f"{REL}/{GA_REL}/requests", json={"action": "terminate"})
    assert resp.status_code == 201
    req = resp.json()
    assert req["@odata.type"] == "#microsoft.graph.delegatedAdminRelationshipRequest"
    assert req["action"] == "terminate" and req["status"] == "created"
    assert resp.headers["Location"] == f"{emu.url}{REL}/{GA_REL}/requests/{req['id']}"
    assert emu.gdap_relationship(GA_REL)["status"] == "terminationRequested"
    again = api.post(f"{REL}/{GA_REL}/requests", json={"action": "terminate"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "Conflict"
    assert "already being terminated" in again.json()["error"]["message"]
    # Reads do not move it; the clock does (termination: PT2H, in two halves).
    assert [api.get(f"{REL}/{GA_REL}").json()["status"] for _ in range(3)] == ["terminationRequested"] * 3
    assert api.get(resp.headers["Location"]).json()["status"] == "created"
    emu.advance("PT1H")
    assert api.get(f"{REL}/{GA_REL}").json()["status"] == "terminating"
    assert api.get(resp.headers["Location"]).json()["status"] == "pending"
    emu.advance("PT59M")
    assert api.get(f"{REL}/{GA_REL}").json()["status"] == "terminating"
    emu.advance("PT1M")
    listed = {r["id"]: r for r in api.get(REL).json()["value"]}
    assert (
        listed[GA_REL]["status"] == "terminated"
        and listed[GA_REL]["endDateTime"] == "2026-11-21T02:00:00.0000000Z"
    )
    assert api.post(f"{REL}/{GA_REL}/requests", json={"action": "terminate"}).status_code == 409
    assert [api.get(resp.headers["Location"]).json()["status"] for _ in range(2)] == [
        "succeeded",
        "succeeded",
    ]
    assert api.get(f"{REL}/{GA_REL}/requests").json()["value"][0]["id"] == req["id"]
    # terminate on a relationship that is not active -> 400; unknown action -> 400
    assert api.post(f"{REL}/{PENDING_REL}/requests", json={"action": "terminate"}).status_code == 400
    assert api.post(f"{REL}/{PENDING_REL}/requests", json={"action": "explode"}).status_code == 400


def test_create_lock_approve_and_access_assignments(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    new_tenant = "b0b0b0b0-0000-4000-8000-000000000001"
    body = {
        "displayName": "New customer GDAP",
        "duration": "P730D",
        "customer": {"tenantId": new_tenant, "displayName": "Brand New KK"},
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": HELPDESK}, {"roleDefinitionId": EXCHANGE}]},
        "autoExtendDuration": "P180D",
    }
    resp = api.post(REL, json=body)
    assert resp.status_code == 201, resp.text
    rel = resp.json()
    assert rel["status"] == "created" and resp.headers["Location"].endswith(rel["id"])
    assert api.post(REL, json=body).status_code == 409  # displayName must be unique
    assert api.post(REL, json={**body, "displayName": "other", "duration": None}).status_code == 400
    assert api.post(REL, json={**body, "displayName": "other2", "accessDetails": None}).status_code == 400
    assert api.post(f"{REL}/{rel['id']}/requests", json={"action": "lockForApproval"}).status_code == 201
    assert api.get(f"{REL}/{rel['id']}").json()["status"] == "approvalPending"
    assert api.post(f"{REL}/{rel['id']}/requests", json={"action": "lockForApproval"}).status_code == 400
    assert emu.approve(rel["id"])["status"] == "approved"
    assert api.get(f"{REL}/{rel['id']}").json()["status"] == "approved"  # activation: PT5M, by the clock
    emu.advance("PT150S")
    assert api.get(f"{REL}/{rel['id']}").json()["status"] == "activating"
    emu.advance("PT150S")
    active = api.get(f"{REL}/{rel['id']}").json()
    assert active["status"] == "active" and active["activatedDateTime"] == "2026-11-21T00:05:00.0000000Z"
    assert active["endDateTime"] == "2028-11-20T00:05:00.0000000Z"
    assert any(c["tenantId"] == new_tenant for c in emu.state(sign_ins=False)["customers"])

    aa_url = f"{REL}/{rel['id']}/accessAssignments"
    group = LIFE["groups"][1]["id"]
    bad = {
        "accessContainer": {"accessContainerId": group, "accessContainerType": "securityGroup"},
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": GA}]},
    }
    assert api.post(aa_url, json=bad).status_code == 400  # GA is not part of the relationship
    good = {**bad, "accessDetails": {"unifiedRoles": [{"roleDefinitionId": HELPDESK}]}}
    resp = api.post(aa_url, json=good)
    assert resp.status_code == 201 and resp.json()["status"] == "pending"
    aa = resp.json()
    assert aa["accessContainer"] == {"accessContainerId": group, "accessContainerType": "securityGroup"}
    assert api.get(f"{aa_url}/{aa['id']}").json()["status"] == "pending"  # accessAssignment: PT10M
    emu.advance("PT10M")
    assert api.get(f"{aa_url}/{aa['id']}").json()["status"] == "active"
    etag = api.get(f"{aa_url}/{aa['id']}").json()["@odata.etag"]
    same = api.patch(f"{aa_url}/{aa['id']}", json=good, headers={"If-Match": etag})
    assert same.status_code == 200
    both = {
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": HELPDESK}, {"roleDefinitionId": EXCHANGE}]}
    }
    assert api.patch(f"{aa_url}/{aa['id']}", json=both).status_code == 400
    changed = api.patch(f"{aa_url}/{aa['id']}", json=both, headers={"If-Match": etag})
    assert changed.status_code == 202 and changed.headers["Retry-After"] == "10"
    assert len(api.get(f"{aa_url}/{aa['id']}").json()["accessDetails"]["unifiedRoles"]) == 1
    emu.advance("PT1H")
    assert len(api.get(f"{aa_url}/{aa['id']}").json()["accessDetails"]["unifiedRoles"]) == 2
    etag = api.get(f"{aa_url}/{aa['id']}").json()["@odata.etag"]
    assert api.delete(f"{aa_url}/{aa['id']}", headers={"If-Match": etag}).status_code == 204
    assert api.get(f"{aa_url}/{aa['id']}").json()["status"] == "deleting"
    emu.advance("PT10M")
    assert api.get(f"{aa_url}/{aa['id']}").json()["status"] == "deleted"
    assert api.get(aa_url).json()["value"] == []
    # not active -> no new assignments
    assert api.post(f"{REL}/{PENDING_REL}/accessAssignments", json=good).status_code == 400


def with_relationship(scenario: dict[str, Any], rel_id: str, **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(scenario)
    for customer in out["customers"]:
        for rel in customer["gdapRelationships"]:
            if rel["id"] == rel_id:
                rel.update(fields)
    return out


def test_async_durations_are_scenario_set_and_failures_are_reported(
    emu: RunningEmulator, api: httpx.Client
) -> None:
    scenario = with_relationship(
        {**LIFE, "asyncDurations": {"termination": "PT6H", "operation": "PT3H"}}, GA_REL, failOperations=True
    )
    emu.post_scenario(scenario)
    assert emu.state(sign_ins=False)["asyncDurations"]["termination"] == "PT6H"
    body = {
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": HELPDESK}, {"roleDefinitionId": EXCHANGE}]}
    }
    op_url = api.patch(f"{REL}/{GA_REL}", json=body, headers={"If-Match": etag_of(api, GA_REL)}).headers[
        "Location"
    ]
    emu.advance("PT2H")
    assert api.get(op_url).json()["status"] == "running"
    emu.advance("PT1H")
    op = api.get(op_url).json()
    assert op["status"] == "failed" and op["lastModifiedDateTime"] == "2026-11-21T03:00:00.0000000Z"
    roles = [
        r["roleDefinitionId"] for r in api.get(f"{REL}/{GA_REL}").json()["accessDetails"]["unifiedRoles"]
    ]
    assert GA in roles  # a failed operation changes nothing, and the relationship can be updated again
    assert (
        api.patch(f"{REL}/{GA_REL}", json=body, headers={"If-Match": etag_of(api, GA_REL)}).status_code == 202
    )

    # failTermination: the terminate request ends "failed" and the relationship is active again
    emu.post_scenario(with_relationship(scenario, GA_REL, failTermination=True))
    req_url = api.post(f"{REL}/{GA_REL}/requests", json={"action": "terminate"}).headers["Location"]
    emu.advance("PT5H")
    assert api.get(f"{REL}/{GA_REL}").json()["status"] == "terminating"
    emu.advance("PT1H")
    assert api.get(f"{REL}/{GA_REL}").json()["status"] == "active"
    assert api.get(req_url).json()["status"] == "failed"

    # per-relationship durations and failAccessAssignments: a new assignment ends in "error"
    emu.post_scenario(
        with_relationship(
            LIFE, GA_REL, failAccessAssignments=True, asyncDurations={"accessAssignment": "PT1M"}
        )
    )
    taken = {a["groupId"] for a in emu.gdap_relationship(GA_REL)["accessAssignments"]}
    group = next(g["id"] for g in LIFE["groups"] if g["id"] not in taken)
    made = api.post(
        f"{REL}/{GA_REL}/accessAssignments",
        json={
            "accessContainer": {"accessContainerId": group, "accessContainerType": "securityGroup"},
            "accessDetails": {"unifiedRoles": [{"roleDefinitionId": HELPDESK}]},
        },
    )
    assert made.status_code == 201, made.text
    assert api.get(f"{REL}/{GA_REL}/accessAssignments/{made.json()['id']}").json()["status"] == "pending"
    emu.advance("PT1M")
    assert api.get(f"{REL}/{GA_REL}/accessAssignments/{made.json()['id']}").json()["status"] == "error"
    assert (
        api.post("/_emulator/scenario", json={**LIFE, "asyncDurations": {"termination": "soon"}}).status_code
        == 400
    )


def test_expiring_before_expired_and_approval_pending_lapses(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario({**LIFE, "expiringWindow": "P30D"})
    ends = api.get(f"{REL}/{GA_REL}").json()["endDateTime"]
    emu.advance(
        now=(datetime.fromisoformat(ends[:19] + "+00:00") - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    assert api.get(f"{REL}/{GA_REL}").json()["status"] == "active"
    emu.advance("P2D")
    assert api.get(f"{REL}/{GA_REL}").json()["status"] == "expiring"
    emu.advance("P30D")
    assert api.get(f"{REL}/{GA_REL}").json()["status"] == "expired"

    emu.post_scenario(LIFE)
    assert api.post(f"{REL}/{DRAFT_REL}/requests", json={"action": "lockForApproval"}).status_code == 201
    emu.advance("P89D")
    assert api.get(f"{REL}/{DRAFT_REL}").json()["status"] == "approvalPending"
    emu.advance("P1D")
    lapsed = api.get(f"{REL}/{DRAFT_REL}").json()
    assert lapsed["status"] == "expired" and lapsed["lastModifiedDateTime"] == "2027-02-19T00:00:00.0000000Z"


def test_clock_advance_expires_or_extends(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    emu.advance("PT6H")
    assert (
        emu.gdap_relationship("22222222-2222-4222-8222-222222222222-a1b2c3d4-0000-4000-8000-000000000002")[
            "status"
        ]
        == "active"
    )
    assert emu.advance("P1D") == "2026-11-22T06:00:00.0000000Z"
    expired = emu.gdap_relationship(
        "22222222-2222-4222-8222-222222222222-a1b2c3d4-0000-4000-8000-000000000002"
    )
    extended = emu.gdap_relationship(
        "22222222-2222-4222-8222-222222222222-a1b2c3d4-0000-4000-8000-000000000002".replace(
            "-222222222222-a1b2", "-333333333333-a1b2"
        ),
    )
    assert expired["status"] == "expired"
    assert extended["status"] == "active" and extended["endDateTime"] == "2027-05-20T12:00:00.0000000Z"


# --------------------------------------------------------------------------------- other Graph reads


def test_customers_contracts_and_group_members(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    dac = api.get("/v1.0/tenantRelationships/delegatedAdminCustomers").json()["value"]
    assert {c["tenantId"] for c in dac} == {
        LIFE["customers"][0]["tenantId"],
        LIFE["customers"][1]["tenantId"],
    }
    assert api.get(f"/v1.0/tenantRelationships/delegatedAdminCustomers/{DAP_TENANT}").status_code == 404
    contracts = follow(api, f"{emu.url}/v1.0/contracts?$top=3")
    assert len(contracts) == len(LIFE["customers"])
    assert contracts[1] == {
        **contracts[1],
        "contractType": "ResellerPartner",
        "customerId": LIFE["customers"][1]["tenantId"],
        "displayName": "株式会社期限商事",
    }
    admin_group = LIFE["groups"][0]["id"]
    for suffix in ("", "/microsoft.graph.user"):
        members = api.get(f"/v1.0/groups/{admin_group}/transitiveMembers{suffix}").json()["value"]
        assert {m["id"] for m in members} == {a["id"] for a in LIFE["agents"] if admin_group in a["groupIds"]}
        assert members[0]["@odata.type"] == "#microsoft.graph.user" and "@" in members[0]["userPrincipalName"]
    assert api.get(f"/v1.0/groups/{uuid.uuid4()}/transitiveMembers").status_code == 404
    # Groups by display name (case-insensitive, as Graph), paged; an unsupported filter is a 400.
    name = LIFE["groups"][1]["displayName"]
    found = api.get(
        "/v1.0/groups", params={"$filter": f"displayName eq '{name.upper()}'", "$select": "id,displayName"}
    ).json()["value"]
    assert found == [{"id": LIFE["groups"][1]["id"], "displayName": name}]
    everything = follow(api, f"{emu.url}/v1.0/groups?$top=1")
    assert (
        sorted(g["id"] for g in everything) == sorted(g["id"] for g in LIFE["groups"]) and len(everything) > 1
    )
    for bad in ("mail eq 'x'", "displayName eq 'a' or id eq 'b'", "displayName eq"):
        assert api.get("/v1.0/groups", params={"$filter": bad}).status_code == 400, bad


def test_send_mail(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    sender = LIFE["partner"]["senderMailbox"]
    message = {
        "subject": "DAP removal",
        "body": {"contentType": "Text", "content": "本文"},
        "toRecipients": [{"emailAddress": {"address": "it@gaholdings.example"}}],
    }
    resp = api.post(
        f"/v1.0/users/{sender.replace('@', '%40')}/sendMail",
        json={"Message": {**message, "Subject": "Pascal"}, "SaveToSentItems": False},
    )
    assert resp.status_code == 202 and resp.content == b""
    assert api.post(f"/v1.0/users/{sender}/sendMail", json={"message": message}).status_code == 202
    agent_upn = LIFE["agents"][0]["userPrincipalName"]
    assert api.post(f"/v1.0/users/{agent_upn}/sendMail", json={"message": message}).status_code == 202
    outbox = emu.outbox()
    assert [m["from"] for m in outbox] == [sender, sender, agent_upn]
    assert outbox[0]["message"]["subject"] == "Pascal" and outbox[0]["saveToSentItems"] is False
    assert outbox[1]["saveToSentItems"] is True and outbox[1]["message"]["body"]["content"] == "本文"
    assert outbox[0]["sentDateTime"] == "2026-11-21T00:00:00.0000000Z"
    unknown = api.post("/v1.0/users/nobody@elsewhere.example/sendMail", json={"message": message})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "ErrorInvalidUser"
    norcpt = api.post(f"/v1.0/users/{sender}/sendMail", json={"message": {**message, "toRecipients": []}})
    assert norcpt.status_code == 400 and norcpt.json()["error"]["code"] == "ErrorInvalidRecipients"
    assert api.post(f"/v1.0/users/{sender}/sendMail", json={"message": {"subject": "x"}}).status_code == 400
    assert len(emu.outbox()) == 3


# ------------------------------------------------------------------------------------ Partner Center


def test_partner_center_customers_billing_and_dap_removal(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    seen: list[dict[str, Any]] = []
    headers: dict[str, str] = {}
    pages = 0
    while True:
        body = api.get("/partnercenter/v1/customers", params={"size": "3"}, headers=headers).json()
        pages += 1
        assert body["attributes"]["objectType"] == "Collection"
        seen += body["items"]
        nxt = body["links"].get("next")
        if not nxt:
            break
        assert nxt["uri"] == "/v1/customers?size=3" and nxt["headers"][0]["key"] == "MS-ContinuationToken"
        headers = {"MS-ContinuationToken": nxt["headers"][0]["value"]}
    assert pages == 3 and len(seen) == len(LIFE["customers"])
    dap = next(c for c in seen if c["id"] == DAP_TENANT)
    assert dap["allowDelegatedAccess"] is True and dap["relationshipToPartner"] == "reseller"
    assert dap["companyProfile"]["tenantId"] == DAP_TENANT and dap["companyProfile"]["domain"]
    billing = api.get(
        f"/partnercenter/v1/customers/{LIFE['customers'][1]['tenantId']}/profiles/billing"
    ).json()
    assert billing["email"] == "soumu@kigenshoji.co.jp" and billing["culture"] == "ja-JP"
    assert billing["attributes"]["objectType"] == "CustomerBillingProfile"
    missing = api.get(f"/partnercenter/v1/customers/{uuid.uuid4()}")
    assert missing.status_code == 404 and {"code", "description"} <= set(missing.json())

    body = {"AllowDelegatedAccess": False, "attributes": {"objectType": "Customer"}}
    resp = api.patch(f"/partnercenter/v1/customers/{DAP_TENANT}", json=body)
    assert resp.status_code == 200 and resp.json()["allowDelegatedAccess"] is False
    assert (
        api.patch(
            f"/partnercenter/v1/customers/{DAP_TENANT}", json={"allowDelegatedAccess": False}
        ).status_code
        == 200
    )
    bad = api.patch(f"/partnercenter/v1/customers/{DAP_TENANT}", json={"relationshipToPartner": "none"})
    assert bad.status_code == 400 and isinstance(bad.json()["code"], int)
    customer = next(c for c in emu.state(sign_ins=False)["customers"] if c["tenantId"] == DAP_TENANT)
    assert customer["dap"]["enabled"] is False


def test_customer_admin_delegated_admin_customers(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(LIFE)
    items = api.get("/customeradmin/v1/delegatedAdminCustomers").json()["value"]
    assert {i["customerTenantId"] for i in items} == {DAP_TENANT, DAP_REMOVED_TENANT}
    dap = next(i for i in items if i["customerTenantId"] == DAP_TENANT)
    assert dap["partnerSignInCount"] == 2 and dap["partnerAgentCount"] == 2 and dap["dapEnabled"] is True
    assert dap["lastSignInDateTime"] == "2026-11-20T23:00:00.0000000Z"
    removed = next(i for i in items if i["customerTenantId"] == DAP_REMOVED_TENANT)
    assert removed["lastSignInDateTime"] == "2026-09-01T10:00:00.0000000Z"  # beyond retention, still known
    assert removed["partnerSignInCount"] == 0 and removed["dapEnabled"] is False
    only = api.get(
        "/customeradmin/v1/delegatedAdminCustomers", params={"$filter": "dapEnabled eq true"}
    ).json()
    assert [i["customerTenantId"] for i in only["value"]] == [DAP_TENANT]
    # $top (at most 300, the default) and $skip page it; as documented, no @odata.nextLink.
    pages = [
        api.get(
            "/customeradmin/v1/delegatedAdminCustomers",
            params={"$top": "1", "$skip": str(skip), "$count": "true"},
        ).json()
        for skip in range(3)
    ]
    assert [len(p["value"]) for p in pages] == [1, 1, 0] and all("@odata.nextLink" not in p for p in pages)
    assert {p["value"][0]["customerTenantId"] for p in pages[:2]} == {DAP_TENANT, DAP_REMOVED_TENANT}
    assert pages[0]["@odata.count"] == 2
    assert api.get("/customeradmin/v1/delegatedAdminCustomers", params={"$top": "301"}).status_code == 400
    assert api.get("/customeradmin/v1/delegatedAdminCustomers", params={"$skip": "-1"}).status_code == 400
    big = copy.deepcopy(LIFE)
    for i in range(305):
        tenant = str(uuid.UUID(int=0xDA90000000000000 + i))
        big["customers"].append(
            {
                "tenantId": tenant,
                "displayName": f"DAP {i:03d}",
                "contacts": [],
                "dap": {"enabled": True, "startDateTime": "2025-01-01T00:00:00Z"},
                "gdapRelationships": [],
            }
        )
    emu.post_scenario(big)
    first = api.get("/customeradmin/v1/delegatedAdminCustomers").json()
    rest = api.get("/customeradmin/v1/delegatedAdminCustomers", params={"$skip": "300"}).json()
    assert len(first["value"]) == 300 and "@odata.nextLink" not in first and len(rest["value"]) == 307 - 300
    assert len({i["id"] for i in first["value"] + rest["value"]}) == 307


# ------------------------------------------------------------------------------ faults and the log


def test_faults_and_log(emu: RunningEmulator, api: httpx.Client) -> None:
    emu.post_scenario(
        {
            **LIFE,
            "faults": [
                {
                    "method": "GET",
                    "pathPrefix": "/beta/auditLogs/signIns",
                    "status": 429,
                    "retryAfter": 1,
                    "times": 2,
                }
            ],
        }
    )
    for _ in range(2):
        resp = api.get("/beta/auditLogs/signIns")
        assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
        assert resp.json()["error"]["code"] == "TooManyRequests"
    assert api.get("/beta/auditLogs/signIns").status_code == 200
    emu.add_faults(
        [
            {"method": "*", "pathPrefix": "/v1.0/organization", "kind": "reset", "times": 1},
            {"method": "POST", "pathPrefix": f"{REL}/{GA_REL}/requests", "status": 503, "times": 1},
        ]
    )
    with pytest.raises(httpx.TransportError):
        api.get("/v1.0/organization")
    assert api.get("/v1.0/organization").status_code == 200
    assert api.post(f"{REL}/{GA_REL}/requests", json={"action": "terminate"}).status_code == 503
    assert (
        api.post(
            f"{REL}/{GA_REL}/requests", json={"action": "terminate"}, headers={"MS-CorrelationId": "abc"}
        ).status_code
        == 201
    )
    log = emu.log()
    assert [(e["method"], e["path"], e.get("fault")) for e in log] == [
        ("POST", f"{REL}/{GA_REL}/requests", 503),
        ("POST", f"{REL}/{GA_REL}/requests", None),
    ]
    assert log[1]["body"] == {"action": "terminate"}
    assert log[1]["headers"]["ms-correlationid"] == "abc" and "authorization" not in log[1]["headers"]
    everything = emu.log(all_requests=True)
    assert sum(1 for e in everything if e["path"] == "/beta/auditLogs/signIns") == 3
    assert [f["served"] for f in emu.faults()] == [2, 1, 1]
    emu.post_scenario(LIFE)
    assert emu.log() == [] and emu.faults() == []


# ------------------------------------------------------------------------------------------ generator


def generate(tmp: Path, name: str, *extra: str) -> Path:
    out = tmp / name
    subprocess.run(
        [
            *generate_command(
                customers=400, signins=40000, days=90, seed=11, now="2026-11-21T00:00:00Z", out=out
            ),
            *extra,
        ],
        cwd=REPO_ROOT,
        check=True,
        timeout=60,
    )
    return out


def buckets(scenario: dict[str, Any]) -> dict[str, int]:
    """Customers under monitoring per inactivity bucket (days since the later of last sign-in and
    establishment; customers without any sign-in in the generated window count as 90+)."""
    now = datetime.fromisoformat(scenario["now"].replace("Z", "+00:00"))
    latest: dict[str, str] = {}
    for s in scenario["signIns"]:
        qualifying = s["errorCode"] == 0 and "serviceProvider" in s["crossTenantAccessType"]
        if qualifying and s["createdDateTime"] > latest.get(s["resourceTenantId"], ""):
            latest[s["resourceTenantId"]] = s["createdDateTime"]
    counts = {"active": 0, "30-60": 0, "61-90": 0, "90+": 0}
    for c in scenario["customers"]:
        established = [c["dap"]["startDateTime"]] if c["dap"] and c["dap"]["enabled"] else []
        established += [r["activatedDateTime"] for r in c["gdapRelationships"] if r["status"] == "active"]
        if not established:
            continue
        moments = [datetime.fromisoformat(min(established).replace("Z", "+00:00"))]
        if c["tenantId"] in latest:
            moments.append(datetime.fromisoformat(latest[c["tenantId"]].replace("Z", "+00:00")))
        d = (now - max(moments)).days
        counts["active" if d <= 29 else "30-60" if d <= 60 else "61-90" if d <= 90 else "90+"] += 1
    return counts


def test_generator_is_deterministic_and_covers_everything(
    emu: RunningEmulator, api: httpx.Client, tmp_path: Path
) -> None:
    a = generate(tmp_path, "a.json")
    b = generate(tmp_path, "b.json")
    assert a.read_bytes() == b.read_bytes()
    scenario = load(a)
    assert len(scenario["customers"]) == 400 and len(scenario["signIns"]) == 40000
    names = [c["displayName"] for c in scenario["customers"]]
    assert len(set(names)) == len(names) and any(n.startswith("株式会社") for n in names)
    cultures = {c["culture"] for c in scenario["customers"]}
    assert {"ja-JP", "en-US"} <= cultures and len(cultures) > 2
    statuses = {r["status"] for c in scenario["customers"] for r in c["gdapRelationships"]}
    assert statuses >= {
        "active",
        "approvalPending",
        "created",
        "terminationRequested",
        "terminating",
        "terminated",
        "expired",
        "expiring",
        "activating",
    }
    counts = buckets(scenario)
    assert all(v > 0 for v in counts.values()), counts
    now = scenario["now"]
    assert all("2026-08-23T00:00:00" <= s["createdDateTime"] <= now for s in scenario["signIns"])
    failed = sum(1 for s in scenario["signIns"] if s["errorCode"])
    assert 0.01 < failed / 40000 < 0.06
    rels = [r for c in scenario["customers"] for r in c["gdapRelationships"]]
    assert any(GA in r["roles"] for r in rels) and any(r["autoExtendDuration"] == "P180D" for r in rels)
    assert not any(GA in r["roles"] and r["autoExtendDuration"] == "P180D" for r in rels)
    assert len({r["displayName"] for r in rels}) == len(rels)

    emu.post_scenario(a)
    page = api.get("/beta/auditLogs/signIns", params={"$top": "5"}).json()
    assert len(page["value"]) == 5 and page["value"][0]["createdDateTime"] <= "2026-11-21T00:00:00.0000000Z"
    assert len(follow(api, f"{emu.url}{REL}")) == len(rels)
    # The default mix is the real one: most partner activity is non-interactive (token exchange, automation).
    kinds = [s.get("signInEventTypes", ["interactiveUser"])[0] for s in scenario["signIns"]]
    assert kinds.count("nonInteractiveUser") > 2 * kinds.count("interactiveUser") > 0


def test_generator_mixes_in_non_interactive_sign_ins(
    emu: RunningEmulator, api: httpx.Client, tmp_path: Path
) -> None:
    small = ("--customers", "150", "--signins", "8000")  # later options win
    plain = load(generate(tmp_path, "plain.json", *small))
    mixed_path = generate(tmp_path, "mixed.json", *small, "--noninteractive-per-interactive", "4")
    mixed = load(mixed_path)
    rows = mixed["signIns"]
    assert len(rows) == 8000 and mixed["customers"] == plain["customers"]  # same estate, same size
    assert buckets(mixed) == buckets(plain)  # the latest sign-in per customer is kept
    kinds = {
        t: sum(1 for s in rows if s["signInEventTypes"] == [t])
        for t in ("interactiveUser", "nonInteractiveUser")
    }
    assert sum(kinds.values()) == len(rows) and 3 < kinds["nonInteractiveUser"] / kinds["interactiveUser"] < 6
    per_tenant: dict[str, set[str]] = {}
    for s in rows:
        per_tenant.setdefault(s["resourceTenantId"], set()).add(s["signInEventTypes"][0])
    customers = {c["tenantId"] for c in mixed["customers"]}
    automation_only = [
        t for t, kinds_seen in per_tenant.items() if t in customers and kinds_seen == {"nonInteractiveUser"}
    ]
    assert len(automation_only) >= 3
    access = {s["crossTenantAccessType"] for s in rows}
    assert access == {"serviceProvider", "b2bCollaboration,serviceProvider", "b2bCollaboration", "none"}
    home = [s for s in rows if s["crossTenantAccessType"] == "none"]
    assert home and all(s["resourceTenantId"] == mixed["partner"]["tenantId"] for s in home)
    assert 0.01 < sum(1 for s in rows if s["errorCode"]) / len(rows) < 0.06

    emu.post_scenario(mixed_path)
    non = "signInEventTypes/any(t: t eq 'nonInteractiveUser')"
    flt = "createdDateTime ge 2026-11-14T00:00:00Z"
    in_week = [s for s in rows if s["createdDateTime"] >= "2026-11-14T00:00:00"]
    counts = {t: sum(1 for s in in_week if s["signInEventTypes"] == [t]) for t in kinds}
    assert len(follow(api, f"{emu.url}/beta/auditLogs/signIns?$filter={flt}")) == counts["interactiveUser"]
    assert (
        len(follow(api, f"{emu.url}/beta/auditLogs/signIns?$filter={flt} and {non}"))
        == counts["nonInteractiveUser"]
    )


# ------------------------------------------------------------------------------------ real msgraph-sdk


def test_real_msgraph_sdk_against_emulator(emu: RunningEmulator) -> None:
    from azure.core.credentials import AccessToken
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from kiota_http.middleware.options import RetryHandlerOption
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.message import Message
    from msgraph.generated.models.recipient import Recipient
    from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
    from msgraph_core import GraphClientFactory

    class FakeCredential:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("fake-token", int(time.time()) + 3600)

    scenario = many_relationships(320)
    scenario["faults"] = [
        {
            "method": "GET",
            "pathPrefix": REL.replace("/beta", "/v1.0"),
            "status": 429,
            "retryAfter": 1,
            "times": 1,
        }
    ]
    emu.post_scenario(scenario)

    async def run() -> tuple[list[Any], int]:
        auth = AzureIdentityAuthenticationProvider(
            FakeCredential(), scopes=["https://graph.microsoft.com/.default"]
        )
        options = {RetryHandlerOption.get_key(): RetryHandlerOption(delay=0.0, max_retries=3)}
        adapter = GraphRequestAdapter(
            auth, client=GraphClientFactory.create_with_default_middleware(options=options)
        )
        adapter.base_url = f"{emu.url}/v1.0"
        client = GraphServiceClient(request_adapter=adapter)
        rels_builder = client.tenant_relationships.delegated_admin_relationships
        page = await rels_builder.get()
        assert page is not None
        rels = list(page.value or [])
        while page and page.odata_next_link:
            page = await rels_builder.with_url(page.odata_next_link).get()
            rels += list(page.value or []) if page else []
        message = Message(
            subject="SDK mail",
            body=ItemBody(content_type=BodyType.Text, content="hello"),
            to_recipients=[Recipient(email_address=EmailAddress(address="ops@partner.example"))],
        )
        await client.users.by_user_id(EXAMPLE["partner"]["senderMailbox"]).send_mail.post(
            SendMailPostRequestBody(message=message, save_to_sent_items=False)
        )
        return rels, 0

    rels, _ = asyncio.run(run())
    assert len(rels) == 320 + 4 and len({r.id for r in rels}) == 324
    assert rels[0].additional_data.get("@odata.etag", "").startswith('W/"')
    assert rels[0].duration == timedelta(days=730)
    log = emu.log()
    assert log[-1]["path"] == f"/v1.0/users/{EXAMPLE['partner']['senderMailbox']}/sendMail"
    assert "Message" in log[-1]["body"] and log[-1]["body"]["SaveToSentItems"] is False
    outbox = emu.outbox()
    assert outbox[-1]["message"]["subject"] == "SDK mail" and outbox[-1]["saveToSentItems"] is False
    assert outbox[-1]["message"]["toRecipients"][0]["emailAddress"]["address"] == "ops@partner.example"
    assert emu.faults()[0]["served"] == 1  # the SDK retried the 429 on its own
