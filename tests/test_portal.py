"""The portal in a real browser (headless Debian Chromium through Playwright).

One ``python -m shared.cli serve --local-operator`` process on a free loopback port serves a generated
estate (Azurite + emulator, audited on several days so the trend has points). Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.evaluation.audit import audit
from shared.platform.settings import Settings
from shared.platform.timeutil import parse_iso
from shared.services import Services
from tests.browser import Page, Portal, require_chromium, serve, serve_environment, shot
from tests.conftest import ROOT
from tools.emulator.generate import command as generate_command

pytestmark = pytest.mark.browser

NOW = "2026-11-21T00:00:00Z"
AUDIT_DAYS = ["2026-11-15T00:00:00Z", "2026-11-17T00:00:00Z", "2026-11-19T00:00:00Z", NOW]
XSS_NAME = "<img src=x onerror=alert(1)>"


def estate(tmp: Path) -> dict[str, Any]:
    out = tmp / "portal-estate.json"
    subprocess.run(
        generate_command(customers=160, signins=4000, days=90, retention_days=90, seed=5, now=NOW, out=out),
        check=True,
        cwd=ROOT,
    )
    scenario: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    # A customer-chosen name that is also HTML: the portal must show it as text.
    target = next(
        c
        for c in scenario["customers"]
        if c.get("gdapRelationships") and any(g["status"] == "active" for g in c["gdapRelationships"])
    )
    target["displayName"] = XSS_NAME
    for rel in target["gdapRelationships"]:
        rel["displayName"] = "xss-" + rel["id"][:8]
    return scenario


@pytest.fixture(scope="module")
def portal(azurite: Any, emulator_process: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    require_chromium()
    scenario = estate(tmp_path_factory.mktemp("portal"))
    emulator_process.post_scenario(scenario)
    env = serve_environment(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "STORAGE_PREFIX": "p" + uuid.uuid4().hex[:12],
            "EMULATOR_URL": emulator_process.url,
            "SIGNIN_BACKFILL_DAYS": "90",
            "NOTIFY_SENDER": scenario["partner"]["senderMailbox"],
        }
    )
    settings = Settings.from_env(env)

    async def audits() -> None:
        async with Services(settings) as services:
            for as_of in AUDIT_DAYS:  # one daily evaluation per day: the emulator's clock moves to it
                emulator_process.set_now(as_of)
                await audit(services, parse_iso(as_of))

    asyncio.run(audits())
    with serve(env) as url:
        yield Portal(url, scenario, emulator_process)


def row_names(page: Any) -> list[str]:
    return [str(x) for x in page.locator("#rows tr[data-tenant] td.customer a.name").all_text_contents()]


def wait_table(page: Any, predicate: str, arg: Any = None) -> None:
    page.wait_for_function(predicate, arg=arg, timeout=10_000)


def test_tiles_show_counts_and_filter_the_table(page: Page, portal: Portal) -> None:
    p = page.page
    summary = portal.api("/api/audit")["summary"]
    total = summary["customersUnderMonitoring"]
    assert p.locator("#headline").text_content() == f"Customers with delegated admin access: {total}"
    expected = {
        "90+": summary["inactiveOver90Days"],
        "61-90": summary["inactive61To90Days"],
        "30-60": summary["inactive30To60Days"],
        "new": summary["establishedLast7Days"],
    }
    assert all(expected.values()), expected  # the estate has customers in every tile
    for bucket, count in expected.items():
        tile = p.locator(f'.tile[data-bucket="{bucket}"]')
        assert tile.locator("[data-count]").text_content() == str(count)
        assert tile.locator("[data-share]").text_content() == f"{100 * count / total:.1f}% of customers"
    shot(p, "dashboard.png")

    p.locator('.tile[data-bucket="90+"]').click()
    wait_table(
        p,
        "() => document.querySelector('.tile[data-bucket=\"90+\"]').getAttribute('aria-pressed') === 'true'"
        " && [...document.querySelectorAll('#rows tr[data-tenant]')].every(r => r.dataset.bucket === '90+')",
    )
    assert p.locator("#range").text_content().endswith(f"of {expected['90+']}")
    assert p.locator("#filter-chip").is_visible()
    shot(p, "dashboard-filter-90.png")

    p.locator('.tile[data-bucket="61-90"]').click()
    wait_table(
        p,
        "() => [...document.querySelectorAll('#rows tr[data-tenant]')].every(r => r.dataset.bucket === '61-90')",
    )
    for i in (1, 3):
        p.locator("#rows tr[data-tenant]").nth(i).locator("input.row-select").check()
    assert p.locator("#remove").is_enabled()
    shot(p, "dashboard-61-90-selected.png")

    # Keyboard: Tab to the 30-60 tile and press Enter; Space on the same tile clears the filter.
    p.locator('.tile[data-bucket="61-90"]').focus()
    p.keyboard.press("Tab")
    assert p.evaluate("document.activeElement.dataset.bucket") == "30-60"
    p.keyboard.press("Enter")
    wait_table(
        p,
        "() => [...document.querySelectorAll('#rows tr[data-tenant]')].length > 0 && "
        "[...document.querySelectorAll('#rows tr[data-tenant]')].every(r => r.dataset.bucket === '30-60')",
    )
    assert p.locator("#range").text_content().endswith(f"of {expected['30-60']}")
    shot(p, "dashboard-filter-30-60.png")
    p.keyboard.press("Space")
    wait_table(p, f"() => document.querySelector('#range').textContent.endsWith('of {total}')")

    p.locator('.tile[data-bucket="new"]').click()
    wait_table(p, f"() => document.querySelector('#range').textContent.endsWith('of {expected['new']}')")
    new_rows = [r for r in portal.api("/api/audit")["customers"] if r["establishedLast7Days"]]
    assert sorted(row_names(p)) == sorted(r["displayName"] for r in new_rows)[:50]
    assert page.dialogs == [] and page.errors == []


def test_days_inactive_for_every_customer_and_the_policy_in_view(page: Page, portal: Portal) -> None:
    """Customers with no sign-in on record showed an empty "Days inactive" (a tooltip only) and sorted last.
    Every row shows what the store proves (inactiveForAtLeastDays, "N+" where the log's start bounds it,
    with what it is counted from), the column sorts by it, the policy and the recommended count are in
    view, and the tile hints follow the configured thresholds."""
    p = page.page
    report = portal.api("/api/audit")
    customers, summary, coverage = report["customers"], report["summary"], report["coverage"]
    assert p.locator('th[data-sort="daysActive"]').text_content() == "Days enabled"
    wait_table(p, "() => document.querySelectorAll('#rows tr[data-tenant]').length === 50")
    by_id = {r["tenantId"]: r for r in customers}
    shown = p.locator("#rows tr[data-tenant]").evaluate_all(
        "rows => rows.map(r => [r.dataset.tenant, r.querySelector('td.inactive .days').textContent,"
        " (r.querySelector('td.inactive .sub') || {}).textContent || ''])"
    )
    rows = [by_id[tenant] for tenant, _, _ in shown]
    # The default order: most inactive first, by the proven figure (blanks no longer sink to the end).
    assert [r["inactiveForAtLeastDays"] for r in rows] == sorted(
        (r["inactiveForAtLeastDays"] for r in customers), reverse=True
    )[:50]
    unbounded = 0
    for (_, days, hint), row in zip(shown, rows, strict=True):
        assert days.rstrip("+") == str(row["inactiveForAtLeastDays"]) and days, row
        assert row["inactiveForAtLeastDays"] <= row["daysActive"]
        if row["lastSignInAt"] is None and row["establishedAt"] < coverage["from"]:
            unbounded += 1
            assert days.endswith("+") and hint.startswith("no sign-in since capture began"), (days, hint)
    assert unbounded, "the estate has customers without any sign-in on record"

    p.locator('th[data-sort="inactiveForAtLeastDays"] button').click()
    wait_table(
        p,
        "() => document.querySelector('th[data-sort=\"inactiveForAtLeastDays\"]').getAttribute('aria-sort')"
        " === 'ascending'",
    )
    least = min(r["inactiveForAtLeastDays"] for r in customers)
    wait_table(
        p,
        "(n) => document.querySelector('#rows td.inactive .days').textContent.replace('+', '') === String(n)",
        least,
    )

    # The sign-in evidence without the Entra sign-in archive: one unbroken stretch, and how to import older.
    card = p.locator("#signin-evidence")
    card.locator("li[data-stretch]").wait_for()
    assert card.locator("li[data-stretch]").count() == 1 and p.locator("#evidence-note").is_hidden()
    evidence = " ".join((card.text_content() or "").split())
    assert "One unbroken stretch, from " in evidence and ": no gaps." in evidence
    assert "Source: the Graph sign-in log" in evidence and "Last archive backfill" not in evidence
    assert "the evidence starts at the Graph sign-in log's 30-day retention" in evidence
    assert "set SIGNIN_ARCHIVE_CONNECTION and run python -m shared.cli archive backfill --from …" in evidence
    assert card.locator("code").text_content() == "python -m shared.cli archive backfill --from …"

    policy = p.locator("#policy-line").text_content()
    assert policy.startswith("Policy: report mode") and "removal recommended after 60 days" in policy
    hints = {
        b: p.locator(f'.tile[data-bucket="{b}"] .tile-hint').text_content() for b in ("90+", "61-90", "30-60")
    }
    assert hints == {
        "90+": "Removal recommended (over 60 days)",
        "61-90": "Removal recommended (over 60 days)",
        "30-60": "No partner sign-in for 30+ days",
    }
    recommended = p.locator('.tile[data-recommendation="remove"]')
    assert recommended.locator("[data-count]").text_content() == str(summary["recommendedForRemoval"])
    recommended.click()
    wait_table(
        p,
        "(n) => document.querySelector('#range').textContent.endsWith('of ' + n)",
        str(summary["recommendedForRemoval"]),
    )
    assert p.locator("#rows .badge.rec-remove").count() == p.locator("#rows tr[data-tenant]").count()
    shot(p, "dashboard-recommended.png")

    idle = next(r for r in rows if r["recommendation"] == "remove" and not r["excluded"])
    p.goto(f"{portal.url}/#/customers/{idle['tenantId']}")
    p.wait_for_function(
        "() => [...document.querySelectorAll('#customer-facts dt')].some(d => d.textContent === 'Removal')"
    )
    facts = dict(
        zip(
            p.locator("#customer-facts dt").all_text_contents(),
            p.locator("#customer-facts dd").all_text_contents(),
            strict=True,
        )
    )
    assert facts["Removal"].startswith("Would be removed from ") and "report mode now" in facts["Removal"]
    assert facts["Days inactive"].startswith(str(idle["inactiveForAtLeastDays"]))
    shot(p, "customer-removal-outlook.png")
    assert page.dialogs == [] and page.errors == []


def test_search_and_sort(page: Page, portal: Portal) -> None:
    p = page.page
    customers = portal.api("/api/audit")["customers"]
    japanese = next(r for r in customers if r["displayName"].startswith("株式会社"))
    fragment = japanese["displayName"][4:8]
    p.locator("#search").fill(fragment)
    expected = sorted(r["displayName"] for r in customers if fragment in r["displayName"])
    wait_table(
        p,
        "(x) => document.querySelectorAll('#rows tr[data-tenant]').length === x.n && "
        "[...document.querySelectorAll('#rows a.name')].every(a => a.textContent.includes(x.fragment))",
        {"n": len(expected), "fragment": fragment},
    )
    assert sorted(row_names(p)) == expected

    p.locator("#search").fill("")
    p.locator('th[data-sort="name"] button').click()
    wait_table(
        p, "() => document.querySelector('th[data-sort=\"name\"]').getAttribute('aria-sort') === 'ascending'"
    )
    wait_table(
        p,
        "(total) => document.querySelector('#range').textContent.endsWith('of ' + total)",
        str(len(customers)),
    )
    by_name = sorted(customers, key=lambda r: (r["displayName"].casefold(), r["tenantId"]))
    wait_table(
        p,
        "(first) => document.querySelector('#rows a.name').textContent === first",
        by_name[0]["displayName"],
    )
    assert row_names(p) == [r["displayName"] for r in by_name[:50]]
    p.locator('th[data-sort="name"] button').click()
    wait_table(
        p, "() => document.querySelector('th[data-sort=\"name\"]').getAttribute('aria-sort') === 'descending'"
    )
    wait_table(
        p,
        "(first) => document.querySelector('#rows a.name').textContent === first",
        by_name[-1]["displayName"],
    )
    # Sign-ins (last day): most first.
    p.locator('th[data-sort="signInsLastDay"] button').click()
    top = max(r["signInsLastDay"] for r in customers)
    wait_table(
        p,
        "(top) => document.querySelector('#rows tr[data-tenant] td:nth-child(5)').textContent === String(top)",
        top,
    )
    # Paging.
    p.locator("#next").click()
    wait_table(p, "() => document.querySelector('#range').textContent.startsWith('51')")
    assert page.dialogs == [] and page.errors == []


def test_customer_names_are_text_never_html(page: Page, portal: Portal) -> None:
    p = page.page
    p.locator("#search").fill("<img")
    wait_table(
        p,
        "(name) => document.querySelectorAll('#rows tr[data-tenant]').length === 1 && "
        "document.querySelector('#rows a.name').textContent === name",
        XSS_NAME,
    )
    assert p.locator("#rows img").count() == 0
    assert p.locator("#rows a.name").inner_text() == XSS_NAME
    p.locator("#rows a.name").click()
    p.wait_for_function(
        "(name) => document.querySelector('#customer-name').textContent === name", arg=XSS_NAME
    )
    assert p.locator("#customer img, #customer-name img").count() == 0
    shot(p, "customer-xss-name.png")
    assert page.dialogs == [] and page.errors == []


def test_customer_detail_shows_activity_chart(page: Page, portal: Portal) -> None:
    p = page.page
    customers = portal.api("/api/audit")["customers"]
    busy = max(customers, key=lambda r: (r["signInsLastDay"], r["tenantId"]))
    p.goto(f"{portal.url}/#/customers/{busy['tenantId']}")
    p.wait_for_function(
        "(name) => document.querySelector('#customer-name').textContent === name", arg=busy["displayName"]
    )
    p.wait_for_selector("#activity svg rect.bar")
    # Both kinds of sign-in, stacked per day: one interactive and one non-interactive bar for each of the 90 days.
    assert p.locator("#activity svg g.day").count() == 90
    assert p.locator("#activity svg rect.bar.s-interactive").count() == 90
    assert p.locator("#activity svg rect.bar.s-noninteractive").count() == 90
    assert p.locator("#activity svg rect.s-interactive:not(.zero)").count() > 0
    assert p.locator("#activity svg rect.s-noninteractive:not(.zero)").count() > 0
    assert p.locator("#relationships table tbody tr").count() >= len(busy["relationships"])
    assert p.locator("#agents table tbody tr").count() > 0
    # Agents by name and UPN, as the sign-in log names them; the user id beside.
    detail = portal.api(f"/api/customers/{busy['tenantId']}?days=90")
    days = detail["signIns"]["days"]
    assert all(0 <= d["nonInteractiveSignIns"] <= d["signIns"] for d in days)
    drawn = p.locator("#activity svg rect.bar").evaluate_all(
        "rects => rects.map(r => [r.classList.contains('s-noninteractive'), Number(r.dataset.count)])"
    )
    non_interactive = sum(d["nonInteractiveSignIns"] for d in days)
    assert non_interactive > 0
    assert sum(n for kind, n in drawn if kind) == non_interactive
    assert sum(n for kind, n in drawn if not kind) == sum(d["signIns"] for d in days) - non_interactive
    legend = p.locator("#activity .legend li").all_text_contents()
    assert [x.split(" (")[0] for x in legend] == ["Interactive", "Non-interactive"]
    label = p.locator("#activity svg").get_attribute("aria-label") or ""
    assert "interactive and non-interactive" in label and f"{non_interactive:,} non-interactive" in label
    kind = {"interactive": "Interactive", "nonInteractive": "Non-interactive", None: ""}[
        busy["lastSignInKind"]
    ]
    facts = dict(
        zip(
            p.locator("#customer-facts dt").all_text_contents(),
            p.locator("#customer-facts dd").all_text_contents(),
            strict=True,
        )
    )
    assert facts["Last sign-in kind"] == kind
    assert facts["Sign-ins (last day)"] == (
        f"{busy['signInsLastDay']:,} ({busy['nonInteractiveSignInsLastDay']:,} non-interactive)"
    )
    first = detail["agents"][0]
    assert first["displayName"] and first["userPrincipalName"].endswith("@contoso-partner.example")
    cells = p.locator("#agents table tbody tr").first.locator("td")
    assert cells.nth(0).text_content() == first["displayName"] + first["userPrincipalName"]
    assert cells.nth(1).text_content() == first["userId"]
    shot(p, "customer-detail.png")
    p.locator("a.back").click()
    p.wait_for_selector("#dashboard:not([hidden])")
    # The trend of the four stored evaluation days.
    p.wait_for_selector("#trend svg path.series")
    assert p.locator("#trend svg path.series").count() == 3
    assert p.locator("#trend svg circle.s-90").count() == len(AUDIT_DAYS)
    shot(p, "dashboard-full.png", full_page=True)
    assert page.dialogs == [] and page.errors == []


def test_a_late_answer_for_the_previous_customer_does_not_replace_the_next(
    page: Page, portal: Portal
) -> None:
    """Opening customer B while customer A's detail is still loading shows B, whatever A's answer does."""
    p = page.page
    customers = sorted(portal.api("/api/audit")["customers"], key=lambda r: r["tenantId"])
    first, second = customers[0], customers[1]
    held: list[Any] = []
    p.route(f"**/api/customers/{first['tenantId']}*", lambda route: held.append(route))
    p.goto(f"{portal.url}/#/customers/{first['tenantId']}")
    p.wait_for_function("() => document.querySelector('#customer-name').textContent !== ''")
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        p.wait_for_timeout(20)
    assert held, "the first customer's request never reached the browser's network layer"
    p.goto(f"{portal.url}/#/customers/{second['tenantId']}")
    p.wait_for_function(
        "(name) => document.querySelector('#customer-name').textContent === name", arg=second["displayName"]
    )
    # Now A's answer arrives, late.
    held[0].continue_()
    p.unroute(f"**/api/customers/{first['tenantId']}*")
    p.wait_for_load_state("networkidle")
    p.wait_for_timeout(200)
    assert p.locator("#customer-name").text_content() == second["displayName"]
    assert p.locator("#customer-tenant").text_content() == second["tenantId"]
    assert page.dialogs == [] and page.errors == []


def test_japanese_ui(page_ja: Page, portal: Portal) -> None:
    p = page_ja.page
    total = portal.api("/api/audit")["summary"]["customersUnderMonitoring"]
    assert p.evaluate("document.documentElement.lang") == "ja"
    assert p.locator("#headline").text_content() == f"委任された管理者アクセス許可を持つ顧客: {total}"
    assert p.locator('.tile[data-bucket="90+"] .tile-label').text_content() == "90 日より長い期間非アクティブ"
    assert p.locator('.tile[data-bucket="new"] .tile-label').text_content() == "過去 7 日間に確立"
    assert p.locator('th[data-sort="recommendation"] button').text_content() == "推奨事項"
    assert p.locator("#remove").text_content() == "委任された管理者アクセス許可を削除"
    shot(p, "dashboard-ja.png")
    busy = max(portal.api("/api/audit")["customers"], key=lambda r: (r["signInsLastDay"], r["tenantId"]))
    p.goto(f"{portal.url}/#/customers/{busy['tenantId']}")
    p.wait_for_selector("#activity svg rect.bar.s-noninteractive")
    legend = p.locator("#activity .legend li").all_text_contents()
    assert [x.split(" (")[0] for x in legend] == ["対話型", "非対話型"]
    assert "最終サインインの種類" in p.locator("#customer-facts dt").all_text_contents()
    shot(p, "customer-ja.png")
    p.goto(f"{portal.url}/#/")
    p.wait_for_selector("#dashboard:not([hidden])")
    # Switchable: English, and back.
    p.locator("#language").select_option("en")
    p.wait_for_function("() => document.querySelector('#headline').textContent.startsWith('Customers with')")
    assert p.evaluate("document.documentElement.lang") == "en"
    p.locator("#language").select_option("ja")
    p.wait_for_function("() => document.querySelector('#headline').textContent.startsWith('委任')")
    assert page_ja.dialogs == [] and page_ja.errors == []


def test_remove_two_customers(page: Page, portal: Portal) -> None:
    p = page.page
    p.locator('.tile[data-bucket="90+"]').click()
    wait_table(
        p,
        "() => [...document.querySelectorAll('#rows tr[data-tenant]')].every(r => r.dataset.bucket === '90+')",
    )
    rows = p.locator("#rows tr[data-tenant]")
    chosen = [rows.nth(0).get_attribute("data-tenant"), rows.nth(1).get_attribute("data-tenant")]
    names = [rows.nth(i).locator("a.name").text_content() for i in (0, 1)]
    assert p.locator("#remove").is_disabled()
    rows.nth(0).locator("input.row-select").check()
    rows.nth(1).locator("input.row-select").check()
    assert p.locator("#selection-count").text_content() == "2 selected"
    p.locator("#remove").click()

    dialog = p.locator("#remove-dialog")
    assert dialog.is_visible()
    # The confirmation says per customer what goes and who is e-mailed (POST /api/removals/preview).
    p.wait_for_function("() => document.querySelectorAll('#remove-list > li[data-tenant]').length === 2")
    assert sorted(dialog.locator("#remove-list > li .name").all_text_contents()) == sorted(names)
    scenario = {c["tenantId"]: c for c in portal.scenario["customers"]}
    for tenant in chosen:
        item = dialog.locator(f'#remove-list > li[data-tenant="{tenant}"]')
        kinds = sorted(item.locator(".removes li").evaluate_all("items => items.map(li => li.dataset.type)"))
        customer = scenario[tenant]
        dap = customer.get("dap") or {}
        expected = (["DAP"] if dap.get("enabled", dap.get("dapEnabled")) else []) + [
            "GDAP" for g in customer.get("gdapRelationships", []) if g["status"] == "active"
        ]
        assert kinds == sorted(expected), (tenant, kinds)
        mail = item.locator(".mail-line").text_content() or ""
        if customer.get("contacts"):  # Partner Center tells the company profile's address: the first
            assert mail == "Notice e-mailed to: " + customer["contacts"][0], mail
        else:
            assert mail.startswith("No notice is e-mailed"), mail
        assert item.locator(".warnings li").count() == 0  # 90+ days inactive and recommended
    assert dialog.locator("#remove-warned").is_hidden()
    consequences = " ".join(dialog.locator(".consequences li").all_text_contents())
    for needle in (
        "service requests",
        "Partner earned credit",
        "approve a new relationship",
        "Azure subscriptions remain",
        "few minutes",
    ):
        assert needle in consequences, needle
    confirm = dialog.locator("#remove-confirm")
    assert confirm.is_disabled()
    # Keyboard: the acknowledgement has focus when the dialog opens; Space ticks it.
    assert p.evaluate("document.activeElement.id") == "remove-ack"
    p.keyboard.press("Space")
    assert dialog.locator("#remove-ack").is_checked() and confirm.is_enabled()
    dialog.locator("#remove-reason").fill("Inactive for more than 90 days")
    shot(p, "remove-dialog.png")
    with p.expect_response(lambda r: r.url.endswith("/api/removals") and r.request.method == "POST") as info:
        confirm.click()
    response = info.value
    assert response.status == 202
    accepted = response.json()["removals"]
    assert sorted(r["tenantId"] for r in accepted) == sorted(chosen)
    assert not dialog.is_visible()

    status = p.locator("#removal-status")
    status.wait_for(state="visible")
    assert sorted(status.locator("li .name").all_text_contents()) == sorted(names)
    assert "may take a few minutes" in (p.locator("#removal-status-note").text_content() or "")
    # A customer whose removal is under way no longer offers Remove: its state stands in the checkbox's place.
    for tenant in chosen:
        row = p.locator(f'#rows tr[data-tenant="{tenant}"]')
        assert row.locator("input.row-select").count() == 0
        assert row.locator("[data-removal-status]").count() == 1
    # serve drains the removal queue itself; Microsoft then terminates GDAP relationships over hours
    # (the emulator's default: 2 h), so the removals are requested until its clock passes that.
    p.wait_for_function(
        "() => [...document.querySelectorAll('#removal-status-list li')].length === 2 && "
        "[...document.querySelectorAll('#removal-status-list li')].every("
        "li => li.dataset.status !== 'queued')",
        timeout=45_000,
    )
    # The state survives a reload (GET /api/removals?since=), and so do the filter and the URL.
    assert "bucket=90%2B" in p.url
    p.reload()
    status.wait_for(state="visible")
    p.wait_for_function("() => document.querySelectorAll('#removal-status-list li').length === 2")
    for tenant in chosen:
        p.locator(f'#rows tr[data-tenant="{tenant}"] [data-removal-status]').wait_for()
    assert p.locator('.tile[data-bucket="90+"]').get_attribute("aria-pressed") == "true"
    before = int((p.locator('.tile[data-bucket="90+"] [data-count]').text_content() or "0").replace(",", ""))
    portal.emulator.advance("PT3H")
    # The portal polls until every removal has finished, then computes the figures again by itself:
    # the removed customers leave the table and the tile, with no "Refresh now".
    p.wait_for_function(
        "() => [...document.querySelectorAll('#removal-status-list li')].length === 2 && "
        "[...document.querySelectorAll('#removal-status-list li')].every("
        "li => ['completed', 'skipped', 'failed'].includes(li.dataset.status))",
        timeout=45_000,
    )
    states = status.locator("li").evaluate_all("items => items.map(li => li.dataset.status)")
    assert states == ["completed", "completed"], states
    p.wait_for_function(
        '(gone) => gone.every(t => !document.querySelector(`#rows tr[data-tenant="${t}"]`))',
        arg=chosen,
        timeout=120_000,  # an on-demand audit (sync, ingest, evaluate) on a loaded machine
    )
    after = int((p.locator('.tile[data-bucket="90+"] [data-count]').text_content() or "0").replace(",", ""))
    assert after == before - 2, (before, after)
    shot(p, "removal-status.png")
    removed = {
        json.dumps(e).lower()
        for e in portal.emulator.log()
        if e["method"] in ("PATCH", "POST") and "sendmail" not in e["path"].lower()
    }
    assert removed and all(any(t in entry for t in chosen) for entry in removed)
    assert page.dialogs == [] and page.errors == []


def test_served_assets_pass_the_csp(page: Page) -> None:
    """The CSP forbids inline code: a violation would be a console error (checked by every test)."""
    p = page.page
    headers = p.evaluate("async () => Object.fromEntries((await fetch('/')).headers)")
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert (
        p.evaluate("getComputedStyle(document.querySelector('.topbar')).backgroundColor") == "rgb(27, 31, 36)"
    )
    assert page.errors == []


def test_serve_refuses_local_operator_on_a_public_host() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "serve", "--host", "0.0.0.0", "--local-operator"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true"},
    )
    assert result.returncode == 2 and "loopback" in result.stderr
    assert time.monotonic() - started < 60


def test_activity_page_lists_the_audit_trail_translated(page: Page, portal: Portal) -> None:
    """The Activity page lists /api/actions newest first (who, what, when, why, result), filters by
    customer, and shows actions and results in words, never as recorded ("removal.completed")."""
    p = page.page
    trail = portal.api("/api/actions?limit=100")["actions"]
    assert trail, "the removals of the earlier test are in the trail"
    p.goto(f"{portal.url}/#/activity")
    p.wait_for_function(
        "(n) => document.querySelectorAll('#trail-rows tbody tr').length === n",
        arg=len(trail),
        timeout=10_000,
    )
    cells = p.locator("#trail-rows tbody tr").first.locator("td").all_text_contents()
    actor = trail[0]["actor"] or ""
    assert cells[1] == (trail[0]["tenantId"] or "")
    assert cells[4] == {"policy": "Policy", "system": "System"}.get(actor, actor)
    text = p.locator("#trail-rows").inner_text()
    recorded = {a["action"] for a in trail} | {a["result"] for a in trail if a["result"]}
    assert not [name for name in recorded if "." in name and name in text], recorded
    assert "Removal: completed" in text or "Removal: queued" in text
    shot(p, "activity.png")

    tenant = next(a["tenantId"] for a in trail if a["tenantId"])
    p.locator("#trail-customer").fill(tenant)
    expected = len(portal.api(f"/api/actions?limit=100&tenantId={tenant}")["actions"])
    p.wait_for_function(
        "(x) => [...document.querySelectorAll('#trail-rows tbody tr')].length === x.n && "
        "[...document.querySelectorAll('#trail-rows tbody tr td:nth-child(2)')].every(td => td.textContent === x.t)",
        arg={"n": expected, "t": tenant},
        timeout=10_000,
    )
    p.locator("#language").select_option("ja")
    p.wait_for_function("() => document.querySelector('#trail-title').textContent === 'アクティビティ'")
    p.wait_for_function("() => document.querySelector('#trail-rows thead').innerText.includes('日時')")
    assert "削除: " in p.locator("#trail-rows tbody").inner_text()
    shot(p, "activity-ja.png")
    assert page.dialogs == [] and page.errors == []


# --- language, layout and accessibility ---------------------------------------------------------------
# Every view (dashboard, customer, activity, GDAP) and every dialog open, in both languages, at a desktop
# and a phone width: an axe-core scan that fails on any violation, and screenshots people look at.

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
WIDTHS = {1440: 1000, 390: 844}


def _ready(p: Any, predicate: str) -> None:
    p.wait_for_function(predicate, timeout=15_000)
    p.wait_for_load_state("networkidle")
    p.evaluate("document.fonts.ready")


def _settle(p: Any) -> None:
    # The charts are drawn at the width shown (a resize redraws them after 150 ms).
    p.wait_for_timeout(250)


def walk(p: Any, portal: Portal) -> Iterator[str]:
    """Every view and dialog, one after the other; yields each state's name while it is shown."""
    customers = portal.api("/api/audit")["customers"]
    busy = max(customers, key=lambda r: (r["signInsLastDay"], r["tenantId"]))
    p.goto(portal.url + "/#/")
    _ready(p, "() => document.querySelectorAll('#rows tr[data-tenant]').length > 0")
    _settle(p)
    yield "dashboard"
    p.locator("#rows tr[data-tenant] input.row-select").first.check()
    p.locator("#remove").click()
    _ready(p, "() => document.querySelector('#remove-dialog').open")
    yield "dialog-remove"
    p.locator("#remove-cancel").click()
    p.locator("#selection-clear").click()
    p.goto(f"{portal.url}/#/customers/{busy['tenantId']}")
    _ready(p, "() => document.querySelector('#activity svg rect.bar') !== null")
    _settle(p)
    yield "customer"
    p.goto(portal.url + "/#/activity")
    _ready(p, "() => document.querySelector('#trail-rows table, #trail-rows p') !== null")
    yield "activity"
    p.goto(portal.url + "/#/gdap")
    _ready(p, "() => document.querySelectorAll('#gdap-rows tr').length > 0")
    yield "gdap"
    p.locator("#gdap-request").click()
    _ready(
        p,
        "() => document.querySelector('#gdap-request-dialog').open"
        " && document.querySelector('#gdap-template option') !== null",
    )
    yield "dialog-gdap-request"
    p.locator("#gdap-request-cancel").click()
    p.locator('#gdap-kind-tiles [data-kind="ga"]').click()
    _ready(p, "() => document.querySelector('#gdap-rows tr[data-kind=\"ga\"] input.gdap-select') !== null")
    p.locator('#gdap-rows tr[data-kind="ga"] input.gdap-select').first.check()
    p.locator("#gdap-bulk-ga").click()
    _ready(p, "() => document.querySelector('#gdap-bulk-dialog').open")
    yield "dialog-global-admin"
    p.locator("#gdap-bulk-cancel").click()


