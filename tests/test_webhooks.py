"""The alert webhook: both bodies as a real loopback receiver gets them, once per key and target,
retries after 429 with Retry-After, a refusing target that holds up no mail, the URL kept secret, and
``webhook test``. Storage is Azurite; the mail and the estate are the emulator's."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.notifications.enqueue import enqueue_partner_alert, enqueue_partner_digest, webhook_delivery_key
from shared.notifications.store import NotificationStore, mail_broken
from shared.notifications.webhook_worker import drain_webhooks, handle_webhook_message
from shared.notifications.worker import process_notification_queue
from shared.platform.actions import list_actions
from shared.platform.settings import Settings, SettingsError
from shared.services import Services
from tests.conftest import run_cli, settings_with
from tests.test_enforcement import (
    ADMINS,
    ENFORCE,
    TAILSPIN,
    cycle,
    estate,
    mails,
    recipients,
    with_services,
)

SECRET = "sig-Zq8s3cr3tZq8"  # the webhook's credential, as a Workflows URL carries it
PORTAL = "https://dam.contoso.example"
HOSTILE_NAME = "[click me](https://evil.example) **Tailspin** <b>x</b>"


class Receiver:
    """A webhook target on loopback: records every POST (path, headers, JSON body, time) and answers
    from a script of (status, headers, body), the last entry repeating."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], str]] = [(200, {}, "")]
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": json.loads(raw.decode("utf-8")),
                            "at": time.monotonic(),
                        }
                    )
                    status, headers, text = (
                        receiver.script.pop(0) if len(receiver.script) > 1 else receiver.script[0]
                    )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                data = text.encode("utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/workflows/alerts") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}?api-version=2016-06-01&sig={SECRET}"

    def answer(self, *script: tuple[int, dict[str, str], str]) -> None:
        with self.lock:
            self.script = list(script)

    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def webhook_settings(receiver: Receiver, fmt: str = "json", **overrides: str) -> Settings:
    return settings_with(
        ALERT_WEBHOOK_URL=receiver.url(), ALERT_WEBHOOK_FORMAT=fmt, PORTAL_URL=PORTAL, **overrides
    )


async def _alert(services: Services, key: str = "breaker:2026-11-21") -> None:
    await enqueue_partner_alert(
        services,
        "breaker",
        key,
        {"detail": "30 candidates", "asOf": "2026-11-21T00:00:00Z", "candidates": 30, "limit": 25},
    )


def _rows(settings: Settings, key: str) -> Any:
    async def go(services: Services) -> Any:
        return await NotificationStore(services.storage).get(key)

    return run(with_services(settings, go))


def _trail(settings: Settings) -> list[dict[str, Any]]:
    return run(with_services(settings, lambda s: list_actions(s.storage)))  # type: ignore[no-any-return]


# --- the generic JSON body, once per key and target --------------------------------------------------


