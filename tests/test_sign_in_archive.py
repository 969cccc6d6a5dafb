"""Evidence from day one: Entra's sign-in archive (diagnostic settings -> a storage account) read into the
same aggregates as the Graph log.

The emulator plays the diagnostic setting and writes the archive in Microsoft's layout to an Azurite of
its own (the archive is the partner's account, not the product's). The report from the archive equals
the report from the same sign-ins served by Graph; the coverage grows by exactly the hours the archive
holds; a backfill is checkpointed, resumable and idempotent; a malformed blob is one clear error and
changes nothing of its stretch.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from shared.evaluation.audit import audit as audit_once
from shared.platform.settings import get_settings
from shared.platform.state import StateStore
from shared.platform.timeutil import iso, parse_iso
from shared.runtime import close_services
from shared.services import Services
from shared.signins.ingestion import archive_status, backfill_from_archive
from tests.conftest import ROOT, registered_functions, run_cli, settings_with
from tests.oracle import comparable, expected_report
from tests.test_audit_integration import AS_OF
from tools.azurite import RunningAzurite, start_azurite
from tools.emulator.generate import command as generate_command

PARTNER = "6513270e-269e-4d37-b2a7-4de452e6b438"  # the example estate's partner tenant
SIGNINS = "/auditLogs/signIns"
INTERACTIVE = "insights-logs-signinlogs"
NON_INTERACTIVE = "insights-logs-noninteractiveusersigninlogs"
DAY = timedelta(days=1)
LONG = 95  # days of sign-ins in the long estate: 90+ can be proven


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def archive_account() -> Iterator[RunningAzurite]:
    """The storage account Entra archives the partner's logs to: an Azurite of its own."""
    running = start_azurite(in_memory=True)
    yield running
    running.stop()


