"""Lost access (shared/lost/): relationships that end without this product removing them, through the
emulator (the customer's side played by ``/_emulator/customerActions`` and scenario ``events``), the real
msgraph-sdk and Azurite. Each cause is noticed by a sync, alerted once, listed by ``GET /api/lost-access``
and written to the trail; the product's own removals are not lost access."""

from __future__ import annotations

import asyncio
import copy
from datetime import timedelta
from typing import Any

import pytest

from shared.evaluation.audit import audit
from shared.evaluation.run import run_cycle
from shared.lost.causes import Ending, infer_cause
from shared.notifications.worker import drain_notifications
from shared.platform.actions import list_actions
from shared.platform.settings import Settings
from shared.platform.timeutil import iso, parse_iso
from shared.relationships.sync import sync_relationships
from shared.removals.request import request_removals
from shared.removals.worker import drain_removals
from shared.services import Services
from shared.web.auth import GRANT_ROLE, READ_ROLE, encode_principal
from tests.conftest import load_example, settings_with

NOW = "2026-11-21T00:00:00Z"
AS_OF = parse_iso(NOW)
ADATUM = "92276658-1e27-41c0-8a6a-63ec24ede6a4"  # DAP, signed in yesterday
PROSEWARE = "ec66a787-95e7-41d1-b731-af10506bf2ef"  # DAP since 2024-12, never signed in
RELECLOUD = "18f135d2-5f55-4203-b018-50c5a38fd547"  # one GDAP relationship
LAMNA = "3f98e277-4cbd-47ad-9c90-a9587403e430"  # DAP + GDAP
WINGTIP = "ca02135e-92b1-43f2-8ede-0d7ac3baea9e"  # one GDAP relationship, ends in an hour here
READER = {"X-MS-CLIENT-PRINCIPAL": encode_principal("reader@contoso.example", [READ_ROLE])}
GRANTER = {"X-MS-CLIENT-PRINCIPAL": encode_principal("granter@contoso.example", [READ_ROLE, GRANT_ROLE])}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def gdap_id(scenario: dict[str, Any], tenant: str) -> str:
    customer = next(c for c in scenario["customers"] if c["tenantId"] == tenant)
    return str(customer["gdapRelationships"][0]["id"])


def lost_scenario() -> dict[str, Any]:
    """The example estate with 120 days of sign-in log kept (so the store can prove 90 days without a
    sign-in); Wingtip's relationship (no auto-extend) ends an hour after NOW."""
    scenario = copy.deepcopy(load_example())
    scenario["signInRetentionDays"] = 120
    wingtip = next(c for c in scenario["customers"] if c["tenantId"] == WINGTIP)
    wingtip["gdapRelationships"][0]["endDateTime"] = iso(AS_OF + timedelta(hours=1))
    return scenario


