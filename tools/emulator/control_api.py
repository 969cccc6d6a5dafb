"""The ``/_emulator`` control API (no auth): the request log, the estate as a scenario, replacing the
scenario, the clock, adding sign-ins, injected faults, the customer's approval, health."""

from __future__ import annotations

import gc

from aiohttp import web

from .errors import bad_request
from .estate import build_estate
from .faults import Fault
from .scenario import load_scenario_text
from .signin_log import signin_scenario
from .wire import PC_CONTENT_TYPE, body_json, dumps, estate, pc_json, runtime


async def ctl_log(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    rt = runtime(request)
    every = request.query.get("all", "").lower() in ("1", "true")
    return pc_json(rt.all_requests if every else rt.log)


async def ctl_state(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    include = request.query.get("signIns", "true").lower() not in ("false", "0", "no")
    if not include or len(e.signins) < 50_000:
        return pc_json(e.scenario(include_signins=include))
    # Large estates: stream the sign-ins instead of building one huge string.
    head = e.scenario(include_signins=False)
    resp = web.StreamResponse(headers={"Content-Type": PC_CONTENT_TYPE})
    await resp.prepare(request)
    prefix = dumps(head)[:-1] + b',"signIns":['
    await resp.write(prefix)
    rows = e.signins.rows
    for start in range(0, len(rows), 20_000):
        chunk = b",".join(dumps(signin_scenario(r)) for r in rows[start : start + 20_000])
        await resp.write((b"," if start else b"") + chunk)
    await resp.write(b"]}")
    await resp.write_eof()
    return resp


async def ctl_scenario(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    raw = request.get("raw_body", b"")
    gc.disable()
    try:
        scenario = load_scenario_text(raw or b"{}")
    finally:
        gc.enable()
    rt = runtime(request)
    rt.estate = build_estate(scenario)
    del scenario
    rt.log.clear()
    rt.all_requests.clear()
    return pc_json({"ok": True, "customers": len(rt.estate.customers), "signIns": len(rt.estate.signins)})


async def ctl_clock(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    e.set_clock(body_json(request))
    return pc_json({"now": e.now_ts})


async def ctl_signins(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    raw = request.get("raw_body", b"")
    items = load_scenario_text(b'{"signIns":' + raw + b"}")["signIns"] if raw else None
    added = estate(request).add_signins(items)
    return pc_json({"added": added, "total": len(estate(request).signins)})


async def ctl_add_faults(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    body = body_json(request)
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list):
        raise bad_request("Body must be an array of faults.")
    e = estate(request)
    e.faults.extend(Fault.parse(f) for f in body)
    return pc_json([f.scenario() for f in e.faults])


async def ctl_list_faults(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    return pc_json([f.scenario() for f in estate(request).faults])


async def ctl_clear_faults(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    estate(request).faults.clear()
    return pc_json([])


async def ctl_approve(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    rel = estate(request).approve(m["rid"], body_json(request))
    return pc_json(rel.wire())


async def ctl_customer_actions(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    """The customer removes DAP or terminates a GDAP relationship (:mod:`.customer_side`)."""
    return pc_json(estate(request).schedule_events(body_json(request)))


async def ctl_archive(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    """Entra's diagnostic setting: archive the sign-in log to a storage account (:mod:`.archive`)."""
    from .archive import write_archive

    return pc_json(await write_archive(estate(request), body_json(request)))


async def ctl_health(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    return pc_json({"ok": True, "now": e.now_ts, "signIns": len(e.signins), "customers": len(e.customers)})
