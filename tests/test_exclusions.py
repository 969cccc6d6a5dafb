"""Exclusions managed in the portal (``/api/exclusions``): stored, audited, used by the policy together
with EXCLUDED_TENANTS, and checked again by the removal worker right before a policy removal acts.

And the removal confirmation's preview (``POST /api/removals/preview``) and the list of removals a
view has not seen yet (``GET /api/removals?since=``), which the portal's dialog and reload rest on.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.evaluation.audit import audit
from shared.evaluation.run import run_cycle, run_evaluation
from shared.exclusions.store import ExclusionStore
from shared.platform.settings import Settings
from shared.removals.worker import process_removal_queue
from tests.conftest import settings_with
from tests.test_api import READER, REMOVER, assert_error, client, storage_state
from tests.test_enforcement import (
    AS_OF,
    CANDIDATES,
    ENFORCE,
    LAMNA,
    NORTHWIND,
    PROSEWARE,
    WINGTIP,
    actions,
    estate,
    removal_requests,
    run,
    with_services,
)

ADATUM = "92276658-1e27-41c0-8a6a-63ec24ede6a4"  # active
UNKNOWN = "00000000-1111-2222-3333-444444444444"
ORIGIN = {"Origin": "http://testserver"}
ADMIN = "admin@contoso.example (4f1c2a7e-0000-4000-8000-000000000001)"


@pytest.fixture
def enforced(env: dict[str, str], emulator: Any) -> dict[str, Any]:
    """The enforcement estate, synced and evaluated at AS_OF (report only: nothing queued)."""
    scenario = estate()
    emulator.post_scenario(scenario)
    run(with_services(settings_with(**ENFORCE), lambda s: audit(s, AS_OF)))
    return scenario


def exclude(c: Any, tenant: str, reason: str = "managed by the customer's own IT this year") -> Any:
    return c.put(f"/api/exclusions/{tenant}", json={"reason": reason}, headers={**REMOVER, **ORIGIN})


def test_an_exclusion_made_in_the_portal_keeps_the_policy_away(enforced: Any, emulator: Any) -> None:
    settings = settings_with(**ENFORCE, EXCLUDED_TENANTS=LAMNA)
    with client(settings) as c:
        created = exclude(c, WINGTIP)
        assert created.status_code == 201, created.text
        assert created.json()["excludedBy"] == ADMIN
        again = exclude(c, WINGTIP, "another reason")
        assert again.status_code == 200 and again.json()["reason"] == created.json()["reason"]
        listed = c.get("/api/exclusions", headers=READER).json()["exclusions"]
    assert {(x["tenantId"], x["source"]) for x in listed} == {(WINGTIP, "portal"), (LAMNA, "setting")}
    trail = [a for a in actions(settings, WINGTIP) if a["action"].startswith("exclusion.")]
    assert [(a["action"], a["actor"]) for a in trail] == [("exclusion.added", ADMIN)]

    summary = run(with_services(settings, lambda s: run_cycle(s, AS_OF)))
    assert sorted(summary["candidates"]) == sorted(set(CANDIDATES) - {WINGTIP, LAMNA})
    reasons = {s["tenantId"]: s["reason"] for s in summary["skipped"]}
    assert reasons[WINGTIP] == "excluded (an exclusion managed in the portal)"
    assert reasons[LAMNA] == "excluded (EXCLUDED_TENANTS)"
    touched = {t for _, t in removal_requests(emulator)}
    assert WINGTIP not in touched and not any(t.endswith(WINGTIP) for t in touched)
    with client(settings) as c:
        row = next(
            r for r in c.get("/api/audit", headers=READER).json()["customers"] if r["tenantId"] == WINGTIP
        )
    assert row["excluded"] is True and row["recommendation"] == "none"


def test_an_exclusion_after_the_evaluation_stops_the_queued_removal(enforced: Any, emulator: Any) -> None:
    settings = settings_with(**ENFORCE)
    run(with_services(settings, lambda s: run_evaluation(s, AS_OF)))
    with client(settings) as c:
        assert exclude(c, NORTHWIND).status_code == 201
    run(with_services(settings, process_removal_queue))
    touched = {t for _, t in removal_requests(emulator)}
    assert not any(NORTHWIND in t for t in touched)
    skipped = [a for a in actions(settings, NORTHWIND) if a["action"] == "removal.skipped"]
    assert len(skipped) == 1 and skipped[0]["detail"].startswith(f"excluded: {ADMIN} excluded")
    # The other candidates went ahead.
    assert PROSEWARE in touched


def test_ending_an_exclusion_is_audited_and_a_setting_cannot_be_ended_here(enforced: Any) -> None:
    settings = settings_with(**ENFORCE, EXCLUDED_TENANTS=LAMNA)
    with client(settings) as c:
        assert exclude(c, WINGTIP).status_code == 201
        ended = c.delete(f"/api/exclusions/{WINGTIP}?reason=contract+renewed", headers={**REMOVER, **ORIGIN})
        assert ended.status_code == 204, ended.text
        assert_error(
            c.delete(f"/api/exclusions/{WINGTIP}", headers={**REMOVER, **ORIGIN}), 404, "notExcluded"
        )
        assert_error(
            c.delete(f"/api/exclusions/{LAMNA}", headers={**REMOVER, **ORIGIN}), 409, "excludedBySetting"
        )
        assert c.get("/api/exclusions", headers=READER).json()["exclusions"] == [
            {
                "tenantId": LAMNA,
                "displayName": "",
                "reason": "EXCLUDED_TENANTS",
                "excludedBy": "",
                "excludedAt": None,
                "source": "setting",
            }
        ]
    trail = [a for a in actions(settings, WINGTIP) if a["action"].startswith("exclusion.")]
    assert [a["action"] for a in trail] == ["exclusion.removed", "exclusion.added"]
    assert trail[0]["reason"] == "contract renewed"


def test_bad_exclusion_requests_change_nothing(enforced: Any) -> None:
    settings: Settings = settings_with(**ENFORCE)
    with client(settings) as c:
        assert_error(
            c.put(f"/api/exclusions/{WINGTIP}", json={"reason": "x"}, headers={**READER, **ORIGIN}), 403
        )
        assert_error(c.put(f"/api/exclusions/{WINGTIP}", json={}, headers={**REMOVER, **ORIGIN}), 400)
        assert_error(
            c.put(f"/api/exclusions/{WINGTIP}", json={"reason": "a\x00b"}, headers={**REMOVER, **ORIGIN}), 400
        )
        assert_error(
            c.put("/api/exclusions/not-a-guid", json={"reason": "x"}, headers={**REMOVER, **ORIGIN}), 400
        )
        assert_error(exclude(c, UNKNOWN), 404, "unknownCustomer")
        assert_error(c.delete(f"/api/exclusions/{WINGTIP}", headers={**READER, **ORIGIN}), 403)
    assert run(with_services(settings, lambda s: ExclusionStore(s.storage).stored())) == []
    assert storage_state(settings) == {"removals": 0, "actions": 0, "queued": 0}


# --- what the confirmation shows -------------------------------------------------------------------------


def test_the_preview_says_per_customer_what_goes_and_who_is_mailed(enforced: Any, emulator: Any) -> None:
    settings = settings_with(**ENFORCE)
    with client(settings) as c:
        assert exclude(c, PROSEWARE).status_code == 201
        response = c.post(
            "/api/removals/preview",
            json={"tenantIds": [LAMNA, WINGTIP, ADATUM, PROSEWARE, UNKNOWN]},
            headers={**REMOVER, **ORIGIN},
        )
        assert response.status_code == 200, response.text
        preview = {x["tenantId"]: x for x in response.json()["customers"]}
        assert_error(
            c.post("/api/removals/preview", json={"tenantIds": [LAMNA]}, headers={**READER, **ORIGIN}), 403
        )
        assert_error(
            c.post("/api/removals/preview", json={"tenantIds": ["x"]}, headers={**REMOVER, **ORIGIN}), 400
        )
    lamna = preview[LAMNA]
    assert {r["type"] for r in lamna["removes"]} == {"DAP", "GDAP"}
    assert all(r["roleNames"] for r in lamna["removes"] if r["type"] == "GDAP")
    assert lamna["recipients"] and all("@" in r for r in lamna["recipients"])
    # Recommended (15 days), but an agent signed in 20 days ago: "active" by the 30-day bucket.
    assert lamna["warnings"] == ["active"] and lamna["refused"] is None
    assert preview[WINGTIP]["warnings"] == [] and len(preview[WINGTIP]["removes"]) == 2
    assert "active" in preview[ADATUM]["warnings"] and "notRecommended" in preview[ADATUM]["warnings"]
    assert "excluded" in preview[PROSEWARE]["warnings"]
    assert preview[UNKNOWN]["refused"] == "notMonitored"
    assert storage_state(settings)["removals"] == 0  # nothing was written by the preview


def test_removals_since_lists_what_a_view_has_not_seen(enforced: Any, emulator: Any) -> None:
    settings = settings_with(**ENFORCE)
    run(with_services(settings, lambda s: run_evaluation(s, AS_OF)))
    with client(settings) as c:
        listed = c.get("/api/removals?since=2026-01-01T00:00:00Z", headers=READER)
        assert listed.status_code == 200, listed.text
        queued = {r["tenantId"]: r["status"] for r in listed.json()["removals"]}
        assert set(queued) == set(CANDIDATES) and set(queued.values()) == {"queued"}
        assert_error(c.get("/api/removals?since=2026-01-01T00:00:00Z&ids=a", headers=READER), 400)
        assert_error(c.get("/api/removals?since=yesterday", headers=READER), 400)
    run(with_services(settings, process_removal_queue))
    with client(settings) as c:
        later = c.get("/api/removals?since=2100-01-01T00:00:00Z", headers=READER).json()["removals"]
    # Far in the future: only what is still under way (GDAP terminations Microsoft has not settled).
    assert all(r["status"] in ("queued", "requested") for r in later)