def test_json_event_document_is_posted_once_per_key_and_target(
    env: dict[str, str], emulator: Any, receiver: Receiver
) -> None:
    settings = webhook_settings(receiver)  # no NOTIFY_PARTNER_ADDRESSES: the webhook alone

    async def go(services: Services) -> list[Any]:
        await _alert(services)
        first = await drain_webhooks(services)
        await _alert(services)  # the same alert again (a second run, a redelivery): not posted again
        second = await drain_webhooks(services)
        return [first, second]

    first, second = run(with_services(settings, go))
    assert (first.sent, second.sent, second.processed) == (1, 0, 1)
    [request] = receiver.requests
    assert request["path"].startswith("/workflows/alerts?") and request["headers"]["Content-Type"].startswith(
        "application/json"
    )
    body = request["body"]
    assert set(body) == {
        "schemaVersion",
        "source",
        "id",
        "kind",
        "key",
        "time",
        "subject",
        "text",
        "facts",
    } | {
        "link",
        "data",
    }
    assert body["schemaVersion"] == 1 and body["source"] == "delegated-admin-monitor"
    assert body["kind"] == "partner-alert" and body["key"] == "alert:breaker:2026-11-21"
    assert len(body["id"]) == 32 and body["time"].endswith("Z")
    assert body["subject"] == "ALERT: removals halted by the circuit breaker (30 candidates, limit 25)"
    assert "MAX_REMOVALS_PER_RUN" in body["text"]
    facts = {f["name"]: f["value"] for f in body["facts"]}
    assert facts["Alert"] == "breaker" and facts["Candidates"] == "30"
    assert body["link"] == PORTAL + "/"
    assert body["data"]["alert"] == "breaker" and "recipients" not in body["data"]
    assert mails(emulator) == []  # no mail addresses: nothing mailed

    # The outcome is where the mail's is: the Notifications row and the trail.
    row = _rows(settings, webhook_delivery_key(settings.alert_webhook_url, "alert:breaker:2026-11-21"))
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None
    [sent] = [a for a in _trail(settings) if a["action"] == "webhook.partner-alert"]
    assert sent["result"] == "sent" and "127.0.0.1 (json), HTTP 200" in sent["detail"]

    # Another target is another delivery: it gets the same alert once, the first gets nothing more.
    other = settings_with(
        ALERT_WEBHOOK_URL=receiver.url("/workflows/other"), ALERT_WEBHOOK_FORMAT="json", PORTAL_URL=PORTAL
    )

    async def again(services: Services) -> None:
        await _alert(services)
        await drain_webhooks(services)

    run(with_services(other, again))
    assert [r["path"].split("?")[0] for r in receiver.requests] == ["/workflows/alerts", "/workflows/other"]
    assert receiver.requests[1]["body"]["id"] == body["id"]  # the same event: a receiver can tell


def test_a_delivery_queued_for_an_earlier_url_is_not_posted_to_the_new_one(
    env: dict[str, str], emulator: Any, receiver: Receiver
) -> None:
    old = webhook_settings(receiver)
    run(with_services(old, _alert))
    new = settings_with(ALERT_WEBHOOK_URL=receiver.url("/workflows/new"), PORTAL_URL=PORTAL)
    result = run(with_services(new, drain_webhooks))
    assert result.processed == 1 and result.sent == 0 and receiver.requests == []
    row = _rows(new, webhook_delivery_key(old.alert_webhook_url, "alert:breaker:2026-11-21"))
    assert row.status == "skipped" and "changed" in row.error


def test_a_forged_webhook_message_posts_nothing(
    env: dict[str, str], emulator: Any, receiver: Receiver
) -> None:
    settings = webhook_settings(receiver)

    async def go(services: Services) -> str:
        await services.storage.ensure()
        forged = json.dumps({"v": 1, "key": "webhook:0000000000000000:alert:made-up"})
        return await handle_webhook_message(services, forged, message_id="m1")

    assert run(with_services(settings, go)) == "refused"
    assert receiver.requests == []
    assert any(a["action"] == "webhook.refused" for a in _trail(settings))


# --- the Teams body, from a real cycle ------------------------------------------------------------------


def _text_runs(node: Any, inside_run: bool = False) -> Iterator[tuple[str, bool]]:
    """Every string value of the card with whether it is a TextRun's text."""
    if isinstance(node, dict):
        for name, value in node.items():
            if isinstance(value, str):
                yield value, node.get("type") == "TextRun" and name == "text"
            else:
                yield from _text_runs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _text_runs(item)