def _violations(p: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(p)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(" ".join(n["target"]) for n in v["nodes"][:5])
        for v in results.response["violations"]
    ]


@pytest.mark.parametrize("width", sorted(WIDTHS))
@pytest.mark.parametrize("locale", ["en-US", "ja-JP"])
def test_axe_finds_no_violation_on_any_view(browser: Any, portal: Portal, locale: str, width: int) -> None:
    """axe-core (WCAG 2.x A and AA rules and best practices) on every view and open dialog."""
    from tests.browser import opened_page

    found: dict[str, list[str]] = {}
    with opened_page(browser, portal.url, locale) as page:
        page.page.set_viewport_size({"width": width, "height": WIDTHS[width]})
        for state in walk(page.page, portal):
            violations = _violations(page.page)
            if violations:
                found[state] = violations
        assert page.errors == []
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)


def test_screenshots_of_every_view_at_desktop_and_phone_width(browser: Any, portal: Portal) -> None:
    """test-artifacts/screenshots/{view}-{lang}-{width}.png. The page never scrolls sideways (only a
    wide table inside its own frame does), and the top bar and an open dialog fit the window."""
    from tests.browser import opened_page

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for locale in ("en-US", "ja-JP"):
        lang = locale[:2]
        with opened_page(browser, portal.url, locale) as page:
            p = page.page
            for width, height in WIDTHS.items():
                p.set_viewport_size({"width": width, "height": height})
                for state in walk(p, portal):
                    dialog = state.startswith("dialog")
                    p.screenshot(path=str(SCREENSHOTS / f"{state}-{lang}-{width}.png"), full_page=not dialog)
                    layout = p.evaluate(
                        """() => {
                          const view = document.documentElement.clientWidth;
                          const out = (r) => r.left < -0.5 || r.right > view + 0.5;
                          const bar = [...document.querySelectorAll('.topbar > *')]
                            .filter((n) => n.getClientRects().length && !n.classList.contains('visually-hidden'))
                            .filter((n) => out(n.getBoundingClientRect())).map((n) => n.className || n.id);
                          const open = document.querySelector('dialog[open]');
                          const r = open ? open.getBoundingClientRect() : null;
                          return { scroll: document.documentElement.scrollWidth - view, bar,
                                   dialog: r ? (out(r) || r.bottom > window.innerHeight + 0.5) : false };
                        }"""
                    )
                    assert layout == {"scroll": 0, "bar": [], "dialog": False}, (state, lang, width, layout)
            assert page.dialogs == [] and page.errors == []


