"""Faults at every Microsoft endpoint the product calls, and storage restarted under it.

Every case runs the product twice on the same estate: undisturbed (its own tables) and with the
emulator's injected faults (429 with Retry-After, 500, 503, 504, connection resets, timeouts and
truncated bodies, also in the middle of paging). Each must end with the same report, the same
outcome at Microsoft, the same Actions trail, and nothing requested or mailed twice.

Fast cases (make test): every endpoint meets every fault kind at least once. ``make soak`` runs every
endpoint x kind combination, a chain of all seven kinds per request, and every kind mid-paging.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from shared.evaluation.audit import audit as audit_once
from shared.evaluation.run import run_evaluation
from shared.notifications.worker import drain_notifications
from shared.platform.settings import Settings
from shared.platform.timeutil import parse_iso
from shared.removals.worker import drain_removals
from shared.services import Services
from tests.conftest import TEST_PACE, figures_name, load_example, run_cli, settings_with
from tests.test_enforcement import ENFORCE, LAMNA, NORTHWIND, PROSEWARE, WINGTIP, estate, gdap_ids
from tools import chaos

AS_OF = parse_iso("2026-11-21T00:00:00Z")
CLIENT_TIMEOUT = 1.0  # seconds; the product's are 100 s (Graph) and 60 s (Partner Center)
REL = "/v1.0/tenantRelationships/delegatedAdminRelationships"
FIGURES: dict[str, Any] = {"faultsServed": Counter(), "runs": 0, "duplicates": 0, "losses": 0}


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def kind_name(kind: dict[str, Any]) -> str:
    return str(kind.get("kind") or kind["status"])


def fault(
    method: str, prefix: str, kind: dict[str, Any], *, times: int = 1, after: int = 0
) -> dict[str, Any]:
    return {"method": method, "pathPrefix": prefix, "times": times, "after": after, **kind}


def short_timeouts(services: Services, seconds: float = CLIENT_TIMEOUT) -> None:
    """Client timeouts short enough for a test; the code path (timeout -> retry) is the product's."""
    services.graph._http.timeout = httpx.Timeout(seconds)
    if services.partner_center is not None:
        services.partner_center._http.timeout = httpx.Timeout(seconds)


async def with_services(settings: Settings, work: Callable[[Services], Awaitable[Any]]) -> Any:
    async with Services(settings) as services:
        short_timeouts(services)
        return await work(services)


def served(emulator: Any) -> Counter[str]:
    """Faults the emulator served, by endpoint and kind ('GET /beta/... 429')."""
    out: Counter[str] = Counter()
    for f in emulator.faults():
        if f["served"]:
            out[f"{chaos.endpoint_label(f['method'], f['pathPrefix'])} {f.get('kind') or f['status']}"] += f[
                "served"
            ]
    return out


def tally(
    emulator: Any,
    undisturbed: dict[str, Any] | None,
    result: Any,
    expected: Any,
    *,
    actions: tuple[Any, Any] | None = None,
) -> None:
    """Assert the disturbed run equals the undisturbed one, and count what was served and found."""
    state = emulator.state(sign_ins=False)
    dup = chaos.duplicates(state, emulator.log())
    FIGURES["faultsServed"].update(served(emulator))
    FIGURES["runs"] += 1
    FIGURES["duplicates"] += dup.total
    assert dup.total == 0, dup.to_json()
    assert result == expected
    if undisturbed is not None:
        assert chaos.outcome(state) == undisturbed
    if actions is not None:
        disturbed_rows, reference_rows = actions
        assert chaos.duplicate_action_ids(disturbed_rows) == []
        lost = chaos.canonical_actions(reference_rows) - chaos.canonical_actions(disturbed_rows)
        FIGURES["losses"] += sum(lost.values())
        assert not lost, lost
        assert chaos.canonical_actions(disturbed_rows) == chaos.canonical_actions(reference_rows)


