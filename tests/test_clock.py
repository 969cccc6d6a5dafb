"""One clock, Microsoft's: the present is what the Date header of Microsoft's answers says (the
emulator's clock here), never the host's calendar; and --as-of can neither rewrite history nor the
present (docs/definitions.md section 5)."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from azure.functions.timer import TimerRequest

from shared.evaluation.audit import FutureAsOfError, audit, build_report
from shared.platform.state import StateStore
from shared.platform.timeutil import CLOCK, iso, parse_iso
from shared.runtime import close_services
from shared.services import Services
from tests.conftest import load_example, registered_functions, run_cli, settings_with

NOW = parse_iso(load_example()["now"])
A_YEAR_AHEAD = datetime.now(UTC) + timedelta(days=365)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_clock_reads_the_date_header() -> None:
    CLOCK.reset()
    try:
        received = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
        CLOCK.observe("Sun, 21 Nov 2027 08:49:37 GMT", received)
        assert CLOCK.observed
        assert CLOCK.host_offset == datetime(2027, 11, 21, 8, 49, 37, tzinfo=UTC) - received
        for junk in (None, "", "not a date", "Sun, 99 Foo 2027"):
            CLOCK.observe(junk)  # ignored: the last good answer stays
        assert CLOCK.host_offset == datetime(2027, 11, 21, 8, 49, 37, tzinfo=UTC) - received
    finally:
        CLOCK.reset()


def test_now_is_the_emulators_clock_whatever_the_host_calendar(env: dict[str, str], emulator: Any) -> None:
    async def now() -> datetime:
        async with Services(settings_with()) as services:
            return await services.now()

    with time_machine.travel(A_YEAR_AHEAD, tick=True):
        assert abs(run(now()) - NOW) < timedelta(seconds=5)
        emulator.advance("PT3H")
        assert abs(run(now()) - (NOW + timedelta(hours=3))) < timedelta(seconds=5)


def test_the_evaluation_timer_runs_at_microsofts_present_a_year_ahead(
    env: dict[str, str], emulator: Any
) -> None:
    """The calendar bug: the timers read the host clock, so a fixed estate drifted into candidacy as
    the days passed. With the host a year ahead the evaluation still runs at the emulator's now."""
    evaluation = registered_functions()["evaluation"].get_user_function()

    async def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        try:
            await evaluation(TimerRequest(past_due=False))
            async with Services(settings_with()) as services:
                heads = await services.evaluations.heads(5)
                return heads, await build_report(services, parse_iso(heads[0]["asOf"]))
        finally:
            await close_services()

    with time_machine.travel(A_YEAR_AHEAD, tick=True):
        heads, report = run(go())
    assert len(heads) == 1
    assert abs(parse_iso(heads[0]["asOf"]) - NOW) < timedelta(seconds=5)
    assert heads[0]["summary"] == report["summary"] and report["summary"]["customersUnderMonitoring"] == 5
    assert parse_iso(report["coverage"]["to"]) <= NOW + timedelta(seconds=5)


def test_a_past_audit_is_a_what_if_and_cannot_stretch_coverage(env: dict[str, str], emulator: Any) -> None:
    """Two past audits once stretched coverage.from to 90 days when the log served 30, and stored
    themselves as the latest evaluation."""
    settings = settings_with(SIGNIN_BACKFILL_DAYS="30")

    async def go() -> tuple[list[dict[str, Any]], dict[str, Any], Any, list[dict[str, Any]]]:
        async with Services(settings) as services:
            await audit(services, NOW)
            heads = await services.evaluations.heads(5)
            past = await audit(services, NOW - timedelta(days=30))
            await audit(services, NOW - timedelta(days=60))
            coverage = await StateStore(services.storage).load_coverage()
            return heads, past, coverage, await services.evaluations.heads(5)

    heads, past, coverage, after = run(go())
    assert len(heads) == 1 and after == heads  # the what-ifs were not stored
    assert parse_iso(past["asOf"]) == NOW - timedelta(days=30)
    assert min(start for start, _ in coverage.intervals) >= NOW - timedelta(days=30, seconds=1)
    assert parse_iso(heads[0]["coverage"]["from"]) >= NOW - timedelta(days=30, seconds=1)


def test_a_future_audit_is_refused_and_records_nothing(env: dict[str, str], emulator: Any) -> None:
    settings = settings_with()

    async def go() -> tuple[Any, Any]:
        async with Services(settings) as services:
            with pytest.raises(FutureAsOfError):
                await audit(services, NOW + timedelta(days=54))
            return await StateStore(services.storage).load_coverage(), await services.evaluations.heads(5)

    coverage, heads = run(go())
    assert coverage.intervals == [] and heads == []
    command = ["--emulator", emulator.url, "audit", "--as-of"]
    done = run_cli(*command, iso(NOW + timedelta(days=54)))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "future" in done.stderr and done.stdout == ""
    # A few seconds ahead is clock skew, not the future.
    skewed = run_cli(*command, iso(NOW + timedelta(seconds=30)))
    assert skewed.returncode == 0, skewed.stderr
    assert json.loads(skewed.stdout)["schemaVersion"] == 1


def test_the_last_success_never_moves_backwards(env: dict[str, str]) -> None:
    async def go() -> list[Any]:
        async with Services(settings_with()) as services:
            state = StateStore(services.storage)
            seen = []
            for at in (NOW, NOW - timedelta(days=3), NOW + timedelta(hours=1)):
                await state.record_success("signins", at, {"at": iso(at)})
                seen.append((await state.last_success("signins"))[0])
            return seen

    assert run(go()) == [NOW, NOW, NOW + timedelta(hours=1)]


def test_ingestion_refuses_to_run_on_a_host_whose_clock_is_off(env: dict[str, str], emulator: Any) -> None:
    """The product reads Microsoft's time, but its leases and run records are the host's: a host clock
    further from Microsoft's than HOST_CLOCK_MAX_SKEW_MINUTES stops ingestion with one clear line."""
    from tests.conftest import TEST_PACE

    environment = {**os.environ, **TEST_PACE, "HOST_CLOCK_MAX_SKEW_MINUTES": "5"}
    done = run_cli("--emulator", emulator.url, "audit", env=environment)
    assert done.returncode == 3, done.stderr  # the emulator's clock is the scenario's, days from this host's
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HOST_CLOCK_MAX_SKEW_MINUTES" in errors[0]

    async def coverage() -> Any:
        async with Services(settings_with()) as services:
            return await StateStore(services.storage).load_coverage()

    assert run(coverage()).intervals == []