def test_table_header_stays_in_view_and_the_pager_is_above_and_below(page: Page, portal: Portal) -> None:
    p = page.page
    total = portal.api("/api/audit")["summary"]["customersUnderMonitoring"]
    # More rows above the fold of a 1440 x 1000 window than the 3 it showed with full-size tiles.
    p.wait_for_load_state("networkidle")
    visible = p.evaluate(
        "() => [...document.querySelectorAll('#rows tr[data-tenant]')].filter(r => {"
        " const b = r.getBoundingClientRect(); return b.top >= 0 && b.bottom <= innerHeight; }).length"
    )
    assert visible >= 4, visible
    assert p.locator("#range-top").text_content() == f"1–50 of {total}"
    assert p.locator("#range").text_content() == f"1–50 of {total}"
    labels = p.locator("nav.pager").evaluate_all("navs => navs.map(n => n.getAttribute('aria-label'))")
    assert labels == ["Pages (above the table)", "Pages (below the table)"]
    # The top pager turns the page (and the bottom one says so too).
    p.locator("#next-top").click()
    wait_table(p, "() => document.querySelector('#range').textContent.startsWith('51')")
    assert p.locator("#range-top").text_content().startswith("51–")
    assert p.locator("#prev-top").is_enabled()
    p.locator("#prev-top").click()
    wait_table(p, "() => document.querySelector('#range-top').textContent.startsWith('1–')")
    # Scrolled through the rows, the column headers stay at the top of the table's frame.
    header = p.locator("#customers thead th[data-sort='name']")
    before = header.bounding_box()
    p.locator("#rows tr[data-tenant]").nth(40).scroll_into_view_if_needed()
    p.wait_for_timeout(100)
    wrap = p.locator("#dashboard .table-card .table-wrap").bounding_box()
    after = header.bounding_box()
    assert p.locator("#dashboard .table-card .table-wrap").evaluate("w => w.scrollTop") > 0
    assert before and after and wrap and after["y"] >= wrap["y"] - 1 and after["y"] <= wrap["y"] + 1
    assert p.evaluate(
        "() => document.elementFromPoint(innerWidth / 2, "
        f"{after['y'] + after['height'] / 2}).closest('thead') !== null"
    )
    p.evaluate("() => document.querySelector('#dashboard .table-card .table-wrap').scrollTop = 0")
    p.evaluate("() => window.scrollTo(0, 0)")
    # English counts: "1 customer", "2 customers", never "customer(s)".
    said = p.evaluate(
        "() => [window.DAM.t('dialogIntro', {n: '1'}), window.DAM.t('accepted', {n: '2'}),"
        " window.DAM.t('signInsOn', {day: 'x', n: '1', interactive: '1', non: '0', agents: '1'})]"
    )
    assert said[0].endswith("for 1 customer:") and said[1] == "2 removals requested.", said
    assert said[2] == "x: 1 sign-in (1 interactive, 0 non-interactive), 1 agent", said
    assert not [k for k, v in p.evaluate("window.DAM_I18N.en").items() if "(s)" in v and "{" in v]
    assert page.dialogs == [] and page.errors == []


