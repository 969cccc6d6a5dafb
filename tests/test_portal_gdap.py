"""The GDAP lifecycle in the portal, in a real browser (headless Debian Chromium through Playwright):
the dashboard's GDAP tiles; the view's one table with tiles that filter it, search, paging and
select-all-on-page; one bulk action per kind (extend, with a partial failure; remove Global
Administrator; remove unused assignments) behind one confirmation listing what happens per
relationship, then a result per relationship; a reader without actions; requesting GDAP with the
invitation link; re-establishing with the roles kept and dropped, and the relationship names of the
status history, in English and Japanese; an accessibility scan; and the view at the generated
300-customer estate (height, paging, 1440 and 390 px). Screenshots go to ``test-artifacts/`` (the
view's own to ``test-artifacts/screenshots/``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.evaluation.audit import audit
from shared.platform.settings import Settings
from shared.services import Services
from tests.browser import Page, Portal, opened_page, require_chromium, serve, serve_environment, shot
from tests.conftest import ARTIFACTS, ROOT
from tests.test_gdap import (
    ADATUM,
    AS_OF,
    FOURTH_COFFEE,
    GLOBAL_ADMINISTRATOR,
    GROUP_ENV,
    INVITATION_URL,
    NOW,
    REL_PATH,
    RELECLOUD,
    TAILSPIN,
    WINGTIP,
    bulk_tenant,
    gdap_scenario,
    rel_id,
)
from tools.emulator.generate import command as generate_command

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def portal(azurite: Any, emulator_process: Any) -> Iterator[Portal]:
    require_chromium()
    scenario = gdap_scenario(bulk=3)
    emulator_process.post_scenario(scenario)
    env = serve_environment(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "STORAGE_PREFIX": "g" + uuid.uuid4().hex[:12],
            "EMULATOR_URL": emulator_process.url,
            "NOTIFY_SENDER": scenario["partner"]["senderMailbox"],
            **GROUP_ENV,
        }
    )

    async def audit_it() -> None:
        async with Services(Settings.from_env(env)) as services:
            await audit(services, AS_OF)

    asyncio.run(audit_it())
    with serve(env) as url:
        yield Portal(url, scenario, emulator_process)


def patches(portal: Portal, relationship_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in portal.emulator.log()
        if e["method"] == "PATCH" and e["path"] == f"{REL_PATH}/{relationship_id}"
    ]


def rows(p: Any, kind: str | None = None) -> Any:
    return p.locator("#gdap-rows tr" + (f'[data-kind="{kind}"]' if kind else ""))


def wait_rows(p: Any, count: int, kind: str | None = None) -> None:
    selector = "#gdap-rows tr" + (f'[data-kind="{kind}"]' if kind else "")
    p.wait_for_function(f"() => document.querySelectorAll('{selector}').length === {count}", timeout=15_000)


def select(p: Any, key: str) -> None:
    p.locator(f'#gdap-rows input.gdap-select[data-key="{key}"]').check()


def test_tiles_filter_search_and_bulk_actions_with_a_result_per_relationship(
    page: Page, portal: Portal
) -> None:
    p = page.page
    scenario = portal.scenario
    tiles = p.locator("#gdap-tiles-section")
    tiles.wait_for(state="visible")
    summary = portal.api("/api/gdap/summary")
    assert summary["expiring"] == {"30": 6, "7": 5, "1": 1} and summary["withGlobalAdministrator"] == 1
    p.wait_for_function(
        "() => document.querySelector('[data-gdap-tile=\"7\"] [data-count]').textContent === '5'"
    )
    for key, count in (("30", 6), ("1", 1), ("ga", 1)):
        assert p.locator(f'[data-gdap-tile="{key}"] [data-count]').text_content() == str(count)
    shot(p, "gdap-dashboard-tiles.png")

    # Keyboard: the dashboard's "ending within 7 days" tile opens the view filtered to that window.
    p.locator('[data-gdap-tile="7"]').focus()
    p.keyboard.press("Enter")
    p.wait_for_selector("#gdap:not([hidden])")
    wait_rows(p, 5)
    assert rows(p, "expiring").count() == 5
    tile7 = p.locator('#gdap-kind-tiles [data-kind="expiring"][data-within="7"]')
    assert tile7.get_attribute("aria-pressed") == "true"
    assert p.locator("#gdap-filter-chip-text").text_content() == "Ending within 7 days"
    counts = {
        (t.get_attribute("data-kind"), t.get_attribute("data-within")): t.locator(
            "[data-count]"
        ).text_content()
        for t in p.locator("#gdap-kind-tiles [data-kind]").all()
    }
    assert counts == {
        ("request", None): "0",
        ("expiring", "30"): "6",
        ("expiring", "7"): "5",
        ("expiring", "1"): "1",
        ("ga", None): "1",
        ("unused", None): "2",
    }
    # Each tile filters the one table; pressing it again shows everything.
    p.locator('#gdap-kind-tiles [data-kind="ga"]').click()
    wait_rows(p, 1)
    assert rows(p, "ga").count() == 1
    p.locator('#gdap-kind-tiles [data-kind="unused"]').click()
    wait_rows(p, 2, "unused")
    assert rows(p).count() == 2 and p.locator("#gdap-note").is_visible()
    p.locator('#gdap-kind-tiles [data-kind="unused"]').click()
    wait_rows(p, 9)  # 6 ending within 30 days, 1 Global Administrator, 2 unused assignments
    # Search by customer or relationship name.
    p.locator("#gdap-search").fill("bulk")
    wait_rows(p, 3)
    assert all("Bulk" in (r.text_content() or "") for r in rows(p).all())
    p.locator("#gdap-search").fill("Wingtip-gdap")
    wait_rows(p, 3)  # Wingtip: ending soon, Global Administrator, an unused assignment
    p.locator("#gdap-search").fill("")
    wait_rows(p, 9)

    # Extend one relationship: the confirmation says what happens (the new end date), nothing is sent before.
    relecloud = rel_id(scenario, RELECLOUD)
    p.locator('#gdap-kind-tiles [data-kind="expiring"][data-within="30"]').click()
    wait_rows(p, 6)
    wingtip = rel_id(scenario, WINGTIP)
    wingtip_row = p.locator(f'#gdap-rows tr[data-key="expiring:{wingtip}"]')
    assert "Global Administrator" in (wingtip_row.text_content() or "")
    assert wingtip_row.locator("input.gdap-select").count() == 0  # cannot auto-extend: not selectable
    select(p, f"expiring:{relecloud}")
    bulk = p.locator("#gdap-bulk-extend")
    assert bulk.text_content() == "Extend (1)" and bulk.is_enabled()
    bulk.click()
    dialog = p.locator("#gdap-bulk-dialog")
    assert dialog.is_visible() and p.evaluate("document.activeElement.id") == "gdap-bulk-cancel"
    [item] = dialog.locator("#gdap-bulk-list > li").all()
    assert "Relecloud" in (item.text_content() or "") and "then extended to" in (item.text_content() or "")
    assert patches(portal, relecloud) == []
    dialog.locator("#gdap-bulk-confirm").click()
    dialog.locator(f'li[data-key="expiring:{relecloud}"] [data-outcome="done"]').wait_for()
    assert "1 done, 0 refused, 0 failed" in (dialog.locator("#gdap-bulk-summary").text_content() or "")
    [patch] = patches(portal, relecloud)
    assert patch["body"] == {"autoExtendDuration": "P180D"} and patch["headers"]["if-match"]
    dialog.locator("#gdap-bulk-cancel").click()
    p.wait_for_selector(f'#gdap-rows tr[data-key="expiring:{relecloud}"] [data-outcome="done"]')

    # Select all on the page and extend in bulk; one fails at Microsoft and says so, the others are done.
    failing = rel_id(scenario, bulk_tenant(1))
    portal.emulator.add_faults(
        [{"method": "PATCH", "pathPrefix": f"{REL_PATH}/{failing}", "status": 403, "times": -1}]
    )
    p.locator("#gdap-select-page").check()
    assert bulk.text_content() == "Extend (4)"  # Lamna and the three Bulk customers
    bulk.click()
    assert dialog.locator("#gdap-bulk-list > li").count() == 4
    shot(p, "gdap-bulk-extend-dialog.png")
    dialog.locator("#gdap-bulk-confirm").click()
    dialog.locator(f'li[data-key="expiring:{failing}"] [data-outcome="failed"]').wait_for()
    assert "3 done, 0 refused, 1 failed" in (dialog.locator("#gdap-bulk-summary").text_content() or "")
    shot(p, "gdap-bulk-extend-results.png")
    dialog.locator("#gdap-bulk-cancel").click()
    assert (
        portal.emulator.gdap_relationship(rel_id(scenario, bulk_tenant(0)))["autoExtendDuration"] == "P180D"
    )
    assert portal.emulator.gdap_relationship(failing)["autoExtendDuration"] == "PT0S"
    assert p.locator(f'#gdap-rows tr[data-key="expiring:{failing}"] [data-outcome="failed"]').count() == 1
    portal.emulator.clear_faults()

    # Remove Global Administrator: which relationship loses which role, then the PATCH with If-Match.
    p.locator('#gdap-kind-tiles [data-kind="ga"]').click()
    wait_rows(p, 1)
    select(p, f"ga:{wingtip}")
    p.locator("#gdap-bulk-ga").click()
    text = dialog.locator("#gdap-bulk-list").text_content() or ""
    assert "Wingtip" in text and "Loses Global Administrator; keeps" in text
    assert "every other role" in (dialog.text_content() or "")
    shot(p, "gdap-remove-ga-dialog.png")
    assert patches(portal, wingtip) == []
    dialog.locator("#gdap-bulk-confirm").click()
    dialog.locator(f'li[data-key="ga:{wingtip}"] [data-result="requested"]').wait_for()
    dialog.locator("#gdap-bulk-cancel").click()
    [ga_patch] = patches(portal, wingtip)
    sent = [r["roleDefinitionId"] for r in ga_patch["body"]["accessDetails"]["unifiedRoles"]]
    assert GLOBAL_ADMINISTRATOR not in sent and ga_patch["headers"]["if-match"]
    # "Check approvals" follows Microsoft's long-running operation to the end (the emulator's: 1 h).
    portal.emulator.advance("PT2H")
    for _ in range(2):
        p.locator("#gdap-follow-up").click()
        p.wait_for_function("() => !document.querySelector('#gdap-follow-up').disabled")
    wait_rows(p, 0)
    assert GLOBAL_ADMINISTRATOR not in portal.emulator.gdap_relationship(wingtip)["roles"]

    # Remove unused access assignments: which group loses which roles, then one DELETE each.
    p.locator('#gdap-kind-tiles [data-kind="unused"]').click()
    wait_rows(p, 2)
    p.locator("#gdap-select-page").check()
    p.locator("#gdap-bulk-unused").click()
    items = dialog.locator("#gdap-bulk-list > li")
    assert items.count() == 2
    assert all("HelpdeskAgents loses" in (i.text_content() or "") for i in items.all())
    dialog.locator("#gdap-bulk-confirm").click()
    p.wait_for_function("() => document.querySelectorAll('#gdap-bulk-list [data-outcome]').length === 2")
    assert dialog.locator('#gdap-bulk-list [data-outcome="done"]').count() == 2
    deletes = [e for e in portal.emulator.log() if e["method"] == "DELETE"]
    assert len(deletes) == 2 and all(e["headers"]["if-match"] for e in deletes)
    dialog.locator("#gdap-bulk-cancel").click()

    # Request GDAP: customer and template, then the invitation link; the request is a row of the table.
    p.locator("#gdap-request").click()
    request_dialog = p.locator("#gdap-request-dialog")
    assert request_dialog.is_visible() and p.evaluate("document.activeElement.id") == "gdap-customer"
    p.keyboard.type("Adatum")
    p.wait_for_function(
        "() => [...document.querySelectorAll('#gdap-customer-options option')]"
        ".some(o => o.value === '" + ADATUM + "')"
    )
    p.locator("#gdap-template").select_option("exchange-admin")
    assert "Exchange" in (p.locator("#gdap-template-info").text_content() or "")
    shot(p, "gdap-request-dialog.png")
    with p.expect_response(
        lambda r: r.url.endswith("/api/gdap/requests") and r.request.method == "POST"
    ) as info:
        p.locator("#gdap-request-submit").click()
    assert info.value.status == 201
    created = info.value.json()
    link = p.locator("#gdap-invitation-link")
    link.wait_for(state="visible")
    assert link.get_attribute("href") == INVITATION_URL.format(id=created["id"]) == link.text_content()
    assert p.evaluate("document.activeElement.id") == "gdap-invitation-link"
    assert portal.emulator.gdap_relationship(created["id"])["status"] == "approvalPending"
    shot(p, "gdap-request-result.png")
    p.keyboard.press("Escape")
    p.locator('#gdap-kind-tiles [data-kind="request"]').click()
    p.wait_for_selector(f'#gdap-rows tr[data-key="request:{created["id"]}"]')
    row = p.locator(f'#gdap-rows tr[data-key="request:{created["id"]}"]').text_content() or ""
    assert "Adatum Ltd" in row and "0 days" in row and "Waiting for the customer" in row
    assert p.locator('#gdap-rows tr[data-kind="request"] input.gdap-select').count() == 0
    shot(p, "gdap-view.png", full_page=True)
    assert page.dialogs == [] and page.errors == []


def test_a_reader_sees_no_actions(page: Page, portal: Portal) -> None:
    p = page.page
    me = portal.api("/api/me")
    reader = {**me, "canRemove": False, "canGrant": False}
    p.route("**/api/me", lambda route: route.fulfill(json=reader))
    p.goto(f"{portal.url}/#/gdap")
    p.reload()  # a hash change alone loads nothing: the page asks who the user is again
    p.wait_for_selector("#gdap:not([hidden])")
    p.wait_for_function("() => document.querySelectorAll('#gdap-rows tr').length > 0")
    assert p.locator("#gdap-rows input.gdap-select").count() == 0
    for button in (
        "#gdap-bulk-extend",
        "#gdap-bulk-ga",
        "#gdap-bulk-unused",
        "#gdap-request",
        "#gdap-follow-up",
    ):
        assert not p.locator(button).is_visible(), button
    assert not p.locator("#gdap-select-page").is_visible()
    assert page.errors == []


def test_reestablish_and_the_azure_rbac_note_in_japanese(page_ja: Page, portal: Portal) -> None:
    p = page_ja.page
    p.goto(f"{portal.url}/#/customers/{TAILSPIN}")
    p.wait_for_function("() => document.querySelector('#customer-name').textContent === 'Tailspin Ltd'")
    note = p.locator("#azure-rbac-note")
    assert note.is_visible()
    assert note.text_content() == (
        "DAP または GDAP を削除しても、Azure サブスクリプションのロールの割り当ては削除されません。"
        "顧客の Azure サブスクリプションで確認してください。"
    )
    # The relationship status history names the relationship, its id beside it and as the tooltip.
    tailspin_rel = rel_id(portal.scenario, TAILSPIN)
    change = p.locator(f'#changes td.change-rel[data-relationship="GDAP-{tailspin_rel}"]').first
    assert (change.locator("div").first.text_content() or "") == "Tailspin-gdap-0"
    assert tailspin_rel in (change.get_attribute("title") or "")
    assert change.locator(".mono").text_content() == tailspin_rel
    button = p.locator("#customer-reestablish")
    assert button.is_visible() and button.text_content() == "アクセス許可を再確立"
    button.click()
    # First what it will request: the roles held before and the template's; Tailspin keeps every role.
    confirm = p.locator("#gdap-bulk-dialog")
    confirm.wait_for(state="visible")
    assert p.evaluate("document.activeElement.id") == "gdap-bulk-cancel"
    assert "Tailspin-gdap-0" in (confirm.locator('li[data-part="held"]').text_content() or "")
    assert confirm.locator('li[data-part="requested"]').is_visible()
    assert confirm.locator('li[data-part="keeps"]').text_content() == "以前のロールはすべて再度要求されます。"
    assert [r for r in portal.api("/api/gdap/requests")["requests"] if r["tenantId"] == TAILSPIN] == []
    shot(p, "gdap-reestablish-confirm-ja.png")
    confirm.locator("#gdap-bulk-confirm").click()
    link = p.locator("#gdap-invitation-link")
    link.wait_for(state="visible")
    assert p.locator("#gdap-result-title").text_content() == "再確立を要求しました"
    assert (
        p.locator("#gdap-result-basis").text_content()
        == "以前のロールに一致するテンプレートから作成しました。"
    )
    created = [r for r in portal.api("/api/gdap/requests")["requests"] if r["tenantId"] == TAILSPIN]
    assert len(created) == 1 and created[0]["template"] == "exchange-admin"
    assert link.get_attribute("href") == created[0]["invitationLink"]
    shot(p, "gdap-reestablish-ja.png")
    p.locator("#gdap-request-cancel").click()
    # The dialog's close event (which returns focus) is dispatched as a task after close().
    p.wait_for_function(
        "() => document.activeElement && document.activeElement.id === 'customer-reestablish'", timeout=5_000
    )
    # English: the same note.
    p.locator("#language").select_option("en")
    p.wait_for_function(
        "() => document.querySelector('#azure-rbac-note').textContent.startsWith('Removing DAP or GDAP')"
    )
    # A customer with active access cannot be re-established; its Azure roles were read, so they are
    # listed (here: none) instead of the generic note.
    p.goto(f"{portal.url}/#/customers/{ADATUM}")
    p.wait_for_function("() => document.querySelector('#customer-name').textContent === 'Adatum Ltd'")
    read = (portal.api(f"/api/customers/{ADATUM}")["azureRoles"] or {}).get("state") == "read"
    assert p.locator("#azure-rbac-note").is_visible() is not read
    assert not p.locator("#customer-reestablish").is_visible()
    assert page_ja.dialogs == [] and page_ja.errors == []


def test_reestablish_says_which_roles_it_drops_and_why(page: Page, portal: Portal) -> None:
    """Fourth Coffee held DAP (Global Administrator and Helpdesk Administrator): re-establishing asks
    for the helpdesk template, and the confirmation names Global Administrator as dropped, with why."""
    p = page.page
    p.goto(f"{portal.url}/#/customers/{FOURTH_COFFEE}")
    p.wait_for_function("() => !document.querySelector('#customer-reestablish').hidden")
    p.locator("#customer-reestablish").click()
    confirm = p.locator("#gdap-bulk-dialog")
    confirm.wait_for(state="visible")
    dropped = confirm.locator('li[data-part="dropped"]')
    assert dropped.is_visible()
    [role] = dropped.locator("li[data-role]").all()
    assert role.get_attribute("data-role") == GLOBAL_ADMINISTRATOR
    assert "cannot auto-extend" in (role.text_content() or "")
    shot(p, "gdap-reestablish-dropped.png")
    # Cancel changes nothing.
    confirm.locator("#gdap-bulk-cancel").click()
    assert [r for r in portal.api("/api/gdap/requests")["requests"] if r["tenantId"] == FOURTH_COFFEE] == []
    assert page.errors == []


def test_the_view_and_its_confirmation_have_no_serious_accessibility_violations(
    page: Page, portal: Portal
) -> None:
    """axe-core on the GDAP view and on the bulk confirmation (its own CSP-safe script injection)."""
    from axe_playwright_python.sync_playwright import Axe

    p = page.page
    p.goto(f"{portal.url}/#/gdap")
    p.wait_for_function("() => document.querySelectorAll('#gdap-rows tr').length > 0")
    axe = Axe()

    def serious(context: str) -> list[str]:
        results = axe.run(p, context=context)
        assert results.response["testEngine"]["name"] == "axe-core"  # it ran
        return [
            f"{v['id']}: {[n['target'] for n in v['nodes']]}"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]

    assert serious("#gdap") == []
    p.locator("#gdap-select-page").check()
    enabled = p.locator("[data-bulk]:enabled").first
    enabled.click()
    p.locator("#gdap-bulk-dialog").wait_for(state="visible")
    assert serious("#gdap-bulk-dialog") == []
    p.locator("#gdap-bulk-cancel").click()


def test_every_string_of_the_view_is_in_english_and_japanese() -> None:
    static = ROOT / "shared" / "web" / "static"
    source = (static / "i18n.js").read_text(encoding="utf-8")
    en_part, ja_part = source.split("\n  ja: {")
    key = re.compile(r'^\s+"?([A-Za-z0-9_.-]+)"?:', re.M)
    en, ja = set(key.findall(en_part)) - {"en"}, set(key.findall(ja_part))
    script = (static / "gdap.js").read_text(encoding="utf-8") + (static / "index.html").read_text(
        encoding="utf-8"
    )
    used = set(re.findall(r'\bt\("([A-Za-z0-9_]+)"', script)) | set(
        re.findall(r'data-i18n[a-z-]*="([A-Za-z0-9_]+)"', script)
    )
    used |= set(re.findall(r'"(gdap[A-Za-z0-9]+|gaCons[0-9])"', script)) & (en | ja)  # keys kept in tables
    dynamic = {
        "gdapBulk_": ("expiring", "ga", "unused"),
        "gdapBulkTitle_": ("expiring", "ga", "unused"),
        "gdapBulkIntro_": ("expiring", "ga", "unused"),
        "gdapBulkConfirm_": ("expiring", "ga", "unused"),
        "gdapKind_": ("request", "expiring", "ga", "unused"),
        "gdapFilter_": ("request", "ga", "unused"),
        "gdapOutcome_": ("done", "refused", "failed"),
        "gdapResult_": ("extended", "unchanged", "skipped", "failed", "requested", "completed", "refused"),
        "gdapDropReason_": ("globalAdministrator", "notInTemplate"),
        "tileExpiring": ("30", "7", "1"),
    }
    used = {k for k in used if k not in dynamic and not k.endswith("_")}  # a prefix: its values below
    dynamic["gdapBasis_"] = ("previousRequest", "matchingRoles", "pendingRequest")
    used |= {prefix + value for prefix, values in dynamic.items() for value in values}
    assert used - en == set() and used - ja == set()
    assert en == ja


SCREENSHOTS = ARTIFACTS / "screenshots"


@pytest.fixture(scope="module")
def estate300(
    azurite: Any, emulator_process: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Portal]:
    """The generated 300-customer estate (every GDAP status, Japanese and English customers), audited
    once, served on its own."""
    require_chromium()
    out = tmp_path_factory.mktemp("estate300") / "estate.json"
    subprocess.run(
        generate_command(customers=300, signins=3000, days=90, retention_days=90, seed=3, now=NOW, out=out),
        check=True,
        cwd=ROOT,
    )
    scenario = json.loads(out.read_text(encoding="utf-8"))
    emulator_process.post_scenario(scenario)
    env = serve_environment(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "STORAGE_PREFIX": "e" + uuid.uuid4().hex[:12],
            "EMULATOR_URL": emulator_process.url,
            "SIGNIN_BACKFILL_DAYS": "90",
            "NOTIFY_SENDER": scenario["partner"]["senderMailbox"],
        }
    )

    async def audit_it() -> None:
        async with Services(Settings.from_env(env)) as services:
            await audit(services, AS_OF)

    # In a thread of its own: the module's browser (Playwright's sync API) runs an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, audit_it()).result()
    with serve(env) as url:
        yield Portal(url, scenario, emulator_process)


def test_the_view_at_300_customers_is_short_pages_and_fits_a_phone(browser: Any, estate300: Portal) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    total = None
    for locale, lang in (("en-US", "en"), ("ja-JP", "ja")):
        with opened_page(browser, estate300.url, locale) as page:
            p = page.page
            p.goto(f"{estate300.url}/#/gdap")
            p.wait_for_function(
                "() => document.querySelectorAll('#gdap-rows tr').length === 25", timeout=30_000
            )
            items = p.evaluate("document.querySelector('#gdap-range').textContent")
            # One table, 25 items a page: the old stacked tables were about 16,000 px tall here.
            height = p.evaluate("document.documentElement.scrollHeight")
            assert height < 3000, height
            if lang == "en":
                assert items.startswith("1–25 of ")
                total = int(items.split(" of ")[1].replace(",", ""))
                assert total > 100  # the estate has that many GDAP items: paging is what keeps it short
                p.locator("#gdap-next").click()
                p.wait_for_function(
                    "() => document.querySelector('#gdap-range').textContent.startsWith('26–50')"
                )
                assert p.locator("#gdap-page-of").text_content() == f"Page 2 of {(total + 24) // 25}"
                p.locator("#gdap-prev").click()
                p.wait_for_function(
                    "() => document.querySelector('#gdap-range').textContent.startsWith('1–25')"
                )
                # Select all on the page selects what a bulk action can take, nothing elsewhere.
                p.locator('#gdap-kind-tiles [data-kind="ga"]').click()
                p.locator("#gdap-select-page").check()
                selected = p.locator("#gdap-rows input.gdap-select:checked").count()
                assert (
                    selected > 0
                    and p.locator("#gdap-bulk-ga").text_content()
                    == f"Remove Global Administrator ({selected})"
                )
                assert p.locator("#gdap-bulk-extend").text_content() == "Extend (0)"
                p.locator("#gdap-selection-clear").click()
                p.locator("#gdap-filter-clear").click()
                p.wait_for_function("() => document.querySelectorAll('#gdap-rows tr').length === 25")
            else:
                assert p.locator("#gdap-title").text_content() == "GDAP ライフサイクル"
            shot(p, f"screenshots/gdap-view-1440-{lang}.png")
            # 390 px wide: nothing wider than the screen, every row readable.
            p.set_viewport_size({"width": 390, "height": 844})
            p.wait_for_timeout(200)
            assert p.evaluate("document.documentElement.scrollWidth") <= 390
            assert p.evaluate("document.querySelector('#language').getBoundingClientRect().right") <= 390
            assert p.evaluate("document.querySelector('#gdap-items').getBoundingClientRect().right") <= 390
            shot(p, f"screenshots/gdap-view-390-{lang}.png")
            p.evaluate("document.querySelector('#gdap-rows').scrollIntoView()")
            shot(p, f"screenshots/gdap-view-390-{lang}-rows.png")
            assert page.dialogs == [] and page.errors == []
    with opened_page(browser, estate300.url, "en-US") as page:
        p = page.page
        p.goto(f"{estate300.url}/#/gdap?kind=unused")
        p.wait_for_function("() => document.querySelectorAll('#gdap-rows tr').length === 25", timeout=30_000)
        # Remove every unused assignment (the route's kind=unused is the tile's filter): selected over
        # three pages of 100, sent 100 at a time.
        assert p.locator('#gdap-kind-tiles [data-kind="unused"]').get_attribute("aria-pressed") == "true"
        p.locator("#gdap-page-size").select_option("100")
        unused = int(p.locator('#gdap-kind-tiles [data-kind="unused"] [data-count]').text_content() or "0")
        assert unused > 100
        for _ in range((unused + 99) // 100):
            p.locator("#gdap-select-page").check()
            if p.locator("#gdap-next").is_enabled():
                p.locator("#gdap-next").click()
        calls: list[str] = []
        p.on("request", lambda r: calls.append(r.url) if "remove-unused-assignments" in r.url else None)
        p.set_viewport_size({"width": 390, "height": 844})
        p.locator("#gdap-bulk-unused").click()
        assert p.locator("#gdap-bulk-list > li").count() == unused
        dialog = p.locator("#gdap-bulk-dialog").bounding_box()
        assert dialog is not None and dialog["x"] >= 0 and dialog["x"] + dialog["width"] <= 390
        shot(p, "screenshots/gdap-bulk-confirm-390-en.png")
        p.locator("#gdap-bulk-confirm").click()
        p.wait_for_function(
            "() => document.querySelector('#gdap-bulk-summary').textContent !== ''", timeout=120_000
        )
        assert len(calls) == (unused + 99) // 100
        assert p.locator("#gdap-bulk-list [data-outcome]").count() == unused
        shot(p, "screenshots/gdap-bulk-results-390-en.png")
        p.locator("#gdap-bulk-cancel").click()
        assert page.dialogs == [] and page.errors == []
