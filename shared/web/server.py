"""``python -m shared.cli serve``: the HTTP API and the portal under uvicorn, on this machine.

The same app and rules as the function app. Two differences, both because no Functions host runs
here: the removal queue is drained in-process (what the queue trigger does in Azure), and
``--local-operator`` (loopback only, checked again here) lets the demo act as a user holding both roles.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys

import uvicorn
from fastapi import FastAPI

from shared.services import Services
from shared.settings import Settings
from shared.web.app import WebConfig, create_app

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServicesPerLoop:
    """One :class:`Services` for the server's event loop, created on first use and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._services: Services | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self) -> Services:
        loop = asyncio.get_running_loop()
        if self._services is None or self._loop is not loop:
            services = Services(self.settings)
            await services.storage.ensure()
            self._services, self._loop = services, loop
        return self._services

    async def close(self) -> None:
        if self._services is not None and self._loop is asyncio.get_running_loop():
            await self._services.close()
        self._services = None


def build_app(settings: Settings, *, local_operator: bool, drain_removals: bool = True) -> FastAPI:
    provider = ServicesPerLoop(settings)
    return create_app(WebConfig(services=provider, local_operator=local_operator,
                                drain_removals=drain_removals, on_shutdown=provider.close))


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP. Without it
    # Nagle holds a small body back until the client's delayed ACK of the headers (~40 ms per answer).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    address = sock.getsockname()
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def build_server(settings: Settings, *, host: str, port: int, local_operator: bool
                 ) -> tuple[uvicorn.Server, socket.socket, str]:
    if local_operator and not is_loopback(host):
        raise ValueError("--local-operator is accepted only with a loopback --host")
    app = build_app(settings, local_operator=local_operator)
    sock = bind(host, port)
    config = uvicorn.Config(app, log_level="info", access_log=True, server_header=False, lifespan="on",
                            proxy_headers=False)
    return uvicorn.Server(config), sock, url_of(sock)


async def check_settings(settings: Settings) -> None:
    """Build (and close) the clients once, so a missing setting fails before anything listens."""
    services = Services(settings)  # raises SettingsError naming the setting
    await services.close()


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 7071, local_operator: bool = False) -> None:
    """Print the URL, then serve (uvicorn's access log follows) until interrupted."""
    asyncio.run(check_settings(settings))
    server, sock, url = build_server(settings, host=host, port=port, local_operator=local_operator)
    print(url, flush=True)
    if local_operator:
        print("local operator: every request acts as a user holding Relationships.Read and "
              "Relationships.Remove", file=sys.stderr, flush=True)
    elif not is_loopback(host):
        print("warning: without App Service Authentication in front, X-MS-CLIENT-PRINCIPAL comes from the "
              "client itself; serve on a loopback host only", file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
