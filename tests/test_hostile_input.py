"""Customer-controlled strings that are also markup, formulas, OData, header injections or odd Unicode.

Customers choose their organisation's name and their billing contact, and both reach the product
through Partner Center and Graph. Each must come out inert everywhere: the audit (JSON, CSV without
formula injection, the terminal table), the API, the portal (a real browser: text, never markup),
and mail (one-line subjects, no injected recipients, escaped HTML). No name ever reaches an OData
query, and no name breaks the processing of any other customer.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import json
import re
import unicodedata
import uuid
import warnings
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import pytest

from shared.evaluation.formats import report_csv, report_table
from shared.evaluation.run import run_cycle
from shared.platform.settings import Settings
from shared.platform.timeutil import parse_iso
from shared.services import Services
from shared.web.auth import READ_ROLE, REMOVE_ROLE, encode_principal
from shared.web.server import build_app
from tests.browser import chromium, opened_page, serve, serve_environment, shot
from tests.conftest import TEST_PACE, load_example
from tools import chaos

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

AS_OF = parse_iso("2026-11-21T00:00:00Z")
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
HOSTILE_CONTACTS = [
    "evil@x.example\r\nBcc: victim@y.example",
    "a@b.example>, <c@d.example",
    '"x" <evil@x.example>',
    "=cmd|' /C calc'!A0@x.example",
]
HOSTILE_CULTURE = "ja-JP\r\nX-Injected: 1"
HOSTILE_CONTACT_CUSTOMERS = [
    18,
    19,
    20,
    21,
]  # their only contact is hostile: no notice, never a bad recipient
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ENFORCE = {
    "POLICY_MODE": "enforce",
    "RECOMMEND_AFTER_DAYS": "15",
    "REMOVE_AFTER_DAYS": "15",
    "MAX_REMOVALS_PER_RUN": "100",
    "NOTIFY_SENDER": "notices@contoso.example",
    "NOTIFY_PARTNER_ADDRESSES": "admins@contoso.example",
}
FIGURES: dict[str, int] = {}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def tenant_of(n: int) -> str:
    return f"{n:08x}-feed-4bad-8bad-{n:012x}"


def hostile_estate() -> dict[str, Any]:
    """The example plus one customer per hostile name: an active GDAP relationship (also hostile-named),
    DAP for every other one, idle for 30 days (so enforcement removes them and mails them)."""
    scenario = copy.deepcopy(load_example())
    for n, name in enumerate(chaos.HOSTILE_NAMES, start=1):
        tenant = tenant_of(n)
        contacts = [f"admin@hostile{n}.example"]
        if n in HOSTILE_CONTACT_CUSTOMERS:  # the first contact is the billing profile e-mail
            contacts = [HOSTILE_CONTACTS[HOSTILE_CONTACT_CUSTOMERS.index(n)], *contacts]
        scenario["customers"].append(
            {
                "tenantId": tenant,
                "displayName": name,
                "defaultDomainName": f"hostile{n}.onmicrosoft.com",
                "culture": HOSTILE_CULTURE if n == 3 else ("ja-JP" if n % 2 else "en-US"),
                "contacts": contacts,
                "dap": {"enabled": True, "startDateTime": "2026-01-01T00:00:00Z"} if n % 2 == 0 else None,
                "gdapRelationships": [
                    {
                        "id": f"{uuid.UUID(int=n)}-{tenant}",
                        "displayName": name[:50],
                        "status": "active",
                        "duration": "P730D",
                        "createdDateTime": "2026-06-01T00:00:00Z",
                        "activatedDateTime": "2026-06-01T00:00:00Z",
                        "endDateTime": "2028-06-01T00:00:00Z",
                        "autoExtendDuration": "PT0S",
                        "roles": [GLOBAL_ADMIN],
                        "accessAssignments": [
                            {
                                "id": f"aa-{n}",
                                "groupId": "d23f0824-128b-4f33-8c5c-7fd0a6a3a450",
                                "roles": [GLOBAL_ADMIN],
                                "status": "active",
                            }
                        ],
                    }
                ],
            }
        )
    return scenario


HOSTILE_TENANTS = {tenant_of(n): name for n, name in enumerate(chaos.HOSTILE_NAMES, start=1)}


@pytest.fixture(scope="module")
def hostile(azurite: Any, emulator_process: Any) -> dict[str, Any]:
    """One enforcement cycle over the hostile estate (every hostile customer is removed and mailed);
    the tests read what it stored, sent and asked."""
    emulator_process.post_scenario(hostile_estate())
    environment = {
        "AzureWebJobsStorage": azurite.connection_string,
        "STORAGE_PREFIX": "h" + uuid.uuid4().hex[:10],
        "EMULATOR_URL": emulator_process.url,
        **TEST_PACE,
        **ENFORCE,
    }
    settings = Settings.from_env(environment)

    async def cycle() -> tuple[dict[str, Any], dict[str, Any]]:
        async with Services(settings) as services:
            summary = await run_cycle(services, AS_OF)
            latest = await services.evaluations.latest()
            assert latest is not None
            return summary, latest.report  # the evaluation's report: before anything was removed

    summary, report = run(cycle())
    return {
        "settings": settings,
        "environment": environment,
        "summary": summary,
        "report": report,
        "outbox": emulator_process.outbox(),
        "requests": emulator_process.log(all_requests=True),
        "rows": run(chaos.action_rows(settings)),
    }


def inert_line(text: str) -> bool:
    """No control or format character (bidi overrides, zero-width, NUL, ESC, CR, ...) but TAB."""
    return all(ch == "\t" or unicodedata.category(ch)[0] != "C" for ch in text)


# --- the audit report -----------------------------------------------------------------------------------------


def test_names_survive_storage_and_the_report_exactly(hostile: dict[str, Any]) -> None:
    """Every customer is reported, each name byte for byte (JSON is inert by construction), and no
    hostile name stopped the processing of another customer."""
    report = hostile["report"]
    rows = {r["tenantId"]: r for r in report["customers"]}
    assert set(HOSTILE_TENANTS) <= set(rows)
    for tenant, name in HOSTILE_TENANTS.items():
        assert rows[tenant]["displayName"] == name
        assert [r["displayName"] for r in rows[tenant]["relationships"] if r["type"] == "GDAP"] == [name[:50]]
    assert json.loads(json.dumps(report, ensure_ascii=False)) == report
    FIGURES["hostileNames"] = len(chaos.HOSTILE_NAMES)


def check_csv(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    for row in rows:
        for column, value in row.items():
            assert not str(value).startswith(FORMULA_START), (column, value)
    return rows


def test_csv_has_no_formula_and_keeps_the_name(hostile: dict[str, Any]) -> None:
    rows = {r["tenantId"]: r for r in check_csv(report_csv(hostile["report"]))}
    for tenant, name in HOSTILE_TENANTS.items():
        shown = rows[tenant]["displayName"]
        if name.startswith(FORMULA_START):
            assert shown == "'" + name  # a leading quote makes a spreadsheet show it as text
        else:
            assert shown == name


def test_terminal_table_has_no_control_characters(hostile: dict[str, Any]) -> None:
    table = report_table(hostile["report"])
    for line in table.split("\n"):
        assert inert_line(line), repr(line)
    assert "\x1b" not in table and "\u202e" not in table


# --- the API ------------------------------------------------------------------------------------------------

READER = {"X-MS-CLIENT-PRINCIPAL": encode_principal("reader@contoso.example", [READ_ROLE])}
REMOVER = {"X-MS-CLIENT-PRINCIPAL": encode_principal("admin@contoso.example", [READ_ROLE, REMOVE_ROLE])}


@pytest.fixture
def api(hostile: dict[str, Any]) -> Iterator[TestClient]:
    app = build_app(
        hostile["settings"], local_operator=False, drain_removals=False, trust_principal_header=True
    )
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        yield client


SEARCHES = [
    *chaos.HOSTILE_NAMES,
    "' or 1 eq 1",
    "*",
    "%",
    "_",
    "\\",
    "$filter=true",
    "../",
    "%00",
    "\u0000",
    "a" * 200,
    "\ud7ff",
    "🙂",
    "\u202e",
    "<",
    "&amp;",
    "\r\n",
    "null",
    "[]",
    "{}",
]


def test_api_search_and_detail_with_hostile_strings(api: TestClient, hostile: dict[str, Any]) -> None:
    tried = 0
    for q in SEARCHES:
        response = api.get("/api/customers?q=" + quote(q[:200], safe=""), headers=READER)
        tried += 1
        assert response.status_code == 200, (q, response.text)
        assert response.headers["content-type"].startswith("application/json")
        page = response.json()
        needle = unicodedata.normalize("NFKC", q.strip()).casefold()
        for row in page["customers"]:  # a search matches text, never an expression
            hay = unicodedata.normalize(
                "NFKC",
                " ".join(
                    [
                        row["displayName"],
                        row["tenantId"],
                        *row["roleNames"],
                        *(r["displayName"] for r in row["relationships"]),
                        *row["relationshipTypes"],
                    ]
                ),
            ).casefold()
            assert needle in hay, (q, row["displayName"])
    assert api.get("/api/customers?q=" + "a" * 201, headers=READER).status_code == 400
    for tenant, name in HOSTILE_TENANTS.items():
        detail = api.get(f"/api/customers/{tenant}?days=1", headers=READER)
        tried += 1
        assert detail.status_code == 200 and detail.json()["displayName"] == name
    csv_text = api.get("/api/audit?format=csv", headers=READER).content.decode("utf-8")
    assert len(check_csv(csv_text)) == len(hostile["report"]["customers"])
    customers_csv = api.get("/api/customers?format=csv&q=" + quote("=HYPER"), headers=READER)
    assert [r["displayName"] for r in check_csv(customers_csv.content.decode("utf-8"))] == [
        "'" + chaos.HOSTILE_NAMES[2]
    ]
    FIGURES["apiRequests"] = FIGURES.get("apiRequests", 0) + tried + 3


def test_hostile_strings_never_reach_an_odata_query(hostile: dict[str, Any]) -> None:
    """Names are data: no request to Microsoft ever carried one (sync, live re-reads, sign-in probes and
    removals build their filters from GUIDs only)."""
    fragments = ["1 eq 1", "DROP", "onmouseover", "<img", "HYPERLINK", "Bcc", "passwd"]
    assert len(hostile["requests"]) > 50
    for entry in hostile["requests"]:
        for fragment in fragments:
            assert fragment.lower() not in entry["path"].lower(), entry["path"]
    FIGURES["requestsChecked"] = len(hostile["requests"])


class Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, [name for name, _ in attrs]))


def markup_of(html: str) -> list[tuple[str, list[str]]]:
    """The elements a mail client would build from ``html``: names hostile markup would add show up here."""
    parser = Markup()
    parser.feed(html)
    return parser.tags


# --- mail -----------------------------------------------------------------------------------------------------


def test_mail_subjects_recipients_and_html_are_inert(hostile: dict[str, Any]) -> None:
    removed = set(hostile["summary"]["removed"])
    assert set(HOSTILE_TENANTS) <= removed, set(HOSTILE_TENANTS) - removed
    outbox = hostile["outbox"]
    valid = re.compile(r"^[^@\s,;<>\"()\[\]\\]+@[^@\s,;<>\"()\[\]\\]+\.[^@\s,;<>\"()\[\]\\]+$")
    for mail in outbox:
        message = mail["message"]
        subject = message["subject"]
        assert inert_line(subject) and len(subject) <= 255, repr(subject)
        recipients = [
            r["emailAddress"]["address"]
            for key in ("toRecipients", "ccRecipients", "bccRecipients")
            for r in message.get(key) or []
        ]
        assert recipients and all(valid.match(a) for a in recipients), recipients
        assert not any("victim" in a or "evil" in a for a in recipients)
        body = message["body"]["content"]
        if message["body"]["contentType"].lower() == "html":
            tags = markup_of(body)
            assert not {t for t, _ in tags} & {"script", "img", "iframe", "object", "embed", "svg", "form"}, (
                subject
            )
            assert not [a for _, attrs in tags for a in attrs if a.startswith("on") or a == "srcdoc"], subject
    notices = [
        m
        for m in outbox
        if "removed its delegated admin access" in m["message"]["subject"]
        or "削除しました" in m["message"]["subject"]
    ]
    # Every hostile customer with a valid contact was told, in one piece: the name is in the subject,
    # flattened to one line, and escaped in the HTML.
    script = next(m for m in notices if "<script>" in m["message"]["subject"])
    assert "&lt;script&gt;" in script["message"]["body"]["content"]
    injected = next(m for m in notices if m["message"]["subject"].count("Contoso Bcc:") == 1)
    assert [r["emailAddress"]["address"] for r in injected["message"]["toRecipients"]] == [
        "admin@hostile9.example"
    ]
    # A customer whose only contact is hostile gets no notice (skipped, with the reason in the trail),
    # never one to an injected address.
    noticed = {r["emailAddress"]["address"] for m in notices for r in m["message"]["toRecipients"]}
    assert noticed >= {
        f"admin@hostile{n}.example"
        for n in range(1, len(chaos.HOSTILE_NAMES) + 1)
        if n not in HOSTILE_CONTACT_CUSTOMERS
    }
    skipped = {
        r["PartitionKey"]
        for r in hostile["rows"]
        if r["Action"] == "notification.customer-removal" and r["Result"] == "skipped"
    }
    assert skipped == {tenant_of(n) for n in HOSTILE_CONTACT_CUSTOMERS}
    FIGURES["mailsChecked"] = len(outbox)


# --- the portal in a real browser ----------------------------------------------------------------------------


@pytest.fixture
def served(hostile: dict[str, Any]) -> Iterator[str]:
    with serve(serve_environment(hostile["environment"])) as url:
        yield url


@pytest.mark.browser
def test_portal_shows_hostile_names_as_text(served: str) -> None:
    names = set(HOSTILE_TENANTS.values())
    with chromium() as browser, opened_page(browser, served) as opened:
        page = opened.page
        page.wait_for_function(
            "(n) => document.querySelectorAll('#rows tr[data-tenant]').length >= n", arg=min(len(names), 50)
        )
        shown = page.locator("#rows a.name").all_text_contents()
        assert names <= set(shown), names - set(shown)
        assert page.locator("#rows img, #rows script, #rows iframe").count() == 0
        handlers = page.evaluate(
            "() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
            ".filter(n => n.startsWith('on'))"
        )
        assert handlers == []
        shot(page, "hostile-names.png", full_page=True)
        for tenant in (tenant_of(2), tenant_of(8), tenant_of(11)):  # <script>, " onmouseover=, RTL override
            page.goto(f"{served}/#/customers/{tenant}")
            page.wait_for_function(
                "(name) => document.querySelector('#customer-name').textContent === name",
                arg=HOSTILE_TENANTS[tenant],
            )
            assert page.locator("#customer img, #customer script").count() == 0
        assert opened.dialogs == [] and opened.errors == [], (opened.dialogs, opened.errors)
    FIGURES["portalNamesChecked"] = len(names)


@pytest.fixture(scope="module", autouse=True)
def write_figures() -> Any:
    yield
    if FIGURES:
        chaos.record(
            "hostile-input",
            {
                **FIGURES,
                "names": len(chaos.HOSTILE_NAMES),
                "contacts": len(HOSTILE_CONTACTS),
                "searches": len(SEARCHES),
            },
        )
