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

from shared.platform.settings import Settings
from shared.runtime import ServicesPerLoop
from shared.services import Services
from shared.web.app import create_app
from shared.web.auth import principal_header_trusted
from shared.web.http import WebConfig

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def served_hosts(host: str, port: int) -> frozenset[str]:
    """The Host values ``serve`` answers to: the address it listens on, and the loopback names when it
    listens on loopback. Any other name (a DNS-rebinding page's) is refused."""
    name = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    names = {f"{name}:{port}".lower()}
    if is_loopback(host):
        names |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
    return frozenset(names)


def build_app(
    settings: Settings,
    *,
    local_operator: bool,
    drain_removals: bool = True,
    hosts: frozenset[str] | None = None,
    trust_principal_header: bool | None = False,
) -> FastAPI:
    """The app as ``serve`` runs it. ``trust_principal_header`` True stands in for App Service
    Authentication (tests that sign requests in with X-MS-CLIENT-PRINCIPAL), None asks the platform as
    the function app does (:func:`principal_header_trusted`); ``serve`` passes False."""
    provider = ServicesPerLoop(lambda: settings)
    trust = (
        principal_header_trusted if trust_principal_header is None else (lambda: bool(trust_principal_header))
    )
    return create_app(
        WebConfig(
            services=provider,
            local_operator=local_operator,
            drain_removals=drain_removals,
            on_shutdown=provider.close,
            allowed_hosts=lambda: hosts,
            trust_principal_header=trust,
        )
    )


class BindError(ValueError):
    """The address to serve on cannot be used (a port in use, a host that is not this machine's)."""


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP. Without it
    # Nagle holds a small body back until the client's delayed ACK of the headers (~40 ms per answer).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:  # in use, or not an address of this machine: the caller's input
        sock.close()
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    address = sock.getsockname()
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def build_server(
    settings: Settings, *, host: str, port: int, local_operator: bool
) -> tuple[uvicorn.Server, socket.socket, str]:
    if local_operator and not is_loopback(host):
        raise ValueError("--local-operator is accepted only with a loopback --host")
    sock = bind(host, port)
    app = build_app(settings, local_operator=local_operator, hosts=served_hosts(host, sock.getsockname()[1]))
    config = uvicorn.Config(
        app, log_level="info", access_log=True, server_header=False, lifespan="on", proxy_headers=False
    )
    return uvicorn.Server(config), sock, url_of(sock)


async def check_settings(settings: Settings) -> None:
    """Build (and close) the clients once, so a missing setting fails before anything listens."""
    services = Services(settings)  # raises SettingsError naming the setting
    await services.close()


def serve(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 7071, local_operator: bool = False
) -> None:
    """Print the URL, then serve (uvicorn's access log follows) until interrupted."""
    asyncio.run(check_settings(settings))
    server, sock, url = build_server(settings, host=host, port=port, local_operator=local_operator)
    print(url, flush=True)
    if local_operator:
        print(
            "local operator: every request acts as a user holding Relationships.Read and "
            "Relationships.Remove",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(
            "no App Service Authentication here: X-MS-CLIENT-PRINCIPAL is not believed and every request "
            "is anonymous (401); use --local-operator on a loopback host to act as a local user",
            file=sys.stderr,
            flush=True,
        )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
