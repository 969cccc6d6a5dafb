"""Shared fixtures: one real Azurite and one emulator process per session; a fresh set of tables
(by STORAGE_PREFIX) and a fresh emulator estate per test."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.platform.settings import Settings, get_settings
from tools.azurite import RunningAzurite, start_azurite

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SCENARIO = ROOT / "tools" / "emulator" / "scenarios" / "example.json"
ARTIFACTS = ROOT / "test-artifacts"


# The product's own pacing and retry policy, shortened for tests (the same code paths run as in Azure).
# The emulator keeps its scenario's date, days away from this host's: the skew guard is widened, not switched off.
TEST_PACE = {
    "SIGNIN_PACE": "200/1s",
    "RETRY_DELAY_MS": "20",
    "GDAP_POLL_SECONDS": "0",
    "SIGNIN_LOG_LATENCY_MINUTES": "0",
    "HOST_CLOCK_MAX_SKEW_MINUTES": str(10 * 365 * 24 * 60),
}


def pytest_configure(config: pytest.Config) -> None:
    for name, value in TEST_PACE.items():  # also for every process a test starts
        os.environ.setdefault(name, value)
    """``TEST_HOST_CLOCK_AHEAD_DAYS=N``: the whole run with this process's clock N days ahead (Azurite
    and the emulator keep theirs), so that a test that reads the host's calendar fails (.ci/run does it
    once with a year)."""
    days = os.environ.get("TEST_HOST_CLOCK_AHEAD_DAYS")
    if days:
        import time_machine

        traveller = time_machine.travel(datetime.now(UTC) + timedelta(days=int(days)), tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)


@functools.cache
def registered_functions() -> dict[str, Any]:
    """``function_app.app.get_functions()`` by name. Indexed once per session: like the host, the
    app refuses to index the same functions twice, so every test module goes through here."""
    from function_app import app

    return {f.get_function_name(): f for f in app.get_functions()}


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m shared.cli *args`` as a real process from the repository root, with ``env`` (this
    process's environment when None); its output captured as text, at most two minutes."""
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=ROOT,
        env=dict(os.environ if env is None else env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def figures_name(request: pytest.FixtureRequest, suite: str) -> str:
    """The name a reliability suite's figures are recorded under: ``<suite>-soak`` when this run
    selects the soak tests (``-m soak``; ``not soak`` does not count), ``suite`` otherwise."""
    soak = "soak" in (request.config.getoption("markexpr") or "").replace("not soak", "")
    return f"{suite}-soak" if soak else suite


def load_example() -> dict[str, Any]:
    return json.loads(EXAMPLE_SCENARIO.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def azurite() -> Iterator[RunningAzurite]:
    running = start_azurite()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[Any]:
    from tools.emulator.testing import start_emulator

    running = start_emulator(load_example())
    yield running
    running.stop()


@pytest.fixture
def emulator(emulator_process: Any) -> Any:
    """The session's emulator, reset to the example estate."""
    emulator_process.post_scenario(load_example())
    return emulator_process


@pytest.fixture
def env(azurite: RunningAzurite, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment for one test: its own tables in the shared Azurite, the emulator, defaults for the rest."""
    for name in Settings.setting_names():
        monkeypatch.delenv(name, raising=False)
    values = {
        "AzureWebJobsStorage": azurite.connection_string,
        "STORAGE_PREFIX": "t" + uuid.uuid4().hex[:12],
        "EMULATOR_URL": emulator.url,
        **TEST_PACE,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


def audited_example(monkeypatch: pytest.MonkeyPatch, as_of: Any) -> Settings:
    """The example estate (posted by the ``env`` fixture), audited at ``as_of`` and stored as the
    latest evaluation, with a sender mailbox; its settings."""
    import asyncio

    from shared.evaluation.audit import audit
    from shared.services import Services

    monkeypatch.setenv("NOTIFY_SENDER", "notices@contoso.example")
    settings = settings_with()

    async def audit_it() -> None:
        async with Services(settings) as services:
            await audit(services, as_of)

    asyncio.run(audit_it())
    return settings


# --- browser tests: a module that defines a ``portal`` fixture (a tests.browser.Portal) gets these ------------


@pytest.fixture(scope="module")
def browser(portal: Any) -> Iterator[Any]:
    from tests.browser import chromium

    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Any, portal: Any) -> Iterator[Any]:
    from tests.browser import open_page

    yield from open_page(browser, portal.url, "en-US")


@pytest.fixture
def page_ja(browser: Any, portal: Any) -> Iterator[Any]:
    from tests.browser import open_page

    yield from open_page(browser, portal.url, "ja-JP")


def settings_with(**overrides: str) -> Settings:
    """Settings from the current (test) environment plus overrides."""
    env = dict(os.environ)
    env.update(overrides)
    return Settings.from_env(env)
