"""The Lost access view (#/lost, lost.js) in a real browser (headless Debian Chromium through Playwright):
access that ended outside this product, with its date and cause, and "Request again" (a new GDAP request
from the template used before), in English and Japanese. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from shared.evaluation.audit import audit
from shared.platform.settings import Settings
from shared.platform.timeutil import iso
from shared.services import Services
from tests.browser import Page, Portal, require_chromium, serve, serve_environment, shot
from tests.test_gdap import GROUP_ENV
from tests.test_lost_access import ADATUM, AS_OF, LAMNA, RELECLOUD, WINGTIP, gdap_id, lost_scenario

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def portal(azurite: Any, emulator_process: Any) -> Iterator[Portal]:
    """The estate synced once, then Adatum's customer removes DAP, Relecloud's terminates GDAP and
    Wingtip's relationship expires; the next sync notices all three."""
    require_chromium()
    scenario = lost_scenario()
    emulator_process.post_scenario(scenario)
    env = serve_environment(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "STORAGE_PREFIX": "l" + uuid.uuid4().hex[:12],
            "EMULATOR_URL": emulator_process.url,
            "NOTIFY_SENDER": scenario["partner"]["senderMailbox"],
            "SIGNIN_BACKFILL_DAYS": "120",
            **GROUP_ENV,
        }
    )

    async def audit_it() -> None:
        async with Services(Settings.from_env(env)) as services:
            await audit(services, await services.now())

    asyncio.run(audit_it())
    at = iso(AS_OF + timedelta(minutes=30))
    emulator_process.customer_actions(
        [
            {"action": "removeDap", "tenantId": ADATUM, "at": at},
            {"action": "terminateGdap", "relationshipId": gdap_id(scenario, RELECLOUD), "at": at},
        ]
    )
    emulator_process.advance("PT2H")
    asyncio.run(audit_it())
    with serve(env) as url:
        yield Portal(url, scenario, emulator_process)


def open_lost(page: Page, portal: Portal) -> Any:
    p = page.page
    p.locator('a.topnav-link[href="#/lost"]').click()
    p.wait_for_selector("#lost:not([hidden]) tr[data-lost]")
    assert p.locator("#dashboard").is_hidden()
    return p


def test_lost_access_view_and_request_again(page: Page, portal: Portal) -> None:
    p = open_lost(page, portal)
    rows = p.locator("#lost-rows tr[data-lost]")
    assert rows.count() == 3
    assert p.locator("#lost-count").text_content() == "Ended outside this product: 3"
    adatum = p.locator(f'tr[data-lost^="{ADATUM}"]')
    text = adatum.text_content() or ""
    assert "Adatum Ltd" in text and "DAP (Global Administrator" in text and "Removed by the customer" in text
    assert "21 Nov 2026, 00:30 UTC" in text  # when it ended, as Microsoft stamped it
    assert "Expired" in (p.locator(f'tr[data-lost^="{WINGTIP}"]').text_content() or "")
    relecloud = p.locator(f'tr[data-lost^="{RELECLOUD}"]')
    assert "Terminated by the customer (or Microsoft)" in (relecloud.text_content() or "")
    assert LAMNA not in (p.locator("#lost-rows").text_content() or "")
    shot(p, "lost-access.png", full_page=True)

    # One click: a new GDAP request from the template used before, and its invitation link.
    button = adatum.locator(f'button[data-reestablish="{ADATUM}"]')
    assert button.text_content() == "Request again"
    assert button.get_attribute("aria-label") == "Request delegated admin access to Adatum Ltd again"
    button.click()
    link = p.locator(f'[data-requested="{ADATUM}"] a')
    link.wait_for(state="visible")
    created = [r for r in portal.api("/api/gdap/requests")["requests"] if r["tenantId"] == ADATUM]
    assert len(created) == 1 and created[0]["source"] == "reestablish"
    assert link.get_attribute("href") == created[0]["invitationLink"]
    assert p.evaluate("document.activeElement.textContent") == "Invitation link"
    # The trail says what happened, in words.
    p.locator('a.topnav-link[href="#/activity"]').click()
    p.wait_for_selector("#trail:not([hidden])")
    p.wait_for_function("() => document.querySelector('#trail-rows').textContent.includes('lost outside')")
    assert p.locator("#lost").is_hidden()
    assert page.dialogs == [] and page.errors == []


def test_lost_access_in_japanese(page_ja: Page, portal: Portal) -> None:
    p = open_lost(page_ja, portal)
    assert p.locator("#lost-title").text_content() == "失われたアクセス"
    assert "顧客が削除" in (p.locator(f'tr[data-lost^="{ADATUM}"]').text_content() or "")
    assert "期限切れ" in (p.locator(f'tr[data-lost^="{WINGTIP}"]').text_content() or "")
    shot(p, "lost-access-ja.png", full_page=True)
    p.locator("#language").select_option("en")
    p.wait_for_function("() => document.querySelector('#lost-title').textContent === 'Lost access'")
    assert "Expired" in (p.locator(f'tr[data-lost^="{WINGTIP}"]').text_content() or "")
    assert page_ja.dialogs == [] and page_ja.errors == []