def test_japanese_lines_break_between_phrases(page_ja: Page) -> None:
    p = page_ja.page
    styles = p.evaluate(
        "() => ['#page-title', '.pageIntro, .page-head p', '#remove-dialog .consequences li']"
        ".map(s => getComputedStyle(document.querySelector(s)).wordBreak)"
    )
    assert styles == ["auto-phrase"] * 3, styles
    p.locator("#language").select_option("en")
    assert p.evaluate("getComputedStyle(document.querySelector('.page-head p')).wordBreak") == "normal"


REASONS = {
    "excluded: the customer is in EXCLUDED_TENANTS now": "除外: この顧客は現在 EXCLUDED_TENANTS に含まれています",
    "no partner sign-in for at least 95 days (policy: remove after 90 days)": (
        "少なくとも 95 日間パートナーのサインインなし (ポリシー: 90 日を超えると削除)"
    ),
    "signed in since: an agent signed in at 2026-11-20T15:29:00Z (non-interactive, after 2026-11-20T00:00:00Z)": (
        "その後サインインあり: エージェントが 2026年11月20日 15:29 UTC にサインインしました"
        " (非対話型、2026年11月20日 00:00 UTC より後)"
    ),
    "no longer active (DAP Contoso: disabled, GDAP Helpdesk: terminationRequested)": (
        "有効ではなくなりました (DAP Contoso: 無効、GDAP Helpdesk: 終了を要求済み)"
    ),
    "skipped: excluded: the customer is in EXCLUDED_TENANTS now": (
        "スキップ: 除外: この顧客は現在 EXCLUDED_TENANTS に含まれています"
    ),
    "DAP Contoso: completed; GDAP Helpdesk: requested": "DAP Contoso: 完了; GDAP Helpdesk: 要求済み",
    "stale: the last successful sign-in ingestion (never) is more than 6 hours before 2026-11-21T00:00:00Z": (
        "サインイン データが古い: 最後に成功したサインインの取り込み (記録なし) が 2026年11月21日 00:00 UTC"
        " より 6 時間以上前です"
    ),
    "gave up after 5 attempts: HTTP 503": "5 回試行して中止しました: HTTP 503",
    "the operator's own words": "the operator's own words",
    "template helpdesk (matchingRoles)": "テンプレート helpdesk (以前のロールに一致するテンプレート)",
    "GDAP-contoso-1: the relationship no longer exists": "GDAP-contoso-1: 関係はもう存在しません",
    "GDAP-contoso-1: terminated": "GDAP-contoso-1: 終了",
    "not active (status expired)": "有効ではありません (状態: 期限切れ)",
    "Adatum: partner's note: keep": "Adatum: partner's note: keep",
}


