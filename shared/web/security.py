"""Security of the HTTP surface: response headers, and the checks every state change passes.

A removal must never be triggered by another site: state changes accept only
``Content-Type: application/json`` (a cross-site HTML form cannot send it, and a cross-site script
cannot without a CORS preflight this app never answers) and refuse an ``Origin`` or
``Sec-Fetch-Site`` that names another site.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# No inline script or style anywhere: every script and stylesheet is a file from this origin, and the
# portal builds its DOM (and its SVG charts) with createElement / textContent.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
]


class SecurityHeaders:
    """Adds the security headers to every response; API answers are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path") or "")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {name for name, _ in SECURITY_HEADERS}
                ]
                headers.extend(SECURITY_HEADERS)
                if path.startswith("/api/"):
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                if https:
                    headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type == "application/json"


HostsProvider = Callable[[], "frozenset[str] | None"]


def app_service_hosts(environ: MutableMapping[str, str] | None = None) -> frozenset[str] | None:
    """The host names the function app answers to: ``WEBSITE_HOSTNAME`` (App Service sets it) and any
    custom domains in ``ALLOWED_HOSTS`` (comma-separated); None outside App Service (nothing to check)."""
    import os

    env = os.environ if environ is None else environ
    if not env.get("WEBSITE_SITE_NAME"):
        return None
    names = [env.get("WEBSITE_HOSTNAME", ""), *env.get("ALLOWED_HOSTS", "").split(",")]
    return frozenset(n.strip().lower() for n in names if n.strip())


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """``host`` (a Host header: name or name:port) is one of ``allowed`` (names, or name:port)."""
    host = host.strip().lower()
    if host in allowed:
        return True
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in allowed


class HostCheck:
    """Serves only the host names it was started for. A DNS-rebinding page -- another site's name made
    to resolve to this server's address -- arrives with that site's name in ``Host`` and is refused
    (421) before any handler reads the estate or queues a removal."""

    def __init__(self, app: ASGIApp, allowed: HostsProvider) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = self.allowed() if scope["type"] == "http" else None
        if allowed is not None:
            host = next(
                (v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"host"), ""
            )
            server = scope.get("server")
            if not host and server:  # a request handed over without its Host header: the URL's host
                host = f"{server[0]}:{server[1]}"
            if not host_allowed(host, allowed):
                body = b'{"error":{"code":"misdirectedRequest","message":"this server does not answer for that host"}}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 421,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS,
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def cross_site_reason(request: Request, allowed: frozenset[str] | None = None) -> str | None:
    """Why this request looks cross-site, or None when it comes from the portal itself (or no browser).

    The Origin is compared with the host names this server answers to when they are known, else with
    ``Host`` alone: a forwarded-host header is the caller's word, not the platform's."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site!r}"
    origin = request.headers.get("origin")
    if origin is None:
        return None  # not sent by a browser page; the JSON-only rule still applies
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"Origin {origin!r} is not this site"
    if allowed is not None:
        if not host_allowed(parts.netloc, allowed):
            return f"Origin {origin!r} is not this site"
        return None
    if parts.netloc.lower() != request.headers.get("host", "").strip().lower():
        return f"Origin {origin!r} is not this site"
    return None


class HeadAndOptions:
    """HEAD and OPTIONS as HTTP means them (RFC 9110 9.3.2, 9.3.7) for every route: HEAD is the GET
    without its body (same status, headers and length: a monitor can probe ``/api/me`` cheaply), and
    OPTIONS answers 204 with the ``Allow`` methods of the path (404 for a path nobody serves). The app
    is same-origin, so OPTIONS grants no cross-origin access."""

    def __init__(self, app: ASGIApp, routes: Callable[[], list[Any]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method") if scope["type"] == "http" else None
        if method == "OPTIONS":
            allowed = self._allowed(scope)
            status = 204 if allowed else 404
            headers = [(b"content-length", b"0"), *SECURITY_HEADERS]
            if allowed:
                methods = allowed | {"OPTIONS"} | ({"HEAD"} if "GET" in allowed else set())
                headers.append((b"allow", ", ".join(sorted(methods)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if method != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)

    def _allowed(self, scope: Scope) -> set[str]:
        from starlette.routing import Match

        allowed: set[str] = set()
        for route in self.routes():
            methods = getattr(route, "methods", None) or {"GET"}  # a mount (static files) serves GET
            for candidate in methods - {"HEAD"}:
                match, _ = route.matches({**scope, "method": candidate})
                if match == Match.FULL:
                    allowed.add(candidate)
        return allowed