@pytest.fixture
def settings(env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Settings:
    emulator.post_scenario(lost_scenario())
    monkeypatch.setenv("NOTIFY_SENDER", "notices@contoso.example")
    monkeypatch.setenv("NOTIFY_PARTNER_ADDRESSES", "admins@contoso.example")
    monkeypatch.setenv("SIGNIN_BACKFILL_DAYS", "120")
    return settings_with()


def audited(settings: Settings) -> None:
    """Sync and ingest the sign-in log: the store has seen every relationship and knows who signed in."""

    async def go() -> None:
        async with Services(settings) as services:
            await audit(services, await services.now())

    run(go())


async def _sync(settings: Settings) -> dict[str, Any]:
    async with Services(settings) as services:
        result = await sync_relationships(services, await services.now())
        await drain_notifications(services)
        return result


def sync(settings: Settings) -> dict[str, Any]:
    return run(_sync(settings))  # type: ignore[no-any-return]


def api_get(settings: Settings, path: str, headers: dict[str, str]) -> Any:
    import warnings

    from shared.web.server import build_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    app = build_app(settings, local_operator=False, drain_removals=False, trust_principal_header=True)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        return client.get(path, headers=headers)


def lost_alerts(emulator: Any) -> list[dict[str, Any]]:
    return [m for m in emulator.outbox() if "ended outside this product" in str(m)]


def trail(settings: Settings) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        async with Services(settings) as services:
            return await list_actions(services.storage)

    return [a for a in run(read()) if a["action"] == "access.lost"]


def test_each_cause_is_noticed_alerted_once_listed_and_in_the_trail(
    settings: Settings, emulator: Any
) -> None:
    scenario = lost_scenario()
    audited(settings)
    assert api_get(settings, "/api/lost-access", READER).json() == {"lostAccess": [], "count": 0}

    # The customer's side, at a given emulator time: Adatum (in use) and Proseware (never used since 2024)
    # remove DAP, Relecloud's customer terminates GDAP; someone at the partner sends Lamna's terminate
    # request outside this product (Partner Center); Wingtip's relationship reaches its end.
    at = iso(AS_OF + timedelta(minutes=30))
    emulator.customer_actions(
        [
            {"action": "removeDap", "tenantId": ADATUM, "at": at},
            {"action": "removeDap", "tenantId": PROSEWARE, "at": at},
            {"action": "terminateGdap", "relationshipId": gdap_id(scenario, RELECLOUD), "at": at},
        ]
    )
    lamna_gdap = gdap_id(scenario, LAMNA)
    emulator._client.post(
        f"/v1.0/tenantRelationships/delegatedAdminRelationships/{lamna_gdap}/requests",
        json={"action": "terminate"},
        headers={"Authorization": "Bearer partner-center-user"},
    ).raise_for_status()
    assert not lost_alerts(emulator)  # nothing happened yet at NOW (events are due at +30 min)
    emulator.advance("PT1H")
    # Lamna reads terminationRequested: not an ending yet; the other four have ended.
    assert sync(settings)["lost"] == {"lostAccess": 4, "removedByProduct": 0}
    emulator.advance("PT3H")
    assert sync(settings)["lost"] == {"lostAccess": 1, "removedByProduct": 0}

    body = api_get(settings, "/api/lost-access", READER).json()
    causes = {(r["tenantId"], r["type"]): r for r in body["lostAccess"]}
    assert body["count"] == 5
    assert causes[(ADATUM, "DAP")]["cause"] == "customer"
    assert causes[(PROSEWARE, "DAP")]["cause"] == "microsoftInactivity"  # 120 days of log, no sign-in
    assert causes[(RELECLOUD, "GDAP")]["cause"] == "customer"
    assert causes[(LAMNA, "GDAP")]["cause"] == "partnerOutside"
    assert causes[(WINGTIP, "GDAP")]["cause"] == "expired"
    assert causes[(RELECLOUD, "GDAP")]["endedAt"] == at  # Microsoft's endDateTime, not when it was seen
    assert causes[(ADATUM, "DAP")]["endedAt"] == at  # Partner Center's endDateTime of the DAP customer
    assert causes[(WINGTIP, "GDAP")]["endedAt"] == iso(AS_OF + timedelta(hours=1))
    assert causes[(ADATUM, "DAP")]["lastSignInAt"] == "2026-11-20T21:00:00Z"
    assert causes[(LAMNA, "GDAP")]["stillActive"] is True  # Lamna keeps DAP
    assert causes[(ADATUM, "DAP")]["stillActive"] is False
    ended = [parse_iso(r["endedAt"]) for r in body["lostAccess"]]
    assert ended == sorted(ended, reverse=True)

    alerts = lost_alerts(emulator)
    assert len(alerts) == 5
    assert any("Adatum" in str(m) and "the customer removed the partner" in str(m) for m in alerts)
    proseware = next(m for m in emulator.outbox() if "Proseware" in str(m) and "ended" in str(m))
    assert "Microsoft" in str(proseware)
    rows = trail(settings)
    assert sorted((a["tenantId"], a["result"]) for a in rows) == sorted(
        [
            (ADATUM, "customer"),
            (PROSEWARE, "microsoftInactivity"),
            (RELECLOUD, "customer"),
            (LAMNA, "partnerOutside"),
            (WINGTIP, "expired"),
        ]
    )

    # Once: later syncs add no alert and no trail row.
    emulator.advance("PT1H")
    assert sync(settings)["lost"] == {"lostAccess": 0, "removedByProduct": 0}
    assert len(lost_alerts(emulator)) == 5
    assert len(trail(settings)) == 5


def test_ja_alert(settings: Settings, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_PARTNER_LANGUAGE", "ja")
    settings = settings_with()
    sync(settings)
    emulator.customer_actions({"action": "removeDap", "tenantId": ADATUM})
    sync(settings)
    mail = str([m for m in emulator.outbox() if "Adatum" in str(m)])
    assert "委任された管理者アクセス許可が失われました" in mail
    assert "顧客がパートナーの管理者ロールを削除しました" in mail


def test_the_products_own_removal_is_not_lost_access(settings: Settings, emulator: Any) -> None:
    async def remove() -> None:
        async with Services(settings) as services:
            await audit(services, await services.now())
            await request_removals(services, [LAMNA], requested_by="admin@contoso.example", reason="test")
            await drain_removals(services)

    sync(settings)
    run(remove())
    emulator.advance("PT3H")  # the terminate request completes
    result = sync(settings)
    assert result["lost"]["removedByProduct"] == 2  # DAP and GDAP, both requested by this product
    lost = api_get(settings, "/api/lost-access", READER).json()["lostAccess"]
    assert [r["tenantId"] for r in lost] == [WINGTIP]  # only Wingtip's expiry (it ended an hour after NOW)
    assert not any("Lamna" in str(m) for m in lost_alerts(emulator))
    assert LAMNA not in {a["tenantId"] for a in trail(settings)}


def test_scenario_events_play_the_customer_at_a_given_time(settings: Settings, emulator: Any) -> None:
    scenario = copy.deepcopy(load_example())
    scenario["events"] = [
        {
            "at": iso(AS_OF + timedelta(hours=2)),
            "action": "terminateGdap",
            "relationshipId": gdap_id(scenario, RELECLOUD),
        }
    ]
    emulator.post_scenario(scenario)
    sync(settings)
    emulator.advance("PT1H")
    assert emulator.gdap_relationship(gdap_id(scenario, RELECLOUD))["status"] == "active"
    assert sync(settings)["lost"]["lostAccess"] == 0
    emulator.advance("PT1H")
    rel = emulator.gdap_relationship(gdap_id(scenario, RELECLOUD))
    assert (rel["status"], rel["endDateTime"][:19]) == ("terminated", iso(AS_OF + timedelta(hours=2))[:19])
    assert sync(settings)["lost"]["lostAccess"] == 1
    assert not emulator.state(sign_ins=False).get("events")


def test_bad_customer_action_changes_nothing(settings: Settings, emulator: Any) -> None:
    before = emulator.state(sign_ins=False)
    with pytest.raises(Exception, match="400|404"):
        emulator.customer_actions(
            [
                {"action": "removeDap", "tenantId": ADATUM},
                {"action": "terminateGdap", "relationshipId": "nope"},
            ]
        )
    assert emulator.state(sign_ins=False)["customers"] == before["customers"]


def test_first_sight_of_ended_access_is_history_not_a_loss(settings: Settings) -> None:
    """Fourth Coffee's DAP was already disabled before the product first synced: nothing is reported."""
    assert sync(settings)["lost"] == {"lostAccess": 0, "removedByProduct": 0}


def test_lost_access_route_needs_the_read_role(settings: Settings) -> None:
    assert api_get(settings, "/api/lost-access", {}).status_code == 401
    no_roles = {"X-MS-CLIENT-PRINCIPAL": encode_principal("guest@contoso.example", [])}
    assert api_get(settings, "/api/lost-access", no_roles).status_code == 403


def test_digest_lists_lost_access_once(
    settings: Settings, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partner digest (enforce mode: the digest of a run that did something) lists it once."""
    monkeypatch.setenv("POLICY_MODE", "enforce")
    settings = settings_with()

    async def cycle() -> dict[str, Any]:
        async with Services(settings) as services:
            summary = await run_cycle(services, await services.now())
            await drain_notifications(services)
            return summary

    sync(settings)
    emulator.customer_actions({"action": "removeDap", "tenantId": ADATUM})
    emulator.advance("PT1H")
    run(cycle())
    digests = [m for m in emulator.outbox() if "Delegated admin enforcement" in str(m)]
    assert len(digests) == 1
    assert "2 lost access" in str(digests[0])  # Adatum's DAP, Wingtip's expiry
    assert "Adatum" in str(digests[0]) and "removed by the customer" in str(digests[0])
    emulator.advance("PT1H")
    run(cycle())
    digests = [m for m in emulator.outbox() if "lost access" in str(m) and "enforcement" in str(m)]
    assert len(digests) == 1


@pytest.mark.parametrize(
    ("ending", "last", "cause"),
    [
        (Ending("DAP", "active", "disabled", AS_OF), AS_OF - timedelta(days=89), "customer"),
        (Ending("DAP", "active", "disabled", AS_OF), AS_OF - timedelta(days=90), "microsoftInactivity"),
        (Ending("DAP", "active", "disabled", AS_OF), None, "customer"),
        (Ending("GDAP", "active", "terminated", AS_OF), None, "customer"),
        (Ending("GDAP", "terminating", "terminated", AS_OF), None, "partnerOutside"),
        (Ending("GDAP", "active", "expired", AS_OF), None, "expired"),
        (
            Ending("GDAP", "active", "terminated", AS_OF, previous_ends_at=AS_OF - timedelta(hours=1)),
            None,
            "expired",
        ),
    ],
)
def test_cause_rules(ending: Ending, last: Any, cause: str) -> None:
    assert infer_cause(ending, product_removal=None, last_activity=last).cause == cause
    assert infer_cause(ending, product_removal="r1", last_activity=last).cause == "product"


def test_the_demo_estate_shows_every_cause(
    settings: Settings, emulator: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make demo``'s estate (its generator options, the Graph log kept 120 days where the demo imports the
    older history from its sign-in archive): two hours after ``now`` each cause has happened."""
    import json
    import subprocess

    from tools.emulator.generate import command

    out = tmp_path / "estate.json"
    subprocess.run(
        command(
            customers=300,
            signins=20000,
            days=90,
            retention_days=120,
            seed=42,
            now=NOW,
            lost_access=1,
            out=out,
        ),
        check=True,
    )
    scenario = json.loads(out.read_text(encoding="utf-8"))
    emulator.post_scenario(scenario)
    monkeypatch.setenv("NOTIFY_SENDER", scenario["partner"]["senderMailbox"])
    settings = settings_with()
    audited(settings)
    emulator.advance("PT2H")
    sync(settings)
    body = api_get(settings, "/api/lost-access", READER).json()
    found = [(r["type"], r["cause"]) for r in body["lostAccess"]]
    for case in (
        ("DAP", "customer"),
        ("DAP", "microsoftInactivity"),
        ("GDAP", "customer"),
        ("GDAP", "expired"),
    ):
        assert found.count(case) == 1, found
    # The estate also holds terminations someone at the partner requested before the product ran: they
    # complete within the two hours and are terminations this product did not make.
    terminating = {
        r["id"]
        for c in scenario["customers"]
        for r in c["gdapRelationships"]
        if r["status"] in ("terminationRequested", "terminating")
    }
    outside = {r["relationshipId"] for r in body["lostAccess"] if r["cause"] == "partnerOutside"}
    assert outside <= terminating and len(found) == 4 + len(outside)
    assert len(lost_alerts(emulator)) == len(found)


def test_a_crash_mid_way_is_finished_by_the_next_sync_without_repeats(
    settings: Settings, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording the ending fails (the relationship's new state is not written before it, so the next sync
    sees the change again), then the alert fails after the trail row: nothing is lost, and the next syncs
    finish it with one trail row and one alert."""
    import shared.lost.service as service
    import shared.relationships.store as store

    audited(settings)
    emulator.customer_actions({"action": "removeDap", "tenantId": ADATUM})
    real_create = store.create_if_absent

    async def failing_create(table: Any, entity: Any) -> Any:
        raise RuntimeError("storage went away")

    monkeypatch.setattr(store, "create_if_absent", failing_create)
    with pytest.raises(RuntimeError, match="storage went away"):
        sync(settings)
    monkeypatch.setattr(store, "create_if_absent", real_create)

    real_alert = service.enqueue_partner_alert

    async def failing_alert(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("queue went away")

    monkeypatch.setattr(service, "enqueue_partner_alert", failing_alert)
    assert "lost" not in sync(settings)  # the relationship row is written now; the alert failed
    assert [a["tenantId"] for a in trail(settings)] == [ADATUM]
    assert not lost_alerts(emulator)
    monkeypatch.setattr(service, "enqueue_partner_alert", real_alert)

    assert sync(settings)["lost"] == {"lostAccess": 1, "removedByProduct": 0}
    assert sync(settings)["lost"] == {"lostAccess": 0, "removedByProduct": 0}
    assert len(lost_alerts(emulator)) == 1 and len(trail(settings)) == 1
    [row] = api_get(settings, "/api/lost-access", READER).json()["lostAccess"]
    assert (row["tenantId"], row["cause"]) == (ADATUM, "customer")


def test_without_a_sender_the_alert_waits_for_one(
    settings: Settings, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    audited(settings)
    emulator.customer_actions({"action": "removeDap", "tenantId": ADATUM})
    monkeypatch.delenv("NOTIFY_SENDER")
    unsent = settings_with()
    assert sync(unsent)["lost"] == {"lostAccess": 0, "removedByProduct": 0}
    assert len(trail(settings)) == 1 and not lost_alerts(emulator)
    assert api_get(settings, "/api/lost-access", READER).json()["count"] == 1  # shown all the same
    assert sync(settings)["lost"] == {"lostAccess": 1, "removedByProduct": 0}  # NOTIFY_SENDER set again
    assert len(lost_alerts(emulator)) == 1 and len(trail(settings)) == 1
