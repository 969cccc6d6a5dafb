"""The dashboard's Sign-in evidence card (evidence.js) in a real browser (headless Debian Chromium through
Playwright): the stretches of sign-in log the store holds, the gap between them, the source and the last
Entra sign-in archive backfill (range, sign-ins imported, hours without a blob per container), in English
and Japanese. The card without the archive is checked on the main portal's estate (tests/test_portal.py).
Screenshots go to ``test-artifacts/``."""

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
from tests.conftest import load_example
from tests.test_api import AS_OF, store_sign_in_evidence

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def portal(azurite: Any, emulator_process: Any) -> Iterator[Portal]:
    """The example estate audited once, then two stretches of sign-in log with a gap between them and
    the archive backfill that left it (tests/test_api.py's store_sign_in_evidence); the archive is set."""
    require_chromium()
    scenario = load_example()
    emulator_process.post_scenario(scenario)
    env = serve_environment(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "STORAGE_PREFIX": "e" + uuid.uuid4().hex[:12],
            "EMULATOR_URL": emulator_process.url,
            "SIGNIN_ARCHIVE_CONNECTION": azurite.connection_string,
        }
    )

    async def prepare() -> None:
        async with Services(Settings.from_env(env)) as services:
            await audit(services, AS_OF)
            await store_sign_in_evidence(services)

    asyncio.run(prepare())
    with serve(env) as url:
        yield Portal(url, scenario, emulator_process)


def evidence(page: Page) -> Any:
    p = page.page
    p.wait_for_selector("#signin-evidence:not([hidden]) li[data-gap]")
    return p


def test_sign_in_evidence_lists_the_stretches_the_gap_and_the_backfill(page: Page, portal: Portal) -> None:
    from axe_playwright_python.sync_playwright import Axe

    p = evidence(page)
    card = p.locator("#signin-evidence")
    assert card.locator("h2").text_content() == "Sign-in evidence"
    stretches = card.locator("li[data-stretch]").all_text_contents()
    assert [" ".join(s.split()) for s in stretches] == [
        "1 Aug 2026, 00:00 UTC – 14 Sept 2026, 05:59 UTC (44 days)",
        "16 Sept 2026, 00:00 UTC – 21 Nov 2026, 00:00 UTC (66 days)",
    ]
    text = " ".join((card.text_content() or "").split())
    assert (
        "2 stretches from 1 Aug 2026, 00:00 UTC to 21 Nov 2026, 00:00 UTC, with 1 gap between them." in text
    )
    assert "Source: the Graph sign-in log; older history imported from the Entra sign-in archive" in text
    assert card.locator("h3").all_text_contents() == ["Stretches held", "Gaps (1)", "Last archive backfill"]
    [gap] = card.locator("li[data-gap]").all_text_contents()
    assert " ".join(gap.split()) == "14 Sept 2026, 06:00 UTC – 16 Sept 2026, 00:00 UTC (42 hours)"
    assert "proven only from the start of the latest unbroken stretch (16 Sept 2026, 00:00 UTC)" in text
    facts = dict(
        zip(card.locator("dt").all_text_contents(), card.locator("dd").all_text_contents(), strict=True)
    )
    assert facts == {
        "Finished": "21 Nov 2026, 00:20 UTC",
        "Range": "1 Aug 2026, 00:00 UTC – 22 Oct 2026, 00:00 UTC",
        "Sign-ins imported": "12,345",
        "Blobs read": "3,890",
    }
    missing = [" ".join(m.split()) for m in card.locator(".evidence-missing li").all_text_contents()]
    assert missing == [
        "insights-logs-signinlogs: 42 hours",
        "insights-logs-noninteractiveusersigninlogs: none",
    ]
    assert "not configured" not in text  # the archive is set: no advice to set it

    # Under the coverage line, the gap is said, and one click leads to the card.
    note = p.locator("#evidence-note")
    assert note.is_visible() and "The stored sign-in log has 1 gap." in (note.text_content() or "")
    p.locator("#evidence-show").click()
    assert p.evaluate("document.activeElement.id") == "evidence-title"
    results = Axe().run(p, context="#signin-evidence")
    assert results.response["testEngine"]["name"] == "axe-core"
    assert [v["id"] for v in results.response["violations"]] == []
    shot(p, "signin-evidence.png")
    assert page.dialogs == [] and page.errors == []


def test_sign_in_evidence_in_japanese(page_ja: Page, portal: Portal) -> None:
    p = evidence(page_ja)
    card = p.locator("#signin-evidence")
    assert card.locator("h2").text_content() == "サインインの証跡"
    text = " ".join((card.text_content() or "").split())
    assert "2 区間を保持しています。区間のあいだに 1 か所の欠落があります。" in text
    assert (
        "取得元: Graph のサインイン ログ。それより古い履歴は Entra のサインイン アーカイブから取り込みました"
        in text
    )
    [gap] = card.locator("li[data-gap]").all_text_contents()
    assert gap.startswith("2026年9月14日 06:00 UTC – 2026年9月16日 00:00 UTC") and "(42 時間)" in gap
    assert card.locator("h3").all_text_contents() == [
        "保持している区間",
        "欠落 (1 か所)",
        "最後のアーカイブ取り込み",
    ]
    assert "insights-logs-signinlogs: 42 時間" in text and "取り込んだサインイン" in text
    assert "欠落があります" in (p.locator("#evidence-note").text_content() or "")
    shot(p, "signin-evidence-ja.png")
    p.locator("#language").select_option("en")
    p.wait_for_function(
        "() => document.querySelector('#signin-evidence h3').textContent === 'Stretches held'"
    )
    assert "(42 hours)" in (card.locator("li[data-gap]").text_content() or "")
    assert page_ja.dialogs == [] and page_ja.errors == []
