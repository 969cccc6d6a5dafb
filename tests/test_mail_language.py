"""Every mail template rendered in both languages, written to ``test-artifacts/mails/`` for people to
read: no code value (``terminationRequested``, ``enforce``, a reason as the code wrote it) reaches the
reader, Japanese mail has no English sentence in it, times are in the zone of the mail's language (JST
for Japanese, UTC for English, always named), and English counts are singular when they are one."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from shared.domain.models import GLOBAL_ADMINISTRATOR
from shared.notifications.mail import TEMPLATES, render
from tests.conftest import ROOT

MAILS = ROOT / "test-artifacts" / "mails"
TENANT = "ec66a787-95e7-41d1-b731-af10506bf2ef"
HELPDESK = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
BASE = {"partnerName": "Contoso Partner", "contact": "notices@contoso-partner.example", "removeAfterDays": 90}
CUSTOMER = {"customerName": "株式会社東京印刷", "domain": "tokyoinsatsu.onmicrosoft.com", "tenantId": TENANT}
ONE = {"displayName": "Adatum", "tenantId": TENANT}

# The reasons as the product writes them (shared.removals.worker, shared.evaluation.policy and .run).
SKIPS = [
    "excluded (EXCLUDED_TENANTS)",
    "coverage: the sign-in log held since 2026-08-23T00:00:00Z proves only 60 days of inactivity",
    f"removal {TENANT}-s1 for this inactivity stretch is already completed",
    "skipped: signed in since: an agent signed in at 2026-11-20T15:29:00Z (non-interactive, after "
    "2026-11-20T00:00:00Z)",
    "failed: no longer active (DAP Adatum: disabled, GDAP Adatum-helpdesk: terminationRequested)",
    "not finished in this run (status requested)",
]
HALTED = "circuit breaker: 40 removal candidates, more than MAX_REMOVALS_PER_RUN (25)"

MAIL: list[tuple[str, str, dict[str, Any]]] = [
    (
        "customer-removal",
        "policy",
        {
            **CUSTOMER,
            "removedAt": "2026-11-21T15:05:00Z",
            "source": "policy",
            "inactiveDays": 1,
            "lastSignInAt": "2026-08-18T20:00:00Z",
            "dap": True,
            "gdap": [{"displayName": "Tokyo-helpdesk", "roles": [HELPDESK]}],
            "reason": "",
        },
    ),
    (
        "customer-removal",
        "manual",
        {
            **CUSTOMER,
            "removedAt": "2026-11-21T15:05:00Z",
            "source": "manual",
            "inactiveDays": 95,
            "lastSignInAt": None,
            "dap": False,
            "gdap": [{"displayName": "Tokyo-admin", "roles": [GLOBAL_ADMINISTRATOR, HELPDESK]}],
            "reason": "契約終了のため",
        },
    ),
    (
        "customer-warning",
        "",
        {
            **CUSTOMER,
            "removeOn": "2026-12-05",
            "inactiveDays": 80,
            "lastSignInAt": "2026-09-01T23:30:00Z",
            "dap": True,
            "gdap": [{"displayName": "Tokyo-helpdesk", "roles": [HELPDESK]}],
        },
    ),
    (
        "customer-gdap-invitation",
        "",
        {
            **CUSTOMER,
            "link": "https://admin.microsoft.com/AdminPortal/Home#/partners/invitation/granularAdminRelationships/r1",
            "relationshipName": "Tokyo-helpdesk",
            "templateName": "ヘルプデスク",
            "roles": [HELPDESK],
            "durationDays": 730,
            "autoExtend": True,
        },
    ),
    (
        "partner-warning",
        "",
        {
            "customers": [
                {
                    **ONE,
                    "removeOn": "2026-12-01",
                    "inactiveForAtLeastDays": 1,
                    "lastSignInAt": None,
                    "relationships": ["DAP", "GDAP Adatum-helpdesk"],
                }
            ],
            "more": 1,
        },
    ),
    (
        "partner-digest",
        "halted",
        {
            "summary": {
                "asOf": "2026-11-21T06:30:00Z",
                "mode": "enforce",
                "halted": HALTED,
                "removals": [{**ONE, "inactiveForAtLeastDays": 1, "relationships": ["DAP"]}],
                "warned": [{**ONE, "removeOn": "2026-12-01"}],
                "skipped": [{**ONE, "reason": reason} for reason in SKIPS],
            },
            "more": 0,
        },
    ),
    (
        "partner-digest",
        "report",
        {
            "summary": {
                "asOf": "2026-11-21T06:30:00Z",
                "mode": "report",
                "halted": None,
                "removals": [],
                "warned": [],
                "skipped": [],
            },
            "more": 0,
        },
    ),
    (
        "partner-alert",
        "breaker",
        {
            "alert": "breaker",
            "asOf": "2026-11-21T06:30:00Z",
            "candidates": 1,
            "limit": 25,
            "customers": [{**ONE, "inactiveForAtLeastDays": 1}],
        },
    ),
    (
        "partner-alert",
        "stale",
        {"alert": "stale", "asOf": "2026-11-21T06:30:00Z", "lastSuccess": None, "hours": 6, "error": ""},
    ),
    (
        "partner-alert",
        "poison",
        {
            "alert": "poison",
            "queue": "removals",
            "attempts": 5,
            "removalId": "r1",
            **ONE,
            "detail": "gave up after 5 attempts",
        },
    ),
    (
        "partner-alert",
        "coverage",
        {
            "alert": "coverage",
            "count": 1,
            "coverageFrom": "2026-11-01T00:00:00Z",
            "customers": [{**ONE, "inactiveForAtLeastDays": 20}],
        },
    ),
    (
        "partner-alert",
        "failed",
        {
            "alert": "failed",
            "asOf": "2026-11-21T06:30:00Z",
            "run": "removal",
            **ONE,
            "detail": "Adatum: nothing to remove",
        },
    ),
    (
        "partner-alert",
        "mail",
        {
            "alert": "mail",
            "asOf": "2026-11-21T06:30:00Z",
            "detail": "mail: customer notices cannot be sent (ErrorAccessDenied); nothing is "
            "removed until a mail goes out again",
        },
    ),
    (
        "partner-gdap-digest",
        "",
        {
            "asOf": "2026-11-21T06:30:00Z",
            "counts": {"1": 1, "7": 1, "30": 1},
            "more": 0,
            "relationships": [
                {
                    "customerName": "Adatum",
                    "tenantId": TENANT,
                    "displayName": "Adatum-helpdesk",
                    "endsAt": "2026-11-21T23:00:00Z",
                    "expiresInDays": 1,
                    "includesGlobalAdministrator": True,
                }
            ],
            "globalAdmins": [
                {
                    "customerName": "Adatum",
                    "tenantId": TENANT,
                    "displayName": "Adatum-admin",
                    "relationshipId": "rel-1",
                    "removal": {"state": "failed", "reason": "no longer listed"},
                }
            ],
        },
    ),
]

# Codes a reader must never see: Microsoft's statuses, the product's action names, modes and results,
# and the English words the code builds reasons from.
CODES = re.compile(
    r"terminationRequested|approvalPending|matchingRoles|notFound|removal\.\w+|mode (?:enforce|report)\b"
    r"|\(s\)|\b[a-z]+[A-Z][a-z]+[A-Za-z]*\b"
)
# What Japanese text may hold in Latin letters: product and Microsoft names, settings, permissions,
# commands, the zone, and the data of the mail itself.
ALLOWED_IN_JAPANESE = re.compile(
    r"Delegated Admin Monitor|Microsoft(?: 365)?|Azure(?: portal)?|Entra(?: ID)?|Office|GDAP|DAP|ID|P1|P2|IAM"
    r"|JST|AuditLog\.Read\.All|Mail\.Send|[A-Z][A-Z_]+[A-Z]|python -m shared\.cli gdap [a-z-]+(?: --[a-z-]+)*"
    r"|https?://\S+|mailto:\S+|\S+@\S+|ErrorAccessDenied"
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) and value else []


def _readable(text: str, markup: bool) -> str:
    if markup:
        text = re.sub(r"<style.*?</style>|<[^>]+>", " ", text, flags=re.S)
        text = html.unescape(text)
    return text


def test_every_template_is_covered() -> None:
    names = {p.name.split(".")[0] for p in (TEMPLATES / "en").iterdir()}
    assert names == {kind.replace("-", "_") for kind, _, _ in MAIL}
    assert names == {p.name.split(".")[0] for p in (TEMPLATES / "ja").iterdir()}


@pytest.mark.parametrize(
    ("kind", "variant", "context"), MAIL, ids=[f"{k}-{v}".strip("-") for k, v, _ in MAIL]
)
def test_mail_reads_in_its_language(kind: str, variant: str, context: dict[str, Any]) -> None:
    MAILS.mkdir(parents=True, exist_ok=True)
    data = {**BASE, **context}
    name = f"{kind}-{variant}".strip("-")
    values = sorted(
        {
            s
            for s in _strings(data)
            if not s.startswith(
                (
                    "20",
                    "excluded",
                    "coverage",
                    "removal ",
                    "skipped:",
                    "failed:",
                    "not finished",
                    "circuit",
                    "gave up",
                    "mail:",
                    "no longer",
                    "Adatum: nothing",
                )
            )
        }
        | {"Adatum-helpdesk", "Adatum-admin", "Tokyo-helpdesk", "Tokyo-admin", "rel-1", "r1"},
        key=len,
        reverse=True,
    )
    for language in ("en", "ja"):
        mail = render(kind, language, data)
        (MAILS / f"{name}-{language}.html").write_text(mail.html, encoding="utf-8")
        (MAILS / f"{name}-{language}.txt").write_text(
            f"Subject: {mail.subject}\n\n{mail.text}", encoding="utf-8"
        )
        for markup, text in ((False, mail.subject), (False, mail.text), (True, mail.html)):
            readable = _readable(text, markup)
            leftover = readable
            for value in values:
                leftover = leftover.replace(value, " ")
            assert not CODES.search(leftover), (language, name, CODES.findall(leftover), readable)
            if language == "ja":
                assert "UTC" not in readable, (name, readable)
                latin = re.findall(
                    r"[A-Za-z][A-Za-z'-]+(?: [A-Za-z][A-Za-z'-]+)*", ALLOWED_IN_JAPANESE.sub(" ", leftover)
                )
                assert not latin, (name, latin, readable)
            else:
                assert "JST" not in readable and not re.search(
                    r"\b1 (days|customers|candidates|relationships)\b", readable
                ), (name, readable)


def test_japanese_mail_breaks_lines_between_phrases() -> None:
    """Mail clients built on Chromium break Japanese between phrases, not inside a word (削|除)."""
    context = {**BASE, **MAIL[0][2]}
    assert "word-break: auto-phrase" in render("customer-removal", "ja", context).html
    assert "auto-phrase" not in render("customer-removal", "en", context).html


def test_times_follow_the_language_of_the_mail() -> None:
    """15:05 UTC on 21 November is 00:05 on 22 November in Japan: the Japanese notice says so."""
    context = {**BASE, **MAIL[0][2]}
    ja, en = render("customer-removal", "ja", context), render("customer-removal", "en", context)
    assert "2026年11月22日 00:05 JST" in ja.text and "2026年11月22日 00:05 JST" in ja.html
    assert "2026-11-21 15:05 UTC" in en.text
    # A day is the day in that zone: 20:00 UTC on 18 August is already 19 August in Japan.
    assert "2026年8月19日" in ja.text and "2026-08-18" in en.text


def test_reasons_and_modes_are_japanese_in_japanese_mail() -> None:
    ja = render("partner-digest", "ja", {**BASE, **MAIL[5][2]}).text
    assert "(モード: 適用モード)" in ja
    assert "サーキット ブレーカー: 削除候補 40 件が MAX_REMOVALS_PER_RUN (25) を超えています" in ja
    assert "除外 (EXCLUDED_TENANTS)" in ja
    assert (
        "スキップ: その後サインインあり: エージェントが 2026年11月21日 00:29 JST にサインインしました" in ja
    )
    assert "失敗: 有効ではなくなりました (DAP Adatum: 無効、GDAP Adatum-helpdesk: 終了を要求済み)" in ja
    en = render("partner-digest", "en", {**BASE, **MAIL[5][2]}).text
    assert "(enforce mode)" in en and "1 day;" in en
