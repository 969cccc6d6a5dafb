"""Every sign-in that counts, read the way Microsoft serves it: non-interactive sign-ins are activity,
flags values that include serviceProvider count, empty and short pages are followed to the end, a
sign-in Entra writes late still stops a removal, and a refused log is never read as "no sign-ins"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.evaluation.audit import audit, build_report
from shared.evaluation.run import run_evaluation
from shared.platform.state import StateStore
from shared.removals.worker import process_removal_queue
from shared.services import Services
from tests.conftest import run_cli, settings_with
from tests.oracle import comparable, expected_report
from tests.test_audit_integration import AS_OF, generate
from tests.test_enforcement import (
    ENFORCE,
    LAMNA,
    WINGTIP,
    actions,
    estate,
    removal_requests,
    run,
    sign_in,
    with_services,
)

SIGNINS = "/beta/auditLogs/signIns"


def non_interactive(tenant: str, when: str, sid: str, access: str = "serviceProvider") -> dict[str, Any]:
    return {
        **sign_in(tenant, when, sid),
        "signInEventTypes": ["nonInteractiveUser"],
        "crossTenantAccessType": access,
        "appDisplayName": "Microsoft Partner Center",
    }


def test_a_customer_served_only_by_automation_is_active_and_kept(env: dict[str, str], emulator: Any) -> None:
    """Wingtip and Lamna are removal candidates on interactive sign-ins alone; a token exchange
    (non-interactive) into Wingtip and a b2bCollaboration,serviceProvider sign-in into Lamna keep them."""
    scenario = estate()
    scenario["signIns"] += [
        non_interactive(WINGTIP, "2026-11-20T12:00:00Z", "00000000-0000-4000-8000-00000000n101"),
        {
            **sign_in(LAMNA, "2026-11-20T18:00:00Z", "00000000-0000-4000-8000-00000000c101"),
            "crossTenantAccessType": "b2bCollaboration,serviceProvider",
        },
        # Neither of these is activity: a failed token exchange, and a guest (B2B) sign-in.
        {
            **non_interactive(WINGTIP, "2026-11-20T20:00:00Z", "00000000-0000-4000-8000-00000000n102"),
            "errorCode": 50126,
        },
        non_interactive(
            WINGTIP, "2026-11-20T21:00:00Z", "00000000-0000-4000-8000-00000000n103", "b2bCollaboration"
        ),
    ]
    emulator.post_scenario(scenario)
    settings = settings_with(**ENFORCE)

    async def go(services: Services) -> tuple[dict[str, Any], dict[str, Any]]:
        summary = await run_evaluation(services, AS_OF)
        await process_removal_queue(services)
        return summary, await build_report(services, AS_OF)

    summary, report = run(with_services(settings, go))
    rows = {r["tenantId"]: r for r in report["customers"]}
    wingtip, lamna = rows[WINGTIP], rows[LAMNA]
    assert wingtip["bucket"] == "active" and wingtip["recommendation"] == "none"
    assert wingtip["lastSignInAt"] == "2026-11-20T12:00:00Z" and wingtip["lastSignInKind"] == "nonInteractive"
    assert wingtip["signInsLastDay"] == 1 and wingtip["nonInteractiveSignInsLastDay"] == 1
    assert lamna["lastSignInAt"] == "2026-11-20T18:00:00Z" and lamna["lastSignInKind"] == "interactive"
    assert lamna["nonInteractiveSignInsLastDay"] == 0 and lamna["bucket"] == "active"
    queued = {q["tenantId"] for q in summary["queued"]}
    assert WINGTIP not in queued and LAMNA not in queued
    removed = {tenant for _, tenant in removal_requests(emulator)} | {
        t for t in (WINGTIP, LAMNA) if any(a["action"] == "removal.requested" for a in actions(settings, t))
    }
    assert WINGTIP not in removed and LAMNA not in removed


def test_the_report_is_exact_through_empty_and_short_pages(
    env: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    """A generated estate (mostly non-interactive sign-ins, more than one $top/$skip page of DAP
    customers), read while Graph answers empty pages with nextLinks and pages of a few items."""
    scenario = generate(
        tmp_path, customers=420, signins=4000, days=60, seed=29, now="2026-11-21T00:00:00Z", retention=90
    )
    kinds = [s.get("signInEventTypes", ["interactiveUser"])[0] for s in scenario["signIns"]]
    assert kinds.count("nonInteractiveUser") > 2 * kinds.count("interactiveUser")
    assert sum(1 for c in scenario["customers"] if c.get("dap")) > 100  # the DAP list spans pages
    scenario["faults"] = [
        {"method": "GET", "pathPrefix": SIGNINS, "empty": True, "times": 6},
        {"method": "GET", "pathPrefix": SIGNINS, "pageSize": 7, "times": 40},
        {"method": "GET", "pathPrefix": "/v1.0/tenantRelationships", "empty": True, "times": 2},
    ]
    emulator.post_scenario(scenario)

    async def go() -> dict[str, Any]:
        async with Services(settings_with(SIGNIN_BACKFILL_DAYS="90")) as services:
            return await audit(services, AS_OF)

    report = run(go())
    served = [e for e in emulator.log(all_requests=True) if e.get("fault")]
    assert len(served) >= 6 + 40 + 2  # every injected page was met and followed
    assert comparable(report) == expected_report(emulator.state(), AS_OF, 90)["customers"]
    assert {r["lastSignInKind"] for r in report["customers"] if r["lastSignInAt"]} == {
        "interactive",
        "nonInteractive",
    }


def test_a_sign_in_written_late_stops_the_removal(env: dict[str, str], emulator: Any) -> None:
    """Entra writes a sign-in to the log minutes after it happened. One made just before the
    evaluation is invisible to it; the removal's own check, later, reads it (through empty pages,
    both kinds of sign-in) and skips the removal."""
    scenario = estate()
    scenario["signInLatencySeconds"] = 1800
    scenario["signIns"].append(
        non_interactive(WINGTIP, "2026-11-20T23:50:00Z", "00000000-0000-4000-8000-00000000la7e")
    )
    emulator.post_scenario(scenario)
    settings = settings_with(**ENFORCE)

    async def evaluate(services: Services) -> dict[str, Any]:
        return await run_evaluation(services, AS_OF)

    summary = run(with_services(settings, evaluate))
    assert WINGTIP in {q["tenantId"] for q in summary["queued"]}  # the evaluation could not see it
    emulator.set_now("2026-11-21T00:30:00Z")
    emulator.add_faults([{"method": "GET", "pathPrefix": SIGNINS, "empty": True, "times": 3}])
    run(with_services(settings, process_removal_queue))
    assert WINGTIP not in {tenant for _, tenant in removal_requests(emulator)}
    skipped = [a for a in actions(settings, WINGTIP) if a["action"] == "removal.skipped"]
    assert len(skipped) == 1
    assert skipped[0]["detail"].startswith("signed in since: an agent signed in at 2026-11-20T23:50:00")
    assert "non-interactive" in skipped[0]["detail"]


def test_a_tenant_without_the_licence_for_sign_in_logs_stops_with_exit_3(
    env: dict[str, str], emulator: Any
) -> None:
    """403 is never "no sign-ins": nothing is covered, nothing evaluated, nobody removed."""
    scenario = estate()
    scenario["signInLogLicensed"] = False
    emulator.post_scenario(scenario)
    environment = {**os.environ, **ENFORCE}
    for command in ("audit", "enforce"):
        done = run_cli("--emulator", emulator.url, command, env=environment)
        assert done.returncode == 3, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "P1 or P2" in errors[0], done.stderr
    assert removal_requests(emulator) == []

    async def stored(services: Services) -> tuple[Any, list[Any]]:
        return await StateStore(services.storage).load_coverage(), await services.evaluations.heads(5)

    coverage, heads = run(with_services(settings_with(**ENFORCE), stored))
    assert coverage.intervals == [] and all(h["summary"]["recommendedForRemoval"] == 0 for h in heads)
