"""Mail: templates (language, escaping, one-line subjects), idempotent sending, failures, settings."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from shared.domain.models import GLOBAL_ADMINISTRATOR
from shared.domain.roles import role_name
from shared.evaluation.audit import audit
from shared.evaluation.run import run_evaluation
from shared.notifications.enqueue import enqueue_partner_alert
from shared.notifications.mail import language_of, render, single_line
from shared.notifications.store import NotificationStore
from shared.notifications.worker import handle_notification_message, process_notification_queue
from shared.platform.actions import list_actions
from shared.platform.settings import SettingsError
from shared.removals.request import request_removals
from shared.services import Services
from tests.conftest import load_example, settings_with
from tests.test_enforcement import (
    ADMINS,
    AS_OF,
    ENFORCE,
    SENDER,
    customer,
    cycle,
    gdap,
    mails,
    recipients,
    with_services,
)

HOSTILE = "<img src=x onerror=alert(1)> \"Evil\" 'Corp'\r\nBcc: attacker@evil.example\u2028X-Injected: 1"
HOSTILE_TENANT = "5a0f4d2c-1b3e-4c5d-9e6f-7a8b9c0d1e2f"


def removal_context(**overrides: Any) -> dict[str, Any]:
    context = {
        "customerName": "Proseware Ltd",
        "domain": "proseware.onmicrosoft.com",
        "tenantId": "ec66a787-95e7-41d1-b731-af10506bf2ef",
        "removedAt": "2026-11-21T00:05:00Z",
        "source": "policy",
        "inactiveDays": 95,
        "lastSignInAt": "2026-08-18T09:00:00Z",
        "dap": True,
        "gdap": [
            {
                "displayName": "Proseware-gdap",
                "roles": [GLOBAL_ADMINISTRATOR, "00000000-aaaa-4bbb-8ccc-dddddddddddd"],
            }
        ],
        "partnerName": "Contoso Partner",
        "contact": SENDER,
        "removeAfterDays": 90,
        "more": 0,
    }
    return {**context, **overrides}


def test_language_follows_the_billing_culture_and_roles_are_named() -> None:
    assert [language_of(c) for c in ("ja-JP", "JA-jp", "ja", "en-US", "en-GB", "fr-FR", "", None)] == [
        "ja",
        "ja",
        "ja",
        "en",
        "en",
        "en",
        "en",
        "en",
    ]
    assert role_name(GLOBAL_ADMINISTRATOR) == "Global Administrator"
    assert role_name(GLOBAL_ADMINISTRATOR, "ja") == "グローバル管理者"
    assert role_name("00000000-aaaa-4bbb-8ccc-dddddddddddd") == "00000000-aaaa-4bbb-8ccc-dddddddddddd"
    ja = render("customer-removal", "ja", removal_context())
    en = render("customer-removal", "en", removal_context())
    assert ja.subject == "Proseware Ltd 様: Contoso Partner の委任された管理者アクセス許可を削除しました"
    for text in (ja.text, ja.html):
        assert "グローバル管理者" in text and "ヘルプデスク管理者" in text and "管理エージェント" in text
        assert "サービス要求" in text and "Azure サブスクリプションのロールの割り当ては" in text
        assert "GDAP" in text and "Proseware-gdap" in text and "95 日間" in text and "2026年8月18日" in text
        assert SENDER in text and "00000000-aaaa-4bbb-8ccc-dddddddddddd" in text
    assert en.subject == "Contoso Partner removed its delegated admin access to Proseware Ltd"
    for text in (en.text, en.html):
        assert "Global Administrator" in text and "Admin Agents" in text and "Helpdesk Agents" in text
        assert "open service requests with Microsoft on your behalf" in text
        assert "Azure subscriptions" in text and "2026-11-21 00:05 UTC" in text and "95 days" in text
        assert "new granular delegated admin privileges (GDAP) relationship request" in text


def test_a_manual_removal_notice_says_the_partner_removed_access_and_why() -> None:
    """An operator removed a customer whose agents signed in yesterday: the notice said "no sign-in for at
    least 0 days". It says the partner removed the access, gives the operator's reason, and speaks of
    inactivity only when there was some (plurals right); a notice queued before the reason was carried
    still renders."""
    reason = "The customer moved to another partner"
    for days, last in ((0, "2026-11-20T09:00:00Z"), (1, "2026-11-19T09:00:00Z"), (0, None)):
        context = removal_context(source="user", inactiveDays=days, lastSignInAt=last, reason=reason)
        en, ja = render("customer-removal", "en", context), render("customer-removal", "ja", context)
        for text in (en.text, en.html):
            assert "at least 0 days" not in text and "1 days" not in text
            assert "reviewed its delegated administrative access to your tenant and removed it" in text
            assert reason in text
            assert ("for at least 1 day (last sign-in: 2026-11-19)" in text) == (days == 1)
            assert ("The last sign-in through it was on 2026-11-20" in text) == (
                days == 0 and last is not None
            )
        for text in (ja.text, ja.html):
            assert "0 日間" not in text and f"理由: 「{reason}」" in text
    old = removal_context(source="user", inactiveDays=0)  # queued before "reason" existed
    assert "removed it." in render("customer-removal", "en", old).text
    policy = render(
        "customer-removal", "en", removal_context(reason="no partner sign-in for at least 95 days")
    )
    assert "giving this reason" not in policy.text and "for at least 95 days" in policy.text


def test_hostile_names_are_text_and_subjects_stay_on_one_line() -> None:
    context = removal_context(
        customerName=HOSTILE,
        partnerName=HOSTILE,
        domain=HOSTILE,
        gdap=[{"displayName": HOSTILE, "roles": [GLOBAL_ADMINISTRATOR]}],
    )
    for language in ("en", "ja"):
        mail = render("customer-removal", language, context)
        assert "\r" not in mail.subject and "\n" not in mail.subject and "\u2028" not in mail.subject
        assert "<img" not in mail.html and "&lt;img src=x onerror=alert(1)&gt;" in mail.html
        assert "&#34;Evil&#34;" in mail.html and "&#39;Corp&#39;" in mail.html
        # In the plain text the name is the same characters, on one line: no line starts with a header.
        assert not any(line.startswith(("Bcc:", "X-Injected:")) for line in mail.text.splitlines())
    assert single_line("a\r\nb\tc\x00d\u2029e\u0085f") == "a b c d e f"
    alert = render(
        "partner-alert",
        "en",
        {
            "alert": "poison",
            "queue": "removals",
            "displayName": HOSTILE,
            "detail": HOSTILE,
            "removalId": "r",
            "tenantId": "t",
            "attempts": 5,
            "removeAfterDays": 90,
            "more": 0,
            "customers": [],
        },
    )
    assert "\n" not in alert.subject and "<img" not in alert.html


def test_hostile_customer_name_through_the_whole_cycle(env: dict[str, str], emulator: Any) -> None:
    scenario = load_example()
    hostile = customer(
        HOSTILE_TENANT,
        HOSTILE,
        culture="ja-JP",
        rels=[
            gdap(
                "44444444-5555-4666-8777-888888888888",
                HOSTILE_TENANT,
                "gdap <b>bold</b>",
                [GLOBAL_ADMINISTRATOR],
            )
        ],
    )
    hostile["contacts"] = ["admin@hostile.example", "not an address\r\nBcc: x@evil.example"]
    scenario["customers"] = [c for c in scenario["customers"] if c["displayName"] in ("Adatum Ltd",)] + [
        hostile
    ]
    emulator.post_scenario(scenario)
    summary = cycle(settings_with(**ENFORCE))
    assert summary["removed"] == [HOSTILE_TENANT]
    [notice] = [m for m in mails(emulator) if recipients(m) != [ADMINS]]
    assert recipients(notice) == ["admin@hostile.example"] and notice["ccRecipients"] == []
    assert "\n" not in notice["subject"] and "\r" not in notice["subject"]
    assert notice["subject"].startswith(
        "<img src=x onerror=alert(1)> \"Evil\" 'Corp' Bcc: attacker@evil.example"
    )
    content = notice["body"]["content"]
    assert "<img" not in content and "&lt;img src=x onerror=alert(1)&gt;" in content
    assert "gdap &lt;b&gt;bold&lt;/b&gt;" in content and "<b>bold" not in content
    digest = next(m for m in mails(emulator) if m["subject"].startswith("Delegated admin enforcement"))
    assert "<img" not in digest["body"]["content"]


JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def test_partner_admins_get_their_mail_in_the_partner_language(env: dict[str, str], emulator: Any) -> None:
    """NOTIFY_PARTNER_LANGUAGE=ja: the partner admins' digest is in Japanese; each customer's notice
    still follows its billing-profile culture. (Every partner template's Japanese text: the next test.)"""
    emulator.post_scenario(load_example())
    summary = cycle(settings_with(**ENFORCE, NOTIFY_PARTNER_LANGUAGE="ja"))
    assert summary["removed"]
    partner = [m for m in mails(emulator) if recipients(m) == [ADMINS]]
    customers = [m for m in mails(emulator) if recipients(m) != [ADMINS]]
    assert partner and all(JAPANESE.search(m["subject"]) for m in partner), [m["subject"] for m in partner]
    digest = next(m for m in partner if "削除を予定" in m["body"]["content"])
    assert "Queued for removal" not in digest["body"]["content"]
    assert {JAPANESE.search(m["subject"]) is not None for m in customers} == {True, False}, [
        m["subject"] for m in customers
    ]


@pytest.mark.parametrize(
    ("kind", "context", "needle"),
    [
        (
            "partner-alert",
            {
                "alert": "breaker",
                "asOf": "2026-11-21T00:00:00Z",
                "candidates": 42,
                "limit": 10,
                "customers": [{"displayName": "Adatum", "tenantId": "t1", "inactiveForAtLeastDays": 96}],
            },
            "MAX_REMOVALS_PER_RUN",
        ),
        (
            "partner-alert",
            {"alert": "stale", "asOf": "2026-11-21T00:00:00Z", "lastSuccess": None, "hours": 6, "error": ""},
            "INGESTION_STALE_HOURS",
        ),
        (
            "partner-alert",
            {
                "alert": "poison",
                "queue": "removals",
                "attempts": 5,
                "removalId": "r1",
                "displayName": "Adatum",
                "tenantId": "t1",
                "detail": "boom",
            },
            "r1",
        ),
        (
            "partner-alert",
            {
                "alert": "coverage",
                "count": 1,
                "removeAfterDays": 90,
                "coverageFrom": None,
                "customers": [{"displayName": "Adatum", "tenantId": "t1", "inactiveForAtLeastDays": 40}],
            },
            "Adatum",
        ),
        (
            "partner-warning",
            {
                "customers": [
                    {
                        "displayName": "Adatum",
                        "tenantId": "t1",
                        "removeOn": "2026-12-01",
                        "inactiveForAtLeastDays": 80,
                        "lastSignInAt": None,
                        "relationships": ["DAP"],
                    }
                ],
                "more": 2,
                "removeAfterDays": 90,
            },
            "EXCLUDED_TENANTS",
        ),
        (
            "partner-digest",
            {
                "summary": {
                    "asOf": "2026-11-21T00:00:00Z",
                    "mode": "enforce",
                    "halted": None,
                    "removals": [],
                    "warned": [],
                    "skipped": [],
                }
            },
            "削除を予定",
        ),
        (
            "partner-gdap-digest",
            {
                "asOf": "2026-11-21T00:00:00Z",
                "counts": {"1": 0, "7": 1, "30": 1},
                "more": 0,
                "relationships": [
                    {
                        "customerName": "Adatum",
                        "tenantId": "t1",
                        "displayName": "a-gdap",
                        "endsAt": "2026-11-28T00:00:00Z",
                        "expiresInDays": 7,
                        "includesGlobalAdministrator": True,
                    }
                ],
                "globalAdmins": [
                    {
                        "customerName": "Adatum",
                        "tenantId": "t1",
                        "displayName": "a-gdap",
                        "relationshipId": "rel-1",
                    }
                ],
            },
            "gdap extend --all-expiring",
        ),
    ],
)
def test_every_partner_mail_has_its_japanese_text(kind: str, context: dict[str, Any], needle: str) -> None:
    base = {"partnerName": "Contoso Partner", "contact": SENDER, "removeAfterDays": 90, "more": 0}
    ja, en = render(kind, "ja", {**base, **context}), render(kind, "en", {**base, **context})
    assert JAPANESE.search(ja.subject) and not JAPANESE.search(en.subject), (ja.subject, en.subject)
    for text in (ja.text, ja.html):
        assert JAPANESE.search(text) and needle in text
    assert "\n" not in ja.subject


def test_list_items_stay_on_their_own_lines() -> None:
    """A list line that ends in a block tag lost its newline (trim_blocks): two items ran together."""
    roles = [GLOBAL_ADMINISTRATOR, "729827e3-9c14-49f7-bb1b-9608f156bbb8"]
    warning = removal_context(
        removeOn="2026-12-01",
        gdap=[
            {"displayName": "first-gdap", "roles": roles[:1]},
            {"displayName": "second-gdap", "roles": roles},
        ],
    )
    ending = [
        {
            "customerName": name,
            "tenantId": name,
            "displayName": f"{name}-gdap",
            "expiresInDays": 7,
            "endsAt": "2026-11-28T00:00:00Z",
            "includesGlobalAdministrator": ga,
        }
        for name, ga in (("first", True), ("second", False))
    ]
    digest = {
        "asOf": "2026-11-21T00:00:00Z",
        "counts": {"1": 0, "7": 2, "30": 2},
        "more": 1,
        "relationships": ending,
        "globalAdmins": [],
    }
    for language in ("en", "ja"):
        for kind, context in (
            ("customer-warning", warning),
            ("customer-removal", warning),
            ("partner-gdap-digest", digest),
        ):
            lines = render(kind, language, context).text.splitlines()
            assert [
                sum("first-gdap" in line for line in lines),
                sum("second-gdap" in line for line in lines),
            ] == [1, 1] and not any("first-gdap" in line and "second-gdap" in line for line in lines), (
                kind,
                language,
                lines,
            )


def test_a_notification_is_sent_once_however_often_it_is_delivered(
    env: dict[str, str], emulator: Any
) -> None:
    settings = settings_with(**ENFORCE)

    async def go(services: Services) -> list[str]:
        await enqueue_partner_alert(
            services,
            "breaker",
            "breaker:test",
            {"detail": "d", "asOf": "2026-11-21T00:00:00Z", "candidates": 30, "limit": 25, "customers": []},
        )
        queue = services.storage.queue("notifications")
        message = await queue.receive_message()
        assert message is not None
        body = str(message.content)
        outcomes = [
            await handle_notification_message(services, body, message_id="m-1"),
            await handle_notification_message(services, body, message_id="m-1", dequeue_count=2),
        ]
        outcomes += await asyncio.gather(
            handle_notification_message(services, body, message_id="m-2"),
            handle_notification_message(services, body, message_id="m-3"),
        )
        return outcomes

    outcomes = run(with_services(settings, go))
    assert outcomes == ["sent"] * 4
    [mail] = mails(emulator)
    assert recipients(mail) == [ADMINS]
    assert mail["subject"] == "ALERT: removals halted by the circuit breaker (30 candidates, limit 25)"
    assert emulator.outbox()[0]["from"] == SENDER


def test_send_failures_are_retried_and_bad_recipients_recorded(env: dict[str, str], emulator: Any) -> None:
    settings = settings_with(**ENFORCE)
    emulator.add_faults([{"method": "POST", "pathPrefix": "/v1.0/users/", "status": 403, "times": 2}])

    async def go(services: Services) -> dict[str, Any]:
        await enqueue_partner_alert(
            services, "stale", "stale:test", {"detail": "x", "asOf": None, "hours": 6}
        )
        from shared.notifications.enqueue import enqueue_notification

        await enqueue_notification(
            services.storage,
            "customer-removal",
            "customer-removal:nobody",
            {"recipients": ["no address", "a@b"], "customerName": "Nobody", "tenantId": HOSTILE_TENANT},
            HOSTILE_TENANT,
        )
        handled = await process_notification_queue(services)
        row = await NotificationStore(services.storage).get("alert:stale:test")
        return {
            "handled": handled,
            "row": row,
            "trail": await list_actions(services.storage, tenant_id=HOSTILE_TENANT),
        }

    result = run(with_services(settings, go))
    assert result["handled"] == 2
    assert len(mails(emulator)) == 1  # failed twice (left on the queue), then sent once
    assert result["row"].status == "sent" and result["row"].attempts == 3
    [skipped] = result["trail"]
    assert skipped["action"] == "notification.customer-removal" and skipped["result"] == "skipped"
    assert "no valid recipient" in skipped["detail"]


def test_mail_needs_a_sender(env: dict[str, str], emulator: Any) -> None:
    settings = settings_with(**{k: v for k, v in ENFORCE.items() if k != "NOTIFY_SENDER"})

    async def go(services: Services) -> None:
        with pytest.raises(SettingsError, match="NOTIFY_SENDER"):
            await run_evaluation(services, AS_OF)
        assert await services.evaluations.latest() is None  # nothing written
        await audit(services, AS_OF)
        with pytest.raises(SettingsError, match="NOTIFY_SENDER"):
            await request_removals(
                services,
                ["92276658-1e27-41c0-8a6a-63ec24ede6a4"],
                requested_by="ops@contoso.example",
                reason="x",
            )
        # Report mode without partner addresses mails nothing, so it needs no sender.
        quiet = Services(settings_with(POLICY_MODE="report"))
        try:
            summary = await run_evaluation(quiet, AS_OF)
        finally:
            await quiet.close()
        assert summary["halted"] is None

    run(with_services(settings, go))
    assert emulator.outbox() == []


def run(coro: Any) -> Any:
    return asyncio.run(coro)
