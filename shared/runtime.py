"""The process-wide :class:`Services` used by the function triggers.

One per event loop: the Functions worker runs one loop for the life of the process, so in Azure this
is one set of clients per process; tests that call triggers under ``asyncio.run`` get a fresh set
per loop instead of clients bound to a closed one.
"""

from __future__ import annotations

import asyncio

from shared.platform.settings import get_settings
from shared.platform.telemetry import configure_telemetry
from shared.services import Services

_services: dict[int, Services] = {}


async def get_services() -> Services:
    loop_id = id(asyncio.get_running_loop())
    services = _services.get(loop_id)
    if services is None:
        configure_telemetry()  # exporter wiring only when Application Insights is configured
        services = Services(get_settings())
        await services.storage.ensure()
        await services.now()  # Microsoft's clock is known before any trigger reads or writes a time
        _services.clear()  # a previous loop's clients cannot be used any more
        _services[loop_id] = services
    return services


async def close_services() -> None:
    for services in list(_services.values()):
        await services.close()
    _services.clear()
