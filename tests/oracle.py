"""An independent, brute-force reading of docs/definitions.md sections 1-2 straight from a scenario file.

Written from the contract, not from the product's code: it walks every raw sign-in for every
customer. Integration tests compare the product's report (emulator -> msgraph-sdk -> Azurite ->
aggregates) with it on generated estates.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any


def _t(value: str) -> datetime:
    text = value.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(digits) :]
        text = f"{head}.{(digits + '000000')[:6]}{tz}"
    return datetime.fromisoformat(text).astimezone(UTC)


def _kind(sign_in: dict[str, Any]) -> str:
    types = sign_in.get("signInEventTypes") or ["interactiveUser"]
    return "nonInteractive" if "nonInteractiveUser" in types else "interactive"


def _days(delta: timedelta) -> int:
    return math.floor(delta.total_seconds() / 86400)


def expected_report(
    scenario: dict[str, Any],
    as_of: datetime,
    backfill_days: int,
    *,
    recommend_after: int = 60,
    excluded: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    retention = timedelta(days=scenario.get("signInRetentionDays", 30))
    emulator_now = _t(scenario["now"])
    coverage_from = as_of - timedelta(days=backfill_days)
    visible_from = max(coverage_from, emulator_now - retention)
    rows = []
    for customer in scenario["customers"]:
        tenant = customer["tenantId"].lower()
        active: list[tuple[str, str, datetime]] = []
        dap = customer.get("dap")
        if dap and dap.get("enabled"):
            active.append(("DAP", tenant, _t(dap["startDateTime"])))
        for rel in customer.get("gdapRelationships", []):
            if rel["status"] == "active" and rel.get("activatedDateTime"):
                active.append(("GDAP", rel["id"], _t(rel["activatedDateTime"])))
        if not active:
            continue
        established = min(a[2] for a in active)
        mine = [
            s
            for s in scenario["signIns"]
            if s["resourceTenantId"].lower() == tenant
            and s.get("errorCode", 0) == 0
            and "serviceprovider"
            in {p.strip().lower() for p in str(s.get("crossTenantAccessType", "")).split(",")}
            and visible_from <= _t(s["createdDateTime"]) <= min(as_of, emulator_now)
        ]
        times = [_t(s["createdDateTime"]) for s in mine]
        last = max(times) if times else None
        # Either kind of user sign-in is activity; at the same instant an interactive one names the kind.
        last_kinds = {_kind(s) for s in mine if last is not None and _t(s["createdDateTime"]) == last}
        last_kind = (
            None if last is None else "interactive" if "interactive" in last_kinds else "nonInteractive"
        )
        window = [s for s in mine if as_of - timedelta(days=1) < _t(s["createdDateTime"]) <= as_of]
        evidence = max([established, coverage_from] + ([last] if last else []))
        d = max(0, _days(as_of - evidence))
        bucket = "active" if d <= 29 else "30-60" if d <= 60 else "61-90" if d <= 90 else "90+"
        rows.append(
            {
                "tenantId": tenant,
                "relationshipIds": sorted(a[1] for a in active),
                "daysActive": _days(as_of - established),
                "lastSignInAt": last,
                "daysInactive": None if last is None else _days(as_of - last),
                "inactiveForAtLeastDays": d,
                "bucket": bucket,
                "establishedLast7Days": established > as_of - timedelta(days=7),
                "agentsSignedInLastDay": len({s["userId"] for s in window}),
                "signInsLastDay": len(window),
                "nonInteractiveSignInsLastDay": sum(1 for s in window if _kind(s) == "nonInteractive"),
                "lastSignInKind": last_kind,
                "recommendation": "remove" if d > recommend_after and tenant not in excluded else "none",
            }
        )
    rows.sort(key=lambda r: (-r["inactiveForAtLeastDays"], r["tenantId"]))
    return {"customers": rows}


def comparable(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The product's rows in the oracle's shape."""
    out = []
    for r in report["customers"]:
        out.append(
            {
                "tenantId": r["tenantId"],
                "relationshipIds": sorted(x["id"] for x in r["relationships"]),
                "daysActive": r["daysActive"],
                "lastSignInAt": _t(r["lastSignInAt"]) if r["lastSignInAt"] else None,
                "daysInactive": r["daysInactive"],
                "inactiveForAtLeastDays": r["inactiveForAtLeastDays"],
                "bucket": r["bucket"],
                "establishedLast7Days": r["establishedLast7Days"],
                "agentsSignedInLastDay": r["agentsSignedInLastDay"],
                "signInsLastDay": r["signInsLastDay"],
                "nonInteractiveSignInsLastDay": r["nonInteractiveSignInsLastDay"],
                "lastSignInKind": r["lastSignInKind"],
                "recommendation": r["recommendation"],
            }
        )
    return out
