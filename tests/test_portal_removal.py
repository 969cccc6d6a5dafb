"""Removal, exclusion and filtering in the portal, in a real browser, on an estate of its own (the last
test removes most of it): the URL keeps the view, the confirmation warns and asks again, exclusions are
made and ended on a customer's page, and a selection over 100 is sent in batches.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.domain.models import GLOBAL_ADMINISTRATOR
from shared.evaluation.audit import audit
from shared.platform.settings import Settings
from shared.platform.timeutil import parse_iso
from shared.services import Services
from tests.browser import Page, Portal, require_chromium, serve, serve_environment, shot
from tests.test_portal import NOW, estate

pytestmark = pytest.mark.browser

RESELLER = {"id": "4c3a8b52-0d1e-4f6a-9b7c-2d5e8f1a3b6c", "name": "Fabrikam 販売 KK", "mpnId": "4711"}


@pytest.fixture(scope="module")
def portal(azurite: Any, emulator_process: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    require_chromium()
    scenario = estate(tmp_path_factory.mktemp("removal-portal"))
    # An indirect provider's estate: Partner Center names a reseller for some of the customers.
    for c in scenario["customers"][:40]:
        c["reseller"] = RESELLER
    emulator_process.post_scenario(scenario)
    env = serve_environment(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "STORAGE_PREFIX": "r" + uuid.uuid4().hex[:12],
            "EMULATOR_URL": emulator_process.url,
            "SIGNIN_BACKFILL_DAYS": "90",
            "NOTIFY_SENDER": scenario["partner"]["senderMailbox"],
            "MAX_REMOVALS_PER_RUN": "1000",  # the batch test asks for more than 100 at once
        }
    )
    settings = Settings.from_env(env)

    async def first_audit() -> None:
        async with Services(settings) as services:
            emulator_process.set_now(NOW)
            await audit(services, parse_iso(NOW))

    asyncio.run(first_audit())
    with serve(env) as url:
        yield Portal(url, scenario, emulator_process)


def rows(p: Any) -> Any:
    return p.locator("#rows tr[data-tenant]")


def wait_rows(p: Any) -> None:
    p.wait_for_function("() => document.querySelectorAll('#rows tr[data-tenant]').length > 0", timeout=10_000)


def visit(p: Any, url: str) -> None:
    """Open a dashboard URL and wait for the rows of its query (a new hash alone keeps the old rows)."""
    with p.expect_response(lambda r: "/api/customers?" in r.url and "format=csv" not in r.url):
        p.goto(url)
    p.wait_for_function("() => document.querySelector('#customers').getAttribute('aria-busy') === 'false'")
    wait_rows(p)


def test_the_url_keeps_filter_search_sort_and_page(page: Page, portal: Portal) -> None:
    p = page.page
    visit(p, portal.url + f"/#/?type=both&role={GLOBAL_ADMINISTRATOR}&sort=name&pageSize=25")
    p.wait_for_function("() => document.querySelector('#range').textContent.length > 0")
    types = rows(p).evaluate_all(
        "trs => trs.map(tr => [...tr.querySelectorAll('.types .badge')].map(b => b.textContent).join('+'))"
    )
    assert types and set(types) == {"DAP+GDAP"}, types
    assert p.locator("#filters-count").text_content() == "2"
    p.locator("#filters-toggle").click()
    assert p.locator("#filter-type").input_value() == "both"
    assert p.locator("#filter-role").input_value() == GLOBAL_ADMINISTRATOR
    assert p.locator("#page-size").input_value() == "25"
    names = [n.casefold() for n in rows(p).locator("a.name").all_text_contents()]
    assert names == sorted(names)
    csv = p.locator("#csv").get_attribute("href") or ""
    assert "type=both" in csv and f"role={GLOBAL_ADMINISTRATOR}" in csv
    shot(p, "filters.png")
    # A change goes into the URL, and a reload shows the same view.
    p.locator("#filter-type").select_option("GDAP")
    p.wait_for_function("() => location.hash.includes('type=GDAP')")
    p.locator("#search").fill("a")
    p.locator("#search").press("Enter")
    p.wait_for_function("() => location.hash.includes('q=a')")
    p.reload()
    wait_rows(p)
    assert p.locator("#search").input_value() == "a"
    assert p.locator("#filter-type").input_value() == "GDAP"
    p.locator("#filters-toggle").click()
    p.locator("#filters-reset").click()
    p.wait_for_function("() => !location.hash.includes('type=')")
    assert page.dialogs == [] and page.errors == []


def test_active_or_unrecommended_customers_are_warned_and_asked_again(page: Page, portal: Portal) -> None:
    p = page.page
    visit(p, portal.url + "/#/?bucket=active")
    first = rows(p).nth(0)
    tenant = first.get_attribute("data-tenant")
    first.locator("input.row-select").check()
    p.locator("#remove").click()
    dialog = p.locator("#remove-dialog")
    item = dialog.locator(f'#remove-list > li[data-tenant="{tenant}"]')
    item.wait_for()
    warnings = item.locator(".warnings li").evaluate_all("items => items.map(li => li.dataset.warning)")
    assert "active" in warnings and "notRecommended" in warnings, warnings
    assert dialog.locator("#remove-warned").is_visible()
    confirm = dialog.locator("#remove-confirm")
    dialog.locator("#remove-ack").check()
    assert confirm.is_disabled()  # the warning is acknowledged separately
    dialog.locator("#remove-ack-warned").check()
    assert confirm.is_enabled()
    shot(p, "remove-dialog-warned.png")
    dialog.locator("#remove-cancel").click()
    assert not dialog.is_visible()
    assert not [e for e in portal.emulator.log() if e["method"] in ("PATCH", "POST") and tenant in e["path"]]
    assert page.dialogs == [] and page.errors == []


def test_an_exclusion_made_on_the_customer_page(page: Page, portal: Portal) -> None:
    p = page.page
    visit(p, portal.url + "/#/?recommendation=remove&sort=name")
    tenant = rows(p).nth(0).get_attribute("data-tenant")
    p.goto(portal.url + f"/#/customers/{tenant}")
    p.locator("#customer-exclude").wait_for()
    p.locator("#customer-exclude").click()
    dialog = p.locator("#exclude-dialog")
    dialog.locator("#exclude-confirm").click()
    assert dialog.locator("#exclude-error").is_visible()  # a reason is required
    dialog.locator("#exclude-reason").fill("Managed under a separate support contract")
    with p.expect_response(lambda r: "/api/exclusions/" in r.url and r.request.method == "PUT") as info:
        dialog.locator("#exclude-confirm").click()
    assert info.value.status == 201
    note = p.locator("#customer-exclusion")
    note.wait_for()
    assert "Managed under a separate support contract" in (note.text_content() or "")
    assert p.locator("#customer-exclude").is_hidden() and p.locator("#customer-include").is_visible()
    # The figures are computed again: the customer is excluded and no longer recommended.
    p.wait_for_function(
        "() => (document.querySelector('#customer-facts') || {}).textContent.includes('Excluded')",
        timeout=60_000,
    )
    shot(p, "customer-excluded.png")
    p.goto(portal.url + "/#/activity")
    p.locator(f'#exclusions a[href="#/customers/{tenant}"]').wait_for()
    p.wait_for_function(
        "() => document.querySelector('#trail-rows').textContent.includes('Exclusion: added')"
    )
    visit(p, portal.url + "/#/?excluded=true")
    p.locator(f'#rows tr[data-tenant="{tenant}"] .badge.excluded').wait_for(timeout=30_000)
    # Ended again, with the trail saying so.
    p.goto(portal.url + f"/#/customers/{tenant}")
    p.locator("#customer-include").wait_for()
    p.locator("#customer-include").click()
    with p.expect_response(lambda r: "/api/exclusions/" in r.url and r.request.method == "DELETE") as ended:
        p.locator("#exclude-confirm").click()
    assert ended.value.status == 204
    p.locator("#customer-exclude").wait_for()
    assert page.dialogs == [] and page.errors == []


def test_the_reseller_filter_and_its_tiles(page: Page, portal: Portal) -> None:
    p = page.page
    visit(p, portal.url + "/#/?sort=name")
    p.locator("#filters-toggle").click()
    assert p.locator("#filter-reseller-wrap").is_visible()
    whole = portal.api("/api/customers?pageSize=1")
    mine = portal.api("/api/customers?pageSize=1&reseller=" + RESELLER["id"])
    assert [r["id"] for r in whole["resellers"]] == [RESELLER["id"]] and mine["total"] > 0
    with p.expect_response(lambda r: "reseller=" in r.url and "/api/customers?" in r.url):
        p.locator("#filter-reseller").select_option(RESELLER["id"])
    p.wait_for_function("() => location.hash.includes('reseller=')")
    p.wait_for_function(
        "(n) => document.querySelector('#range').textContent.endsWith(' ' + n)", arg=str(mine["total"])
    )
    # The tiles count that reseller's customers.
    tile = p.locator('.tile[data-bucket="30-60"] [data-count]')
    assert tile.text_content() == str(mine["resellerSummary"]["inactive30To60Days"])
    assert RESELLER["name"] in (p.locator("#filter-chip-text").text_content() or "")
    # The Azure tile counts the customers whose partner principals hold Azure roles.
    azure = p.locator(".tile-azure [data-count]").text_content()
    assert azure == str(mine["resellerSummary"]["customersWithAzureRoleAssignments"])
    shot(p, "filter-reseller.png")
    assert page.dialogs == [] and page.errors == []


def test_a_selection_over_100_is_sent_in_batches(page: Page, portal: Portal) -> None:
    p = page.page
    visit(p, portal.url + "/#/?pageSize=250&sort=name")
    p.locator("#select-page").check()
    selected = p.locator("#rows input.row-select:checked").count()
    assert selected > 100, selected
    previews: list[int] = []
    posts: list[int] = []

    def on_request(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/removals/preview"):
            previews.append(len(request.post_data_json["tenantIds"]))
        elif request.method == "POST" and request.url.endswith("/api/removals"):
            posts.append(len(request.post_data_json["tenantIds"]))

    p.on("request", on_request)
    p.locator("#remove").click()
    dialog = p.locator("#remove-dialog")
    p.wait_for_function("() => document.querySelector('#remove-loading').hidden", timeout=30_000)
    assert sorted(previews) == sorted([100, selected - 100])
    listed = dialog.locator("#remove-list > li[data-tenant]").count()
    refused = dialog.locator("#remove-refused-list li").count()
    assert listed + refused == selected
    dialog.locator("#remove-ack").check()
    if dialog.locator("#remove-warned").is_visible():
        dialog.locator("#remove-ack-warned").check()
    dialog.locator("#remove-confirm").click()
    dialog.wait_for(state="hidden", timeout=60_000)
    assert sum(posts) == listed and max(posts) <= 100 and len(posts) == -(-listed // 100), posts
    p.wait_for_function(
        "(n) => document.querySelectorAll('#removal-status-list li').length === n", arg=listed, timeout=30_000
    )
    assert page.dialogs == [] and page.errors == []