def test_teams_adaptive_card_from_an_enforcement_cycle_and_the_mail_goes_too(
    env: dict[str, str], emulator: Any, receiver: Receiver
) -> None:
    scenario = copy.deepcopy(estate())
    next(c for c in scenario["customers"] if c["tenantId"] == TAILSPIN)["displayName"] = HOSTILE_NAME
    emulator.post_scenario(scenario)
    settings = webhook_settings(receiver, "teams", **ENFORCE)
    summary = cycle(settings)
    assert summary["webhooks"]["sent"] == 2 and summary["webhooks"]["failed"] == 0
    kinds = sorted(
        a["action"] for a in _trail(settings) if a["action"].startswith("webhook.") and a["result"] == "sent"
    )
    assert kinds == ["webhook.partner-digest", "webhook.partner-warning"]
    for body in receiver.bodies():
        assert body["type"] == "message"
        [attachment] = body["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
        assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
        assert (
            card["body"][0]["type"] == "RichTextBlock" and card["body"][0]["inlines"][0]["weight"] == "Bolder"
        )
        assert card["body"][1]["type"] == "FactSet"
        assert card["actions"] == [
            {"type": "Action.OpenUrl", "title": "Open the portal", "url": PORTAL + "/"}
        ]
    warning = next(
        b
        for b in receiver.bodies()
        if "will lose delegated admin access" in json.dumps(b, ensure_ascii=False)
    )
    texts = list(_text_runs(warning))
    # The customer's name is in the card, and only as TextRun text: plain text, never Markdown.
    assert any(HOSTILE_NAME in text for text, _ in texts)
    assert all(is_run for text, is_run in texts if "evil.example" in text)
    digest = next(b for b in receiver.bodies() if b is not warning)
    facts = {f["title"]: f["value"] for f in digest["attachments"][0]["content"]["body"][1]["facts"]}
    assert facts["Queued for removal"] == "4" and facts["Policy mode"] == "enforce"
    # The mail went exactly as without a webhook.
    assert any(recipients(m) == [ADMINS] for m in mails(emulator))


# --- retries ------------------------------------------------------------------------------------------


def test_a_429_is_retried_after_its_retry_after(
    env: dict[str, str], emulator: Any, receiver: Receiver
) -> None:
    receiver.answer((429, {"Retry-After": "1"}, "slow down"), (200, {}, ""))
    settings = webhook_settings(receiver)

    async def go(services: Services) -> Any:
        await _alert(services)
        return await drain_webhooks(services)

    result = run(with_services(settings, go))
    assert result.sent == 1 and len(receiver.requests) == 2
    assert receiver.requests[1]["at"] - receiver.requests[0]["at"] >= 0.95  # waited as told
    assert receiver.bodies()[0] == receiver.bodies()[1]
    row = _rows(settings, webhook_delivery_key(settings.alert_webhook_url, "alert:breaker:2026-11-21"))
    assert row.status == "sent" and row.attempts == 1  # one delivery, two POSTs within it


def test_a_long_retry_after_defers_the_message_instead_of_failing_it(
    env: dict[str, str], emulator: Any, receiver: Receiver
) -> None:
    receiver.answer((429, {"Retry-After": "3600"}, ""))
    settings = webhook_settings(receiver)

    async def go(services: Services) -> Any:
        await _alert(services)
        return await drain_webhooks(services)

    result = run(with_services(settings, go))
    assert (result.deferred, result.sent, result.failed) == (1, 0, 0) and len(receiver.requests) == 1
    row = _rows(settings, webhook_delivery_key(settings.alert_webhook_url, "alert:breaker:2026-11-21"))
    assert row.status == "sending" and "HTTP 429" in row.error  # its lease lapsed: the next delivery takes it


def test_a_target_failing_5xx_is_retried_then_given_up_and_mailed(
    env: dict[str, str], emulator: Any, receiver: Receiver
) -> None:
    receiver.answer((503, {}, "unavailable"))
    settings = webhook_settings(
        receiver, NOTIFY_SENDER=ENFORCE["NOTIFY_SENDER"], NOTIFY_PARTNER_ADDRESSES=ADMINS
    )

    async def go(services: Services) -> Any:
        await _alert(services)
        await process_notification_queue(services)  # the alert's mail
        result = await drain_webhooks(services)
        await process_notification_queue(services)  # the mail saying the webhook gave up
        return result

    result = run(with_services(settings, go))
    assert result.failed == 1 and result.sent == 0
    assert len(receiver.requests) == 4 * 5  # four attempts per delivery, five deliveries
    row = _rows(settings, webhook_delivery_key(settings.alert_webhook_url, "alert:breaker:2026-11-21"))
    assert row.status == "failed"
    subjects = [m["subject"] for m in mails(emulator)]
    assert subjects[0].startswith("ALERT: removals halted")
    assert subjects[1] == "ALERT: the alert webhook did not take a message; alerts still come by mail"
    assert len(receiver.requests) == 20  # the alert about the webhook went by mail only


# --- a refusing target holds up no mail ---------------------------------------------------------------


def test_a_target_refusing_4xx_is_not_retried_and_does_not_stop_the_mail(
    env: dict[str, str], emulator: Any, receiver: Receiver
) -> None:
    emulator.post_scenario(estate())
    receiver.answer((404, {}, "flow not found"))
    settings = webhook_settings(receiver, "teams", **ENFORCE)
    summary = cycle(settings)
    # The cycle did everything it does without a webhook: removals, customer notices, partner mail.
    assert summary["halted"] is None and len(summary["removed"]) == 4
    assert summary["webhooks"] == {"processed": 2, "sent": 0, "failed": 2, "deferred": 0}
    assert len(receiver.requests) == 2  # one POST per event: a 404 is not retried
    sent = mails(emulator)
    customer_notices = [m for m in sent if recipients(m) != [ADMINS]]
    assert len(customer_notices) == 4
    partner = [m["subject"] for m in sent if recipients(m) == [ADMINS]]
    assert sum("alert webhook did not take" in s for s in partner) == 2
    assert any(s.startswith("Delegated admin enforcement") for s in partner)
    assert run(with_services(settings, mail_broken)) is None  # the webhook's failure is not the mail's
    failed = [a for a in _trail(settings) if a["action"].startswith("webhook.") and a["result"] == "failed"]
    assert len(failed) == 2 and all("HTTP 404 from 127.0.0.1: flow not found" in a["detail"] for a in failed)

    # Failed is final: the next cycle posts nothing again.
    again = cycle(settings)
    assert again["webhooks"]["failed"] == 0 and len(receiver.requests) == 2


# --- the URL is a secret ------------------------------------------------------------------------------


def test_the_url_is_never_logged_stored_or_shown(
    env: dict[str, str], emulator: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer((500, {}, ""), (400, {}, "bad card"), (200, {}, ""))
    settings = webhook_settings(receiver)
    caplog.set_level(logging.DEBUG)

    async def go(services: Services) -> list[Any]:
        await _alert(services)
        await enqueue_partner_digest(
            services,
            "digest:x",
            {"asOf": "2026-11-21T00:00:00Z", "mode": "report", "halted": None}
            | {"removals": [], "warned": [], "skipped": []},
        )
        await drain_webhooks(services)
        rows = [
            await NotificationStore(services.storage).get(webhook_delivery_key(settings.alert_webhook_url, k))
            for k in ("alert:breaker:2026-11-21", "digest:x")
        ]
        return rows

    rows = run(with_services(settings, go))
    assert [r.status for r in rows] == ["failed", "sent"]
    assert SECRET not in caplog.text
    assert all(SECRET not in json.dumps(r.to_entity()) for r in rows)
    assert all(SECRET not in json.dumps(a) for a in _trail(settings))
    assert settings.describe()["ALERT_WEBHOOK_URL"] == "***"


def test_webhook_settings_are_checked_without_repeating_the_url() -> None:
    with pytest.raises(SettingsError, match="ALERT_WEBHOOK_FORMAT must be 'json' or 'teams'"):
        Settings.from_env({"ALERT_WEBHOOK_FORMAT": "xml"})
    for url in (f"http://hooks.example/x?sig={SECRET}", f"ftp://hooks.example/?sig={SECRET}", SECRET):
        with pytest.raises(SettingsError, match="ALERT_WEBHOOK_URL") as caught:
            Settings.from_env({"ALERT_WEBHOOK_URL": url})
        assert SECRET not in str(caught.value)
    with pytest.raises(SettingsError, match="Key Vault reference App Service could not resolve"):
        Settings.from_env(
            {"ALERT_WEBHOOK_URL": "@Microsoft.KeyVault(VaultName=kv;SecretName=alert-webhook-url)"}
        )
    assert Settings.from_env({"ALERT_WEBHOOK_URL": f"https://prod.logic.azure.com/x?sig={SECRET}"})
    assert Settings.from_env({"ALERT_WEBHOOK_URL": "http://localhost:8080/hook"})
    with pytest.raises(SettingsError, match="PORTAL_URL"):
        Settings.from_env({"PORTAL_URL": "portal"})


# --- webhook test -------------------------------------------------------------------------------------


def test_cli_webhook_test_posts_and_reports(env: dict[str, str], receiver: Receiver) -> None:
    import os

    base = {**os.environ, "ALERT_WEBHOOK_FORMAT": "teams", "PORTAL_URL": PORTAL}
    unset = run_cli("webhook", "test", env=base)
    assert unset.returncode == 2 and "ALERT_WEBHOOK_URL is not set" in unset.stderr

    ok = run_cli("webhook", "test", env={**base, "ALERT_WEBHOOK_URL": receiver.url()})
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["result"] == "sent" and result["status"] == 200 and result["format"] == "teams"
    assert result["target"] == "127.0.0.1"
    [posted] = receiver.bodies()
    card = posted["attachments"][0]["content"]
    assert card["body"][0]["inlines"][0]["text"] == "Delegated Admin Monitor: Test"

    receiver.answer((401, {}, "signature invalid"))
    refused = run_cli("webhook", "test", env={**base, "ALERT_WEBHOOK_URL": receiver.url()})
    assert refused.returncode == 3
    assert refused.stderr.strip() == "error: webhook test failed: HTTP 401 from 127.0.0.1: signature invalid"
    assert SECRET not in refused.stdout + refused.stderr + ok.stdout + ok.stderr
    trail = [a for a in _trail(settings_with()) if a["action"] == "webhook.test"]
    assert sorted(a["result"] for a in trail) == ["failed", "sent"] and {a["actor"] for a in trail} == {"cli"}


# --- the GDAP digest ----------------------------------------------------------------------------------


def test_the_daily_gdap_digest_goes_to_the_webhook_once_without_mail(
    env: dict[str, str], emulator: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_gdap import GROUP_ENV, audit, gdap_scenario, with_service

    emulator.post_scenario(gdap_scenario())
    for name, value in {**GROUP_ENV, "ALERT_WEBHOOK_URL": receiver.url()}.items():
        monkeypatch.setenv(name, value)
    audit()

    async def digest_and_drain(service: Any, services: Services) -> tuple[dict[str, Any], Any]:
        return await service.expiry_digest(), await drain_webhooks(services)

    for _ in range(2):  # the second run of the day (no mail marks the day): nothing posted again
        digest, drained = with_service(digest_and_drain)
        assert digest["result"] == "notConfigured" and digest["webhook"] == "queued"
    assert emulator.outbox() == []
    [body] = receiver.bodies()
    assert body["kind"] == "partner-gdap-digest" and body["key"].startswith("gdap-digest:")
    assert body["subject"].startswith("GDAP: ") and body["data"]["relationships"]


# --- the API ------------------------------------------------------------------------------------------


def test_api_shows_the_webhook_and_posts_a_test_for_operators_only(
    env: dict[str, str], emulator: Any, receiver: Receiver
) -> None:
    from tests.test_api import READER, REMOVER, assert_error, client

    settings = webhook_settings(receiver, "teams")
    same_site = {**REMOVER, "Origin": "http://testserver"}
    with client(settings) as c:
        status = c.get("/api/webhook", headers=READER)
        assert status.status_code == 200 and SECRET not in status.text
        assert status.json() == {
            "configured": True,
            "format": "teams",
            "target": "127.0.0.1",
            "link": PORTAL + "/",
        }
        assert_error(
            c.post("/api/webhook/test", headers={**READER, "Origin": "http://testserver"}, json={}), 403
        )
        assert_error(
            c.post("/api/webhook/test", headers={**REMOVER, "Origin": "https://evil.example"}, json={}), 403
        )
        assert receiver.requests == []  # refused requests post nothing
        sent = c.post("/api/webhook/test", headers=same_site, json={})
        assert sent.status_code == 200 and sent.json()["result"] == "sent" and len(receiver.requests) == 1
        receiver.answer((410, {}, "flow deleted"))
        failed = assert_error(c.post("/api/webhook/test", headers=same_site, json={}), 502, "webhookFailed")
        assert "HTTP 410 from 127.0.0.1" in failed["message"] and failed["result"]["status"] == 410
        assert SECRET not in json.dumps(failed)
    with client(settings_with()) as c:
        assert c.get("/api/webhook", headers=READER).json()["configured"] is False
        assert_error(c.post("/api/webhook/test", headers=same_site, json={}), 503, "notConfigured")
    trail = [a for a in _trail(settings) if a["action"] == "webhook.test"]
    assert sorted(a["result"] for a in trail) == ["failed", "sent"]


# --- the portal ---------------------------------------------------------------------------------------


@pytest.mark.browser
def test_portal_activity_page_shows_the_webhook_and_sends_a_test(
    azurite: Any, emulator: Any, receiver: Receiver
) -> None:
    import uuid

    from shared.evaluation.audit import audit
    from shared.platform.timeutil import parse_iso
    from tests.browser import chromium, opened_page, require_chromium, serve, serve_environment, shot

    require_chromium()
    env = serve_environment(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "STORAGE_PREFIX": "w" + uuid.uuid4().hex[:12],
            "EMULATOR_URL": emulator.url,
            "ALERT_WEBHOOK_URL": receiver.url(),
            "ALERT_WEBHOOK_FORMAT": "teams",
        }
    )

    async def audited() -> None:
        async with Services(Settings.from_env(env)) as services:
            await audit(services, parse_iso("2026-11-21T00:00:00Z"))

    run(audited())
    with serve(env) as url, chromium() as browser, opened_page(browser, url, "en-US") as page:
        p = page.page
        p.goto(f"{url}/#/activity")
        p.wait_for_function(
            "() => document.querySelector('#webhook-status').textContent.includes('Teams webhook at 127.0.0.1')"
        )
        assert SECRET not in p.content()
        p.locator("#webhook-test").click()
        p.wait_for_function(
            "() => document.querySelector('#webhook-result').textContent.startsWith('The webhook took')"
        )
        assert len(receiver.requests) == 1
        p.wait_for_function(
            "() => document.querySelector('#trail-rows').textContent.includes('Webhook: test message')"
        )
        shot(p, "activity-webhook.png")
        receiver.answer((404, {}, "flow not found"))
        p.locator("#webhook-test").click()
        p.wait_for_function(
            "() => document.querySelector('#webhook-result').textContent.includes('HTTP 404 from 127.0.0.1')"
        )
        p.locator("#language").select_option("ja")
        p.wait_for_function(
            "() => document.querySelector('#webhook-title').textContent === 'アラート用 Webhook' && "
            "document.querySelector('#webhook-status').textContent.includes('Teams Webhook') && "
            "document.querySelector('#webhook-result').textContent.startsWith('Webhook がテスト')"
        )
        # (the browser logs the 502 answer of the refused test itself; nothing else)
        assert [e for e in page.errors if "502 (Bad Gateway)" not in e] == [] and page.dialogs == []
