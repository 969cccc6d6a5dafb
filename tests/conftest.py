"""Shared fixtures: one real Azurite and one emulator process per session; a fresh set of tables
(by STORAGE_PREFIX) and a fresh emulator estate per test."""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings, get_settings
from tools.azurite import RunningAzurite, start_azurite

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SCENARIO = ROOT / "tools" / "emulator" / "scenarios" / "example.json"
ARTIFACTS = ROOT / "test-artifacts"


@functools.cache
def registered_functions() -> dict[str, Any]:
    """``function_app.app.get_functions()`` by name. Indexed once per session: like the host, the
    app refuses to index the same functions twice, so every test module goes through here."""
    from function_app import app

    return {f.get_function_name(): f for f in app.get_functions()}


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
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


def settings_with(**overrides: str) -> Settings:
    """Settings from the current (test) environment plus overrides."""
    env = dict(os.environ)
    env.update(overrides)
    return Settings.from_env(env)