def test_statuses_and_reasons_are_words_in_both_languages(page_ja: Page, portal: Portal) -> None:
    """Statuses (Microsoft's relationship and assignment statuses, DAP's, a removal's) and the reasons
    the product writes reach the reader in words; an operator's own reason is shown as written."""
    p = page_ja.page
    said = p.evaluate("(rs) => rs.map(r => window.DAM.reasonLabel(r))", list(REASONS))
    assert dict(zip(REASONS, said, strict=True)) == REASONS
    statuses = [
        "active",
        "disabled",
        "terminationRequested",
        "terminated",
        "approvalPending",
        "expired",
        "activating",
        "approved",
        "created",
        "expiring",
        "terminating",
        "pending",
        "deleted",
        "error",
    ]
    words = p.evaluate("(ss) => ss.map(s => window.DAM.statusLabel(s))", statuses)
    assert all(w and w != s and not w.isascii() for s, w in zip(statuses, words, strict=True)), words
    # The customer view: a relationship that is no longer active says so in words.
    ended = next(
        c
        for c in portal.scenario["customers"]
        if any(g["status"] == "terminated" for g in c.get("gdapRelationships", []))
        and any(g["status"] == "active" for g in c.get("gdapRelationships", []))
    )
    p.goto(f"{portal.url}/#/customers/{ended['tenantId']}")
    p.wait_for_selector("#relationships .badge.status-rel[data-status='terminated']")
    badges = p.locator("#relationships .badge.status-rel").evaluate_all(
        "bs => bs.map(b => [b.dataset.status, b.textContent])"
    )
    assert ["terminated", "終了"] in badges and all(not text.isascii() for _, text in badges), badges
    text = p.locator("#customer").inner_text()
    for code in ("terminationRequested", "approvalPending", "terminated", "(active)"):
        assert code not in text, code
    p.locator("#language").select_option("en")
    p.wait_for_function(
        "() => (document.querySelector('#relationships .badge.status-rel') || {}).textContent === 'Active'"
    )
    assert page_ja.dialogs == [] and page_ja.errors == []


