"""The Agents view (#/agents, agents.js) in a real browser (headless Debian Chromium through Playwright):
per agent its use of customers and the groups that give it access, idle agents flagged, search, and
"Remove from group" behind a confirmation with a required reason, in English and Japanese."""

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
from tests.test_agents import BUSY, NOW, TIER2, TIER2_IDLE, groups_of, scenario

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def portal(azurite: Any, emulator_process: Any) -> Iterator[Portal]:
    require_chromium()
    estate = scenario()
    emulator_process.post_scenario(estate)
    env = serve_environment(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "STORAGE_PREFIX": "a" + uuid.uuid4().hex[:12],
            "EMULATOR_URL": emulator_process.url,
            "AGENT_INACTIVE_DAYS": "20",
        }
    )

    async def audit_it() -> None:
        async with Services(Settings.from_env(env)) as services:
            await audit(services, NOW)

    asyncio.run(audit_it())
    with serve(env) as url:
        yield Portal(url, estate, emulator_process)


def open_agents(page: Page) -> Any:
    p = page.page
    p.locator('a.topnav-link[href="#/agents"]').click()
    p.wait_for_selector("#agents-view:not([hidden]) tr[data-agent]")
    assert p.locator("#dashboard").is_hidden()
    return p


def test_agents_view_flag_search_and_removal(page: Page, portal: Portal) -> None:
    p = open_agents(page)
    idle = p.locator(f'tr[data-agent="{TIER2_IDLE}"]')
    assert idle.get_attribute("data-idle") == "true"
    text = idle.text_content() or ""
    assert "Tier2-Exchange (GDAP security group): 1 customer " in text and "at least 30 days" in text
    assert "Idle: remove from group" in text
    busy = p.locator(f'tr[data-agent="{BUSY}"]')
    assert busy.get_attribute("data-idle") == "false" and "4 in 30 days" in (busy.text_content() or "")
    assert busy.locator("button").count() == 0  # an agent in use offers no removal
    shot(p, "agents.png", full_page=True)
    p.locator("#agents-search").fill("tier2")
    assert p.locator("#agents-rows tr[data-agent]").count() == 2
    # The confirmation: nothing happens without a reason; cancel changes nothing.
    idle.locator(f'button[data-remove-group="{TIER2}"]').click()
    dialog = p.locator("#agents-remove-dialog")
    dialog.wait_for(state="visible")
    assert "Tier2-Exchange" in (p.locator("#agents-remove-intro").text_content() or "")
    assert p.locator("#agents-remove-confirm").is_disabled()
    p.locator("#agents-remove-cancel").click()
    assert TIER2 in groups_of(portal.emulator, TIER2_IDLE)
    idle.locator(f'button[data-remove-group="{TIER2}"]').click()
    p.locator("#agents-remove-reason").fill("left the team")
    p.locator("#agents-remove-confirm").click()
    p.wait_for_function("() => document.querySelector('#notice').textContent.includes('was removed from')")
    assert TIER2 not in groups_of(portal.emulator, TIER2_IDLE)
    p.wait_for_function(f"() => !document.querySelector('tr[data-agent=\"{TIER2_IDLE}\"]')")
    assert page.dialogs == [] and page.errors == []


def test_agents_in_japanese(page_ja: Page, portal: Portal) -> None:
    p = open_agents(page_ja)
    assert p.locator("#agents-view-title").text_content() == "エージェント"
    assert "最終サインイン" in (p.locator("#agents-rows thead").text_content() or "")
    p.locator("#language").select_option("en")
    p.wait_for_function(
        "() => document.querySelector('#agents-rows thead').textContent.includes('Last sign-in')"
    )
    assert page_ja.dialogs == [] and page_ja.errors == []
