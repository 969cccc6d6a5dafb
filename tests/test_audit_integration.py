"""The audit end to end: emulator -> real msgraph-sdk / httpx -> Azurite -> report.

Every test gets its own tables and a freshly loaded emulator estate (fixtures in conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.evaluation.audit import audit as audit_once
from shared.evaluation.audit import build_report
from shared.evaluation.store import EvaluationStore
from shared.platform.retry import UpstreamError
from shared.platform.state import StateStore
from shared.platform.timeutil import iso, parse_iso
from shared.relationships.store import RelationshipStore
from shared.relationships.sync import sync_relationships
from shared.services import Services
from shared.signins.ingestion import ingest_sign_ins, ingestion_for
from tests.conftest import ROOT, load_example, settings_with
from tests.oracle import comparable, expected_report
from tools.emulator.generate import command as generate_command

AS_OF = parse_iso("2026-11-21T00:00:00Z")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def audit(as_of: Any = AS_OF, **overrides: str) -> dict[str, Any]:
    async with Services(settings_with(**overrides)) as services:
        return await audit_once(services, as_of)


def generate(
    tmp_path: Path, *, customers: int, signins: int, days: int, seed: int, now: str, retention: int
) -> dict[str, Any]:
    out = tmp_path / f"estate-{seed}.json"
    subprocess.run(
        generate_command(
            customers=customers,
            signins=signins,
            days=days,
            seed=seed,
            now=now,
            retention_days=retention,
            out=out,
        ),
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.read_text(encoding="utf-8"))


def test_example_estate_report(env: dict[str, str]) -> None:
    report = run(audit())
    assert report["schemaVersion"] == 1
    assert report["asOf"] == "2026-11-21T00:00:00Z"
    assert report["partnerTenantId"] == "6513270e-269e-4d37-b2a7-4de452e6b438"
    assert report["coverage"] == {"from": "2026-10-22T00:00:00Z", "to": "2026-11-21T00:00:00Z"}
    assert report["policy"] == {"mode": "report", "recommendAfterDays": 60, "removeAfterDays": 90}
    assert report["summary"] == {
        "customersUnderMonitoring": 5,
        "inactiveOver90Days": 0,
        "inactive61To90Days": 0,
        "inactive30To60Days": 2,
        "establishedLast7Days": 1,
        "recommendedForRemoval": 0,
        "gdapExpiringWithin30Days": 0,
        "gdapWithGlobalAdministrator": 0,
        "customersWithAzureRoleAssignments": 0,
    }
    rows = {r["displayName"]: r for r in report["customers"]}
    assert [r["displayName"] for r in report["customers"]] == [
        "Wingtip Ltd",
        "Proseware Ltd",
        "Lamna Ltd",
        "Relecloud Ltd",
        "Adatum Ltd",
    ]
    adatum = rows["Adatum Ltd"]
    assert (adatum["agentsSignedInLastDay"], adatum["signInsLastDay"], adatum["daysInactive"]) == (2, 2, 0)
    assert adatum["lastSignInAt"] == "2026-11-20T21:00:00Z"
    # Exactly asOf - 24h is outside the last-day window.
    relecloud = rows["Relecloud Ltd"]
    assert (relecloud["signInsLastDay"], relecloud["daysInactive"], relecloud["establishedLast7Days"]) == (
        0,
        1,
        True,
    )
    # Wingtip's only sign-in failed: no activity; the store proves 30 days (its coverage).
    wingtip = rows["Wingtip Ltd"]
    assert wingtip["lastSignInAt"] is None and wingtip["daysInactive"] is None
    assert wingtip["inactiveForAtLeastDays"] == 30 and wingtip["bucket"] == "30-60"
    lamna = rows["Lamna Ltd"]
    assert {r["type"] for r in lamna["relationships"]} == {"DAP", "GDAP"}
    assert lamna["daysActive"] == 200 and lamna["daysInactive"] == 20
    # DAP disabled (Fourth Coffee) and approvalPending GDAP (Munson) are not under monitoring.
    assert "Fourth Coffee Ltd" not in rows and "Munson Ltd" not in rows


@pytest.mark.parametrize("seed", [7, 11])
def test_generated_estates_match_the_oracle(
    env: dict[str, str], emulator: Any, tmp_path: Path, seed: int
) -> None:
    """Paging past 1,000 sign-ins and 300 relationships; every row exact against a brute-force reading."""
    # 90 days of activity in a log kept 120 days: the store can prove more than 90 days of inactivity.
    scenario = generate(
        tmp_path, customers=400, signins=6000, days=90, seed=seed, now="2026-11-21T00:00:00Z", retention=120
    )
    emulator.post_scenario(scenario)
    report = run(audit(SIGNIN_BACKFILL_DAYS="120"))
    gdap = sum(len(c["gdapRelationships"]) for c in scenario["customers"])
    assert gdap > 300 and len(scenario["signIns"]) > 1000
    # The oracle reads the estate as the emulator holds it after the audit: relationships that were
    # activating when the scenario was written have become active on the way (async states).
    expected = expected_report(emulator.state(), AS_OF, 120)
    assert comparable(report) == expected["customers"]
    buckets = {r["bucket"] for r in report["customers"]}
    assert buckets == {"active", "30-60", "61-90", "90+"}


def test_throttling_and_outages_are_survived(env: dict[str, str], emulator: Any) -> None:
    undisturbed = run(audit())
    env2 = settings_with(STORAGE_PREFIX=env["STORAGE_PREFIX"] + "b")
    emulator.post_scenario(load_example())
    emulator.add_faults(
        [
            {
                "method": "GET",
                "pathPrefix": "/beta/auditLogs/signIns",
                "status": 429,
                "retryAfter": 1,
                "times": 2,
            },
            {"method": "GET", "pathPrefix": "/v1.0/tenantRelationships", "status": 503, "times": 1},
            {"method": "GET", "pathPrefix": "/customeradmin/", "status": 429, "retryAfter": 1, "times": 1},
            {"method": "GET", "pathPrefix": "/partnercenter/v1/customers", "status": 503, "times": 1},
        ]
    )

    async def disturbed() -> dict[str, Any]:
        async with Services(env2) as services:
            return await audit_once(services, AS_OF)

    report = run(disturbed())
    assert report == undisturbed
    faulted = [e for e in emulator.log(all_requests=True) if e.get("fault")]
    assert len(faulted) >= 5  # the faults were really served


def test_ingesting_twice_counts_nothing_twice(env: dict[str, str], emulator: Any) -> None:
    first = run(audit())
    second = run(audit())
    assert second == first
    # A later run re-reads only the overlap window, and late entries inside it count once.
    emulator.add_sign_ins(
        [
            {
                "id": "00000000-0000-0000-0000-00000000late",
                "createdDateTime": "2026-11-20T23:30:00Z",
                "userId": "8d116ece-1738-47d9-bd9c-172411e20b8f",
                "resourceTenantId": "3f98e277-4cbd-47ad-9c90-a9587403e430",
                "crossTenantAccessType": "serviceProvider",
                "errorCode": 0,
                "appDisplayName": "Exchange admin center",
            }
        ]
    )
    later = AS_OF + timedelta(hours=1)
    emulator.set_now(iso(later))
    third = run(audit(later))
    fourth = run(audit(later))
    assert third == fourth
    lamna = next(r for r in third["customers"] if r["displayName"] == "Lamna Ltd")
    assert lamna["lastSignInAt"] == "2026-11-20T23:30:00Z"
    assert lamna["signInsLastDay"] == 1 and lamna["agentsSignedInLastDay"] == 1


def test_interrupted_ingestion_resumes_from_its_checkpoint(env: dict[str, str]) -> None:
    settings = settings_with()

    async def interrupted_then_resumed() -> tuple[dict[str, Any], list[Any]]:
        async with Services(settings) as services:
            await sync_relationships(services, AS_OF)
            ingestion = ingestion_for(services, await services.partner_tenant_id())
            with pytest.raises(InterruptedError):
                await ingestion.run(AS_OF, stop_after_slices=12)
            partial = await StateStore(services.storage).load_coverage()
            await ingest_sign_ins(services, AS_OF)
            return await build_report(services, AS_OF), partial.intervals

    resumed, partial = run(interrupted_then_resumed())
    # The checkpoint held exactly the 12 slices read, never more.
    assert len(partial) == 1 and partial[0][0] == parse_iso("2026-10-22T00:00:00Z")
    assert partial[0][1] == parse_iso("2026-11-03T00:00:00Z") - timedelta(microseconds=1)
    undisturbed = run(audit(STORAGE_PREFIX=env["STORAGE_PREFIX"] + "u"))
    assert resumed == undisturbed


def test_coverage_never_claims_more_than_was_read(env: dict[str, str], emulator: Any) -> None:
    # The sign-in log fails for good after the first slices: ingestion stops, coverage ends there.
    emulator.add_faults(
        [{"method": "GET", "pathPrefix": "/beta/auditLogs/signIns", "status": 500, "times": 1000}]
    )
    settings = settings_with()

    async def attempt() -> Any:
        async with Services(settings, max_retries=2) as services:
            await sync_relationships(services, AS_OF)
            with pytest.raises(UpstreamError):
                await ingest_sign_ins(services, AS_OF)
            coverage = await StateStore(services.storage).load_coverage()
            return coverage, await build_report(services, AS_OF)

    coverage, report = run(attempt())
    assert coverage.intervals == []
    assert report["coverage"] == {"from": None, "to": None}
    # Nothing read, nothing proven: nobody is called inactive.
    assert all(r["inactiveForAtLeastDays"] == 0 or r["lastSignInAt"] for r in report["customers"])
    assert {r["bucket"] for r in report["customers"]} == {"active"}


def test_audit_as_of_in_the_past_ignores_later_sign_ins(env: dict[str, str]) -> None:
    run(audit())
    earlier = parse_iso("2026-11-20T18:00:00Z")
    report = run(audit(earlier))
    adatum = next(r for r in report["customers"] if r["displayName"] == "Adatum Ltd")
    assert adatum["lastSignInAt"] == "2026-11-20T15:00:00Z"  # the 21:00 sign-in is after asOf
    assert adatum["signInsLastDay"] == 1


def test_the_audit_is_stored_as_an_evaluation(env: dict[str, str]) -> None:
    settings = settings_with()

    async def go() -> tuple[dict[str, Any], Any]:
        async with Services(settings) as services:
            report = await audit_once(services, AS_OF)
            return report, await EvaluationStore(services.storage).latest()

    report, stored = run(go())
    assert stored is not None and stored.report == report


def test_sync_records_status_changes_and_pages_partner_center(
    env: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    scenario = generate(
        tmp_path, customers=450, signins=100, days=30, seed=3, now="2026-11-21T00:00:00Z", retention=30
    )
    emulator.post_scenario(scenario)
    settings = settings_with()
    target = next(
        rel for c in scenario["customers"] for rel in c["gdapRelationships"] if rel["status"] == "active"
    )
    dap_customers = [c for c in scenario["customers"] if c.get("dap")]

    async def go() -> tuple[list[dict[str, Any]], Any, int, int]:
        async with Services(settings) as services:
            await sync_relationships(services, AS_OF)
            await services.graph.request_termination(target["id"])
            emulator.advance("PT1H")  # a termination takes PT2H of emulator time, in two halves
            await sync_relationships(services, AS_OF + timedelta(hours=1))  # terminating
            emulator.advance("PT1H")
            await sync_relationships(services, AS_OF + timedelta(hours=2))  # terminated
            store = RelationshipStore(services.storage)
            tenant = target["id"][-36:]
            estate = await store.load()
            return (
                await store.changes(tenant),
                estate,
                len(estate.customers),
                sum(1 for rs in estate.relationships.values() for r in rs if r.type == "DAP"),
            )

    changes, estate, customers, daps = run(go())
    key = f"GDAP-{target['id']}"
    mine = [(c["from"], c["to"]) for c in changes if c["relationship"] == key]
    assert mine == [(None, "active"), ("active", "terminating"), ("terminating", "terminated")]
    # Partner Center customers (page size 200) and DAP customers (page size 100) were read past page 1.
    assert customers == len(scenario["customers"]) and daps == len(dap_customers) > 100
    pc_pages = [
        e
        for e in emulator.log(all_requests=True)
        if e["path"].startswith("/partnercenter/v1/customers")
        and e["method"] == "GET"
        and "profiles" not in e["path"]
    ]
    assert len(pc_pages) >= 3 * 3  # three syncs, at least three pages each
