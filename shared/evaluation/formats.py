"""The report as people read it: CSV (formula-safe) and the command line's table."""

from __future__ import annotations

import csv
import io
from typing import Any

from shared.domain.report import Report
from shared.domain.roles import role_name

# Excel opens a CSV as UTF-8 only when it starts with a byte order mark: every CSV the product writes
# (the API's downloads, `audit --format csv`) starts with one.
CSV_BOM = "\ufeff"

CSV_COLUMNS = [
    "tenantId",
    "displayName",
    "relationshipTypes",
    "roles",
    "roleNames",
    "establishedAt",
    "daysActive",
    "lastSignInAt",
    "daysInactive",
    "inactiveForAtLeastDays",
    "bucket",
    "establishedLast7Days",
    "agentsSignedInLastDay",
    "signInsLastDay",
    "recommendation",
    "excluded",
    "accessGroups",  # GDAP access assignments' security groups, by name (by id where the name is unknown)
    "resellerId",
    "resellerName",
]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> str:
    """A cell a spreadsheet will not run as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def report_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report["customers"]:
        types = sorted({r["type"] for r in row["relationships"]})
        roles = sorted({role for r in row["relationships"] for role in r["roles"]})
        reseller = row.get("reseller")
        values = {
            **row,
            "relationshipTypes": "+".join(types),
            "roles": " ".join(roles),
            "roleNames": "; ".join(role_name(r) for r in roles),
            "accessGroups": "; ".join(
                dict.fromkeys(
                    g.get("displayName") or g["id"]
                    for r in row["relationships"]
                    for g in r.get("accessGroups", [])
                )
            ),
            "resellerId": reseller["id"] if reseller else None,
            "resellerName": reseller["name"] if reseller else None,
        }
        writer.writerow([csv_safe(values.get(c)) for c in CSV_COLUMNS])
    return buffer.getvalue()


def _pct(n: int, total: int) -> str:
    return f"{(100.0 * n / total):.1f}%" if total else "0.0%"


def report_table(report: Report, limit: int | None = None) -> str:
    s = report["summary"]
    total = s["customersUnderMonitoring"]
    cov = report["coverage"]
    lines = [
        f"Delegated admin relationships as of {report['asOf']} (partner {report['partnerTenantId']})",
        f"Sign-in data captured from {cov['from'] or '-'} to {cov['to'] or '-'}; policy {report['policy']['mode']}"
        f" (recommend after {report['policy']['recommendAfterDays']} days, remove after "
        f"{report['policy']['removeAfterDays']} days)",
        "",
        f"Customers with delegated admin access: {total}",
        f"  Inactive more than 90 days   {s['inactiveOver90Days']:>6}  {_pct(s['inactiveOver90Days'], total):>6}",
        f"  Inactive 61-90 days          {s['inactive61To90Days']:>6}  {_pct(s['inactive61To90Days'], total):>6}",
        f"  Inactive 30-60 days          {s['inactive30To60Days']:>6}  {_pct(s['inactive30To60Days'], total):>6}",
        f"  Established in last 7 days   {s['establishedLast7Days']:>6}  {_pct(s['establishedLast7Days'], total):>6}",
        f"  Recommended for removal      {s['recommendedForRemoval']:>6}  {_pct(s['recommendedForRemoval'], total):>6}",
    ]
    azure = s.get("customersWithAzureRoleAssignments")
    if azure is not None:  # Azure roles of the partner that removing DAP or GDAP leaves in place
        lines.append(f"  Azure role assignments held  {azure:>6}  {_pct(azure, total):>6}")
    lines.append("")
    header = [
        "Customer",
        "Type",
        "Agents 1d",
        "Sign-ins 1d",
        "Days active",
        "Days inactive",
        "At least",
        "Bucket",
        "Last sign-in",
        "Recommendation",
    ]
    body = []
    rows = report["customers"] if limit is None else report["customers"][:limit]
    for r in rows:
        name = "".join(ch if ch.isprintable() else "?" for ch in r["displayName"])[:32]
        types = "+".join(sorted({x["type"] for x in r["relationships"]}))
        body.append(
            [
                name,
                types,
                str(r["agentsSignedInLastDay"]),
                str(r["signInsLastDay"]),
                str(r["daysActive"]),
                "" if r["daysInactive"] is None else str(r["daysInactive"]),
                str(r["inactiveForAtLeastDays"]),
                r["bucket"],
                (r["lastSignInAt"] or "")[:10],
                r["recommendation"] + (" (excluded)" if r["excluded"] else ""),
            ]
        )
    widths = (
        [max(display_width(x) for x in col) for col in zip(header, *body, strict=False)]
        if body
        else [display_width(h) for h in header]
    )
    for cells in [header, *body]:
        lines.append("  ".join(pad(c, w) for c, w in zip(cells, widths, strict=True)).rstrip())
    if limit is not None and len(report["customers"]) > limit:
        lines.append(f"... and {len(report['customers']) - limit} more (use --format csv or json for all)")
    return "\n".join(lines) + "\n"


def display_width(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, width: int) -> str:
    """Left-align in a terminal column, counting East Asian wide characters as two."""
    return text + " " * max(0, width - display_width(text))
