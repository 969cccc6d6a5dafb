"""The emulator's in-memory estate: customers, GDAP relationships, sign-ins, mail, and their state machine.

Everything here is plain Python without HTTP; :mod:`tools.emulator.server` maps it onto the wire.
Business rule violations raise :class:`EmulatorError` carrying the HTTP status and a Graph error code.

Asynchronous Microsoft behaviour (terminations, activation after approval, access assignments,
relationship requests, long-running operations) moves with the emulator's clock, not with reads: each
transient state began at a moment and ends after a duration the scenario sets (``asyncDurations``,
defaults :data:`DEFAULT_ASYNC_DURATIONS`), in two halves (e.g. ``terminationRequested`` for the first
half, ``terminating`` for the second, ``terminated`` at the end). Any read (or the clock moving) settles
an entity to what it is at ``now``; reading twice at the same instant changes nothing. Failure flags
(``failTermination``, ``failOperations``, ``failAccessAssignments`` on a relationship) make the end
``failed`` / ``error`` instead of success. Statuses are Microsoft's documented enums:

* delegatedAdminRelationshipStatus: activating, active, approvalPending, approved, created, expired,
  expiring, terminated, terminating, terminationRequested
  (https://learn.microsoft.com/graph/api/resources/delegatedadminrelationship).
* delegatedAdminRelationshipRequestStatus: created, pending, succeeded, failed
  (https://learn.microsoft.com/graph/api/resources/delegatedadminrelationshiprequest).
* longRunningOperationStatus of delegatedAdminRelationshipOperation: notStarted, running, succeeded,
  failed (https://learn.microsoft.com/graph/api/resources/delegatedadminrelationshipoperation).
* delegatedAdminAccessAssignmentStatus: pending, active, deleting, deleted, error
  (https://learn.microsoft.com/graph/api/resources/delegatedadminaccessassignment).
* "GDAP relationship requests expire after 90 days" when the customer does nothing
  (https://learn.microsoft.com/partner-center/dap-faq): ``approvalPending`` -> ``expired``.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import json
import re
import sys
import uuid
import zlib
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

from .filters import (
    And,
    Compare,
    DateTimeLiteral,
    FilterError,
    Lambda,
    Node,
    Not,
    Or,
    conjuncts,
    evaluate,
    flag_set,
    format_timestamp,
    parse_timestamp,
)

GLOBAL_ADMIN_ROLE = "62e90394-69f5-4237-9190-012177145e10"
HELPDESK_ADMIN_ROLE = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
NAMESPACE = uuid.UUID("8f0d5a1e-5b7c-4a43-9a55-2d3c4e1f7a10")

RELATIONSHIP_STATUSES = (
    "activating",
    "active",
    "approvalPending",
    "approved",
    "created",
    "expired",
    "expiring",
    "terminated",
    "terminating",
    "terminationRequested",
)
# A delegatedAdminCustomer exists while the customer has at least one of these.
CUSTOMER_VISIBLE_STATUSES = {"active", "expiring", "terminationRequested", "terminating", "activating", "approved"}
TERMINATING_STATUSES = {"terminationRequested", "terminating", "terminated"}
AUTO_EXTEND_VALUES = {"P0D": "P0D", "PT0S": "PT0S", "P180D": "P180D"}

# How long each asynchronous change takes in emulator time (scenario "asyncDurations" overrides them,
# top level or per relationship). Microsoft documents no durations; these are plausible and make every
# "still pending" path observable: nothing settles until the clock is moved.
DEFAULT_ASYNC_DURATIONS = {"termination": "PT2H", "activation": "PT5M", "accessAssignment": "PT10M",
                           "operation": "PT1H", "request": "PT1M"}
APPROVAL_PENDING_LIFETIME = timedelta(days=90)  # dap-faq: an unapproved GDAP request expires after 90 days
FAILURE_FLAGS = ("failTermination", "failOperations", "failAccessAssignments")

SIGNIN_TS_LEN = 28  # len("2026-11-20T21:00:00.0000000Z")
MAX_DISPLAY_NAME = 50


class EmulatorError(Exception):
    """A request the real service would refuse: HTTP status + Graph error code + message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str, code: str = "BadRequest") -> EmulatorError:
    return EmulatorError(400, code, message)


def not_found(message: str, code: str = "NotFound") -> EmulatorError:
    return EmulatorError(404, code, message)


# --------------------------------------------------------------------------------------------------
# Time and duration helpers


