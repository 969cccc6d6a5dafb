"""How a sign-in looks on the wire: the Graph signIn object (v1.0 and beta) built from a compact row, and
the same object encoded straight to JSON for the hot path of paging (with and without ``$select``)."""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

from .estate_core import SimEstateCore
from .signin_log import INTERACTIVE, SignInRow
from .values import stable_guid

# Well-known first-party apps, so sign-ins carry plausible app/resource ids.
_APPS: dict[str, tuple[str, str, str]] = {
    "microsoft 365 admin center": (
        "00000006-0000-0ff1-ce00-000000000000",
        "Microsoft Graph",
        "00000003-0000-0000-c000-000000000000",
    ),
    "azure portal": (
        "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        "Windows Azure Service Management API",
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
    ),
    "microsoft exchange online": (
        "00000002-0000-0ff1-ce00-000000000000",
        "Office 365 Exchange Online",
        "00000002-0000-0ff1-ce00-000000000000",
    ),
    "microsoft graph powershell": (
        "14d82eec-204b-4c2f-b7e8-296a70dab67e",
        "Microsoft Graph",
        "00000003-0000-0000-c000-000000000000",
    ),
    "microsoft intune": (
        "0000000a-0000-0000-c000-000000000000",
        "Microsoft Intune",
        "0000000a-0000-0000-c000-000000000000",
    ),
    "microsoft entra admin center": (
        "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        "Microsoft Graph",
        "00000003-0000-0000-c000-000000000000",
    ),
}
_APP_CACHE: dict[str, tuple[str, str, str]] = {}

_FAILURES = {
    50076: (
        "Due to a configuration change made by your administrator, or because you moved to a new location, "
        "you must use multi-factor authentication to access the resource.",
        "MFA required in Azure AD",
    ),
    50126: (
        "Error validating credentials due to invalid username or password.",
        "Invalid username or password",
    ),
    50053: ("The account is locked, you've tried to sign in too many times.", "Account locked"),
}
_CITIES = (
    ("Tokyo", "Tokyo", "JP", 35.6895, 139.6917),
    ("Osaka", "Osaka", "JP", 34.6937, 135.5023),
    ("Seattle", "Washington", "US", 47.6062, -122.3321),
    ("Redmond", "Washington", "US", 47.6740, -122.1215),
    ("Frankfurt", "Hesse", "DE", 50.1109, 8.6821),
)
_DEVICES = (
    ("Windows10", "Edge 131.0.0"),
    ("Windows10", "Chrome 131.0.0"),
    ("MacOs", "Safari 17.6"),
    ("Windows10", "Firefox 133.0"),
)
V1_FIELDS = (
    "id",
    "createdDateTime",
    "userDisplayName",
    "userPrincipalName",
    "userId",
    "appId",
    "appDisplayName",
    "ipAddress",
    "clientAppUsed",
    "correlationId",
    "conditionalAccessStatus",
    "isInteractive",
    "riskDetail",
    "riskLevelAggregated",
    "riskLevelDuringSignIn",
    "riskState",
    "riskEventTypes",
    "riskEventTypes_v2",
    "resourceDisplayName",
    "resourceId",
    "homeTenantId",
    "resourceTenantId",
    "status",
    "deviceDetail",
    "location",
    "appliedConditionalAccessPolicies",
)
BETA_ONLY_FIELDS = (
    "crossTenantAccessType",
    "homeTenantName",
    "userType",
    "signInEventTypes",
    "resourceOwnerTenantId",
    "appOwnerTenantId",
    "incomingTokenType",
    "isTenantRestricted",
    "signInIdentifier",
    "signInIdentifierType",
)
BETA_FIELDS = V1_FIELDS + BETA_ONLY_FIELDS


def _j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


_CONSTANT_FRAGMENTS = {
    interactive: (
        f'"conditionalAccessStatus":"notApplied","isInteractive":{"true" if interactive else "false"},'
        '"riskDetail":"none","riskLevelAggregated":"none","riskLevelDuringSignIn":"none","riskState":"none",'
        '"riskEventTypes":[],"riskEventTypes_v2":[]'
    )
    for interactive in (True, False)
}
_STATUS_FRAGMENTS = {0: '"status":{"errorCode":0,"failureReason":null,"additionalDetails":null}'}
_DEVICE_FRAGMENTS = [
    '"deviceDetail":'
    + json.dumps(
        {
            "deviceId": "",
            "displayName": "",
            "operatingSystem": o,
            "browser": b,
            "isCompliant": False,
            "isManaged": False,
            "trustType": "",
        },
        separators=(",", ":"),
    )
    for o, b in _DEVICES
]
_LOCATION_FRAGMENTS = [
    '"location":'
    + json.dumps(
        {
            "city": c,
            "state": st,
            "countryOrRegion": co,
            "geoCoordinates": {"altitude": None, "latitude": la, "longitude": lo},
        },
        separators=(",", ":"),
    )
    for c, st, co, la, lo in _CITIES
]


