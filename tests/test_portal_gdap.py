"""The GDAP lifecycle in the portal, in a real browser (headless Debian Chromium through Playwright):
the dashboard's GDAP tiles, extending (one and in bulk, with a partial failure), removing Global
Administrator after a confirmation, requesting GDAP with the invitation link, and re-establishing a
removed customer's access with the Azure RBAC note, in English and Japanese. Screenshots go to
``test-artifacts/``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.evaluation.audit import audit
from shared.platform.settings import Settings
from shared.services import Services
from tests.browser import Page, Portal, require_chromium, serve, serve_environment, shot
from tests.test_gdap import (
    ADATUM,
    AS_OF,
    GLOBAL_ADMINISTRATOR,
    GROUP_ENV,
    INVITATION_URL,
    REL_PATH,
    RELECLOUD,
    TAILSPIN,
    WINGTIP,
    bulk_tenant,
    gdap_scenario,
    rel_id,
)

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


def test_extend_remove_global_admin_and_request_from_the_portal(page: Page, portal: Portal) -> None:
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

    # Keyboard: the "ending within 7 days" tile is a link; Enter opens the GDAP view on that window.
    p.locator('[data-gdap-tile="7"]').focus()
    p.keyboard.press("Enter")
    p.wait_for_selector("#gdap:not([hidden])")
    p.wait_for_function(
        "() => document.querySelectorAll('#gdap-expiring tr[data-relationship]').length === 5"
    )
    assert p.locator('#gdap-windows button[data-within="7"]').get_attribute("aria-pressed") == "true"
    p.wait_for_selector("#gdap-ga tr[data-relationship]")
    assert p.locator("#gdap-ga tr[data-relationship]").count() == 1

    # Extend one relationship.
    relecloud = rel_id(scenario, RELECLOUD)
    p.locator(f'button[data-extend="{relecloud}"]').click()
    p.wait_for_selector(f'#gdap-expiring tr[data-relationship="{relecloud}"] [data-result="extended"]')
    [patch] = patches(portal, relecloud)
    assert patch["body"] == {"autoExtendDuration": "P180D"} and patch["headers"]["if-match"]

    # Extend the rest in bulk; one of them fails at Microsoft and says so; Global Administrator cannot.
    failing = rel_id(scenario, bulk_tenant(1))
    portal.emulator.add_faults(
        [{"method": "PATCH", "pathPrefix": f"{REL_PATH}/{failing}", "status": 403, "times": -1}]
    )
    wingtip = rel_id(scenario, WINGTIP)
    assert "Global Administrator" in (
        p.locator(f'#gdap-expiring tr[data-relationship="{wingtip}"]').text_content() or ""
    )
    bulk = p.locator("#gdap-extend-all")
    assert bulk.text_content() == "Extend all (3)"
    bulk.click()
    p.wait_for_selector(f'#gdap-expiring tr[data-relationship="{failing}"] [data-result="failed"]')
    assert "2 on, 1 skipped, 1 failed" in (p.locator("#gdap-expiring-status").text_content() or "")
    for i in (0, 2):
        assert (
            p.locator(
                f'#gdap-expiring tr[data-relationship="{rel_id(scenario, bulk_tenant(i))}"] '
                '[data-result="extended"]'
            ).count()
            == 1
        )
    assert (
        portal.emulator.gdap_relationship(rel_id(scenario, bulk_tenant(0)))["autoExtendDuration"] == "P180D"
    )
    assert portal.emulator.gdap_relationship(failing)["autoExtendDuration"] == "PT0S"
    portal.emulator.clear_faults()
    shot(p, "gdap-extended.png", full_page=True)

    # Remove Global Administrator: a confirmation first (Cancel has focus), then the PATCH with If-Match.
    p.locator(f'button[data-remove-ga="{wingtip}"]').click()
    dialog = p.locator("#ga-dialog")
    assert dialog.is_visible() and p.evaluate("document.activeElement.id") == "ga-cancel"
    assert "every other role" in (dialog.text_content() or "")
    shot(p, "gdap-remove-ga-dialog.png")
    assert patches(portal, wingtip) == []
    dialog.locator("#ga-confirm").click()
    p.wait_for_selector(f'#gdap-ga tr[data-relationship="{wingtip}"] [data-result="requested"]')
    assert not dialog.is_visible()
    [ga_patch] = patches(portal, wingtip)
    sent = [r["roleDefinitionId"] for r in ga_patch["body"]["accessDetails"]["unifiedRoles"]]
    assert GLOBAL_ADMINISTRATOR not in sent and ga_patch["headers"]["if-match"]
    # "Check approvals" follows Microsoft's long-running operation to the end (the emulator's: 1 h).
    p.locator("#gdap-follow-up").click()
    p.wait_for_function("() => !document.querySelector('#gdap-follow-up').disabled")
    assert GLOBAL_ADMINISTRATOR in portal.emulator.gdap_relationship(wingtip)["roles"]  # still running
    portal.emulator.advance("PT2H")
    for _ in range(2):
        p.locator("#gdap-follow-up").click()
        p.wait_for_function("() => !document.querySelector('#gdap-follow-up').disabled")
    p.wait_for_function("() => !document.querySelector('#gdap-ga tr[data-relationship]')")
    assert GLOBAL_ADMINISTRATOR not in portal.emulator.gdap_relationship(wingtip)["roles"]

    # Request GDAP: customer and template, then the invitation link.
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
    p.wait_for_selector(f'#gdap-requests tr[data-request="{created["id"]}"]')
    row = p.locator(f'#gdap-requests tr[data-request="{created["id"]}"]').text_content() or ""
    assert "Adatum Ltd" in row and "0 days" in row and "Waiting for the customer" in row
    shot(p, "gdap-view.png", full_page=True)
    assert page.dialogs == [] and page.errors == []


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
    button = p.locator("#customer-reestablish")
    assert button.is_visible() and button.text_content() == "アクセス許可を再確立"
    button.click()
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
    # A customer with active access shows the note but cannot be re-established.
    p.goto(f"{portal.url}/#/customers/{ADATUM}")
    p.wait_for_function("() => document.querySelector('#customer-name').textContent === 'Adatum Ltd'")
    assert p.locator("#azure-rbac-note").is_visible() and not p.locator("#customer-reestablish").is_visible()
    assert page_ja.dialogs == [] and page_ja.errors == []
