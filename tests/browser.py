"""What the browser tests share: ``python -m shared.cli serve`` as a real process on a free loopback
port, and headless Debian Chromium driven by Playwright (``executable_path``: no browser download)."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.platform.settings import Settings
from tests.conftest import ARTIFACTS, ROOT, TEST_PACE

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make setup installs it)")
    fonts = subprocess.run(["fc-list", ":lang=ja", "family"], capture_output=True, text=True, check=False)
    if not fonts.stdout.strip():
        message = (
            "no Japanese font: the Japanese pages would render as boxes (make setup installs fonts-noto-cjk)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def serve_environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without any product setting (nor GDAP group), plus the tests' pacing
    (``TEST_PACE``) and ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in Settings.setting_names() and not k.startswith("GDAP_GROUP_")
    }
    env.update({**TEST_PACE, **settings, "PYTHONUNBUFFERED": "1"})
    return env


@dataclass
class Portal:
    """A served portal: its URL, the scenario behind it and the emulator serving that scenario."""

    url: str
    scenario: dict[str, Any]
    emulator: Any

    def api(self, path: str) -> Any:
        response = httpx.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response.json()


@contextlib.contextmanager
def serve(env: dict[str, str]) -> Iterator[str]:
    """Run ``shared.cli serve --local-operator`` with ``env``; yields its URL, stops it afterwards."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--local-operator",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        # The first line is the URL; the access log follows and must keep draining, or serve blocks.
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    try:
        try:
            url = lines.get(timeout=60).strip()
        except queue.Empty:
            url = ""
        if not url.startswith("http://127.0.0.1:"):
            pytest.fail(f"serve did not print its URL (got {url!r})")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        if process.stdout:
            process.stdout.close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (Playwright's sync API)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Page:
    """A page, with the dialogs it opened and the errors it logged (both must stay empty)."""

    page: Any
    dialogs: list[str]
    errors: list[str]


def open_page(browser: Any, url: str, locale: str | None = None) -> Iterator[Page]:
    """A page in a new browser context (``locale`` also sets Accept-Language) at ``url``, once the
    customer table has rows; closed afterwards."""
    options: dict[str, Any] = {"viewport": {"width": 1440, "height": 1000}}
    if locale:
        options.update(locale=locale, extra_http_headers={"Accept-Language": locale})
    context = browser.new_context(**options)
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url + "/")
    page.wait_for_selector("#rows tr[data-tenant]")
    try:
        yield Page(page, dialogs, errors)
    finally:
        context.close()


def shot(page: Any, name: str, full_page: bool = False) -> Path:
    """A screenshot in ``test-artifacts/``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


# open_page as a ``with`` block, for a test that opens its own page.
opened_page = contextlib.contextmanager(open_page)