def test_a_japanese_customers_times_are_japan_time(page: Page, portal: Portal) -> None:
    """The customer's culture decides the zone: ja-JP customers' times in JST (UTC+9), others in UTC."""
    from datetime import timedelta

    p = page.page
    rows = {r["tenantId"]: r for r in portal.api("/api/audit")["customers"] if r["lastSignInAt"]}
    culture = {c["tenantId"]: c.get("culture", "") for c in portal.scenario["customers"]}
    japanese = next(t for t in sorted(rows) if culture[t] == "ja-JP")
    english = next(t for t in sorted(rows) if culture[t] == "en-US")
    for tenant, shift, zone in ((japanese, 9, "JST"), (english, 0, "UTC")):
        p.goto(f"{portal.url}/#/customers/{tenant}")
        p.wait_for_function(
            "() => [...document.querySelectorAll('#customer-facts dt')].some(d => d.textContent === 'Last sign-in')"
        )
        facts = dict(
            zip(
                p.locator("#customer-facts dt").all_text_contents(),
                p.locator("#customer-facts dd").all_text_contents(),
                strict=True,
            )
        )
        local = parse_iso(rows[tenant]["lastSignInAt"]) + timedelta(hours=shift)
        shown = facts["Last sign-in"]
        assert shown.startswith(f"{local.day} {local:%b}") and shown.endswith(
            f"{local:%Y}, {local:%H:%M} {zone}"
        )
        # The dashboard's "Last sign-in" column too (the report row carries the culture).
        assert rows[tenant]["culture"] == culture[tenant]
        p.goto(f"{portal.url}/#/?q={tenant}")
        cell = p.locator(f'#rows tr[data-tenant="{tenant}"] td.nowrap')
        cell.wait_for()
        assert (cell.text_content() or "") == shown
    assert page.dialogs == [] and page.errors == []