def ts(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def parse_time(value: Any, what: str = "timestamp") -> datetime:
    if not isinstance(value, str):
        raise bad_request(f"'{what}' must be an ISO 8601 timestamp.")
    try:
        return parse_timestamp(value)
    except FilterError as exc:
        raise bad_request(f"'{what}' is not a valid ISO 8601 timestamp: {value!r}.") from exc


def parse_optional_time(value: Any, what: str) -> datetime | None:
    return None if value in (None, "") else parse_time(value, what)


_DURATION_RE = re.compile(
    r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: Any) -> timedelta:
    """ISO 8601 duration (``P730D``, ``P2Y``, ``PT6H``, ``PT0S``); years count 365 days, months 30."""
    if not isinstance(value, str):
        raise bad_request(f"'{value}' is not a valid ISO 8601 duration.")
    m = _DURATION_RE.match(value.strip().upper())
    if not m or value.strip().upper() in ("P", "PT"):
        raise bad_request(f"'{value}' is not a valid ISO 8601 duration.")
    y, mo, w, d, h, mi, s = m.groups()
    return timedelta(
        days=int(y or 0) * 365 + int(mo or 0) * 30 + int(w or 0) * 7 + int(d or 0),
        hours=int(h or 0),
        minutes=int(mi or 0),
        seconds=float(s or 0),
    )


def normalize_signin_time(value: str) -> str:
    """Fast path for ``…Z`` timestamps (the common case for a million sign-ins), else a full parse."""
    if len(value) >= 20 and value[-1] == "Z" and value[10] == "T" and value[4] == "-" and value[16] == ":":
        if value[19] == ".":
            frac = value[20:-1]
            if frac.isdigit():
                return value[:19] + "." + (frac + "0000000")[:7] + "Z"
        elif len(value) == 20:
            return value[:19] + ".0000000Z"
    return format_timestamp(parse_time(value, "createdDateTime"))


def make_etag(seed: str) -> str:
    """An opaque weak etag shaped like Graph's: ``W/"<base64 of a quoted guid-like value>"``."""
    h = hashlib.sha1(seed.encode()).hexdigest()
    inner = f"'\"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}\"'"
    return 'W/"' + base64.b64encode(inner.encode()).decode() + '"'


def stable_guid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def encode_token(payload: Any) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> Any:
    try:
        padded = token + "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("The $skiptoken is invalid or expired.") from exc


# --------------------------------------------------------------------------------------------------
# Sign-ins

# signIn.signInEventTypes (beta): "For user sign ins, the category can be interactiveUser or
# nonInteractiveUser and corresponds to the value for the isInteractive property ... Possible values are:
# interactiveUser, nonInteractiveUser, servicePrincipal, managedIdentity, unknownFutureValue. Supports
# $filter (eq, ne)." https://learn.microsoft.com/graph/api/resources/signin?view=graph-rest-beta
INTERACTIVE = "interactiveUser"
NON_INTERACTIVE = "nonInteractiveUser"
EVENT_TYPES = (INTERACTIVE, NON_INTERACTIVE, "servicePrincipal", "managedIdentity")
USER_EVENT_TYPES = frozenset({INTERACTIVE, NON_INTERACTIVE})
_EVENT_TYPE_NAMES = {t.lower(): t for t in EVENT_TYPES}

# signInAccessType is IsFlags="true" in the beta CSDL (none=0, b2bCollaboration=1, b2bDirectConnect=2,
# microsoftSupport=4, serviceProvider=8, unknownFutureValue=16, passthrough=32); OData JSON writes a
# combination as the member names joined by commas, e.g. "b2bCollaboration,serviceProvider".
ACCESS_TYPE_FLAGS = ("b2bCollaboration", "b2bDirectConnect", "microsoftSupport", "serviceProvider",
                     "unknownFutureValue", "passthrough")
_ACCESS_TYPE_NAMES = {f.lower(): f for f in ACCESS_TYPE_FLAGS}
_ACCESS_TYPE_CACHE: dict[str, str] = {}


def normalize_access_type(value: str) -> str:
    """A crossTenantAccessType as Graph writes it: flags in declaration order, comma-separated, ``none``
    when no flag is set. Unknown names are kept (after the known ones) so odd scenarios stay visible."""
    out = _ACCESS_TYPE_CACHE.get(value)
    if out is None:
        parts = [p.strip() for p in value.split(",") if p.strip() and p.strip().lower() != "none"]
        known = sorted({_ACCESS_TYPE_NAMES[p.lower()] for p in parts if p.lower() in _ACCESS_TYPE_NAMES},
                       key=ACCESS_TYPE_FLAGS.index)
        unknown = [p for p in parts if p.lower() not in _ACCESS_TYPE_NAMES]
        out = _intern(",".join(known + unknown) or "none")
        _ACCESS_TYPE_CACHE[value] = out
    return out


def event_type_of(value: Any) -> str:
    """The scenario's ``signInEventTypes`` (a list, or one string) as the row's single category."""
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if not isinstance(value, str) or not value.strip():
        return INTERACTIVE
    return _EVENT_TYPE_NAMES.get(value.strip().lower()) or _intern(value.strip())


class SignInRow(NamedTuple):
    """One sign-in, compact. ``key`` is the 7-digit createdDateTime followed by the id (sort key)."""

    key: str
    user_id: str
    resource_tenant_id: str
    cross_tenant_access_type: str  # normalised flags value, interned
    error_code: int
    app_display_name: str
    event_type: str = INTERACTIVE  # the one signInEventTypes category, interned

    @property
    def created(self) -> str:
        return self.key[:SIGNIN_TS_LEN]

    @property
    def id(self) -> str:
        return self.key[SIGNIN_TS_LEN:]


_intern = sys.intern


def signin_row(d: dict[str, Any]) -> SignInRow:
    """Build a row from a scenario sign-in object (``errorCode`` flat, or ``status.errorCode``)."""
    sid = d.get("id")
    created = d.get("createdDateTime")
    if not isinstance(created, str):
        raise bad_request("Every sign-in needs a createdDateTime.")
    if not isinstance(sid, str) or not sid:
        sid = stable_guid("signin", created, str(d.get("userId")), str(d.get("resourceTenantId")))
    err = d.get("errorCode")
    if err is None and isinstance(d.get("status"), dict):
        err = d["status"].get("errorCode")
    types = d.get("signInEventTypes")
    return SignInRow(
        normalize_signin_time(created) + sid,
        _intern(str(d.get("userId") or "")),
        _intern(str(d.get("resourceTenantId") or "")),
        normalize_access_type(str(d.get("crossTenantAccessType") or "serviceProvider")),
        int(err or 0),
        _intern(str(d.get("appDisplayName") or "Microsoft 365 admin center")),
        INTERACTIVE if types is None else event_type_of(types),
    )


def scenario_object_hook(d: dict[str, Any]) -> Any:
    """``json`` object hook turning sign-in objects into rows while parsing (keeps a 1M load lean)."""
    if "resourceTenantId" in d and "createdDateTime" in d and "gdapRelationships" not in d:
        return signin_row(d)
    return d


def load_scenario_text(text: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(text, object_hook=scenario_object_hook)
    except json.JSONDecodeError as exc:
        raise bad_request(f"The scenario is not valid JSON: {exc}.") from exc
    if not isinstance(data, dict):
        raise bad_request("A scenario is a JSON object.")
    return data


class QualifyingIndex:
    """Per customer tenant: successful serviceProvider sign-ins, ascending key, with their user ids."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.users: list[str] = []

    def add(self, row: SignInRow) -> None:
        i = bisect_left(self.keys, row.key)
        self.keys.insert(i, row.key)
        self.users.insert(i, row.user_id)


def is_qualifying(row: SignInRow) -> bool:
    return row.error_code == 0 and "serviceprovider" in flag_set(row.cross_tenant_access_type)


class SignInStore:
    """The sign-ins of one event type, sorted ascending by (createdDateTime, id); pages walk it backwards."""

    def __init__(self) -> None:
        self.rows: list[SignInRow] = []
        self.keys: list[str] = []

    def __len__(self) -> int:
        return len(self.rows)

    def insert(self, row: SignInRow) -> bool:
        i = bisect_left(self.keys, row.key)
        if i < len(self.keys) and self.keys[i] == row.key:
            return False
        self.keys.insert(i, row.key)
        self.rows.insert(i, row)
        return True

    def contains(self, key: str) -> bool:
        i = bisect_left(self.keys, key)
        return i < len(self.keys) and self.keys[i] == key

    def scan_desc(
        self,
        lower: str,
        upper_exclusive: str,
        predicate: Callable[[SignInRow], bool] | None,
        limit: int,
    ) -> tuple[list[SignInRow], bool]:
        """Up to ``limit`` rows with ``lower <= key < upper_exclusive``, newest first, and whether more match."""
        lo = bisect_left(self.keys, lower)
        hi = bisect_left(self.keys, upper_exclusive)
        rows = self.rows
        if predicate is None:
            start = max(lo, hi - limit)
            page = rows[start:hi]
            page.reverse()
            return page, start > lo
        out: list[SignInRow] = []
        i = hi - 1
        while i >= lo:
            r = rows[i]
            if predicate(r):
                if len(out) == limit:
                    return out, True
                out.append(r)
            i -= 1
        return out, False

    def find(self, signin_id: str, lower: str, upper_exclusive: str) -> SignInRow | None:
        lo = bisect_left(self.keys, lower)
        hi = bisect_left(self.keys, upper_exclusive)
        rows = self.rows
        for i in range(lo, hi):
            if rows[i].id == signin_id:
                return rows[i]
        return None


class SignInLog:
    """The whole sign-in log, kept as one sorted :class:`SignInStore` per event type.

    Graph serves the event types as separate views of the log (without a ``signInEventTypes`` filter only
    interactive user sign-ins), so a query reads only the partitions it asks for: the common single-type
    query pages by slicing, with no per-row test, however many sign-ins of the other type there are.
    Keys are unique across partitions; ``qualifying`` (per customer tenant, successful serviceProvider
    sign-ins of every type) backs the Partner Center DAP statistics.
    """

    def __init__(self, rows: Iterable[SignInRow] = ()) -> None:
        ordered = sorted(rows, key=itemgetter(0))
        self.stores: dict[str, SignInStore] = {}
        self.access_types: set[str] = set(map(itemgetter(3), ordered))
        qualifying_types = {v for v in self.access_types if "serviceprovider" in flag_set(v)}
        self.qualifying: dict[str, QualifyingIndex] = {}
        stores = self.stores
        qualifying = self.qualifying
        last = ""
        for r in ordered:
            key = r[0]
            if key == last:  # drop duplicate keys (same id and time) so cursors stay unambiguous
                continue
            last = key
            store = stores.get(r[6])
            if store is None:
                store = stores[r[6]] = SignInStore()
            store.rows.append(r)
            store.keys.append(key)
            if r[4] == 0 and r[3] in qualifying_types:
                idx = qualifying.get(r[2])
                if idx is None:
                    idx = qualifying[r[2]] = QualifyingIndex()
                idx.keys.append(key)
                idx.users.append(r[1])

    def __len__(self) -> int:
        return sum(len(s) for s in self.stores.values())

    @property
    def rows(self) -> list[SignInRow]:
        """Every sign-in, ascending by key (a merged copy when there is more than one event type)."""
        stores = list(self.stores.values())
        if len(stores) == 1:
            return stores[0].rows
        return list(heapq.merge(*(s.rows for s in stores), key=itemgetter(0)))

    def event_types(self) -> set[str]:
        return {t for t, s in self.stores.items() if s.rows}

    def add(self, rows: Iterable[SignInRow]) -> int:
        n = 0
        for r in rows:
            if any(s.contains(r.key) for s in self.stores.values()):
                continue
            store = self.stores.get(r.event_type)
            if store is None:
                store = self.stores[r.event_type] = SignInStore()
            store.insert(r)
            self.access_types.add(r.cross_tenant_access_type)
            if is_qualifying(r):
                self.qualifying.setdefault(r.resource_tenant_id, QualifyingIndex()).add(r)
            n += 1
        return n

    def scan_desc(
        self,
        lower: str,
        upper_exclusive: str,
        event_types: Iterable[str],
        predicate: Callable[[SignInRow], bool] | None,
        limit: int,
    ) -> tuple[list[SignInRow], bool]:
        """Up to ``limit`` rows of the given event types in ``[lower, upper_exclusive)``, newest first, and
        whether more match. Several types: each partition yields its newest ``limit``, merged by key."""
        stores = [self.stores[t] for t in event_types if t in self.stores]
        if not stores:
            return [], False
        if len(stores) == 1:
            return stores[0].scan_desc(lower, upper_exclusive, predicate, limit)
        parts = [s.scan_desc(lower, upper_exclusive, predicate, limit) for s in stores]
        merged = list(itertools.islice(
            heapq.merge(*(rows for rows, _ in parts), key=itemgetter(0), reverse=True), limit + 1))
        more = len(merged) > limit or any(m for _, m in parts)
        return merged[:limit], more

    def find(self, signin_id: str, lower: str, upper_exclusive: str) -> SignInRow | None:
        for store in self.stores.values():
            row = store.find(signin_id, lower, upper_exclusive)
            if row is not None:
                return row
        return None


# Well-known first-party apps, so sign-ins carry plausible app/resource ids.
_APPS: dict[str, tuple[str, str, str]] = {
    "microsoft 365 admin center": (
        "00000006-0000-0ff1-ce00-000000000000", "Microsoft Graph", "00000003-0000-0000-c000-000000000000"),
    "azure portal": (
        "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        "Windows Azure Service Management API",
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
    ),
    "microsoft exchange online": (
        "00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online", "00000002-0000-0ff1-ce00-000000000000"),
    "microsoft graph powershell": (
        "14d82eec-204b-4c2f-b7e8-296a70dab67e", "Microsoft Graph", "00000003-0000-0000-c000-000000000000"),
    "microsoft intune": (
        "0000000a-0000-0000-c000-000000000000", "Microsoft Intune", "0000000a-0000-0000-c000-000000000000"),
    "microsoft entra admin center": (
        "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Microsoft Graph", "00000003-0000-0000-c000-000000000000"),
}
_APP_CACHE: dict[str, tuple[str, str, str]] = {}

_FAILURES = {
    50076: (
        "Due to a configuration change made by your administrator, or because you moved to a new location, "
        "you must use multi-factor authentication to access the resource.",
        "MFA required in Azure AD",
    ),
    50126: ("Error validating credentials due to invalid username or password.", "Invalid username or password"),
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
    "id", "createdDateTime", "userDisplayName", "userPrincipalName", "userId", "appId", "appDisplayName",
    "ipAddress", "clientAppUsed", "correlationId", "conditionalAccessStatus", "isInteractive",
    "riskDetail", "riskLevelAggregated", "riskLevelDuringSignIn", "riskState", "riskEventTypes",
    "riskEventTypes_v2", "resourceDisplayName", "resourceId", "homeTenantId", "resourceTenantId",
    "status", "deviceDetail", "location", "appliedConditionalAccessPolicies",
)
BETA_ONLY_FIELDS = (
    "crossTenantAccessType", "homeTenantName", "userType", "signInEventTypes", "resourceOwnerTenantId",
    "appOwnerTenantId", "incomingTokenType", "isTenantRestricted", "signInIdentifier", "signInIdentifierType",
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
    '"deviceDetail":' + json.dumps({"deviceId": "", "displayName": "", "operatingSystem": o, "browser": b,
                                    "isCompliant": False, "isManaged": False, "trustType": ""},
                                   separators=(",", ":"))
    for o, b in _DEVICES
]
_LOCATION_FRAGMENTS = [
    '"location":' + json.dumps({"city": c, "state": st, "countryOrRegion": co,
                                "geoCoordinates": {"altitude": None, "latitude": la, "longitude": lo}},
                               separators=(",", ":"))
    for c, st, co, la, lo in _CITIES
]


def app_info(name: str) -> tuple[str, str, str]:
    info = _APP_CACHE.get(name)
    if info is None:
        info = _APPS.get(name.lower()) or (
            stable_guid("app", name), "Microsoft Graph", "00000003-0000-0000-c000-000000000000")
        _APP_CACHE[name] = info
    return info


# --------------------------------------------------------------------------------------------------
# GDAP entities


@dataclass
class Operation:
    id: str
    operation_type: str
    data: str
    status: str
    created: datetime
    modified: datetime
    etag: str
    apply: Callable[[], None] | None = None  # runs once when the operation succeeds
    due: datetime | None = None  # when it ends (succeeded, or failed with ``fail``)
    fail: bool = False
    on_end: Callable[[], None] | None = None  # runs once when it ends either way

    def wire(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.delegatedAdminRelationshipOperation",
            "@odata.etag": self.etag,
            "id": self.id,
            "operationType": self.operation_type,
            "data": self.data,
            "status": self.status,
            "createdDateTime": ts(self.created),
            "lastModifiedDateTime": ts(self.modified),
        }


@dataclass
class RelationshipRequest:
    id: str
    action: str
    status: str
    created: datetime
    modified: datetime
    due: datetime | None = None  # lockForApproval: when it succeeds; terminate: settled with the relationship

    def wire(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.delegatedAdminRelationshipRequest",
            "id": self.id,
            "action": self.action,
            "status": self.status,
            "createdDateTime": ts(self.created),
            "lastModifiedDateTime": ts(self.modified),
        }


@dataclass
class AccessAssignment:
    id: str
    group_id: str
    roles: list[str]
    status: str
    created: datetime
    modified: datetime
    etag: str
    pending_op: Operation | None = None
    due: datetime | None = None  # when a pending / deleting assignment settles
    fail: bool = False  # it settles in status "error"

    def wire(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.delegatedAdminAccessAssignment",
            "@odata.etag": self.etag,
            "id": self.id,
            "status": self.status,
            "createdDateTime": ts(self.created),
            "lastModifiedDateTime": ts(self.modified),
            "accessContainer": {"accessContainerId": self.group_id, "accessContainerType": "securityGroup"},
            "accessDetails": {"unifiedRoles": [{"roleDefinitionId": r} for r in self.roles]},
        }

    def scenario(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "groupId": self.group_id, "roles": list(self.roles), "status": self.status,
               "createdDateTime": ts(self.created), "lastModifiedDateTime": ts(self.modified)}
        if self.fail:
            out["fail"] = True
        return out


@dataclass
class Relationship:
    id: str
    display_name: str
    status: str
    duration: str
    customer_tenant_id: str | None
    customer_display_name: str | None
    created: datetime
    activated: datetime | None
    end: datetime | None
    modified: datetime
    auto_extend: str
    roles: list[str]
    etag: str
    assignments: dict[str, AccessAssignment] = field(default_factory=dict)
    requests: list[RelationshipRequest] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)
    pending_op: Operation | None = None
    since: datetime | None = None  # when the current transient status began (termination, activation, approval)
    before_termination: str = "active"  # the status a failed termination returns to
    durations: dict[str, str] = field(default_factory=dict)  # this relationship's "asyncDurations"
    flags: dict[str, bool] = field(default_factory=dict)  # failTermination, failOperations, failAccessAssignments

    def sort_key(self) -> tuple[str, str]:
        return (ts(self.created) or "", self.id)

    def wire(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
            "@odata.etag": self.etag,
            "id": self.id,
            "displayName": self.display_name,
            "duration": self.duration,
            "status": self.status,
            "autoExtendDuration": self.auto_extend,
            "createdDateTime": ts(self.created),
            "lastModifiedDateTime": ts(self.modified),
            "activatedDateTime": ts(self.activated),
            "endDateTime": ts(self.end),
            "customer": None if self.customer_tenant_id is None else {
                "tenantId": self.customer_tenant_id, "displayName": self.customer_display_name},
            "accessDetails": {"unifiedRoles": [{"roleDefinitionId": r} for r in self.roles]},
        }

    def scenario(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "status": self.status,
            "duration": self.duration,
            "createdDateTime": ts(self.created),
            "activatedDateTime": ts(self.activated),
            "endDateTime": ts(self.end),
            "lastModifiedDateTime": ts(self.modified),
            "autoExtendDuration": self.auto_extend,
            "roles": list(self.roles),
            "accessAssignments": [a.scenario() for a in self.assignments.values()],
            "requests": [r.wire() for r in self.requests],
            "operations": [o.wire() for o in self.operations],
            **({"asyncDurations": dict(self.durations)} if self.durations else {}),
            **{k: True for k, v in self.flags.items() if v},
        }

    def filter_value(self, key: str) -> Any:
        return {
            "id": self.id,
            "status": self.status,
            "displayname": self.display_name,
            "customer/tenantid": self.customer_tenant_id,
            "customer/displayname": self.customer_display_name,
            "autoextendduration": self.auto_extend,
            "duration": self.duration,
            "createddatetime": ts(self.created),
            "activateddatetime": ts(self.activated),
            "enddatetime": ts(self.end),
        }.get(key)


GDAP_FILTER_PROPS = {"id", "status", "displayname", "customer/tenantid", "customer/displayname",
                     "autoextendduration", "duration", "createddatetime", "activateddatetime", "enddatetime"}


@dataclass
class Customer:
    tenant_id: str
    display_name: str
    default_domain: str
    culture: str
    contacts: list[str]
    dap: dict[str, Any] | None
    relationships: list[str] = field(default_factory=list)  # relationship ids

    @property
    def commerce_id(self) -> str:
        return stable_guid("commerce", self.tenant_id)

    def scenario(self, rels: dict[str, Relationship]) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "defaultDomainName": self.default_domain,
            "culture": self.culture,
            "contacts": list(self.contacts),
            "dap": None if self.dap is None else dict(self.dap),
            "gdapRelationships": [rels[r].scenario() for r in self.relationships if r in rels],
        }


@dataclass
class Fault:
    """An injected failure or oddity for requests whose path starts with ``path_prefix``.

    ``status`` / ``kind`` fail the request; ``empty`` answers a Graph list with 200, no items and an
    ``@odata.nextLink`` that resumes the same query; ``page_size`` serves a Graph list normally but at most
    that many items a page. Both are legal paging: the end of a collection is the absence of a nextLink, not
    a short or empty page ("you must continue to call Microsoft Graph with the @odata.nextLink property
    returned in each response until the @odata.nextLink property is no longer returned",
    https://learn.microsoft.com/graph/paging). They apply only to Graph GET list routes.
    """

    method: str
    path_prefix: str
    status: int
    times: int
    retry_after: Any = None
    kind: str | None = None
    delay_seconds: float = 30.0
    served: int = 0
    after: int = 0  # matching requests to let through before the fault fires (e.g. page 1 of a list)
    passed: int = 0
    empty: bool = False
    page_size: int | None = None

    @property
    def list_only(self) -> bool:
        return self.empty or self.page_size is not None

    @property
    def label(self) -> str | int:
        """How the request log names what the fault did."""
        if self.empty:
            return "empty"
        if self.page_size is not None:
            return "pageSize"
        return self.kind or self.status

    @classmethod
    def parse(cls, d: Any) -> Fault:
        if not isinstance(d, dict):
            raise bad_request("A fault is a JSON object.")
        prefix = d.get("pathPrefix")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise bad_request("A fault needs a 'pathPrefix' starting with '/'.")
        kind = d.get("kind")
        if kind not in (None, "reset", "timeout", "truncate"):
            raise bad_request("A fault 'kind' is one of reset, timeout, truncate.")
        empty = d.get("empty", False)
        if not isinstance(empty, bool):
            raise bad_request("A fault 'empty' is true or false.")
        size = d.get("pageSize")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise bad_request("A fault 'pageSize' is a whole number of at least 1.")
        if (empty or size is not None) and (kind is not None or d.get("status", 200) != 200):
            raise bad_request("A fault with 'empty' or 'pageSize' answers 200; it takes no other 'status' or 'kind'.")
        if empty and size is not None:
            raise bad_request("A fault is either 'empty' or 'pageSize', not both.")
        status = d.get("status", 200 if (kind is not None or empty or size is not None) else 503)
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise bad_request("A fault 'status' is an HTTP status code.")
        times = d.get("times", 1)
        if not isinstance(times, int):
            raise bad_request("A fault 'times' is an integer (-1 = forever).")
        after = d.get("after", 0)
        if not isinstance(after, int) or after < 0:
            raise bad_request("A fault 'after' is a whole number of matching requests to let through first.")
        return cls(
            method=str(d.get("method") or "*").upper(),
            path_prefix=prefix,
            status=status,
            times=times,
            retry_after=d.get("retryAfter"),
            kind=kind,
            delay_seconds=float(d.get("delaySeconds", 30)),
            after=after,
            empty=empty,
            page_size=size,
        )

    def matches(self, method: str, path: str, is_list: bool = False) -> bool:
        """``is_list``: the request is a Graph GET list route (the only kind ``empty``/``page_size`` touch)."""
        if self.list_only and not is_list:
            return False
        return self.times != 0 and self.method in ("*", method.upper()) and path.startswith(self.path_prefix)

    def let_through(self) -> bool:
        """For a matching request: True (and counted) while ``after`` requests are still to pass."""
        if self.passed < self.after:
            self.passed += 1
            return True
        return False

    def consume(self) -> None:
        if self.times > 0:
            self.times -= 1
        self.served += 1

    def scenario(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "pathPrefix": self.path_prefix, "status": self.status,
                               "times": self.times, "served": self.served}
        if self.retry_after is not None:
            out["retryAfter"] = self.retry_after
        if self.after:
            out["after"], out["passed"] = self.after, self.passed
        if self.kind:
            out["kind"] = self.kind
            out["delaySeconds"] = self.delay_seconds
        if self.empty:
            out["empty"] = True
        if self.page_size is not None:
            out["pageSize"] = self.page_size
        return out


@dataclass
class Throttle:
    """A sliding-window request limit in wall-clock time: at most ``requests`` per ``window_seconds``.

    Microsoft Graph, identity and access reports (auditLogRoot: the sign-in log): "Five requests per 10
    seconds" per app per tenant (https://learn.microsoft.com/graph/throttling-limits#identity-and-access-
    reports-service-limits). Only admitted requests take a slot: a request answered 429 does not, so a
    client that waits the Retry-After it was given is let through (Graph documents no other counting, and
    its own guidance is to wait Retry-After and retry, https://learn.microsoft.com/graph/throttling).
    """

    requests: int
    window_seconds: float
    admitted: deque[float] = field(default_factory=deque)

    @classmethod
    def parse(cls, d: Any) -> Throttle | None:
        if d is None:
            return None
        if not isinstance(d, dict):
            raise bad_request("'throttle' is {\"requests\": n, \"windowSeconds\": s}.")
        n, window = d.get("requests"), d.get("windowSeconds")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise bad_request("'throttle.requests' is a whole number of at least 1.")
        if not isinstance(window, int | float) or isinstance(window, bool) or window <= 0:
            raise bad_request("'throttle.windowSeconds' is a positive number of seconds.")
        return cls(n, float(window))

    def admit(self, now: float) -> float | None:
        """None (and the request takes a slot) when under the limit, else the seconds until a slot frees."""
        admitted = self.admitted
        while admitted and admitted[0] <= now - self.window_seconds:
            admitted.popleft()
        if len(admitted) >= self.requests:
            return admitted[0] + self.window_seconds - now
        admitted.append(now)
        return None

    def scenario(self) -> dict[str, Any]:
        window = self.window_seconds
        return {"requests": self.requests, "windowSeconds": int(window) if window.is_integer() else window}


# --------------------------------------------------------------------------------------------------
# The estate


def _role_list(value: Any, what: str) -> list[str]:
    """Roles from a scenario list of ids or the wire ``{"unifiedRoles": [{"roleDefinitionId"}]}``."""
    if isinstance(value, dict):
        value = value.get("unifiedRoles")
        if not isinstance(value, list):
            raise bad_request(f"'{what}.unifiedRoles' is required.")
        value = [r.get("roleDefinitionId") if isinstance(r, dict) else r for r in value]
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise bad_request(f"'{what}' must list role definition ids.")
    seen: list[str] = []
    for r in value:
        if r.lower() not in (s.lower() for s in seen):
            seen.append(r)
    return seen


def _lower_set(values: Iterable[str]) -> set[str]:
    return {v.lower() for v in values}


class Estate:
    """The whole emulated world. Not thread-safe: the aiohttp server runs it on one event loop."""

    def __init__(self, scenario: dict[str, Any]) -> None:
        self._seq = 0
        self.now: datetime = parse_time(scenario.get("now") or format_timestamp(datetime.now(UTC)), "now")
        self.retention_days = float(scenario.get("signInRetentionDays", 30))
        partner = scenario.get("partner") or {}
        self.partner_tenant_id: str = str(partner.get("tenantId") or stable_guid("partner"))
        self.partner_display_name: str = str(partner.get("displayName") or "Partner")
        self.sender_mailbox: str = str(partner.get("senderMailbox") or f"notices@{self._partner_domain(partner)}")
        self.partner_domains: list[str] = self._domains(partner)
        self.groups: dict[str, dict[str, Any]] = {}
        for g in scenario.get("groups") or []:
            if isinstance(g, dict) and g.get("id"):
                self.groups[str(g["id"]).lower()] = {"id": str(g["id"]), "displayName": str(g.get("displayName") or "")}
        self.agents: list[dict[str, Any]] = []
        self.agents_by_id: dict[str, dict[str, Any]] = {}
        for a in scenario.get("agents") or []:
            if not isinstance(a, dict) or not a.get("id"):
                continue
            agent: dict[str, Any] = {
                "id": str(a["id"]),
                "userPrincipalName": str(a.get("userPrincipalName") or f"{a['id']}@{self.partner_domains[0]}"),
                "displayName": str(a.get("displayName") or a.get("userPrincipalName") or a["id"]),
                "groupIds": [str(g) for g in a.get("groupIds") or []],
            }
            self.agents.append(agent)
            self.agents_by_id[agent["id"].lower()] = agent
        self.async_durations: dict[str, str] = self._parse_durations(scenario.get("asyncDurations"), "asyncDurations")
        window = scenario.get("expiringWindow", "PT0S")
        self.expiring_window = parse_duration(window)  # 0: never "expiring" (Microsoft documents no window)
        self.expiring_window_text = str(window)
        self.customers: dict[str, Customer] = {}
        self.relationships: dict[str, Relationship] = {}
        for c in scenario.get("customers") or []:
            self._load_customer(c)
        for r in scenario.get("gdapRelationshipsWithoutCustomer") or []:
            self._load_relationship(r, None)
        rows: list[SignInRow] = []
        for s in scenario.get("signIns") or []:
            rows.append(s if isinstance(s, SignInRow) else signin_row(s))
        self.signins = SignInLog(rows)
        self.faults: list[Fault] = [Fault.parse(f) for f in scenario.get("faults") or []]
        latency = scenario.get("signInLatencySeconds", 0) or 0
        if not isinstance(latency, int | float) or isinstance(latency, bool) or latency < 0:
            raise bad_request("'signInLatencySeconds' is a number of seconds, at least 0.")
        self.latency_seconds = float(latency)
        self.throttle: Throttle | None = Throttle.parse(scenario.get("throttle"))
        licensed = scenario.get("signInLogLicensed", True)
        if not isinstance(licensed, bool):
            raise bad_request("'signInLogLicensed' is true or false.")
        self.signin_log_licensed = licensed
        missing = scenario.get("missingPermissions") or []
        if not isinstance(missing, list) or not all(isinstance(p, str) for p in missing):
            raise bad_request("'missingPermissions' is a list of permission names, e.g. [\"AuditLog.Read.All\"].")
        self.missing_permissions: list[str] = list(dict.fromkeys(missing))
        self.outbox: list[dict[str, Any]] = []
        self.vault: dict[str, list[dict[str, Any]]] = {}  # Key Vault secrets: name -> versions, oldest first
        self._fragments: dict[tuple[str, str], str] = {}
        self._admins: set[str] | None = None
        self.settle_all()

    @staticmethod
    def _parse_durations(value: Any, what: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(k in DEFAULT_ASYNC_DURATIONS for k in value):
            raise bad_request(f"'{what}' is an object with some of {', '.join(DEFAULT_ASYNC_DURATIONS)}, "
                              "each an ISO 8601 duration such as \"PT2H\".")
        for v in value.values():
            parse_duration(v)
        return {k: str(v) for k, v in value.items()}

    def duration(self, kind: str, rel: Relationship | None = None) -> timedelta:
        """How long an asynchronous change of ``kind`` takes: the relationship's, the scenario's, the default."""
        if rel is not None and kind in rel.durations:
            return parse_duration(rel.durations[kind])
        return parse_duration(self.async_durations.get(kind, DEFAULT_ASYNC_DURATIONS[kind]))

    # ---- loading

    @staticmethod
    def _partner_domain(partner: dict[str, Any]) -> str:
        mailbox = str(partner.get("senderMailbox") or "")
        return mailbox.split("@", 1)[1] if "@" in mailbox else "partner.onmicrosoft.com"

    def _domains(self, partner: dict[str, Any]) -> list[str]:
        domains = [str(d) for d in partner.get("verifiedDomains") or [] if isinstance(d, str)]
        main = self._partner_domain(partner)
        if main not in domains:
            domains.insert(0, main)
        return domains

    def next_etag(self, entity_id: str) -> str:
        self._seq += 1
        return make_etag(f"{entity_id}:{self._seq}")

    def _load_customer(self, c: Any) -> None:
        if not isinstance(c, dict) or not c.get("tenantId"):
            return
        tenant_id = str(c["tenantId"])
        name = str(c.get("displayName") or tenant_id)
        dap = c.get("dap")
        if isinstance(dap, dict):
            dap = {"enabled": bool(dap.get("enabled", False)),
                   "startDateTime": dap.get("startDateTime"),
                   **({"endDateTime": dap["endDateTime"]} if dap.get("endDateTime") else {})}
            if dap.get("startDateTime"):
                dap["startDateTime"] = format_timestamp(parse_time(dap["startDateTime"], "dap.startDateTime"))
        else:
            dap = None
        slug = re.sub(r"[^a-z0-9]", "", name.lower()) or tenant_id.split("-")[0]
        customer = Customer(
            tenant_id=tenant_id,
            display_name=name,
            default_domain=str(c.get("defaultDomainName") or f"{slug}.onmicrosoft.com"),
            culture=str(c.get("culture") or "en-US"),
            contacts=[str(x) for x in c.get("contacts") or []],
            dap=dap,
        )
        self.customers[tenant_id.lower()] = customer
        for r in c.get("gdapRelationships") or []:
            self._load_relationship(r, customer)

    def _load_relationship(self, r: Any, customer: Customer | None) -> None:
        if not isinstance(r, dict) or not r.get("id"):
            return
        created = parse_optional_time(r.get("createdDateTime"), "createdDateTime") or self.now
        rid = str(r["id"])
        rel = Relationship(
            id=rid,
            display_name=str(r.get("displayName") or rid[:50]),
            status=str(r.get("status") or "active"),
            duration=str(r.get("duration") or "P730D"),
            customer_tenant_id=customer.tenant_id if customer else None,
            customer_display_name=customer.display_name if customer else None,
            created=created,
            activated=parse_optional_time(r.get("activatedDateTime"), "activatedDateTime"),
            end=parse_optional_time(r.get("endDateTime"), "endDateTime"),
            modified=parse_optional_time(r.get("lastModifiedDateTime"), "lastModifiedDateTime")
            or parse_optional_time(r.get("activatedDateTime"), "activatedDateTime") or created,
            auto_extend=str(r.get("autoExtendDuration") or "PT0S"),
            roles=_role_list(r.get("roles") if "roles" in r else r.get("accessDetails") or [], "roles"),
            etag=self.next_etag(rid),
            durations=self._parse_durations(r.get("asyncDurations"), "asyncDurations"),
            flags={k: bool(r.get(k)) for k in FAILURE_FLAGS if r.get(k)},
        )
        # A transient status in the scenario began "now" and takes its full duration from here; the 90 days
        # of an approvalPending one run from its lastModifiedDateTime (the lock) when the scenario gives one.
        if rel.status in ("terminationRequested", "terminating", "approved", "activating"):
            rel.since = self.now
        elif rel.status == "approvalPending":
            rel.since = parse_optional_time(r.get("lastModifiedDateTime"), "lastModifiedDateTime") or self.now
        for a in r.get("accessAssignments") or []:
            if not isinstance(a, dict) or not a.get("id"):
                continue
            group_id = a.get("groupId") or (a.get("accessContainer") or {}).get("accessContainerId") or ""
            roles = a.get("roles") if "roles" in a else a.get("accessDetails") or []
            aa = AccessAssignment(
                id=str(a["id"]),
                group_id=str(group_id),
                roles=_role_list(roles, "accessAssignments.roles"),
                status=str(a.get("status") or "active"),
                created=parse_optional_time(a.get("createdDateTime"), "createdDateTime") or rel.modified,
                modified=parse_optional_time(a.get("lastModifiedDateTime"), "lastModifiedDateTime") or rel.modified,
                etag=self.next_etag(str(a["id"])),
                fail=bool(a.get("fail")) or rel.flags.get("failAccessAssignments", False),
            )
            if aa.status in ("pending", "deleting"):
                aa.due = self.now + self.duration("accessAssignment", rel)
            rel.assignments[aa.id] = aa
        self.relationships[rid] = rel
        if customer:
            customer.relationships.append(rid)

    # ---- export

    def scenario(self, include_signins: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "now": ts(self.now),
            "signInRetentionDays": self.retention_days if self.retention_days % 1 else int(self.retention_days),
            "partner": {"tenantId": self.partner_tenant_id, "displayName": self.partner_display_name,
                        "senderMailbox": self.sender_mailbox},
            "groups": list(self.groups.values()),
            "agents": self.agents,
            "customers": [c.scenario(self.relationships) for c in self.customers.values()],
        }
        orphans = [r.scenario() for r in self.relationships.values() if r.customer_tenant_id is None]
        if orphans:
            out["gdapRelationshipsWithoutCustomer"] = orphans
        if include_signins:
            out["signIns"] = [self.signin_scenario(r) for r in self.signins.rows]
        out["signInCount"] = len(self.signins)
        if self.latency_seconds:
            out["signInLatencySeconds"] = self.latency_seconds
        if self.throttle is not None:
            out["throttle"] = self.throttle.scenario()
        if not self.signin_log_licensed:
            out["signInLogLicensed"] = False
        if self.missing_permissions:
            out["missingPermissions"] = list(self.missing_permissions)
        out["asyncDurations"] = {**DEFAULT_ASYNC_DURATIONS, **self.async_durations}
        if self.expiring_window:
            out["expiringWindow"] = self.expiring_window_text
        out["faults"] = [f.scenario() for f in self.faults]
        out["outbox"] = self.outbox
        return out

    @staticmethod
    def signin_scenario(r: SignInRow) -> dict[str, Any]:
        return {"id": r.id, "createdDateTime": r.created, "userId": r.user_id,
                "resourceTenantId": r.resource_tenant_id, "crossTenantAccessType": r.cross_tenant_access_type,
                "signInEventTypes": [r.event_type], "errorCode": r.error_code, "appDisplayName": r.app_display_name}

    # ---- clock

    @property
    def now_ts(self) -> str:
        return format_timestamp(self.now)

    def set_clock(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise bad_request("Body must be {\"now\": ISO} or {\"advance\": duration}.")
        if "now" in body:
            self.now = parse_time(body["now"], "now")
        elif "advance" in body:
            self.now = self.now + parse_duration(body["advance"])
        else:
            raise bad_request("Body must be {\"now\": ISO} or {\"advance\": duration}.")
        self.settle_all()

    def settle_all(self) -> None:
        """Bring every relationship, request, operation and access assignment to what it is at ``now``."""
        for rel in self.relationships.values():
            self._settle_relationship(rel)
            for op in rel.operations:
                self._settle_operation(op)
            for aa in rel.assignments.values():
                self._settle_assignment(aa, rel)
            for req in rel.requests:
                self._settle_request(req)

    # ---- sign-ins

    def retention_bounds(self) -> tuple[str, str]:
        """Visible key range ``[lower, upper)``: ``now - retention <= createdDateTime <= now - latency``.

        Retention: only sign-ins within the Entra retention period are served ("Only sign-in events that
        occurred within the ... default retention period are available", List signIns,
        https://learn.microsoft.com/graph/api/signin-list). Latency: an event reaches the log some time after
        it happened; Microsoft's published figures for sign-ins were 2 minutes (95th percentile) and
        5 minutes (99th percentile) (Azure AD reporting latencies, https://learn.microsoft.com/azure/
        active-directory/reports-monitoring/reference-reports-latencies; the current page,
        https://learn.microsoft.com/entra/identity/monitoring-health/reference-log-latency, names no figure).
        ``signInLatencySeconds`` holds each sign-in back that long after its createdDateTime."""
        lower = format_timestamp(self.now - timedelta(days=self.retention_days))
        visible_until = self.now - timedelta(seconds=self.latency_seconds) if self.latency_seconds else self.now
        upper = format_timestamp(visible_until) + "\uffff"
        return lower, upper

    def add_signins(self, items: Any) -> int:
        if isinstance(items, dict) and isinstance(items.get("signIns"), list):
            items = items["signIns"]
        if not isinstance(items, list):
            raise bad_request("Body must be an array of sign-ins.")
        rows = [s if isinstance(s, SignInRow) else signin_row(s) for s in items if isinstance(s, dict | SignInRow)]
        return self.signins.add(rows)

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
            "deviceDetail": {"deviceId": "", "displayName": "", "operatingSystem": os_name, "browser": browser,
                             "isCompliant": False, "isManaged": False, "trustType": ""},
            "location": {"city": city, "state": state, "countryOrRegion": country,
                         "geoCoordinates": {"altitude": None, "latitude": lat, "longitude": lon}},
            "appliedConditionalAccessPolicies": [],
        }
        if beta:
            item.update({
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
            })
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
            frag = (f'"userDisplayName":{_j(display)},"userPrincipalName":{_j(upn)},"userId":{_j(value)}')
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
            f'{frag("app", r.app_display_name)},'
            f'"ipAddress":"{20 + (h >> 8) % 180}.{(h >> 16) % 256}.{(h >> 24) % 256}.{1 + h % 253}",'
            f'"clientAppUsed":"Browser",'
            f'"correlationId":"{corr[:8]}-{corr[8:12]}-{corr[12:16]}-{corr[16:20]}-{corr[20:32]}",'
            f'{_CONSTANT_FRAGMENTS[r.event_type == INTERACTIVE]},{frag("resource", r.app_display_name)},'
            f'"homeTenantId":{frag("str", self.partner_tenant_id)},"resourceTenantId":{rtid},{status},'
            f'{_DEVICE_FRAGMENTS[(h >> 4) % len(_DEVICES)]},{_LOCATION_FRAGMENTS[h % len(_CITIES)]},'
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

    def signin_filter(self, text: str | None, beta: bool) -> SignInQuery:
        """Turn ``$filter`` into a key range within retention, the event types to read and a row predicate.

        Event types: "This API returns only interactive sign-ins unless you set an explicit filter. For
        example, the filter for getting non-interactive sign-ins is ...
        $filter=signInEventTypes/any(t: t eq 'nonInteractiveUser')" (signIn resource, beta,
        https://learn.microsoft.com/graph/api/resources/signin?view=graph-rest-beta). v1.0 has no
        signInEventTypes property and serves the interactive sign-ins. The property "Supports $filter (eq,
        ne)"; ``or`` inside the lambda combines user types (``any(t: t eq 'interactiveUser' or t eq
        'nonInteractiveUser')``, used in Microsoft's own PowerShell examples, msgraph-sdk-powershell#956), but
        per the property's description in the Graph metadata "the filter for getting both user and service
        principal sign-in event types is not supported": that combination answers 400 here.
        """
        lower, upper = self.retention_bounds()
        if not text:
            return SignInQuery(lower, upper, _DEFAULT_EVENT_TYPES, None)
        if not beta:
            m = re.search(r"crosstenantaccesstype|signineventtypes", text, re.IGNORECASE)
            if m:
                raise bad_request(
                    f"Invalid filter clause: Could not find a property named '{text[m.start():m.end()]}' "
                    "on type 'microsoft.graph.signIn'."
                )
        try:
            items = conjuncts(_parse(text))
        except FilterError as exc:
            raise bad_request(_filter_message(exc)) from exc
        checks: list[Callable[[SignInRow], bool]] = []
        types: frozenset[str] | None = None
        for item in items:
            if _is_event_type_clause(item):
                chosen = _event_types_selected(item)
                types = chosen if types is None else types & chosen
                continue
            if not isinstance(item, Compare):
                if isinstance(item, Lambda):
                    raise bad_request(_unsupported_property(item.prop, item.key))
                raise bad_request("Invalid filter clause: only 'and' combinations of comparisons are supported.")
            c = item
            key, op, value = c.key, c.op, c.value
            if key == "createddatetime":
                if not isinstance(value, DateTimeLiteral) or op in ("ne", "has"):
                    raise bad_request(f"Invalid filter clause: unsupported comparison '{c.prop} {op}'.")
                v = value.value
                if op in ("ge", "gt", "eq"):
                    bound = v if op != "gt" else v + "\uffff"
                    lower = max(lower, bound)
                if op in ("le", "lt", "eq"):
                    bound = v + "\uffff" if op != "lt" else v
                    upper = min(upper, bound)
            elif key == "crosstenantaccesstype":
                if op not in ("eq", "ne", "has") or not isinstance(value, str):
                    raise bad_request(f"Invalid filter clause: unsupported comparison '{c.prop} {op}'.")
                accepted = _access_types_matching(op, value, self.signins.access_types)
                if not accepted:
                    types = frozenset()
                elif accepted != self.signins.access_types:
                    checks.append(_member_check(3, frozenset(accepted)))
            elif key == "status/errorcode":
                if op not in ("eq", "ne") or not isinstance(value, int) or isinstance(value, bool):
                    raise bad_request(f"Invalid filter clause: unsupported comparison '{c.prop} {op}'.")
                checks.append(_error_code_check(op, value))
            elif key in ("resourcetenantid", "hometenantid", "userid", "id", "appdisplayname",
                         "userprincipalname"):
                if op not in ("eq", "ne") or not isinstance(value, str):
                    raise bad_request(f"Invalid filter clause: unsupported comparison '{c.prop} {op}'.")
                checks.append(self._string_check(key, op, value.lower()))
            else:
                raise bad_request(_unsupported_property(c.prop, key))
        if types is None:
            types = _DEFAULT_EVENT_TYPES
        if not beta:
            types = types & _DEFAULT_EVENT_TYPES
        return SignInQuery(lower, upper, types, _all_of(checks))

    def _string_check(self, key: str, op: str, value: str) -> Callable[[SignInRow], bool]:
        getter: Callable[[SignInRow], str]
        if key == "resourcetenantid":
            getter = itemgetter(2)
        elif key == "userid":
            getter = itemgetter(1)
        elif key == "id":
            getter = lambda r: r.id  # noqa: E731
        elif key == "appdisplayname":
            getter = itemgetter(5)
        elif key == "userprincipalname":
            def getter(r: SignInRow) -> str:
                agent = self.agents_by_id.get(r.user_id.lower())
                return agent["userPrincipalName"] if agent else r.user_id
        else:  # hometenantid: every sign-in in this log is the partner's own user
            partner = self.partner_tenant_id.lower()
            return (lambda r: value == partner) if op == "eq" else (lambda r: value != partner)
        if op == "eq":
            return lambda r: getter(r).lower() == value
        return lambda r: getter(r).lower() != value

    # ---- GDAP relationships

    def _touch(self, rel: Relationship, at: datetime) -> None:
        rel.modified = max(rel.modified, at)
        rel.etag = self.next_etag(rel.id)

    def _terminate_request(self, rel: Relationship) -> RelationshipRequest | None:
        return next((r for r in reversed(rel.requests) if r.action == "terminate"
                     and r.status in ("created", "pending")), None)

    def _settle_relationship(self, rel: Relationship) -> None:
        """Move ``rel`` to its status at ``now`` (idempotent: a second read at the same instant changes nothing).

        Each transition happens at the emulator time it was due, which is the ``lastModifiedDateTime`` it gets."""
        if rel.status in ("terminationRequested", "terminating") and rel.since is not None:
            took = self.duration("termination", rel)
            halfway, done = rel.since + took / 2, rel.since + took
            if self.now >= done:
                request = self._terminate_request(rel)
                if rel.flags.get("failTermination"):
                    rel.status = rel.before_termination  # the service gave up: the access stays
                else:
                    rel.status, rel.end = "terminated", done
                rel.since = None
                if request is not None:
                    request.status = "failed" if rel.flags.get("failTermination") else "succeeded"
                    request.modified = max(request.modified, done)
                self._touch(rel, done)
            elif self.now >= halfway and rel.status == "terminationRequested":
                rel.status = "terminating"
                self._touch(rel, halfway)
        elif rel.status in ("approved", "activating") and rel.since is not None:
            took = self.duration("activation", rel)
            halfway, done = rel.since + took / 2, rel.since + took
            if self.now >= done:
                rel.status, rel.activated, rel.since = "active", done, None
                rel.end = done + parse_duration(rel.duration)
                self._touch(rel, done)
            elif self.now >= halfway and rel.status == "approved":
                rel.status = "activating"
                self._touch(rel, halfway)
        elif rel.status == "approvalPending" and rel.since is not None:
            lapse = rel.since + APPROVAL_PENDING_LIFETIME
            if self.now >= lapse:  # dap-faq: "GDAP relationship requests expire after 90 days"
                rel.status, rel.end, rel.since = "expired", lapse, None
                self._touch(rel, lapse)
        if rel.status in ("active", "expiring") and rel.end is not None:
            self._settle_end(rel)
        if rel.pending_op is not None:
            self._settle_operation(rel.pending_op)

    def _settle_end(self, rel: Relationship) -> None:
        assert rel.end is not None
        auto = rel.auto_extend.upper() not in ("PT0S", "P0D")
        if rel.end <= self.now:
            if not auto:
                rel.status = "expired"
                self._touch(rel, rel.end)
                return
            step = parse_duration(rel.auto_extend)
            while rel.end <= self.now:
                rel.end += step
            self._touch(rel, self.now)
        if (rel.status == "active" and not auto and self.expiring_window
                and self.now >= rel.end - self.expiring_window):
            rel.status = "expiring"
            self._touch(rel, max(rel.modified, rel.end - self.expiring_window))

    def _settle_operation(self, op: Operation) -> None:
        if op.status in ("succeeded", "failed") or op.due is None:
            return
        halfway = op.due - (op.due - op.created) / 2
        if self.now >= op.due:
            op.status = "failed" if op.fail else "succeeded"
            op.modified = op.due
            op.etag = self.next_etag(op.id)
            apply, op.apply = op.apply, None
            on_end, op.on_end = op.on_end, None
            if apply is not None and not op.fail:
                apply()
            if on_end is not None:
                on_end()
        elif self.now >= halfway and op.status == "notStarted":
            op.status = "running"
            op.modified = halfway
            op.etag = self.next_etag(op.id)

    def get_relationship(self, rid: str, advance: bool = True) -> Relationship:
        rel = self.relationships.get(rid)
        if rel is None:
            for key, value in self.relationships.items():
                if key.lower() == rid.lower():
                    rel = value
                    break
        if rel is None:
            raise not_found(f"The delegated admin relationship with id '{rid}' was not found.")
        self._settle_relationship(rel)  # ``advance`` is kept for callers; settling is idempotent
        return rel

    def list_relationships(self, filt: Node | None, top: int, after: tuple[str, str] | None,
                           advance: bool = True) -> tuple[list[Relationship], tuple[str, str] | None]:
        """A page in (createdDateTime, id) order starting after ``after``; returns the next cursor.

        Every relationship the scan passes is settled to ``now`` first."""
        if filt is not None:
            _check_props(filt, GDAP_FILTER_PROPS, "microsoft.graph.delegatedAdminRelationship")
        ordered = sorted(self.relationships.values(), key=Relationship.sort_key)
        out: list[Relationship] = []
        for rel in ordered:
            if after is not None and rel.sort_key() <= after:
                continue
            self._settle_relationship(rel)
            if filt is not None and not evaluate(filt, rel.filter_value):
                continue
            if len(out) == top:
                return out, out[-1].sort_key()
            out.append(rel)
        return out, None

    def _validate_display_name(self, name: Any, exclude: str | None = None) -> str:
        if not isinstance(name, str) or not name.strip():
            raise bad_request("The 'displayName' property is required.")
        if len(name) > MAX_DISPLAY_NAME:
            raise bad_request(f"The 'displayName' must be at most {MAX_DISPLAY_NAME} characters.")
        for rel in self.relationships.values():
            if rel.id != exclude and rel.display_name.lower() == name.lower():
                raise EmulatorError(409, "Conflict",
                                    f"A delegated admin relationship named '{name}' already exists.")
        return name

    @staticmethod
    def _validate_duration(value: Any) -> str:
        if value is None:
            raise bad_request("The 'duration' property is required.")
        d = parse_duration(value)
        if not timedelta(days=1) <= d <= timedelta(days=730):
            raise bad_request("The 'duration' must be between P1D and P730D (2 years).")
        return str(value)

    @staticmethod
    def _validate_auto_extend(value: Any, roles: list[str]) -> str:
        if not isinstance(value, str) or value.upper() not in AUTO_EXTEND_VALUES:
            raise bad_request("The 'autoExtendDuration' must be one of P0D, PT0S, P180D.")
        value = AUTO_EXTEND_VALUES[value.upper()]
        if value == "P180D" and GLOBAL_ADMIN_ROLE in _lower_set(roles):
            raise bad_request(
                "Relationships that include the Global Administrator role cannot be auto-extended.",
                "AutoExtendNotSupportedForGlobalAdministrator",
            )
        return value

    def _customer_for(self, body: Any) -> Customer | None:
        if body is None:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("tenantId"), str) or not body["tenantId"]:
            raise bad_request("'customer.tenantId' is required when 'customer' is given.")
        tenant_id = body["tenantId"]
        customer = self.customers.get(tenant_id.lower())
        if customer is None:  # a tenant we did not know yet: the real service accepts any tenant id
            name = str(body.get("displayName") or tenant_id)
            slug = re.sub(r"[^a-z0-9]", "", name.lower()) or tenant_id.split("-")[0]
            customer = Customer(tenant_id, name, f"{slug}.onmicrosoft.com", "en-US", [], None)
            self.customers[tenant_id.lower()] = customer
        return customer

    def create_relationship(self, body: Any) -> Relationship:
        if not isinstance(body, dict):
            raise bad_request("The request body must be a delegatedAdminRelationship object.")
        name = self._validate_display_name(body.get("displayName"))
        duration = self._validate_duration(body.get("duration"))
        if body.get("accessDetails") is None:
            raise bad_request("The 'accessDetails' property is required.")
        roles = _role_list(body.get("accessDetails"), "accessDetails")
        if not roles:
            raise bad_request("'accessDetails.unifiedRoles' must contain at least one role.")
        auto = self._validate_auto_extend(body.get("autoExtendDuration", "PT0S"), roles)
        customer = self._customer_for(body.get("customer"))
        base = str(uuid.uuid4())
        rid = f"{base}-{customer.tenant_id}" if customer else base
        rel = Relationship(
            id=rid, display_name=name, status="created", duration=duration,
            customer_tenant_id=customer.tenant_id if customer else None,
            customer_display_name=customer.display_name if customer else None,
            created=self.now, activated=None, end=None, modified=self.now, auto_extend=auto, roles=roles,
            etag=self.next_etag(rid),
        )
        self.relationships[rid] = rel
        if customer:
            customer.relationships.append(rid)
        return rel

    @staticmethod
    def check_if_match(entity_etag: str, if_match: str | None) -> None:
        if if_match is None or not if_match.strip():
            raise EmulatorError(400, "MissingIfMatchHeader",
                                "The 'If-Match' header is required for this request.")
        candidates = [p.strip() for p in if_match.split(",")]
        if "*" in candidates:
            return
        # tolerate strong/weak mismatch (W/ prefix dropped by some clients)
        norm = entity_etag[2:] if entity_etag.startswith("W/") else entity_etag
        for cand in candidates:
            c = cand[2:] if cand.startswith("W/") else cand
            if c == norm or c.strip('"') == norm.strip('"'):
                return
        raise EmulatorError(412, "PreconditionFailed",
                            "The 'If-Match' header does not match the current version of the entity.")

    def update_relationship(self, rid: str, body: Any, if_match: str | None) -> tuple[Relationship, Operation | None]:
        rel = self.get_relationship(rid)
        self.check_if_match(rel.etag, if_match)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a delegatedAdminRelationship object.")
        fields_ = {k: v for k, v in body.items() if not k.startswith("@")}
        if rel.status == "created":
            allowed = {"displayName", "duration", "accessDetails", "customer", "autoExtendDuration"}
            bad = [k for k in fields_ if k not in allowed]
            if bad:
                raise bad_request(f"The property '{bad[0]}' cannot be updated.")
            name = self._validate_display_name(fields_["displayName"], rel.id) if "displayName" in fields_ else None
            duration = self._validate_duration(fields_["duration"]) if "duration" in fields_ else None
            roles = _role_list(fields_["accessDetails"], "accessDetails") if "accessDetails" in fields_ else None
            if roles is not None and not roles:
                raise bad_request("'accessDetails.unifiedRoles' must contain at least one role.")
            auto = self._validate_auto_extend(fields_.get("autoExtendDuration", rel.auto_extend),
                                              roles if roles is not None else rel.roles)
            customer = self._customer_for(fields_["customer"]) if fields_.get("customer") is not None else None
            if name is not None:
                rel.display_name = name
            if duration is not None:
                rel.duration = duration
            if roles is not None:
                rel.roles = roles
            rel.auto_extend = auto
            if customer is not None and customer.tenant_id != rel.customer_tenant_id:
                old = self.customers.get((rel.customer_tenant_id or "").lower())
                if old and rel.id in old.relationships:
                    old.relationships.remove(rel.id)
                customer.relationships.append(rel.id)
                rel.customer_tenant_id = customer.tenant_id
                rel.customer_display_name = customer.display_name
            rel.modified = self.now
            rel.etag = self.next_etag(rel.id)
            return rel, None
        if rel.status != "active":
            raise EmulatorError(
                409, "Conflict",
                f"The delegated admin relationship is in status '{rel.status}' and cannot be updated.")
        bad = [k for k in fields_ if k not in ("autoExtendDuration", "accessDetails")]
        if bad:
            raise bad_request(
                f"The property '{bad[0]}' can only be updated while the relationship is in status 'created'.")
        new_roles: list[str] | None = None
        if "accessDetails" in fields_:
            wanted = _role_list(fields_["accessDetails"], "accessDetails")
            current = _lower_set(rel.roles)
            if _lower_set(wanted) != current:
                if GLOBAL_ADMIN_ROLE not in current or _lower_set(wanted) != current - {GLOBAL_ADMIN_ROLE}:
                    raise bad_request(
                        "Only the removal of the Global Administrator role is supported on an active "
                        "relationship.", "InvalidAccessDetailsUpdate")
                if rel.pending_op is not None:
                    raise EmulatorError(409, "Conflict", "An update of this relationship is already in progress.")
                new_roles = [r for r in rel.roles if r.lower() != GLOBAL_ADMIN_ROLE]
        if "autoExtendDuration" in fields_:
            rel.auto_extend = self._validate_auto_extend(
                fields_["autoExtendDuration"], new_roles if new_roles is not None else rel.roles)
        op: Operation | None = None
        if new_roles is not None:
            roles_after = new_roles

            def apply() -> None:
                rel.roles = roles_after

            def on_end() -> None:  # succeeded or failed: the relationship may be updated again
                ended, rel.pending_op = rel.pending_op, None
                self._touch(rel, ended.modified if ended is not None else self.now)

            op = self._new_operation("delegatedAdminRelationshipUpdate",
                                     {"accessDetails": {"unifiedRoles": [{"roleDefinitionId": r} for r in new_roles]}},
                                     apply, rel, on_end)
            rel.operations.append(op)
            rel.pending_op = op
        rel.modified = self.now
        rel.etag = self.next_etag(rel.id)
        return rel, op

    def _new_operation(self, op_type: str, data: dict[str, Any], apply: Callable[[], None], rel: Relationship,
                       on_end: Callable[[], None]) -> Operation:
        """A long-running operation: ``notStarted`` for the first half of ``asyncDurations.operation``,
        ``running`` for the second, then ``succeeded`` (``apply`` runs) or, with the relationship's
        ``failOperations``, ``failed`` (nothing changes)."""
        oid = str(uuid.uuid4())
        return Operation(id=oid, operation_type=op_type, data=json.dumps(data), status="notStarted",
                         created=self.now, modified=self.now, etag=self.next_etag(oid), apply=apply,
                         due=self.now + self.duration("operation", rel), fail=rel.flags.get("failOperations", False),
                         on_end=on_end)

    def delete_relationship(self, rid: str, if_match: str | None) -> None:
        rel = self.get_relationship(rid)
        self.check_if_match(rel.etag, if_match)
        if rel.status != "created":
            raise EmulatorError(
                409, "Conflict",
                f"Only relationships in status 'created' can be deleted; this one is '{rel.status}'. "
                "Use a terminate request instead.")
        del self.relationships[rel.id]
        customer = self.customers.get((rel.customer_tenant_id or "").lower())
        if customer and rel.id in customer.relationships:
            customer.relationships.remove(rel.id)

    def create_request(self, rid: str, body: Any) -> RelationshipRequest:
        rel = self.get_relationship(rid)
        action = body.get("action") if isinstance(body, dict) else None
        if not isinstance(action, str):
            raise bad_request("The 'action' property is required.")
        if action == "lockForApproval":
            if rel.status != "created":
                raise bad_request(
                    f"lockForApproval is only allowed in status 'created'; the relationship is '{rel.status}'.")
            rel.status, rel.since = "approvalPending", self.now
        elif action == "terminate":
            if rel.status in TERMINATING_STATUSES:
                raise EmulatorError(409, "Conflict",
                                    f"The relationship is already being terminated (status '{rel.status}').")
            if rel.status not in ("active", "expiring"):
                raise bad_request(
                    f"terminate is only allowed for an active relationship; the relationship is '{rel.status}'.")
            rel.before_termination, rel.status, rel.since = rel.status, "terminationRequested", self.now
        elif action in ("approve", "reject"):
            raise bad_request(f"The action '{action}' is only available to indirect resellers.")
        else:
            raise bad_request(f"The action '{action}' is not valid.")
        rel.modified = self.now
        rel.etag = self.next_etag(rel.id)
        req = RelationshipRequest(id=str(uuid.uuid4()), action=action, status="created",
                                  created=self.now, modified=self.now, due=self.now + self.duration("request", rel))
        rel.requests.append(req)
        return req

    def _settle_request(self, req: RelationshipRequest) -> None:
        """``created`` for the first half of ``asyncDurations.request``, then ``pending``; a lockForApproval
        request then ``succeeded``; a terminate request ends with its termination (``succeeded`` when the
        relationship is ``terminated``, ``failed`` when ``failTermination`` made it fail)."""
        if req.due is None or req.status not in ("created", "pending"):
            return
        halfway = req.due - (req.due - req.created) / 2
        if req.status == "created" and self.now >= halfway:
            req.status, req.modified = "pending", halfway
        if req.action != "terminate" and self.now >= req.due:
            req.status, req.modified = "succeeded", req.due

    def list_requests(self, rid: str) -> list[RelationshipRequest]:
        rel = self.get_relationship(rid)
        for req in rel.requests:
            self._settle_request(req)
        return list(rel.requests)

    def get_request(self, rid: str, req_id: str) -> RelationshipRequest:
        rel = self.get_relationship(rid)
        for req in rel.requests:
            if req.id == req_id:
                self._settle_request(req)
                return req
        raise not_found(f"The request '{req_id}' was not found.")

    def list_operations(self, rid: str) -> list[Operation]:
        rel = self.get_relationship(rid)
        for op in rel.operations:
            self._settle_operation(op)
        return list(rel.operations)

    def get_operation(self, rid: str, op_id: str) -> Operation:
        rel = self.get_relationship(rid)
        for op in rel.operations:
            if op.id == op_id:
                self._settle_operation(op)
                return op
        raise not_found(f"The operation '{op_id}' was not found.")

    def approve(self, rid: str, body: Any) -> Relationship:
        """Emulator control: the customer approves an approvalPending relationship."""
        rel = self.get_relationship(rid)
        if rel.status != "approvalPending":
            raise EmulatorError(409, "Conflict", f"The relationship is '{rel.status}', not 'approvalPending'.")
        if rel.customer_tenant_id is None:
            customer = self._customer_for((body or {}).get("customer") if isinstance(body, dict) else None)
            if customer is None:
                raise bad_request("This relationship has no customer yet: post {\"customer\": {\"tenantId\"}}.")
            customer.relationships.append(rel.id)
            rel.customer_tenant_id = customer.tenant_id
            rel.customer_display_name = customer.display_name
        rel.status, rel.since = "approved", self.now  # active after asyncDurations.activation
        rel.modified = self.now
        rel.etag = self.next_etag(rel.id)
        return rel

    # ---- access assignments

    def _settle_assignment(self, aa: AccessAssignment, rel: Relationship) -> None:
        """``pending`` -> ``active`` and ``deleting`` -> ``deleted`` after ``asyncDurations.accessAssignment``;
        with ``fail`` (or the relationship's ``failAccessAssignments``) they end in ``error``."""
        if aa.status in ("pending", "deleting") and aa.due is not None and self.now >= aa.due:
            aa.status = "error" if aa.fail else ("active" if aa.status == "pending" else "deleted")
            aa.modified, aa.due = aa.due, None
            aa.etag = self.next_etag(aa.id)
        if aa.pending_op is not None:
            self._settle_operation(aa.pending_op)

    def list_assignments(self, rid: str) -> list[AccessAssignment]:
        rel = self.get_relationship(rid)
        out = []
        for aa in rel.assignments.values():
            if aa.status == "deleted":
                continue
            self._settle_assignment(aa, rel)
            out.append(aa)
        return out

    def _assignment(self, rel: Relationship, aa_id: str) -> AccessAssignment:
        aa = rel.assignments.get(aa_id)
        if aa is None:
            raise not_found(f"The access assignment '{aa_id}' was not found.")
        return aa

    def get_assignment(self, rid: str, aa_id: str) -> AccessAssignment:
        rel = self.get_relationship(rid)
        aa = self._assignment(rel, aa_id)
        self._settle_assignment(aa, rel)
        return aa

    def create_assignment(self, rid: str, body: Any) -> AccessAssignment:
        rel = self.get_relationship(rid)
        if rel.status != "active":
            raise bad_request(
                f"Access assignments can only be created for an active relationship; this one is '{rel.status}'.")
        if not isinstance(body, dict):
            raise bad_request("The request body must be a delegatedAdminAccessAssignment object.")
        container = body.get("accessContainer")
        if not isinstance(container, dict) or not isinstance(container.get("accessContainerId"), str):
            raise bad_request("'accessContainer.accessContainerId' is required.")
        ctype = container.get("accessContainerType", "securityGroup")
        if ctype != "securityGroup":
            raise bad_request("'accessContainer.accessContainerType' must be 'securityGroup'.")
        group_id = container["accessContainerId"]
        if group_id.lower() not in self.groups:
            raise bad_request(f"The security group '{group_id}' was not found in the partner tenant.")
        roles = self._assignment_roles(rel, body.get("accessDetails"))
        for aa in rel.assignments.values():
            if aa.group_id.lower() == group_id.lower() and aa.status not in ("deleting", "deleted"):
                raise EmulatorError(409, "Conflict",
                                    f"An access assignment for the security group '{group_id}' already exists.")
        aid = str(uuid.uuid4())
        aa = AccessAssignment(id=aid, group_id=group_id, roles=roles, status="pending", created=self.now,
                              modified=self.now, etag=self.next_etag(aid),
                              due=self.now + self.duration("accessAssignment", rel),
                              fail=rel.flags.get("failAccessAssignments", False))
        rel.assignments[aid] = aa
        return aa

    @staticmethod
    def _assignment_roles(rel: Relationship, details: Any) -> list[str]:
        if details is None:
            raise bad_request("'accessDetails' is required.")
        roles = _role_list(details, "accessDetails")
        if not roles:
            raise bad_request("'accessDetails.unifiedRoles' must contain at least one role.")
        extra = _lower_set(roles) - _lower_set(rel.roles)
        if extra:
            raise bad_request(
                f"The role '{sorted(extra)[0]}' is not part of the relationship's access details.")
        return roles

    def update_assignment(self, rid: str, aa_id: str, body: Any, if_match: str | None
                          ) -> tuple[AccessAssignment, Operation | None]:
        rel = self.get_relationship(rid)
        aa = self._assignment(rel, aa_id)
        self.check_if_match(aa.etag, if_match)
        if aa.status != "active":
            raise EmulatorError(409, "Conflict", f"The access assignment is '{aa.status}' and cannot be updated.")
        if not isinstance(body, dict):
            raise bad_request("The request body must be a delegatedAdminAccessAssignment object.")
        fields_ = {k: v for k, v in body.items() if not k.startswith("@")}
        if "accessContainer" in fields_:
            container = fields_["accessContainer"] or {}
            if str(container.get("accessContainerId", aa.group_id)).lower() != aa.group_id.lower():
                raise bad_request("The 'accessContainer' of an access assignment cannot be changed.")
        bad = [k for k in fields_ if k not in ("accessDetails", "accessContainer")]
        if bad:
            raise bad_request(f"The property '{bad[0]}' cannot be updated.")
        if "accessDetails" not in fields_:
            return aa, None
        roles = self._assignment_roles(rel, fields_["accessDetails"])
        if _lower_set(roles) == _lower_set(aa.roles):
            return aa, None

        def apply() -> None:
            aa.roles = roles

        def on_end() -> None:
            aa.pending_op = None
            aa.modified = max(aa.modified, op.modified)
            aa.etag = self.next_etag(aa.id)

        op = self._new_operation(
            "delegatedAdminAccessAssignmentUpdate",
            {"id": aa.id, "accessDetails": {"unifiedRoles": [{"roleDefinitionId": r} for r in roles]}}, apply,
            rel, on_end)
        rel.operations.append(op)
        aa.pending_op = op
        aa.modified = self.now
        aa.etag = self.next_etag(aa.id)
        return aa, op

    def delete_assignment(self, rid: str, aa_id: str, if_match: str | None) -> None:
        rel = self.get_relationship(rid)
        aa = self._assignment(rel, aa_id)
        self.check_if_match(aa.etag, if_match)
        if aa.status in ("deleting", "deleted"):
            raise EmulatorError(409, "Conflict", f"The access assignment is already '{aa.status}'.")
        aa.status, aa.due = "deleting", self.now + self.duration("accessAssignment", rel)
        aa.modified = self.now
        aa.etag = self.next_etag(aa.id)

    # ---- GDAP customers, contracts, groups

    def delegated_admin_customers(self) -> list[Customer]:
        out = []
        for c in self.customers.values():
            if any(self.relationships[r].status in CUSTOMER_VISIBLE_STATUSES
                   for r in c.relationships if r in self.relationships):
                out.append(c)
        return out

    def customer(self, tenant_id: str) -> Customer | None:
        return self.customers.get(tenant_id.lower())

    def group_members(self, group_id: str) -> list[dict[str, Any]]:
        group = self.groups.get(group_id.lower())
        if group is None:
            raise not_found(f"Resource '{group_id}' does not exist or one of its queried reference-property "
                            "objects are not present.", "Request_ResourceNotFound")
        gid = group["id"].lower()
        return [a for a in self.agents if gid in _lower_set(a["groupIds"])]

    # ---- mail

    def send_mail(self, sender: str, body: Any) -> None:
        mailbox = self._mailbox(sender)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object with a 'message'.")
        lowered = {k[:1].lower() + k[1:]: v for k, v in body.items()}
        message = lowered.get("message")
        if not isinstance(message, dict):
            raise EmulatorError(400, "BadRequest", "The 'message' parameter is required.")
        message = _camel_keys(message)
        subject = message.get("subject")
        if not isinstance(subject, str):
            raise EmulatorError(400, "BadRequest", "The message needs a 'subject'.")
        mail_body = message.get("body")
        if not isinstance(mail_body, dict) or not isinstance(mail_body.get("content"), str):
            raise EmulatorError(400, "BadRequest", "The message needs a 'body' with 'content'.")
        ctype = str(mail_body.get("contentType") or "text")
        if ctype.lower() not in ("text", "html"):
            raise EmulatorError(400, "BadRequest", "'body.contentType' must be Text or HTML.")
        recipients = 0
        for key in ("toRecipients", "ccRecipients", "bccRecipients"):
            items = message.get(key) or []
            if not isinstance(items, list):
                raise EmulatorError(400, "ErrorInvalidRecipients", f"'{key}' must be a list of recipients.")
            for rcpt in items:
                address = (rcpt or {}).get("emailAddress", {}).get("address") if isinstance(rcpt, dict) else None
                if not isinstance(address, str) or "@" not in address:
                    raise EmulatorError(400, "ErrorInvalidRecipients",
                                        "At least one recipient is not valid., Recipient is not a valid address.")
                recipients += 1
        if recipients == 0:
            raise EmulatorError(400, "ErrorInvalidRecipients", "At least one recipient is required.")
        save = lowered.get("saveToSentItems", True)
        if isinstance(save, str):
            save = save.strip().lower() != "false"
        self.outbox.append({"from": mailbox, "message": message, "saveToSentItems": bool(save),
                            "sentDateTime": self.now_ts})

    def _mailbox(self, sender: str) -> str:
        s = sender.strip().lower()
        if s == self.sender_mailbox.lower():
            return self.sender_mailbox
        for a in self.agents:
            if s in (a["id"].lower(), a["userPrincipalName"].lower()):
                return str(a["userPrincipalName"])
        raise not_found(f"The requested user '{sender}' is invalid.", "ErrorInvalidUser")

    # ---- Partner Center

    def disable_dap(self, tenant_id: str, body: Any) -> Customer:
        customer = self.customers.get(tenant_id.lower())
        if customer is None:
            raise EmulatorError(404, "2000", f"Customer {tenant_id} was not found.")
        if not isinstance(body, dict):
            raise EmulatorError(400, "2001", "The request body must be a Customer object.")
        allow = None
        found = False
        for k, v in body.items():
            kl = k.lower()
            if kl == "allowdelegatedaccess":
                allow, found = v, True
            elif kl in ("attributes", "id"):
                continue
            else:
                raise EmulatorError(400, "2001", f"The property '{k}' cannot be updated with this request.")
        if not found:
            raise EmulatorError(400, "2001", "'AllowDelegatedAccess' is required.")
        if allow is not False:
            raise EmulatorError(400, "2001", "Delegated admin privileges can only be removed (AllowDelegatedAccess=false).")
        if customer.dap is not None and customer.dap.get("enabled"):
            customer.dap["enabled"] = False
            customer.dap["endDateTime"] = self.now_ts
        return customer

    def admin_agent_ids(self) -> set[str]:
        """Agents in the AdminAgents group (DAP's Global Administrator path), lower-cased ids."""
        if self._admins is None:
            admin_groups = {g["id"].lower() for g in self.groups.values()
                            if g["displayName"].lower() == "adminagents"}
            self._admins = {a["id"].lower() for a in self.agents if admin_groups & _lower_set(a["groupIds"])}
        return self._admins

    def qualifying_stats(self, tenant_id: str) -> tuple[int, int, int, str | None]:
        """(agents, sign-ins, global-admin-agent sign-ins) in ``(now-24h, now]`` and the latest sign-in."""
        idx = self.signins.qualifying.get(tenant_id)
        if idx is None:
            for key, value in self.signins.qualifying.items():
                if key.lower() == tenant_id.lower():
                    idx = value
                    break
        if idx is None:
            return 0, 0, 0, None
        upper = bisect_left(idx.keys, self.now_ts + "\uffff")
        if upper == 0:
            return 0, 0, 0, None
        latest = idx.keys[upper - 1][:SIGNIN_TS_LEN]
        lower = bisect_left(idx.keys, format_timestamp(self.now - timedelta(days=1)) + "\uffff")
        users = idx.users[lower:upper]
        admins = self.admin_agent_ids()
        ga = sum(1 for u in users if u.lower() in admins)
        return len(set(users)), len(users), ga, latest


@dataclass(frozen=True)
class SignInQuery:
    """A sign-in list query: keys in ``[lower, upper)``, of these event types, rows passing ``predicate``."""

    lower: str
    upper: str
    event_types: frozenset[str]
    predicate: Callable[[SignInRow], bool] | None


_DEFAULT_EVENT_TYPES = frozenset({INTERACTIVE})


def _unsupported_property(prop: str, key: str) -> str:
    if key.split("/")[0] not in _lower_set(BETA_FIELDS):
        return f"Invalid filter clause: Could not find a property named '{prop}' on type 'microsoft.graph.signIn'."
    return f"Invalid filter clause: filtering on '{prop}' is not supported."


def _is_event_type_clause(node: Node) -> bool:
    """``signInEventTypes/any(...)``, or an ``or`` of such lambdas."""
    if isinstance(node, Lambda):
        return node.key == "signineventtypes"
    if isinstance(node, Or):
        return all(_is_event_type_clause(item) for item in node.items)
    return False


def _event_types_selected(node: Node) -> frozenset[str]:
    """The event types a ``signInEventTypes`` clause selects. Every sign-in has exactly one category, so the
    clause is evaluated against each possible one-element collection; the body may compare the range
    variable with ``eq``/``ne`` and combine comparisons with ``and``/``or``/``not``."""
    lambdas = [node] if isinstance(node, Lambda) else list(node.items)  # type: ignore[union-attr]
    named: set[str] = set()
    for lam in lambdas:
        assert isinstance(lam, Lambda)
        if lam.op != "any":
            raise bad_request(f"Invalid filter clause: the lambda operator '{lam.op}' is not supported on "
                              f"'{lam.prop}'; use '{lam.prop}/any(t: t eq ...)'.")
        if lam.body is None:
            continue
        for c in _walk(lam.body, "Invalid filter clause: a lambda inside a lambda is not supported."):
            if c.key != lam.var.lower() or c.op not in ("eq", "ne") or not isinstance(c.value, str):
                raise bad_request(f"Invalid filter clause: inside '{lam.prop}/any' only '{lam.var} eq|ne "
                                  "'<event type>'' comparisons are supported.")
            if c.op == "eq":
                named.add(c.value.lower())
    user = {t.lower() for t in USER_EVENT_TYPES}
    if named & user and named - user:
        raise bad_request("Invalid filter clause: the filter for getting both user and service principal "
                          "sign-in event types is not supported.")
    return frozenset(t for t in EVENT_TYPES if evaluate(node, {"signineventtypes": [t]}.get))


def _access_types_matching(op: str, literal: str, present: set[str]) -> set[str]:
    """The crossTenantAccessType values (of those present in the log) a comparison accepts.

    signInAccessType is a flags enum, so ``eq``/``ne`` compare the whole value -- the set of flags, in any
    order -- and ``has`` tests for flags (OData 4.01 part 2, 5.1.1.1.10 "Has": true if the right operand's
    flags are all set in the left one): ``crossTenantAccessType has 'serviceProvider'`` matches
    ``b2bCollaboration,serviceProvider``, ``eq 'serviceProvider'`` does not. Unknown names are a 400, as
    for any enum literal that is not a member."""
    wanted = flag_set(literal)
    unknown = sorted(f for f in wanted if f not in _ACCESS_TYPE_NAMES)
    if unknown:
        raise bad_request(f"Invalid filter clause: The string '{unknown[0]}' is not a valid enumeration type "
                          "constant for 'microsoft.graph.signInAccessType'.")
    if op == "has":
        return {v for v in present if wanted <= flag_set(v)}
    if op == "eq":
        return {v for v in present if flag_set(v) == wanted}
    return {v for v in present if flag_set(v) != wanted}


def _member_check(column: int, accepted: frozenset[str]) -> Callable[[SignInRow], bool]:
    return lambda r: r[column] in accepted


def _all_of(checks: list[Callable[[SignInRow], bool]]) -> Callable[[SignInRow], bool] | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda r: first(r) and second(r)
    return lambda r: all(chk(r) for chk in checks)


def _error_code_check(op: str, code: int) -> Callable[[SignInRow], bool]:
    if op == "eq":
        return lambda r: r.error_code == code
    return lambda r: r.error_code != code


def _camel_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {(k if k.startswith("@") else k[:1].lower() + k[1:]): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value


def _parse(text: str) -> Node:
    from .filters import parse_filter

    return parse_filter(text)


def _filter_message(exc: FilterError) -> str:
    msg = str(exc)
    return msg if msg.startswith("Invalid filter clause") else f"Invalid filter clause: {msg}"


def _check_props(node: Node, allowed: set[str], type_name: str) -> None:
    for c in _walk(node):
        if c.key not in allowed:
            raise bad_request(f"Invalid filter clause: Could not find a property named '{c.prop}' on type '{type_name}'.")


def _walk(node: Node, lambda_refused: str | None = None) -> Iterator[Compare]:
    """The comparisons of a filter; a lambda (``any``/``all``) is refused with ``lambda_refused``."""
    if isinstance(node, Compare):
        yield node
    elif isinstance(node, And | Or):
        for item in node.items:
            yield from _walk(item, lambda_refused)
    elif isinstance(node, Not):
        yield from _walk(node.item, lambda_refused)
    else:
        raise bad_request(lambda_refused or f"Invalid filter clause: the lambda on '{node.prop}' is not supported here.")