def app_info(name: str) -> tuple[str, str, str]:
    info = _APP_CACHE.get(name)
    if info is None:
        info = _APPS.get(name.lower()) or (
            stable_guid("app", name),
            "Microsoft Graph",
            "00000003-0000-0000-c000-000000000000",
        )
        _APP_CACHE[name] = info
    return info


class SignInEncoding(SimEstateCore):
    """Sign-ins as Graph serves them (a mixin of the estate)."""

    def __init__(self) -> None:
        super().__init__()
        self._fragments: dict[tuple[str, str], str] = {}

    def signin_wire(self, r: SignInRow, beta: bool) -> dict[str, Any]:
        agent = self.agents_by_id.get(r.user_id.lower())
        upn = agent["userPrincipalName"] if agent else r.user_id
        display = agent["displayName"] if agent else r.user_id
        app_id, resource_name, resource_id = app_info(r.app_display_name)
        sid = r.id
        h = zlib.crc32(sid.encode())
        city, state, country, lat, lon = _CITIES[h % len(_CITIES)]
        os_name, browser = _DEVICES[(h >> 4) % len(_DEVICES)]
        corr = hashlib.md5(sid.encode()).hexdigest()
        if r.error_code:
            reason, details = _FAILURES.get(r.error_code, ("Other.", None))
        else:
            reason, details = None, None
        item: dict[str, Any] = {
            "id": sid,
            "createdDateTime": r.created,
            "userDisplayName": display,
            "userPrincipalName": upn,
            "userId": r.user_id,
            "appId": app_id,
            "appDisplayName": r.app_display_name,
            "ipAddress": f"{20 + (h >> 8) % 180}.{(h >> 16) % 256}.{(h >> 24) % 256}.{1 + h % 253}",
            "clientAppUsed": "Browser",
            "correlationId": f"{corr[:8]}-{corr[8:12]}-{corr[12:16]}-{corr[16:20]}-{corr[20:32]}",
            "conditionalAccessStatus": "notApplied",
            "isInteractive": r.event_type == INTERACTIVE,
            "riskDetail": "none",
            "riskLevelAggregated": "none",
            "riskLevelDuringSignIn": "none",
            "riskState": "none",
            "riskEventTypes": [],
            "riskEventTypes_v2": [],
            "resourceDisplayName": resource_name,
            "resourceId": resource_id,
            "homeTenantId": self.partner_tenant_id,
            "resourceTenantId": r.resource_tenant_id,
            "status": {"errorCode": r.error_code, "failureReason": reason, "additionalDetails": details},
            "deviceDetail": {
                "deviceId": "",
                "displayName": "",
                "operatingSystem": os_name,
                "browser": browser,
                "isCompliant": False,
                "isManaged": False,
                "trustType": "",
            },
            "location": {
                "city": city,
                "state": state,
                "countryOrRegion": country,
                "geoCoordinates": {"altitude": None, "latitude": lat, "longitude": lon},
            },
            "appliedConditionalAccessPolicies": [],
        }
        if beta:
            item.update(
                {
                    "crossTenantAccessType": r.cross_tenant_access_type,
                    "homeTenantName": self.partner_display_name,
                    "userType": "member",
                    "signInEventTypes": [r.event_type],
                    "resourceOwnerTenantId": r.resource_tenant_id,
                    "appOwnerTenantId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
                    "incomingTokenType": "none",
                    "isTenantRestricted": False,
                    "signInIdentifier": upn,
                    "signInIdentifierType": "userPrincipalName",
                }
            )
        return item

    def _fragment(self, kind: str, value: str) -> str:
        """Pre-encoded JSON pieces shared by many sign-ins (per agent, app, tenant...)."""
        key = (kind, value)
        frag = self._fragments.get(key)
        if frag is not None:
            return frag
        if kind == "user":
            agent = self.agents_by_id.get(value.lower())
            upn = agent["userPrincipalName"] if agent else value
            display = agent["displayName"] if agent else value
            frag = f'"userDisplayName":{_j(display)},"userPrincipalName":{_j(upn)},"userId":{_j(value)}'
        elif kind == "upn":
            agent = self.agents_by_id.get(value.lower())
            frag = _j(agent["userPrincipalName"] if agent else value)
        elif kind == "app":
            app_id, resource_name, resource_id = app_info(value)
            frag = f'"appId":"{app_id}","appDisplayName":{_j(value)}'
        elif kind == "resource":
            app_id, resource_name, resource_id = app_info(value)
            frag = f'"resourceDisplayName":{_j(resource_name)},"resourceId":"{resource_id}"'
        else:  # plain JSON string
            frag = _j(value)
        self._fragments[key] = frag
        return frag

    def signin_json(self, r: SignInRow, beta: bool) -> str:
        """The same object as :meth:`signin_wire`, encoded straight to JSON (hot path of paging)."""
        frag = self._fragment
        sid = r.id
        h = zlib.crc32(sid.encode())
        corr = hashlib.md5(sid.encode()).hexdigest()
        err = r.error_code
        status = _STATUS_FRAGMENTS.get(err)
        if status is None:
            reason, details = _FAILURES.get(err, ("Other.", None))
            status = f'"status":{{"errorCode":{err},"failureReason":{_j(reason)},"additionalDetails":{_j(details)}}}'
        rtid = frag("str", r.resource_tenant_id)
        text = (
            f'{{"id":{_j(sid)},"createdDateTime":"{r.created}",{frag("user", r.user_id)},'
            f"{frag('app', r.app_display_name)},"
            f'"ipAddress":"{20 + (h >> 8) % 180}.{(h >> 16) % 256}.{(h >> 24) % 256}.{1 + h % 253}",'
            f'"clientAppUsed":"Browser",'
            f'"correlationId":"{corr[:8]}-{corr[8:12]}-{corr[12:16]}-{corr[16:20]}-{corr[20:32]}",'
            f"{_CONSTANT_FRAGMENTS[r.event_type == INTERACTIVE]},{frag('resource', r.app_display_name)},"
            f'"homeTenantId":{frag("str", self.partner_tenant_id)},"resourceTenantId":{rtid},{status},'
            f"{_DEVICE_FRAGMENTS[(h >> 4) % len(_DEVICES)]},{_LOCATION_FRAGMENTS[h % len(_CITIES)]},"
            f'"appliedConditionalAccessPolicies":[]'
        )
        if not beta:
            return text + "}"
        return (
            f'{text},"crossTenantAccessType":{frag("str", r.cross_tenant_access_type)},'
            f'"homeTenantName":{frag("str", self.partner_display_name)},"userType":"member",'
            f'"signInEventTypes":[{frag("str", r.event_type)}],"resourceOwnerTenantId":{rtid},'
            f'"appOwnerTenantId":"f8cdef31-a31e-4b4a-93e4-5f571e91255a","incomingTokenType":"none",'
            f'"isTenantRestricted":false,"signInIdentifier":{frag("upn", r.user_id)},'
            f'"signInIdentifierType":"userPrincipalName"}}'
        )

    def signin_select_json(self, r: SignInRow, beta: bool, fields: list[str]) -> str:
        """``$select`` projection encoded directly; cheap fields avoid building the whole object."""
        frag = self._fragment
        parts = [f'"id":{_j(r.id)}']
        wire: dict[str, Any] | None = None
        for name in fields:
            if name == "id":
                continue
            if name == "createdDateTime":
                parts.append(f'"createdDateTime":"{r.created}"')
            elif name == "userId":
                parts.append('"userId":' + frag("str", r.user_id))
            elif name == "userPrincipalName":
                parts.append('"userPrincipalName":' + frag("upn", r.user_id))
            elif name == "homeTenantId":
                parts.append('"homeTenantId":' + frag("str", self.partner_tenant_id))
            elif name in ("resourceTenantId", "resourceOwnerTenantId"):
                parts.append(f'"{name}":' + frag("str", r.resource_tenant_id))
            elif name == "crossTenantAccessType":
                parts.append('"crossTenantAccessType":' + frag("str", r.cross_tenant_access_type))
            elif name == "appDisplayName":
                parts.append('"appDisplayName":' + frag("str", r.app_display_name))
            elif name == "status" and r.error_code in _STATUS_FRAGMENTS:
                parts.append(_STATUS_FRAGMENTS[r.error_code])
            elif name == "isInteractive":
                parts.append('"isInteractive":' + ("true" if r.event_type == INTERACTIVE else "false"))
            elif name == "signInEventTypes":
                parts.append(f'"signInEventTypes":[{frag("str", r.event_type)}]')
            else:
                if wire is None:
                    wire = self.signin_wire(r, beta)
                parts.append(f'"{name}":{_j(wire[name])}')
        return "{" + ",".join(parts) + "}"
