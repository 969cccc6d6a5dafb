"""The sign-in log: compact rows, one sorted store per event type, and the per-customer index of
qualifying sign-ins behind Partner Center's DAP statistics. Plain data structures, no HTTP."""

from __future__ import annotations

import heapq
import itertools
import sys
from bisect import bisect_left
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any, NamedTuple

from .errors import bad_request
from .filters import flag_set, format_timestamp
from .values import parse_time, stable_guid

SIGNIN_TS_LEN = 28  # len("2026-11-20T21:00:00.0000000Z")
_intern = sys.intern

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
ACCESS_TYPE_FLAGS = (
    "b2bCollaboration",
    "b2bDirectConnect",
    "microsoftSupport",
    "serviceProvider",
    "unknownFutureValue",
    "passthrough",
)
ACCESS_TYPE_NAMES = {f.lower(): f for f in ACCESS_TYPE_FLAGS}
_ACCESS_TYPE_CACHE: dict[str, str] = {}


def normalize_access_type(value: str) -> str:
    """A crossTenantAccessType as Graph writes it: flags in declaration order, comma-separated, ``none``
    when no flag is set. Unknown names are kept (after the known ones) so odd scenarios stay visible."""
    out = _ACCESS_TYPE_CACHE.get(value)
    if out is None:
        parts = [p.strip() for p in value.split(",") if p.strip() and p.strip().lower() != "none"]
        known = sorted(
            {ACCESS_TYPE_NAMES[p.lower()] for p in parts if p.lower() in ACCESS_TYPE_NAMES},
            key=ACCESS_TYPE_FLAGS.index,
        )
        unknown = [p for p in parts if p.lower() not in ACCESS_TYPE_NAMES]
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


def signin_scenario(r: SignInRow) -> dict[str, Any]:
    """A row as a scenario sign-in object (what :func:`signin_row` reads back)."""
    return {
        "id": r.id,
        "createdDateTime": r.created,
        "userId": r.user_id,
        "resourceTenantId": r.resource_tenant_id,
        "crossTenantAccessType": r.cross_tenant_access_type,
        "signInEventTypes": [r.event_type],
        "errorCode": r.error_code,
        "appDisplayName": r.app_display_name,
    }


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
        merged = list(
            itertools.islice(
                heapq.merge(*(rows for rows, _ in parts), key=itemgetter(0), reverse=True), limit + 1
            )
        )
        more = len(merged) > limit or any(m for _, m in parts)
        return merged[:limit], more

    def find(self, signin_id: str, lower: str, upper_exclusive: str) -> SignInRow | None:
        for store in self.stores.values():
            row = store.find(signin_id, lower, upper_exclusive)
            if row is not None:
                return row
        return None
