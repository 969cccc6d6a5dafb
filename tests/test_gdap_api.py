"""The GDAP routes of the HTTP API (/api/gdap/...): roles, same-site JSON-only changes, answers, and
bad input that changes nothing. Through the real ASGI app against Azurite and the emulator."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from shared.platform.settings import Settings
from shared.platform.timeutil import iso
from shared.web.auth import GRANT_ROLE, READ_ROLE, REMOVE_ROLE, encode_principal
from shared.web.server import build_app
from tests.conftest import settings_with
from tests.test_gdap import (
    ADATUM,
    AS_OF,
    FOURTH_COFFEE,
    GLOBAL_ADMINISTRATOR,
    GROUP_ENV,
    HELPDESK,
    HELPDESK_AGENTS,
    LAMNA,
    MUNSON,
    REL_PATH,
    RELECLOUD,
    TAILSPIN,
    WINGTIP,
    audit,
    gdap_scenario,
    mutations,
    rel_id,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

READER = {"X-MS-CLIENT-PRINCIPAL": encode_principal("reader@contoso.example", [READ_ROLE])}
REMOVER = {"X-MS-CLIENT-PRINCIPAL": encode_principal("remover@contoso.example", [READ_ROLE, REMOVE_ROLE])}
GRANTER = {"X-MS-CLIENT-PRINCIPAL": encode_principal("granter@contoso.example", [READ_ROLE, GRANT_ROLE])}
ADMIN = {
    "X-MS-CLIENT-PRINCIPAL": encode_principal("admin@contoso.example", [READ_ROLE, REMOVE_ROLE, GRANT_ROLE])
}
GRANTS = ("/api/gdap/requests", "/api/gdap/follow-up", "/api/gdap/extend", "/api/gdap/reestablish")
JSON = {"Content-Type": "application/json"}
GETS = [
    "/api/gdap/templates",
    "/api/gdap/customers?q=a",
    "/api/gdap/requests",
    "/api/gdap/expiring?within=30",
    "/api/gdap/least-privilege?days=90",
]
POSTS = {
    "/api/gdap/requests": {"customer": ADATUM, "template": "helpdesk"},
    "/api/gdap/follow-up": {},
    "/api/gdap/extend": {"all": True},
    "/api/gdap/remove-global-admin": {"relationshipId": "x"},
    "/api/gdap/reestablish": {"customer": FOURTH_COFFEE},
    "/api/gdap/remove-global-admin/bulk": {"relationshipIds": ["x"]},
    "/api/gdap/remove-unused-assignments": {"assignments": [{"relationshipId": "x", "assignmentId": "y"}]},
}
REDUCTIONS = (
    "/api/gdap/remove-global-admin",
    "/api/gdap/remove-global-admin/bulk",
    "/api/gdap/remove-unused-assignments",
)


@pytest.fixture
def estate(env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    scenario = gdap_scenario()
    emulator.post_scenario(scenario)
    for key, value in GROUP_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NOTIFY_SENDER", "notices@contoso.example")
    audit()
    return {"scenario": scenario, "emulator": emulator, "settings": settings_with()}


@contextmanager
def client(settings: Settings) -> Iterator[TestClient]:
    app = build_app(settings, local_operator=False, drain_removals=False, trust_principal_header=True)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c


def test_who_may_do_what_and_cross_site_changes(estate: dict[str, Any]) -> None:
    emulator = estate["emulator"]
    with client(estate["settings"]) as c:
        for path in GETS:
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=READER).status_code == 200, path
        for path, body in POSTS.items():
            assert c.post(path, json=body).status_code == 401, path
            assert c.post(path, json=body, headers=READER).json()["error"]["code"] == "forbidden", path
            # Same-site JSON only, exactly as for removals.
            crossed = c.post(path, json=body, headers={**ADMIN, "Origin": "https://evil.example"})
            assert crossed.status_code == 403 and crossed.json()["error"]["code"] == "crossSiteRequest", path
            form = c.post(
                path,
                content=b"customer=x",
                headers={**ADMIN, "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert form.status_code == 415, path
    assert mutations(emulator, "POST") == [] and mutations(emulator, "PATCH") == []


def test_granting_access_is_its_own_role(estate: dict[str, Any]) -> None:
    """Relationships.Remove removes and reduces access; only Relationships.Grant requests, invites,
    re-establishes or prolongs it (docs/definitions.md section 6)."""
    emulator = estate["emulator"]
    with client(estate["settings"]) as c:
        for path in GRANTS:
            refused = c.post(path, json=POSTS[path], headers={**REMOVER, **JSON})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", path
        for path in REDUCTIONS:
            reduced = c.post(path, json=POSTS[path], headers={**GRANTER, **JSON})
            assert reduced.status_code == 403, path
        assert c.get("/api/me", headers=GRANTER).json()["canGrant"] is True
        assert c.get("/api/me", headers=REMOVER).json()["canGrant"] is False
    assert mutations(emulator, "POST") == [] and mutations(emulator, "PATCH") == []


def test_request_follow_up_and_listing(estate: dict[str, Any]) -> None:
    emulator = estate["emulator"]
    with client(estate["settings"]) as c:
        templates = c.get("/api/gdap/templates", headers=READER).json()["templates"]
        assert {t["name"] for t in templates} >= {"helpdesk", "exchange-admin", "security-reader"}
        found = c.get("/api/gdap/customers?q=adatum", headers=READER).json()["customers"]
        assert [x["tenantId"] for x in found] == [ADATUM]

        created = c.post(
            "/api/gdap/requests",
            json={"customer": ADATUM, "template": "helpdesk"},
            headers={**ADMIN, "Origin": "http://testserver"},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["status"] == "approvalPending" and body["invitationLink"].endswith(body["id"])
        again = c.post("/api/gdap/requests", json={"customer": ADATUM, "template": "helpdesk"}, headers=ADMIN)
        assert again.status_code == 200 and again.json()["id"] == body["id"]
        pending = c.get("/api/gdap/requests", headers=READER).json()["requests"]
        assert [(p["id"], p["ageDays"]) for p in pending] == [(body["id"], 0)]

        emulator.approve(body["id"])
        # approved; active after activation (PT5M): assignments created; active after PT10M
        for advance in ("PT5M", "PT10M", None):
            step = c.post("/api/gdap/follow-up", json={}, headers=ADMIN)
            assert step.status_code == 200
            if advance:
                emulator.advance(advance)
        assert step.json()["requests"][0]["state"] == "active"
        assert c.get("/api/gdap/requests", headers=READER).json()["requests"] == []
        everything = c.get("/api/gdap/requests?all=true", headers=READER).json()["requests"]
        assert everything[0]["accessAssignments"][0]["status"] == "active"
        detail = c.get(f"/api/customers/{ADATUM}", headers=READER).json()
        assert body["id"] in {r["id"] for r in detail["relationships"]}
        assert {"gdap.request", "gdap.accessAssignment"} <= {a["action"] for a in detail["actions"]}


BAD_REQUESTS = [
    ({"customer": "nope", "template": "helpdesk"}, 400, "invalidTenantId"),
    ({"customer": ADATUM, "template": "nope"}, 400, "unknownTemplate"),
    ({"customer": "00000000-1111-2222-3333-444444444444", "template": "helpdesk"}, 404, "unknownCustomer"),
    ({"customer": ADATUM, "template": "helpdesk", "notifyCustomer": "yes"}, 400, "malformedBody"),
]


def test_bad_requests_change_nothing(estate: dict[str, Any]) -> None:
    with client(estate["settings"]) as c:
        for body, status, code in BAD_REQUESTS:
            answer = c.post("/api/gdap/requests", json=body, headers=ADMIN)
            assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text
    assert mutations(estate["emulator"], "POST") == []


def test_expiring_extend_and_remove_global_admin(estate: dict[str, Any]) -> None:
    scenario, emulator = estate["scenario"], estate["emulator"]
    wingtip, lamna = rel_id(scenario, WINGTIP), rel_id(scenario, LAMNA)
    with client(estate["settings"]) as c:
        expiring = c.get("/api/gdap/expiring?within=30", headers=READER).json()
        assert expiring["asOf"] == "2026-11-21T00:00:00Z"  # the latest evaluation's
        assert expiring["counts"] == {"30": 3, "7": 2, "1": 1}
        for bad in (
            {},
            {"all": True, "relationshipIds": [lamna]},
            {"relationshipIds": []},
            {"relationshipIds": "x"},
            {"all": True, "within": 0},
        ):
            assert c.post("/api/gdap/extend", json=bad, headers=ADMIN).status_code == 400, bad
        assert mutations(emulator, "PATCH") == []
        # An id that names no relationship is bad input: 404, and the known one beside it waits too.
        missing = c.post(
            "/api/gdap/extend",
            json={"relationshipIds": [lamna, "missing-relationship"]},
            headers=ADMIN,
        )
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "relationshipNotFound"
        assert mutations(emulator, "PATCH") == []
        one = c.post("/api/gdap/extend", json={"relationshipIds": [lamna, lamna]}, headers=ADMIN).json()
        assert [(r["relationshipId"], r["result"]) for r in one["results"]] == [(lamna, "extended")]
        again = c.post("/api/gdap/extend", json={"relationshipIds": [lamna]}, headers=ADMIN).json()
        assert again["results"][0]["result"] == "unchanged"
        rest = c.post("/api/gdap/extend", json={"all": True}, headers=ADMIN).json()
        assert {r["result"] for r in rest["results"]} == {"extended", "skipped"} and rest["requested"] == 2
        assert c.get("/api/gdap/expiring", headers=READER).json()["counts"] == {"30": 1, "7": 1, "1": 1}

        flags = c.get("/api/gdap/least-privilege", headers=READER).json()
        assert [g["relationshipId"] for g in flags["globalAdministrator"]] == [wingtip]
        answer = c.post("/api/gdap/remove-global-admin", json={"relationshipId": wingtip}, headers=ADMIN)
        assert answer.status_code == 202 and answer.json()["result"] == "requested", answer.text
        flags = c.get("/api/gdap/least-privilege", headers=READER).json()
        assert flags["globalAdministrator"][0]["removal"]["state"] == "requested"
        # The same action again while Microsoft works on it: the same operation, no second PATCH.
        again = c.post("/api/gdap/remove-global-admin", json={"relationshipId": wingtip}, headers=ADMIN)
        assert again.json()["operationId"] == answer.json()["operationId"]
        assert len(mutations(emulator, "PATCH", wingtip)) == 1
        c.post("/api/gdap/follow-up", json={}, headers=ADMIN)  # still notStarted: the operation takes PT1H
        assert (
            c.get("/api/gdap/least-privilege", headers=READER).json()["globalAdministrator"][0]["removal"][
                "state"
            ]
            == "requested"
        )
        emulator.advance("PT1H")
        c.post("/api/gdap/follow-up", json={}, headers=ADMIN)
        assert c.get("/api/gdap/least-privilege", headers=READER).json()["globalAdministrator"] == []
        missing = c.post(
            "/api/gdap/remove-global-admin", json={"relationshipId": "nope-" + "0" * 8}, headers=ADMIN
        )
        assert missing.status_code == 404
    [patch] = mutations(emulator, "PATCH", wingtip)
    assert patch["path"] == f"{REL_PATH}/{wingtip}" and patch["headers"]["if-match"]


def test_reestablish_and_openapi(estate: dict[str, Any]) -> None:
    with client(estate["settings"]) as c:
        answer = c.post("/api/gdap/reestablish", json={"customer": FOURTH_COFFEE}, headers=ADMIN)
        assert answer.status_code == 201, answer.text
        assert answer.json()["template"] == "helpdesk" and answer.json()["invitationLink"]
        refused = c.post("/api/gdap/reestablish", json={"customer": ADATUM}, headers=ADMIN)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "stillActive"
        paths = c.get("/api/openapi.json", headers=READER).json()["paths"]
        for path in (
            "/api/gdap/templates",
            "/api/gdap/requests",
            "/api/gdap/expiring",
            "/api/gdap/extend",
            "/api/gdap/remove-global-admin",
            "/api/gdap/reestablish",
            "/api/gdap/least-privilege",
            "/api/gdap/follow-up",
        ):
            assert path in paths, path
        assert "requestBody" in paths["/api/gdap/requests"]["post"]


def test_bulk_global_administrator_removal_has_a_result_per_relationship(estate: dict[str, Any]) -> None:
    scenario, emulator = estate["scenario"], estate["emulator"]
    wingtip, lamna, munson = rel_id(scenario, WINGTIP), rel_id(scenario, LAMNA), rel_id(scenario, MUNSON)
    path = "/api/gdap/remove-global-admin/bulk"
    with client(estate["settings"]) as c:
        for bad in ({}, {"relationshipIds": []}, {"relationshipIds": "x"}, {"relationshipIds": ["a b"]}):
            assert c.post(path, json=bad, headers=ADMIN).status_code == 400, bad
        # One unknown id refuses the whole batch: nothing is changed.
        unknown = c.post(path, json={"relationshipIds": [wingtip, "missing-rel"]}, headers=ADMIN)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknownRelationship"
        assert mutations(emulator, "PATCH") == []
        answer = c.post(path, json={"relationshipIds": [wingtip, lamna, munson, wingtip]}, headers=REMOVER)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        results = {r["relationshipId"]: r for r in body["results"]}
        assert (body["total"], body["requested"], body["unchanged"], body["refused"]) == (3, 1, 1, 1)
        assert (
            results[wingtip]["result"] == "requested"
            and GLOBAL_ADMINISTRATOR not in results[wingtip]["rolesAfter"]
        )
        assert results[lamna]["result"] == "unchanged"
        assert results[munson]["result"] == "refused" and results[munson]["code"] == "notActive"
        assert "only while the relationship is active" in results[munson]["reason"]
        assert results[wingtip]["displayName"] and results[wingtip]["customerName"] == "Wingtip Ltd"
        # Again: the removal under way is followed, not sent twice.
        again = c.post(path, json={"relationshipIds": [wingtip]}, headers=REMOVER).json()
        assert again["results"][0]["operationId"] == results[wingtip]["operationId"]
    assert len(mutations(emulator, "PATCH", wingtip)) == 1
    assert mutations(emulator, "PATCH", munson) == [] and mutations(emulator, "PATCH", lamna) == []


def test_unused_assignments_are_removed_only_when_proven_unused(estate: dict[str, Any]) -> None:
    scenario, emulator = estate["scenario"], estate["emulator"]
    path = "/api/gdap/remove-unused-assignments"
    with client(estate["settings"]) as c:
        flagged = c.get("/api/gdap/least-privilege", headers=READER).json()["unusedAssignments"]
        by_tenant = {u["tenantId"]: u for u in flagged}
        lamna_unused, wingtip_unused = by_tenant[LAMNA], by_tenant[WINGTIP]
        lamna_rel = next(c for c in scenario["customers"] if c["tenantId"] == LAMNA)["gdapRelationships"][0]
        used = next(a for a in lamna_rel["accessAssignments"] if a["groupId"] != HELPDESK_AGENTS)

        def ref(item: dict[str, Any]) -> dict[str, str]:
            return {"relationshipId": item["relationshipId"], "assignmentId": item["assignmentId"]}

        for bad in (
            {},
            {"assignments": []},
            {"assignments": [{"relationshipId": "x"}]},
            {"assignments": "x"},
        ):
            assert c.post(path, json=bad, headers=ADMIN).status_code == 400, bad
        unknown = c.post(
            path,
            json={
                "assignments": [
                    ref(lamna_unused),
                    {"relationshipId": lamna_rel["id"], "assignmentId": "nope"},
                ]
            },
            headers=ADMIN,
        )
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknownAssignment"
        assert mutations(emulator, "DELETE") == []

        # An agent signs in to Wingtip after the evaluation: its assignment is no longer proven unused.
        emulator.advance("PT1H")
        agent = next(a for a in scenario["agents"] if HELPDESK_AGENTS not in a["groupIds"])
        emulator.add_sign_ins(
            [
                {
                    "id": str(uuid.uuid4()),
                    "createdDateTime": iso(AS_OF + timedelta(minutes=30)),
                    "userId": agent["id"],
                    "resourceTenantId": WINGTIP,
                    "crossTenantAccessType": "serviceProvider",
                    "errorCode": 0,
                    "appDisplayName": "Azure Portal",
                }
            ]
        )
        answer = c.post(
            path,
            json={
                "assignments": [
                    ref(lamna_unused),
                    ref(wingtip_unused),
                    {"relationshipId": lamna_rel["id"], "assignmentId": used["id"]},
                ]
            },
            headers=REMOVER,
        )
        assert answer.status_code == 200, answer.text
        results = {r["assignmentId"]: r for r in answer.json()["results"]}
        assert results[lamna_unused["assignmentId"]]["result"] == "requested"
        assert results[lamna_unused["assignmentId"]]["groupName"] == "HelpdeskAgents"
        assert results[wingtip_unused["assignmentId"]]["result"] == "refused"
        assert "signed in to this customer" in results[wingtip_unused["assignmentId"]]["reason"]
        assert results[used["id"]]["result"] == "refused"
        assert "not proven unused" in results[used["id"]]["reason"]
        [delete] = mutations(emulator, "DELETE")
        assert delete["path"].endswith("/accessAssignments/" + lamna_unused["assignmentId"])
        assert delete["headers"]["if-match"]
        # Again: being removed already, nothing is sent twice; the report no longer lists it.
        again = c.post(path, json={"assignments": [ref(lamna_unused)]}, headers=REMOVER).json()
        assert again["results"][0]["result"] == "unchanged"
        assert len(mutations(emulator, "DELETE")) == 1
        left = c.get("/api/gdap/least-privilege", headers=READER).json()["unusedAssignments"]
        assert lamna_unused["assignmentId"] not in {u["assignmentId"] for u in left}
        detail = c.get(f"/api/customers/{LAMNA}", headers=READER).json()
        trail = [a["result"] for a in detail["actions"] if a["action"] == "gdap.removeAccessAssignment"]
        assert sorted(trail) == ["requested", "requesting"]  # on record before the DELETE, and after


def test_reestablish_says_which_roles_it_keeps_and_drops(estate: dict[str, Any]) -> None:
    emulator = estate["emulator"]
    with client(estate["settings"]) as c:
        tailspin = c.get(f"/api/gdap/reestablish/preview?customer={TAILSPIN}", headers=READER)
        assert tailspin.status_code == 200, tailspin.text
        plan = tailspin.json()
        assert (plan["template"], plan["basis"], plan["keepsEveryRole"]) == (
            "exchange-admin",
            "matchingRoles",
            True,
        )
        assert plan["previous"]["displayName"] == "Tailspin-gdap-0" and len(plan["keptRoles"]) == 3
        assert plan["droppedRoles"] == [] and len(plan["addedRoles"]) == 1
        fourth = c.get(f"/api/gdap/reestablish/preview?customer={FOURTH_COFFEE}", headers=READER).json()
        assert fourth["template"] == "helpdesk" and fourth["previous"]["type"] == "DAP"
        assert fourth["keptRoles"] == [HELPDESK] and fourth["keepsEveryRole"] is False
        [dropped] = fourth["droppedRoles"]
        assert dropped["role"] == GLOBAL_ADMINISTRATOR and dropped["reason"] == "globalAdministrator"
        assert "cannot auto-extend" in dropped["detail"]
        refused = c.get(f"/api/gdap/reestablish/preview?customer={ADATUM}", headers=READER)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "stillActive"
        assert c.get("/api/gdap/reestablish/preview?customer=nope", headers=READER).status_code == 400
        assert mutations(emulator, "POST") == []  # a preview changes nothing
        # The request itself says the same.
        made = c.post("/api/gdap/reestablish", json={"customer": FOURTH_COFFEE}, headers=ADMIN).json()
        assert [d["role"] for d in made["droppedRoles"]] == [GLOBAL_ADMINISTRATOR]
        assert made["keptRoles"] == [HELPDESK]
        # While that request is open, the preview shows it.
        pending = c.get(f"/api/gdap/reestablish/preview?customer={FOURTH_COFFEE}", headers=READER).json()
        assert pending["basis"] == "pendingRequest" and pending["pendingRequest"] == made["id"]


def test_expiring_says_the_end_date_after_extension(estate: dict[str, Any]) -> None:
    scenario = estate["scenario"]
    with client(estate["settings"]) as c:
        items = {
            r["relationshipId"]: r
            for r in c.get("/api/gdap/expiring", headers=READER).json()["relationships"]
        }
    relecloud = items[rel_id(scenario, RELECLOUD)]
    assert relecloud["endsAtIfExtended"] == iso(AS_OF + timedelta(days=185))
    assert items[rel_id(scenario, WINGTIP)]["endsAtIfExtended"] is None  # Global Administrator: cannot