@pytest.fixture
def archive(archive_account: RunningAzurite, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty archive account, named by SIGNIN_ARCHIVE_CONNECTION; its connection string."""
    with BlobServiceClient.from_connection_string(archive_account.connection_string) as service:
        for container in service.list_containers():
            service.delete_container(container.name)
    monkeypatch.setenv("SIGNIN_ARCHIVE_CONNECTION", archive_account.connection_string)
    env["SIGNIN_ARCHIVE_CONNECTION"] = archive_account.connection_string
    return archive_account.connection_string


@pytest.fixture(scope="module")
def estate_95(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """95 days of activity, both kinds of sign-in, in a log Graph keeps 95 days (90+ can be proven)."""
    out = tmp_path_factory.mktemp("archive") / "estate.json"
    subprocess.run(
        generate_command(
            customers=120,
            signins=3000,
            days=LONG,
            seed=5,
            now=iso(AS_OF),
            retention_days=LONG,
            noninteractive_per_interactive=1,
            out=out,
        ),
        check=True,
        cwd=ROOT,
    )
    return dict(json.loads(out.read_text(encoding="utf-8")))


def keep_30_days(scenario: dict[str, Any]) -> dict[str, Any]:
    """The same estate in a log Graph keeps 30 days, as Entra does."""
    out = copy.deepcopy(scenario)
    out["signInRetentionDays"] = 30
    return out


async def audit(as_of: Any = AS_OF, **overrides: str) -> dict[str, Any]:
    async with Services(settings_with(**overrides)) as services:
        return await audit_once(services, as_of)


def fresh_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_PREFIX", "t" + uuid.uuid4().hex[:12])


def test_the_report_from_the_archive_equals_the_report_from_graph(
    env: dict[str, str],
    emulator: Any,
    archive: str,
    estate_95: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Graph keeps 95 days in one store; in another, Graph keeps 30 days and the archive holds the rest:
    after `archive backfill` the two reports are the same, row for row, with the same coverage; and in a
    third, read from the archive alone (SIGNIN_SOURCE=archive)."""
    emulator.post_scenario(estate_95)
    from_graph = run(audit(SIGNIN_BACKFILL_DAYS=str(LONG)))
    assert comparable(from_graph) == expected_report(emulator.state(), AS_OF, LONG)["customers"]
    assert {r["bucket"] for r in from_graph["customers"]} >= {"61-90", "90+"}

    emulator.post_scenario(keep_30_days(estate_95))
    # Delivered at once (deliveryMinutes 0): the archive holds up to the present, as the Graph log does
    # (records that reach the next hour's blob: test_records_as_microsoft_writes_them).
    written = emulator.write_archive(archive, iso(AS_OF - LONG * DAY), iso(AS_OF), deliveryMinutes=0)
    assert written["blobs"] >= 2 * 24 * LONG and written["signIns"] > 2000
    fresh_store(monkeypatch)
    before = run(audit())
    assert before["coverage"]["from"] == iso(AS_OF - 30 * DAY)  # Graph alone: 30 days at most
    assert not {r["bucket"] for r in before["customers"]} & {"61-90", "90+"}

    # The archive fills what Graph no longer serves, from the command line like a partner's admin.
    cli_env = {**os.environ, "SIGNIN_ARCHIVE_CONNECTION": archive}
    done = run_cli(
        "archive", "backfill", "--from", iso(AS_OF - LONG * DAY), "--to", iso(AS_OF - 29 * DAY), env=cli_env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["gaps"] == [] and result["signIns"] > 1000
    # What Graph read already (its last 30 days) was not read again from the archive.
    assert result["coverage"] == [[iso(AS_OF - LONG * DAY), iso(AS_OF)]]
    from_both = run(audit())
    assert from_both["coverage"] == from_graph["coverage"]
    assert from_both["customers"] == from_graph["customers"]
    assert from_both["summary"] == from_graph["summary"]

    # Idempotent: the same backfill again reads nothing and changes nothing.
    again = run_cli(
        "archive", "backfill", "--from", iso(AS_OF - LONG * DAY), "--to", iso(AS_OF - 29 * DAY), env=cli_env
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["slices"] == 0 and json.loads(again.stdout)["blobsRead"] == 0
    assert run(audit())["customers"] == from_graph["customers"]
    status = run_cli("archive", "status", env=cli_env)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["archive"]["configured"] and shown["lastBackfill"]["from"] == iso(AS_OF - LONG * DAY)
    assert shown["coverage"] == [[iso(AS_OF - LONG * DAY), iso(AS_OF)]]

    # SIGNIN_SOURCE=archive: ongoing ingestion reads the archive instead of the Graph log (not one
    # sign-in list request) and the report is the one from the Graph log's 30 days.
    fresh_store(monkeypatch)
    seen = len(emulator.log(all_requests=True))
    from_archive = run(audit(SIGNIN_SOURCE="archive"))
    assert [r for r in emulator.log(all_requests=True)[seen:] if SIGNINS in r["path"]] == []
    assert from_archive["coverage"] == before["coverage"]
    assert from_archive["customers"] == before["customers"]
    assert from_archive["summary"] == before["summary"]


def test_gaps_stay_gaps(env: dict[str, str], emulator: Any, archive: str) -> None:
    """An hour no container has a blob for is a gap; an hour one container lacks is a gap too, unless
    SIGNIN_ARCHIVE_QUIET_HOURS lets that container be quiet between blobs close by."""
    start, end = AS_OF - 47 * DAY, AS_OF - 43 * DAY
    hole = AS_OF - 46 * DAY + timedelta(hours=5)  # no blob at all
    quiet = AS_OF - 45 * DAY + timedelta(hours=3)  # no interactive blob
    emulator.write_archive(
        archive,
        iso(start),
        iso(end),
        skip=[
            {"from": iso(hole), "to": iso(hole + timedelta(hours=2))},
            {"from": iso(quiet), "to": iso(quiet + timedelta(hours=1)), "containers": [INTERACTIVE]},
        ],
    )

    async def go(**overrides: str) -> dict[str, Any]:
        async with Services(settings_with(**overrides)) as services:
            return await backfill_from_archive(services, start, end)

    result = run(go())
    tick = timedelta(microseconds=1)
    assert result["gaps"] == [
        [iso(hole), iso(hole + timedelta(hours=2) - tick)],
        [iso(quiet), iso(quiet + timedelta(hours=1) - tick)],
    ]
    assert result["missingHours"] == {INTERACTIVE: 3, NON_INTERACTIVE: 2}
    # The coverage grows by exactly what the archive holds (the Graph log's 30 days are not read here).
    assert result["coverage"] == [
        [iso(start), iso(hole - tick)],
        [iso(hole + timedelta(hours=2)), iso(quiet - tick)],
        [iso(quiet + timedelta(hours=1)), iso(end - tick)],
    ]
    # A container may be quiet for an hour between blobs: the one-container hole is held, the other not.
    result = run(go(SIGNIN_ARCHIVE_QUIET_HOURS="1"))
    assert result["gaps"] == [[iso(hole), iso(hole + timedelta(hours=2) - tick)]]


def archived(sign_in_id: str, created: str, tenant: str, category: str = "SignInLogs") -> dict[str, Any]:
    """One record as Entra's diagnostic setting writes it (Azure Monitor's common fields around the
    signIn resource)."""
    return {
        "time": created,
        "resourceId": f"/tenants/{PARTNER}/providers/Microsoft.aadiam",
        "operationName": "Sign-in activity",
        "operationVersion": "1.0",
        "category": category,
        "tenantId": PARTNER,
        "resultType": "0",
        "resultSignature": "None",
        "durationMs": 0,
        "callerIpAddress": "203.0.113.7",
        "correlationId": str(uuid.uuid4()),
        "identity": "Alex Agent",
        "Level": 4,
        "location": "JP",
        "properties": {
            "id": sign_in_id,
            "createdDateTime": created,
            "userDisplayName": "Alex Agent",
            "userPrincipalName": "alex@partner.example",
            "userId": "8d1a7c3e-1111-4a4a-9b9b-000000000001",
            "appDisplayName": "Microsoft 365 admin center",
            "status": {"errorCode": 0},
            "isInteractive": category == "SignInLogs",
            "crossTenantAccessType": "serviceProvider",
            "homeTenantId": PARTNER,
            "resourceTenantId": tenant,
        },
    }


def put_blob(service: BlobServiceClient, container: str, name: str, data: bytes) -> None:
    with contextlib.suppress(ResourceExistsError):
        service.create_container(container)
    blob = service.get_blob_client(container, name)
    blob.create_append_blob()
    if data:
        blob.append_block(data)


def test_records_as_microsoft_writes_them(env: dict[str, str], emulator: Any, archive: str) -> None:
    """A sign-in created at 10:58 is in the 11:00 blob; a blob in the pre-2018 {"records": [...]} form;
    the tenant id in upper case in the blob names; a blob that is not JSON lines is one clear error that
    names it, and its stretch is not recorded as read until it is mended."""
    wingtip = "ca02135e-92b1-43f2-8ede-0d7ac3baea9e"  # the example's customer without a sign-in
    day = AS_OF - 40 * DAY
    tenant = PARTNER.upper()
    with BlobServiceClient.from_connection_string(archive) as service:
        for hour in range(24):
            at = day + timedelta(hours=hour)
            name = f"tenantId={tenant}/y={at:%Y}/m={at:%m}/d={at:%d}/h={at:%H}/m=00/PT1H.json"
            own = archived(str(uuid.uuid4()), iso(at + timedelta(minutes=5)), PARTNER)  # not delegated access
            lines = [own]
            if hour == 11:
                lines.append(archived("late-0001", iso(day + timedelta(hours=10, minutes=58)), wingtip))
            put_blob(service, INTERACTIVE, name, b"".join(json.dumps(r).encode() + b"\n" for r in lines))
            other = archived(
                str(uuid.uuid4()), iso(at + timedelta(minutes=9)), PARTNER, "NonInteractiveUserSignInLogs"
            )
            if hour == 20:
                put_blob(service, NON_INTERACTIVE, name, b"this is not a record\n")
            else:
                put_blob(service, NON_INTERACTIVE, name, json.dumps({"records": [other]}).encode())

    async def go() -> dict[str, Any]:
        async with Services(settings_with()) as services:
            return await backfill_from_archive(services, day, day + DAY)

    async def coverage() -> list[Any]:
        async with Services(settings_with()) as services:
            return (await StateStore(services.storage).load_coverage()).intervals

    with pytest.raises(Exception) as failed:
        run(go())
    assert "h=20/m=00/PT1H.json, line 1: not a JSON record" in str(failed.value)
    assert run(coverage()) == []  # the whole day is one stretch: nothing of it is recorded as read

    with BlobServiceClient.from_connection_string(archive) as service:
        at = day + timedelta(hours=20)
        name = f"tenantId={tenant}/y={at:%Y}/m={at:%m}/d={at:%d}/h={at:%H}/m=00/PT1H.json"
        put_blob(service, NON_INTERACTIVE, name, b"")
    result = run(go())
    assert result["gaps"] == [] and result["signIns"] == 1
    report = run(audit())
    row = next(r for r in report["customers"] if r["tenantId"] == wingtip)
    # Graph's 30 days hold nothing of Wingtip; the archive proves the sign-in 40 days ago.
    assert row["lastSignInAt"] == iso(day + timedelta(hours=10, minutes=58))


def test_a_new_archive_blob_wakes_the_archive_ingestion(
    env: dict[str, str], emulator: Any, archive: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob-created trigger, called with a real binding object: it ingests from the archive when
    SIGNIN_SOURCE=archive, and leaves everything alone otherwise."""
    import azure.functions as func

    from functions.ingestion import signin_archive_blob

    emulator.write_archive(archive, iso(AS_OF - 2 * DAY), iso(AS_OF), deliveryMinutes=0)
    name = f"{INTERACTIVE}/tenantId={PARTNER}/y={AS_OF:%Y}/m={AS_OF:%m}/d={AS_OF:%d}/h=00/m=00/PT1H.json"
    functions = registered_functions()
    trigger = functions["signin_archive_signinlogs"]
    binding = func.blob.InputStream(name=name, data=b"", uri=f"http://archive/{name}")

    async def coverage() -> list[Any]:
        async with Services(settings_with()) as services:
            return (await StateStore(services.storage).load_coverage()).intervals

    async def fire() -> None:
        get_settings.cache_clear()
        try:
            await trigger.get_user_function()(binding)
        finally:
            await close_services()

    run(fire())
    assert run(coverage()) == []  # SIGNIN_SOURCE is graph: nothing read
    monkeypatch.setenv("SIGNIN_SOURCE", "archive")
    monkeypatch.setenv("SIGNIN_BACKFILL_DAYS", "2")
    monkeypatch.setenv(
        "SIGNIN_LOG_LATENCY_MINUTES", "15"
    )  # the present hour, whose blob may not be written yet
    run(fire())
    get_settings.cache_clear()
    [(start, end)] = run(coverage())
    # From the floor (Microsoft's present, to the microsecond, less two days) to the present.
    assert abs(start - (AS_OF - 2 * DAY)) < timedelta(seconds=1) and abs(end - AS_OF) < timedelta(seconds=1)
    assert run(signin_archive_blob_outcome(signin_archive_blob, "insights-logs-signinlogs/other.txt")) == (
        "ignored: not an hourly sign-in blob"
    )


async def signin_archive_blob_outcome(handler: Any, name: str) -> str:
    async with Services(settings_with(SIGNIN_SOURCE="archive")) as services:
        return str(await handler(services, name))


def test_bad_archive_settings_and_ranges_change_nothing(env: dict[str, str], archive: str) -> None:
    """One clear line, exit 2, nothing written."""
    cases = [
        (
            {"SIGNIN_ARCHIVE_CONNECTION": ""},
            ["--from", iso(AS_OF - 40 * DAY)],
            "SIGNIN_ARCHIVE_CONNECTION is not set",
        ),
        ({}, ["--from", iso(AS_OF - 10 * DAY), "--to", iso(AS_OF - 20 * DAY)], "must start before it ends"),
        ({}, ["--from", iso(AS_OF - 10 * DAY), "--to", iso(AS_OF + DAY)], "cannot end after the present"),
        ({"SIGNIN_SOURCE": "blob"}, ["--from", iso(AS_OF - 10 * DAY)], "SIGNIN_SOURCE must be"),
        (
            {"SIGNIN_ARCHIVE_CONTAINERS": "Bad_Name"},
            ["--from", iso(AS_OF - 10 * DAY)],
            "not a blob container",
        ),
    ]
    for overrides, args, message in cases:
        done = run_cli("archive", "backfill", *args, env={**os.environ, **overrides})
        assert done.returncode == 2, (message, done.stdout, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr

    async def written() -> Any:
        async with Services(settings_with()) as services:
            status = await archive_status(services)
            return status["coverage"], status["lastBackfill"]

    assert run(written()) == ([], None)


def test_emulator_archive_is_microsofts_layout(
    emulator: Any, archive_account: RunningAzurite, tmp_path: Path
) -> None:
    """The diagnostic setting's blob names and records, as documented."""
    with BlobServiceClient.from_connection_string(archive_account.connection_string) as service:
        for container in service.list_containers():
            service.delete_container(container.name)
        emulator.write_archive(archive_account.connection_string, iso(AS_OF - DAY), iso(AS_OF))
        names = [b.name for b in service.get_container_client(INTERACTIVE).list_blobs()]
        assert len(names) == 24
        first = AS_OF - DAY
        assert names[0] == f"tenantId={PARTNER}/y={first:%Y}/m={first:%m}/d={first:%d}/h=00/m=00/PT1H.json"
        props = service.get_blob_client(INTERACTIVE, names[0]).get_blob_properties()
        assert props.blob_type == "AppendBlob"
        line = service.get_blob_client(INTERACTIVE, names[0]).download_blob().readall().splitlines()[0]
        record = json.loads(line)
        assert record["category"] == "SignInLogs" and record["operationName"] == "Sign-in activity"
        assert record["tenantId"] == PARTNER and parse_iso(record["properties"]["createdDateTime"]) >= first


def test_a_backfill_and_the_timer_share_the_coverage(env: dict[str, str]) -> None:
    """A long backfill meets the ingestion timer at a checkpoint: the timer's stretch on other days is
    kept beside the backfill's; on a day both wrote, the backfill stops unclaimed (and reads it again)."""
    from shared.platform.state import ConcurrentRunError
    from shared.signins.ingestion import ingestion_for

    hour = timedelta(hours=1)
    old, recent = AS_OF - 50 * DAY, AS_OF - 2 * DAY

    async def go() -> list[Any]:
        async with Services(settings_with()) as services:
            ingestion = ingestion_for(services, PARTNER)
            backfill = await ingestion.state.load_coverage()  # read at its start
            timer = await ingestion.state.load_coverage()
            timer.add(recent, recent + hour)
            await ingestion.state.save_coverage(timer)
            merged = await ingestion._checkpoint(backfill, [(old, old + hour)], share=True)
            assert merged.intervals == [(old, old + hour), (recent, recent + hour)]
            timer = await ingestion.state.load_coverage()
            timer.add(old + 2 * hour, old + 3 * hour)  # the same day as the backfill's slice
            await ingestion.state.save_coverage(timer)
            with pytest.raises(ConcurrentRunError):
                await ingestion._checkpoint(
                    merged, [(old, old + hour), (old + 5 * hour, old + 6 * hour)], share=True
                )
            return (await ingestion.state.load_coverage()).intervals

    assert run(go()) == [(old, old + hour), (old + 2 * hour, old + 3 * hour), (recent, recent + hour)]


def test_an_archive_that_stops_short_of_the_present_is_an_error(
    env: dict[str, str], emulator: Any, archive: str
) -> None:
    """SIGNIN_SOURCE=archive and the export stopped three hours ago: what there is is read, and the
    ingestion fails naming the end (the evaluation then holds back and alerts), never a quiet success."""
    from shared.platform.retry import UpstreamError
    from shared.signins.ingestion import ingest_sign_ins

    stopped = AS_OF - timedelta(hours=3)
    emulator.write_archive(archive, iso(AS_OF - 2 * DAY), iso(stopped), deliveryMinutes=0)

    async def go() -> list[Any]:
        async with Services(settings_with(SIGNIN_SOURCE="archive", SIGNIN_BACKFILL_DAYS="2")) as services:
            with pytest.raises(
                UpstreamError, match=f"holds nothing after {iso(stopped - timedelta(microseconds=1))}"
            ):
                await ingest_sign_ins(services, AS_OF)
            return (await StateStore(services.storage).load_coverage()).intervals

    [(start, end)] = run(go())
    assert abs(start - (AS_OF - 2 * DAY)) < timedelta(seconds=1) and end == stopped - timedelta(
        microseconds=1
    )
