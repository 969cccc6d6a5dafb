"""One :class:`Services` per event loop: the function triggers' and ``serve``'s.

The Functions worker runs one loop for the life of the process, so in Azure this is one set of
clients per process; tests that call triggers under ``asyncio.run`` get a fresh set per loop instead
of clients bound to a closed one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shared.platform.settings import Settings, get_settings
from shared.platform.telemetry import configure_telemetry
from shared.services import Services


class ServicesPerLoop:
    """A :class:`Services` for the running event loop, made on first use. ``ask_the_clock``: learn
    Microsoft's clock before handing it out (a trigger reads or writes times at once)."""

    def __init__(self, settings: Callable[[], Settings], *, ask_the_clock: bool = False) -> None:
        self._settings = settings
        self._ask_the_clock = ask_the_clock
        self._services: Services | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self) -> Services:
        loop = asyncio.get_running_loop()
        if self._services is None or self._loop is not loop:
            services = Services(self._settings())
            await services.storage.ensure()
            if self._ask_the_clock:
                await services.now()
            self._services, self._loop = services, loop  # a previous loop's clients cannot be used any more
        return self._services

    async def close(self) -> None:
        if self._services is not None:
            await self._services.close()
        self._services = None


_triggers = ServicesPerLoop(get_settings, ask_the_clock=True)


async def get_services() -> Services:
    """The triggers' :class:`Services` (telemetry wired first, when Application Insights is configured)."""
    configure_telemetry()
    return await _triggers()


async def close_services() -> None:
    await _triggers.close()