@pytest.fixture(scope="module", autouse=True)
def write_figures(request: pytest.FixtureRequest) -> Any:
    yield
    if FIGURES["runs"]:
        chaos.record(
            figures_name(request, "faults"),
            {
                **{k: v for k, v in FIGURES.items() if k != "faultsServed"},
                "faultsServed": dict(sorted(FIGURES["faultsServed"].items())),
                "faultsServedTotal": sum(FIGURES["faultsServed"].values()),
                "faultsByKind": dict(sorted(by_kind(FIGURES["faultsServed"]).items())),
            },
        )


def by_kind(counts: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for key, n in counts.items():
        out[key.rsplit(" ", 1)[1]] += n
    return out


# --- endpoints -------------------------------------------------------------------------------------------


def audit_endpoints(scenario: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path prefix) of every call an audit makes; the specific prefixes come first."""
    rel = next(
        r["id"] for c in scenario["customers"] for r in c["gdapRelationships"] if r["status"] == "active"
    )
    billed = next(
        c["tenantId"]
        for c in scenario["customers"]
        if c.get("dap", {})
        and c["dap"]["enabled"]
        or any(r["status"] == "active" for r in c["gdapRelationships"])
    )
    return [
        ("GET", f"{REL}/{rel}/accessAssignments"),
        ("GET", f"/partnercenter/v1/customers/{billed}/profiles/billing"),
        ("GET", "/v1.0/organization"),
        ("GET", "/beta/auditLogs/signIns"),
        ("GET", REL),
        ("GET", "/customeradmin/v1/delegatedAdminCustomers"),
        ("GET", "/partnercenter/v1/customers"),
    ]


def removal_endpoints(scenario: dict[str, Any]) -> list[tuple[str, str]]:
    """Every call the removal and notification workers make (after the evaluation)."""
    return [
        ("POST", f"{REL}/{gdap_ids(scenario, WINGTIP)[0]}/requests"),
        ("PATCH", f"/partnercenter/v1/customers/{PROSEWARE}"),
        ("POST", "/v1.0/users/"),  # sendMail
        ("GET", "/beta/auditLogs/signIns"),  # the live sign-in probe
        ("GET", REL),  # the live relationship re-read
        ("GET", "/customeradmin/v1/delegatedAdminCustomers"),  # the live DAP re-read
        ("GET", "/v1.0/organization"),  # the partner's name for the mail
    ]


# Mail is at-least-once: a sendMail whose answer is lost after Graph accepted it (timeout, truncated
# body) cannot be told from one that never arrived, and is sent again (test_ambiguous_send_mail...).
AMBIGUOUS_FOR_MAIL = ("timeout", "truncate")


def latin_square(
    endpoints: list[tuple[str, str]],
    rotation: int,
    *,
    skip: Callable[[tuple[str, str], dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Endpoint i gets kind (i + rotation) mod 7: over 7 rotations every endpoint meets every kind."""
    out = []
    for i, (method, prefix) in enumerate(endpoints):
        kind = chaos.FAULT_KINDS[(i + rotation) % len(chaos.FAULT_KINDS)]
        if skip is not None and skip((method, prefix), kind):
            continue
        out.append(fault(method, prefix, kind))
    return out


def mail_ambiguous(endpoint: tuple[str, str], kind: dict[str, Any]) -> bool:
    return endpoint[1] == "/v1.0/users/" and kind_name(kind) in AMBIGUOUS_FOR_MAIL


# --- the audit --------------------------------------------------------------------------------------------


def audit(settings: Settings) -> dict[str, Any]:
    return run(with_services(settings, lambda s: audit_once(s, AS_OF)))  # type: ignore[no-any-return]


def audit_under(
    emulator: Any,
    env: dict[str, str],
    scenario: dict[str, Any],
    faults: list[dict[str, Any]],
    reference: dict[str, Any],
    **overrides: str,
) -> None:
    emulator.post_scenario(scenario)
    emulator.add_faults(faults)
    settings = settings_with(STORAGE_PREFIX=f"{env['STORAGE_PREFIX']}{uuid.uuid4().hex[:6]}", **overrides)
    report = audit(settings)
    assert all(f["served"] >= 1 for f in emulator.faults()), emulator.faults()
    tally(emulator, None, report, reference)


@pytest.fixture
def example_reference(env: dict[str, str], emulator: Any) -> dict[str, Any]:
    return audit(settings_with(STORAGE_PREFIX=env["STORAGE_PREFIX"] + "ref"))


def test_every_audit_endpoint_survives_every_fault_kind(
    env: dict[str, str], emulator: Any, example_reference: dict[str, Any]
) -> None:
    """Seven endpoints, seven kinds: one run in which each endpoint meets a different kind (make soak
    runs all seven rotations: every endpoint meets every kind)."""
    scenario = load_example()
    audit_under(emulator, env, scenario, latin_square(audit_endpoints(scenario), 0), example_reference)


@pytest.mark.soak
@pytest.mark.parametrize("rotation", range(7))
def test_soak_every_audit_endpoint_x_kind(
    env: dict[str, str], emulator: Any, example_reference: dict[str, Any], rotation: int
) -> None:
    scenario = load_example()
    audit_under(emulator, env, scenario, latin_square(audit_endpoints(scenario), rotation), example_reference)


@pytest.mark.soak
def test_soak_all_seven_kinds_in_a_row_on_every_audit_endpoint(
    env: dict[str, str], emulator: Any, example_reference: dict[str, Any]
) -> None:
    """One request meets 429, 500, 503, 504, a reset, a timeout and a truncated body in a row (Graph)
    or five of them (Partner Center, which makes six attempts), and still succeeds."""
    scenario = load_example()
    faults = []
    for method, prefix in audit_endpoints(scenario):
        kinds = (
            chaos.FAULT_KINDS
            if not prefix.startswith(("/partnercenter", "/customeradmin"))
            else chaos.FAULT_KINDS[:3] + chaos.FAULT_KINDS[4:6]
        )
        faults.extend(fault(method, prefix, k) for k in kinds)
    audit_under(emulator, env, scenario, faults, example_reference)


# --- in the middle of paging ------------------------------------------------------------------------------

PAGED = (
    "/beta/auditLogs/signIns",
    REL,
    "/customeradmin/v1/delegatedAdminCustomers",
    "/partnercenter/v1/customers",
)


def paging_estate() -> dict[str, Any]:
    """Every list the product reads spans several pages: 330 GDAP relationships (300 a page), 120 DAP
    customers (100), 340 Partner Center customers (200) and 2,300 sign-ins on one day (1,000). Most of
    it is inactive, so the audit stays cheap."""
    scenario = copy.deepcopy(load_example())
    agent = scenario["agents"][0]["id"]
    busy = "3f98e277-4cbd-47ad-9c90-a9587403e430"  # Lamna
    for n in range(330):
        tenant = f"{n:08x}-aaaa-4bbb-8ccc-{n:012x}"
        customer: dict[str, Any] = {
            "tenantId": tenant,
            "displayName": f"Paged {n:03d} Ltd",
            "defaultDomainName": f"paged{n}.onmicrosoft.com",
            "culture": "en-US",
            "contacts": [f"admin@paged{n}.example"],
            "dap": {"enabled": False, "startDateTime": "2024-01-01T00:00:00Z"} if n < 120 else None,
            "gdapRelationships": [
                {
                    "id": f"{uuid.UUID(int=n + 1)}-{tenant}",
                    "displayName": f"paged-{n}",
                    "status": "terminated",
                    "duration": "P730D",
                    "createdDateTime": "2024-01-01T00:00:00Z",
                    "activatedDateTime": "2024-01-02T00:00:00Z",
                    "endDateTime": "2025-06-01T00:00:00Z",
                    "autoExtendDuration": "PT0S",
                    "roles": ["62e90394-69f5-4237-9190-012177145e10"],
                    "accessAssignments": [],
                }
            ],
        }
        scenario["customers"].append(customer)
    for n in range(2300):
        scenario["signIns"].append(
            {
                "id": str(uuid.UUID(int=10**6 + n)),
                "createdDateTime": f"2026-11-20T{n // 100 % 24:02d}:{n % 60:02d}:{n % 59:02d}Z",
                "userId": agent,
                "resourceTenantId": busy,
                "crossTenantAccessType": "serviceProvider",
                "errorCode": 0,
                "appDisplayName": "Microsoft 365 admin center",
            }
        )
    return scenario


# With one day of backfill the log is read in two slices whose first pages go out together: the
# third sign-in request is page 2 of the busy day. The other lists are read one page after another.
PAGING_SETTINGS = {"SIGNIN_BACKFILL_DAYS": "1"}
PAGE_TWO_AFTER = {
    "/beta/auditLogs/signIns": 2,
    REL: 1,
    "/customeradmin/v1/delegatedAdminCustomers": 1,
    "/partnercenter/v1/customers": 1,
}


@pytest.fixture
def paging_reference(env: dict[str, str], emulator: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    scenario = paging_estate()
    emulator.post_scenario(scenario)
    report = audit(settings_with(STORAGE_PREFIX=env["STORAGE_PREFIX"] + "ref", **PAGING_SETTINGS))
    pages = Counter(e["path"] for e in emulator.log(all_requests=True) if e["method"] == "GET")
    assert all(pages[p] >= 2 for p in PAGED), pages  # every list really is paged
    return scenario, report


def paging_faults(kinds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        fault("GET", prefix, kind, after=PAGE_TWO_AFTER[prefix])
        for prefix, kind in zip(PAGED, kinds, strict=True)
    ]


def test_faults_in_the_middle_of_paging(
    env: dict[str, str], emulator: Any, paging_reference: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    scenario, reference = paging_reference
    kinds = [
        {"kind": "reset"},
        {"kind": "truncate"},
        {"status": 429, "retryAfter": 1},
        {"kind": "timeout", "delaySeconds": 2},
    ]
    audit_under(emulator, env, scenario, paging_faults(kinds), reference, **PAGING_SETTINGS)
    paged = [e for e in emulator.log(all_requests=True) if e.get("fault")]
    assert len(paged) == 4


@pytest.mark.soak
@pytest.mark.parametrize("kind", chaos.FAULT_KINDS, ids=kind_name)
def test_soak_every_kind_in_the_middle_of_every_paged_list(
    env: dict[str, str],
    emulator: Any,
    paging_reference: tuple[dict[str, Any], dict[str, Any]],
    kind: dict[str, Any],
) -> None:
    scenario, reference = paging_reference
    audit_under(emulator, env, scenario, paging_faults([kind] * 4), reference, **PAGING_SETTINGS)


# --- enforcement: removals and mail -----------------------------------------------------------------------

# The Functions host redelivers a failed message after host.json's visibilityTimeout (1 minute); the
# in-process drain retries after 0.05 s. A change that reached the service but whose answer timed out
# lands within that minute, so the redelivery's live re-read sees it. The tests compress the host's
# minute to HOST_RETRY_SECONDS, still longer than the emulator's late execution (TIMEOUT_DELAY).
HOST_RETRY_SECONDS = 1.0


@pytest.fixture
def host_retry_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.notifications.worker
    import shared.removals.worker

    original = shared.removals.worker.drain_queue

    async def like_the_host(*args: Any, **kwargs: Any) -> Any:
        return await original(*args, **{**kwargs, "retry_base": HOST_RETRY_SECONDS})

    monkeypatch.setattr(shared.removals.worker, "drain_queue", like_the_host)
    monkeypatch.setattr(shared.notifications.worker, "drain_queue", like_the_host)


async def evaluate_then_drain(services: Services, before_drain: Callable[[], None]) -> dict[str, Any]:
    summary = await run_evaluation(services, AS_OF)
    before_drain()
    removals = await drain_removals(services)
    notifications = await drain_notifications(services)
    return {
        "queued": sorted(q["tenantId"] for q in summary["queued"]),
        "warned": summary["warned"],
        "poisoned": len(removals.poisoned) + len(notifications.poisoned),
    }


def enforce_under(
    emulator: Any, scenario: dict[str, Any], settings: Settings, faults: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    emulator.post_scenario(scenario)
    result = run(
        with_services(settings, lambda s: evaluate_then_drain(s, lambda: emulator.add_faults(faults)))
    )
    return result, run(chaos.action_rows(settings))


@pytest.fixture
def enforcement_reference(env: dict[str, str], emulator: Any, host_retry_interval: None) -> dict[str, Any]:
    """The undisturbed cycle on the enforcement estate (shared with the crash and concurrency suites)."""
    reference = chaos.enforcement_reference(
        emulator, estate(), settings_with(**ENFORCE, STORAGE_PREFIX="r" + uuid.uuid4().hex[:10])
    )
    assert reference["result"]["queued"] == sorted([PROSEWARE, LAMNA, WINGTIP, NORTHWIND])
    return reference


def test_every_removal_and_mail_endpoint_survives_every_fault_kind(
    env: dict[str, str], emulator: Any, enforcement_reference: dict[str, Any]
) -> None:
    """Terminate, DAP PATCH, sendMail and the live re-reads each meet a different kind; each customer
    is removed once and every action recorded once. sendMail also loses two answers after Graph took
    the mail (timed out, truncated): the product cannot tell those from requests that never arrived
    and sends them again -- at least once, never lost: the one duplicate the design accepts."""
    reference = enforcement_reference
    ambiguous = [
        fault("POST", "/v1.0/users/", {"kind": "truncate"}, after=1),
        fault("POST", "/v1.0/users/", {"kind": "timeout", "delaySeconds": 1.5}, after=1),
    ]
    # Lamna's DAP PATCH reaches Partner Center but its answer is cut: not resent (the live state says so).
    cut_patch = [fault("PATCH", f"/partnercenter/v1/customers/{LAMNA}", {"kind": "truncate"})]
    faults = latin_square(removal_endpoints(reference["scenario"]), 0) + ambiguous + cut_patch
    settings = settings_with(**ENFORCE, STORAGE_PREFIX=f"{env['STORAGE_PREFIX']}{uuid.uuid4().hex[:6]}")
    result, rows = enforce_under(emulator, reference["scenario"], settings, faults)
    time.sleep(1.0)  # the timed-out mail is executed by the emulator after its delay
    assert all(f["served"] >= 1 for f in emulator.faults()), emulator.faults()
    state = emulator.state(sign_ins=False)
    dup = chaos.duplicates(state, emulator.log())
    FIGURES["faultsServed"].update(served(emulator))
    FIGURES["runs"] += 1
    FIGURES["duplicates"] += dup.total - len(dup.mails)
    FIGURES["ambiguousMailResends"] = FIGURES.get("ambiguousMailResends", 0) + len(dup.mails)
    assert dup.terminates == {} and dup.dap_patches == {}, dup.to_json()
    # At most one extra copy per lost answer (two faults lose an answer). Whether a timed-out send was
    # executed before the client gave up depends on timing, so fewer copies are possible; none is lost
    # (the outcome below holds every mail).
    assert len(dup.mails) <= 2, dup.to_json()
    assert result == reference["result"]
    outcome = chaos.outcome(state)
    assert outcome == reference["outcome"]  # every mail arrived (the set), every removal done
    assert chaos.duplicate_action_ids(rows) == []
    assert chaos.canonical_actions(rows) == chaos.canonical_actions(reference["rows"])


@pytest.mark.soak
@pytest.mark.parametrize("rotation", range(7))
def test_soak_every_removal_endpoint_x_kind(
    env: dict[str, str], emulator: Any, enforcement_reference: dict[str, Any], rotation: int
) -> None:
    endpoints = removal_endpoints(enforcement_reference["scenario"])
    settings = settings_with(**ENFORCE, STORAGE_PREFIX=f"{env['STORAGE_PREFIX']}{uuid.uuid4().hex[:6]}")
    result, rows = enforce_under(
        emulator,
        enforcement_reference["scenario"],
        settings,
        latin_square(endpoints, rotation, skip=mail_ambiguous),
    )
    assert all(f["served"] >= 1 for f in emulator.faults()), emulator.faults()
    tally(
        emulator,
        enforcement_reference["outcome"],
        result,
        enforcement_reference["result"],
        actions=(rows, enforcement_reference["rows"]),
    )


# --- storage restarted mid-run ----------------------------------------------------------------------------


def test_azurite_restarted_mid_run(
    emulator: Any, tmp_path: Any, host_retry_interval: None, enforcement_reference: dict[str, Any]
) -> None:
    """A dedicated Azurite (its own data folder) is stopped and started again while removals are being
    executed: storage calls are retried, whatever a failed storage call interrupted is retried by the
    queue, and the end state equals the undisturbed run's."""
    from tools.azurite import start_azurite

    storage = start_azurite(str(tmp_path / "azurite"))
    try:
        environment = {k: v for k, v in os.environ.items() if k not in Settings.setting_names()}
        environment.update(
            {
                **TEST_PACE,
                **ENFORCE,
                "AzureWebJobsStorage": storage.connection_string,
                "STORAGE_PREFIX": "rst" + uuid.uuid4().hex[:8],
                "EMULATOR_URL": emulator.url,
            }
        )
        settings = Settings.from_env(environment)
        restarted = threading.Event()

        def restart_when_paused() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not chaos.fault_served(emulator, 0):
                time.sleep(0.02)
            storage.restart()
            restarted.set()

        def pause_then_restart() -> None:
            # The removal worker pauses on its first terminate request while Azurite restarts.
            emulator.add_faults([fault("POST", REL + "/", {"kind": "timeout", "delaySeconds": 0.8})])
            threading.Thread(target=restart_when_paused, daemon=True).start()

        async def drain_again(services: Services) -> None:
            await drain_removals(services)
            await drain_notifications(services)

        emulator.post_scenario(enforcement_reference["scenario"])
        run(with_services(settings, lambda s: evaluate_then_drain(s, pause_then_restart)))
        assert restarted.wait(timeout=60)
        # What the restart interrupted is retried by the queues (as the queue triggers would).
        run(with_services(settings, drain_again))
        state = emulator.state(sign_ins=False)
        dup = chaos.duplicates(state, emulator.log())
        rows = run(chaos.action_rows(settings))
        FIGURES["azuriteRestarts"] = FIGURES.get("azuriteRestarts", 0) + 1
        FIGURES["runs"] += 1
        FIGURES["duplicates"] += dup.total
        assert dup.total == 0, dup.to_json()
        assert chaos.outcome(state) == enforcement_reference["outcome"]
        assert chaos.duplicate_action_ids(rows) == []
        assert chaos.canonical_actions(rows) == chaos.canonical_actions(enforcement_reference["rows"])
    finally:
        storage.stop()


def test_fault_after_lets_the_first_pages_through(emulator: Any) -> None:
    """The emulator's ``after`` (added for these tests): the first N matching requests pass."""
    emulator.post_scenario(load_example())
    emulator.add_faults([fault("GET", "/v1.0/organization", {"status": 503}, after=2)])
    with httpx.Client(base_url=emulator.url, headers={"Authorization": "Bearer x"}) as client:
        codes = [client.get("/v1.0/organization").status_code for _ in range(4)]
    assert codes == [200, 200, 503, 200]
    [listed] = emulator.faults()
    assert listed["after"] == 2 and listed["passed"] == 2 and listed["served"] == 1
    with httpx.Client(base_url=emulator.url) as client:
        assert client.post("/_emulator/faults", json=[{"pathPrefix": "/x", "after": -1}]).status_code == 400


@pytest.mark.soak
def test_soak_cli_survives_faults_as_a_real_process(
    env: dict[str, str], emulator: Any, example_reference: dict[str, Any]
) -> None:
    """The command line (its own process, the product's own client timeouts) through faults."""
    emulator.post_scenario(load_example())
    emulator.add_faults(
        [
            fault("GET", "/beta/auditLogs/signIns", {"status": 429, "retryAfter": 1}, times=2),
            fault("GET", REL, {"kind": "reset"}),
            fault("GET", "/partnercenter/v1/customers", {"kind": "truncate"}),
        ]
    )
    environment = {**os.environ, "STORAGE_PREFIX": env["STORAGE_PREFIX"] + "cli"}
    done = run_cli("audit", "--as-of", "2026-11-21T00:00:00Z", env=environment)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == example_reference
    FIGURES["faultsServed"].update(served(emulator))
    FIGURES["runs"] += 1


# --- bugs these faults found ------------------------------------------------------------------------------


@pytest.mark.soak
def test_a_truncated_dap_patch_answer_is_not_resent(
    enforced_env: tuple[Settings, dict[str, Any]], emulator: Any, host_retry_interval: None
) -> None:
    """The PATCH reached Partner Center but its answer was cut: resending it blindly sent the removal
    twice. Now the removal worker re-reads the live state and finds the DAP already disabled. (make test
    covers it inside test_every_removal_and_mail_endpoint_survives_every_fault_kind.)"""
    settings, scenario = enforced_env
    emulator.add_faults([fault("PATCH", f"/partnercenter/v1/customers/{PROSEWARE}", {"kind": "truncate"})])
    result = run(with_services(settings, lambda s: evaluate_then_drain(s, lambda: None)))
    assert result["poisoned"] == 0
    assert chaos.dap_patches(emulator.log())[PROSEWARE] == 1
    state = {c["tenantId"]: c for c in emulator.state(sign_ins=False)["customers"]}
    assert state[PROSEWARE]["dap"]["enabled"] is False
    trail = [a for a in run(chaos.action_rows(settings)) if a["PartitionKey"] == PROSEWARE]
    assert [a["Result"] for a in trail if a["Action"] == "dap.disable"] == ["completed"]


def test_a_transport_failure_on_one_relationship_does_not_hold_back_the_others(
    enforced_env: tuple[Settings, dict[str, Any]], emulator: Any
) -> None:
    """A terminate request that never gets an answer (the connection drops every time) is an upstream
    failure like any other: the customer's other relationship is still terminated, the removal is
    retried, set aside and alerted, and the cycle reports the failure (CLI exit code 3)."""
    from shared.evaluation.run import run_cycle
    from shared.platform.retry import UpstreamError

    settings, scenario = enforced_env
    first, second = sorted(gdap_ids(scenario, WINGTIP))
    emulator.add_faults([fault("POST", f"{REL}/{first}/requests", {"kind": "reset"}, times=-1)])
    with pytest.raises(UpstreamError):
        run(with_services(settings, lambda s: run_cycle(s, AS_OF)))
    accepted = chaos.terminate_requests(emulator.state(sign_ins=False))
    assert accepted[second] == 1 and accepted[first] == 0
    trail = [a for a in run(chaos.action_rows(settings)) if a["PartitionKey"] == WINGTIP]
    assert any(a["Action"] == "removal.failed" for a in trail)


@pytest.fixture
def enforced_env(env: dict[str, str], emulator: Any) -> tuple[Settings, dict[str, Any]]:
    scenario = estate()
    emulator.post_scenario(scenario)
    return settings_with(**ENFORCE), scenario
