"""What the API modules share on the wire: the JSON bodies and errors of Graph and Partner Center, the
runtime (estate and request logs) a handler reaches through its request, query options, paging tokens
and ``@odata.nextLink``s, ``$select`` and Graph collection pages."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from .errors import bad_request
from .estate import SimEstate

GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
PC_CONTENT_TYPE = "application/json; charset=utf-8"

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


@dataclass
class Runtime:
    """The application's state: the estate (replaced by ``POST /_emulator/scenario``) and the request logs."""

    estate: SimEstate
    log: list[dict[str, Any]] = field(default_factory=list)  # mutating requests
    all_requests: list[dict[str, Any]] = field(default_factory=list)  # every API request


RUNTIME = web.AppKey("runtime", Runtime)


def caller_app_id(request: web.Request) -> str | None:
    """The client id a bearer token names: the ``appid`` claim (``azp`` in v2 tokens) of a JWT, which Entra
    ID's access tokens carry (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
    The emulator checks no signature; a token that is not a JWT names no identity."""
    token = request.headers.get("Authorization", "")[7:].strip()
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    if not isinstance(claims, dict):
        return None
    app_id = claims.get("appid") or claims.get("azp")
    return str(app_id) if app_id else None


def missing_permissions(request: web.Request, e: SimEstate) -> set[str]:
    """What the calling identity lacks (lower case): its entry in the scenario's "identities", else
    "missingPermissions"."""
    return e.missing_for(caller_app_id(request))


# --------------------------------------------------------------------------------------------------
# Response helpers


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def graph_json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    hdrs = {"Content-Type": GRAPH_CONTENT_TYPE, **(headers or {})}
    return web.Response(body=dumps(obj), status=status, headers=hdrs)


def pc_json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(obj), status=status, headers={"Content-Type": PC_CONTENT_TYPE})


def graph_error(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    inner_extra: dict[str, str] | None = None,
) -> web.Response:
    inner = {
        **(inner_extra or {}),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request.get("request_id", ""),
        "client-request-id": request.get("client_request_id", ""),
    }
    return graph_json({"error": {"code": code, "message": message, "innerError": inner}}, status, headers)


def pc_error(status: int, code: str, message: str) -> web.Response:
    numeric = int(code) if code.isdigit() else status
    name = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict"}.get(
        status, "ServerError"
    )
    return pc_json({"code": numeric, "description": message, "errorName": name}, status)


def empty(status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers or {})


def estate(request: web.Request) -> SimEstate:
    return request.app[RUNTIME].estate


def runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def body_json(request: web.Request) -> Any:
    raw = request.get("raw_body", b"")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("The request body is not valid JSON.") from exc


# --------------------------------------------------------------------------------------------------
# Query handling and paging


def encode_token(payload: Any) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> Any:
    try:
        padded = token + "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("The $skiptoken is invalid or expired.") from exc


def raw_query(request: web.Request) -> str:
    """The query string handlers see: the request's own, unless routing unwrapped a resume token (an
    ``empty`` fault's nextLink)."""
    query = request.get("raw_query")
    return query if isinstance(query, str) else request.rel_url.raw_query_string


def query_params(request: web.Request) -> dict[str, str]:
    """Decoded query parameters keyed by lower-case name without the leading ``$``."""
    out: dict[str, str] = {}
    for piece in raw_query(request).split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        out[unquote_plus(key).lstrip("$").lower()] = unquote_plus(value)
    return out


def next_link(request: web.Request, replace: dict[str, str]) -> str:
    """The request's own absolute URL with some query options replaced (others kept verbatim)."""
    names = {k.lower() for k in replace}
    kept = []
    for piece in raw_query(request).split("&"):
        if not piece:
            continue
        key = unquote_plus(piece.partition("=")[0]).lstrip("$").lower()
        if key not in names:
            kept.append(piece)
    kept.extend(f"${k}={v}" for k, v in replace.items())
    path = request.raw_path.split("?", 1)[0]
    return f"{origin(request)}{path}?{'&'.join(kept)}"


def capped(request: web.Request, size: int) -> int:
    """A page size under a ``pageSize`` fault's cap (set by ``dispatch_all`` for the request it matched)."""
    cap = request.get("page_cap")
    return min(size, cap) if isinstance(cap, int) else size


def page_size(params: dict[str, str], default: int, maximum: int, name: str = "top") -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_request(f"Invalid value '{raw}' for ${name}: an integer is expected.") from exc
    if value < 1 or value > maximum:
        raise bad_request(
            f"Invalid page size specified: '{value}'. Must be between 1 and {maximum} inclusive."
        )
    return value


def select_fields(
    params: dict[str, str], allowed: tuple[str, ...] | list[str], type_name: str
) -> list[str] | None:
    raw = params.get("select")
    if not raw:
        return None
    canon = {f.lower(): f for f in allowed}
    out = []
    for name in (p.strip() for p in raw.split(",")):
        if not name:
            continue
        f = canon.get(name.lower())
        if f is None:
            raise bad_request(f"Could not find a property named '{name}' on type '{type_name}'.")
        if f not in out:
            out.append(f)
    return out


def apply_select(item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if fields is None:
        return item
    return {k: v for k, v in item.items() if k.startswith("@") or k == "id" or k in fields}


def offset_page(
    request: web.Request,
    params: dict[str, str],
    items: list[Any],
    default: int,
    maximum: int,
) -> tuple[list[Any], str | None]:
    top = capped(request, page_size(params, default, maximum))
    start = 0
    if params.get("skiptoken"):
        token = decode_token(params["skiptoken"])
        if not isinstance(token, dict) or not isinstance(token.get("o"), int):
            raise bad_request("The $skiptoken is invalid or expired.")
        start = token["o"]
    page = items[start : start + top]
    link = None
    if start + top < len(items):
        link = next_link(request, {"skiptoken": encode_token({"o": start + top})})
    return page, link


def collection(
    request: web.Request,
    context: str,
    items: list[Any],
    link: str | None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"@odata.context": f"{origin(request)}/{request['version']}/$metadata#{context}"}
    if extra:
        body.update(extra)
    body["value"] = items
    if link:
        body["@odata.nextLink"] = link
    return graph_json(body)
