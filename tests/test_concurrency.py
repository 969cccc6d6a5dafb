"""Two evaluations and two removal (and notification) workers at once, against one estate and one store.

They must never remove a customer twice (one terminate request per GDAP relationship, one DAP
PATCH per customer, as the emulator counts them), never mail twice, and never lose or double an
Actions record: leases and ETag-conditional writes decide who does what. The reference is the same
estate run by one evaluation and one worker.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from collections import Counter
from typing import Any

import pytest

from shared.evaluation.run import run_cycle, run_evaluation
from shared.notifications.worker import drain_notifications
from shared.platform.retry import UpstreamError
from shared.platform.settings import Settings
from shared.platform.timeutil import parse_iso
from shared.removals.progress import get_removal
from shared.removals.worker import drain_removals
from shared.services import Services
from tests.conftest import TEST_PACE, figures_name, settings_with
from tests.test_enforcement import CANDIDATES, ENFORCE, estate
from tools import chaos

AS_OF = parse_iso("2026-11-21T00:00:00Z")
FIGURES: Counter[str] = Counter()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def sequential(settings: Settings) -> dict[str, Any]:
    async with Services(settings) as services:
        summary = await run_evaluation(services, AS_OF)
        await drain_removals(services)
        await drain_notifications(services)
    return summary


async def at_once(settings: Settings, workers: int = 2) -> list[dict[str, Any]]:
    """``workers`` evaluations at once, then as many removal workers, then as many mail workers; each
    with its own clients (as separate function instances would have)."""
    services = [Services(settings) for _ in range(workers)]
    try:
        for s in services:
            await s.storage.ensure()
        summaries = await asyncio.gather(*(run_evaluation(s, AS_OF) for s in services))
        await asyncio.gather(*(drain_removals(s) for s in services))
        await asyncio.gather(*(drain_notifications(s) for s in services))
        return list(summaries)
    finally:
        for s in services:
            await s.close()


@pytest.fixture
def reference(env: dict[str, str], emulator: Any) -> dict[str, Any]:
    """The same estate run by one evaluation and one worker (shared with the fault and crash suites)."""
    shared = chaos.enforcement_reference(
        emulator, estate(), settings_with(**ENFORCE, STORAGE_PREFIX="r" + uuid.uuid4().hex[:10])
    )
    assert shared["result"]["queued"] == CANDIDATES
    return {"outcome": shared["outcome"], "actions": chaos.canonical_actions(shared["rows"])}


def check(reference: dict[str, Any], emulator: Any, settings: Settings) -> None:
    state = emulator.state(sign_ins=False)
    dup = chaos.duplicates(state, emulator.log())
    rows = run(chaos.action_rows(settings))
    doubled = chaos.duplicate_action_ids(rows)
    actions = chaos.canonical_actions(rows)
    lost = reference["actions"] - actions
    FIGURES["rounds"] += 1
    FIGURES["duplicates"] += dup.total + len(doubled)
    FIGURES["losses"] += sum(lost.values())
    FIGURES["terminateRequests"] += sum(chaos.terminate_requests(state).values())
    FIGURES["dapPatches"] += sum(chaos.dap_patches(emulator.log()).values())
    FIGURES["reannounced"] += sum(n - 1 for n in chaos.announced(state).values())
    assert dup.total == 0, dup.to_json()
    assert doubled == []
    assert not lost, lost
    assert actions == reference["actions"], actions - reference["actions"]
    # gdap, dap, every mail (once: the duplicates above), every removal announced to the partner admins
    assert chaos.outcome(state) == reference["outcome"]


@pytest.fixture(scope="module", autouse=True)
def write_figures(request: pytest.FixtureRequest) -> Any:
    yield
    if FIGURES:
        chaos.record(figures_name(request, "concurrency"), dict(sorted(FIGURES.items())))


def test_two_evaluations_and_two_workers_at_once(
    env: dict[str, str], emulator: Any, reference: dict[str, Any]
) -> None:
    emulator.post_scenario(estate())
    settings = settings_with(**ENFORCE, STORAGE_PREFIX=env["STORAGE_PREFIX"] + "two")
    summaries = run(at_once(settings))
    # Each candidate's removal was queued by both evaluations: the same removal (one id), created once.
    queued = [{q["tenantId"]: q["removalId"] for q in s["queued"]} for s in summaries]
    assert sorted(queued[0]) == sorted(queued[1]) == CANDIDATES and queued[0] == queued[1]
    assert sorted(q["tenantId"] for s in summaries for q in s["queued"] if q["new"]) == CANDIDATES
    check(reference, emulator, settings)

    async def states() -> list[str]:
        async with Services(settings) as services:
            return [(await get_removal(services, rid) or {}).get("status", "") for rid in queued[0].values()]

    assert set(run(states())) <= {"requested", "completed"}


@pytest.mark.soak
def test_soak_two_whole_cycles_at_once(env: dict[str, str], emulator: Any, reference: dict[str, Any]) -> None:
    """``enforce`` twice at the same moment (the timer and an operator's command line)."""
    emulator.post_scenario(estate())
    settings = settings_with(**ENFORCE, STORAGE_PREFIX=env["STORAGE_PREFIX"] + "cyc")

    async def both() -> None:
        async with Services(settings) as a, Services(settings) as b:
            outcomes = await asyncio.gather(run_cycle(a, AS_OF), run_cycle(b, AS_OF), return_exceptions=True)
            for outcome in outcomes:
                # The run that lost the race for the sign-in coverage says so (exit code 3 on the
                # command line); everything else it did stands, and the other run ingested.
                if isinstance(outcome, BaseException):
                    assert isinstance(outcome, UpstreamError) and "changed by another run" in str(outcome)
            # whatever the other worker held back (its lease) is finished by the next run
            await drain_removals(a)
            await drain_notifications(a)

    run(both())
    check(reference, emulator, settings)


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(int(os.environ.get("CHAOS_CONCURRENCY_ROUNDS", "10"))))
def test_soak_concurrent_processes(
    env: dict[str, str], emulator: Any, azurite: Any, reference: dict[str, Any], seed: int
) -> None:
    """Two to four ``enforce`` processes started together (real parallelism, separate interpreters, the
    product's own leases). The store has been audited once before, as the timers would have: on a store
    that never ingested, a run whose ingestion lost the race to another finds no successful ingestion
    yet and halts as stale (and says so), which an undisturbed run does not."""
    import subprocess
    import time

    from tests.conftest import ROOT

    rng = random.Random(seed)
    emulator.post_scenario(estate())
    prefix = f"c{seed}x" + uuid.uuid4().hex[:8]
    environment = {k: v for k, v in os.environ.items() if k not in Settings.setting_names()}
    environment.update(
        {
            **TEST_PACE,
            **ENFORCE,
            "AzureWebJobsStorage": azurite.connection_string,
            "STORAGE_PREFIX": prefix,
            "EMULATOR_URL": emulator.url,
        }
    )
    cli = [sys.executable, "-m", "shared.cli", "--emulator", emulator.url]
    audit = subprocess.run(
        [*cli, "audit", "--as-of", "2026-11-21T00:00:00Z"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert audit.returncode == 0, audit.stderr[-2000:]
    command = [*cli, "enforce", "--as-of", "2026-11-21T00:00:00Z"]
    processes = []
    for _ in range(rng.randint(2, 4)):
        processes.append(
            subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        )
        time.sleep(rng.uniform(0, 1.5))
    for p in processes:
        _, err = p.communicate(timeout=300)
        # 3: this run's sign-in ingestion lost the race for the coverage to another run (it says so)
        assert p.returncode in (0, 3), err.decode(errors="replace")[-2000:]
        if p.returncode == 3:
            assert b"changed by another run" in err, err.decode(errors="replace")[-2000:]
    FIGURES["processes"] += len(processes)
    check(reference, emulator, Settings.from_env(environment))


def test_two_readers_advancing_the_same_removal_record_it_once(env: dict[str, str], emulator: Any) -> None:
    """The portal polling a removal (GET /api/removals/{id}) while the evaluation refreshes the requested
    removals: both see the termination finish; the completion is recorded once."""
    from shared.removals.progress import refresh_removal
    from shared.removals.store import RemovalStore

    emulator.post_scenario(estate())
    settings = settings_with(**ENFORCE)
    run(sequential(settings))

    async def advance_together() -> list[str]:
        async with Services(settings) as a, Services(settings) as b:
            requested = await RemovalStore(a.storage).with_status("requested")
            assert requested
            for _ in range(3):  # each read moves a termination one step, up to terminated
                for removal in await RemovalStore(a.storage).with_status("requested"):
                    twin = await RemovalStore(b.storage).get(removal.id)
                    assert twin is not None
                    await asyncio.gather(
                        refresh_removal(a, removal), refresh_removal(b, twin), return_exceptions=True
                    )
            return [r.status for r in await RemovalStore(a.storage).with_status("completed")]

    completed = run(advance_together())
    rows = run(chaos.action_rows(settings))
    FIGURES["concurrentRefreshes"] += 1
    assert completed
    assert chaos.duplicate_action_ids(rows) == []


def test_a_throttled_removal_keeps_its_lease(
    env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DAP PATCH throttled for longer than the lease (429, Retry-After) while a second delivery of
    the same removal arrives: the first delivery's heartbeat keeps the lease, so the second backs off
    (RemovalBusy) instead of taking the removal over, and the PATCH reaches Partner Center once."""
    from datetime import timedelta

    import shared.removals.store
    from shared.removals.store import RemovalBusy, RemovalStore
    from shared.removals.worker import execute_removal

    monkeypatch.setattr(shared.removals.store, "LEASE", timedelta(seconds=1))
    emulator.post_scenario(estate())
    settings = settings_with(**ENFORCE)

    async def go() -> tuple[str, str, str]:
        async with Services(settings) as first, Services(settings) as second:
            await run_evaluation(first, AS_OF)
            queued = await RemovalStore(first.storage).with_status("queued")
            removal = next(r for r in queued if any(rel["type"] == "DAP" for rel in r.relationships))
            emulator.add_faults(
                [
                    {
                        "method": "PATCH",
                        "pathPrefix": f"/partnercenter/v1/customers/{removal.tenant_id}",
                        "status": 429,
                        "retryAfter": 3,
                        "times": 1,
                    }
                ]
            )
            running = asyncio.create_task(execute_removal(first, removal.id, owner="first"))
            await asyncio.sleep(1.8)  # the 1 s lease would have lapsed without its heartbeat
            try:
                outcome = await execute_removal(second, removal.id, owner="second")
            except RemovalBusy as busy:
                outcome = f"busy {busy.retry_after:.1f}"
            return removal.tenant_id, await running, outcome

    tenant, first_status, second_outcome = run(go())
    assert first_status in ("requested", "completed")
    assert second_outcome.startswith("busy"), second_outcome
    assert chaos.dap_patches(emulator.log())[tenant] == 1
    assert [f["served"] for f in emulator.faults()] == [1]


def test_a_throttled_mail_keeps_its_lease(
    env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sendMail throttled for longer than the notification lease (429, Retry-After) while a second
    delivery of the same notification arrives: the first delivery's heartbeat keeps the lease, so the
    second backs off (NotificationBusy) and the mail goes out once. (Without the heartbeat the second
    delivery took the lapsed lease and sent the mail again.)"""
    from datetime import timedelta

    import shared.notifications.worker
    from shared.notifications.enqueue import enqueue_partner_alert
    from shared.notifications.worker import NotificationBusy, parse_message, send_notification

    monkeypatch.setattr(shared.notifications.worker, "LEASE", timedelta(seconds=1))
    emulator.post_scenario(estate())
    settings = settings_with(**ENFORCE)

    async def go() -> tuple[str, str]:
        async with Services(settings) as first, Services(settings) as second:
            await enqueue_partner_alert(
                first, "failed", "alert:lease", {"detail": "a test alert", "run": "test"}
            )
            raw = await first.storage.queue("notifications").receive_message()
            message = parse_message(raw.content)
            emulator.add_faults(
                [{"method": "POST", "pathPrefix": "/v1.0/users/", "status": 429, "retryAfter": 3, "times": 1}]
            )
            running = asyncio.create_task(send_notification(first, message, owner="first"))
            await asyncio.sleep(1.8)  # the 1 s lease would have lapsed without its heartbeat
            try:
                outcome = await send_notification(second, message, owner="second")
            except NotificationBusy as busy:
                outcome = f"busy {busy.retry_after:.1f}"
            return await running, outcome

    first_status, second_outcome = run(go())
    assert first_status == "sent"
    assert second_outcome.startswith("busy"), second_outcome
    assert [m["message"]["subject"] for m in emulator.outbox()].count(
        emulator.outbox()[0]["message"]["subject"]
    ) == 1
    assert [f["served"] for f in emulator.faults()] == [1]
