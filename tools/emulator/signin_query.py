"""What a sign-in list query reads: ``$filter`` turned into a key range within retention, the event types
(partitions of the log) to read and a row predicate, with Graph's 400s for what it does not support."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from operator import attrgetter, itemgetter

from .errors import bad_request
from .estate_core import SimEstateCore
from .filter_checks import comparisons, filter_or_400
from .filters import (
    Compare,
    DateTimeLiteral,
    Lambda,
    Node,
    Or,
    conjuncts,
    evaluate,
    flag_set,
    format_timestamp,
)
from .signin_log import ACCESS_TYPE_NAMES, EVENT_TYPES, INTERACTIVE, USER_EVENT_TYPES, SignInRow
from .signin_wire import BETA_FIELDS
from .values import lower_set


@dataclass(frozen=True)
class SignInQuery:
    """A sign-in list query: keys in ``[lower, upper)``, of these event types, rows passing ``predicate``."""

    lower: str
    upper: str
    event_types: frozenset[str]
    predicate: Callable[[SignInRow], bool] | None


_DEFAULT_EVENT_TYPES = frozenset({INTERACTIVE})


class SignInFiltering(SimEstateCore):
    """The sign-in log's visible window and ``$filter`` (a mixin of the estate)."""

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
        visible_until = (
            self.now - timedelta(seconds=self.latency_seconds) if self.latency_seconds else self.now
        )
        upper = format_timestamp(visible_until) + "\uffff"
        return lower, upper

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
                    f"Invalid filter clause: Could not find a property named '{text[m.start() : m.end()]}' "
                    "on type 'microsoft.graph.signIn'."
                )
        items = conjuncts(filter_or_400(text))
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
                raise bad_request(
                    "Invalid filter clause: only 'and' combinations of comparisons are supported."
                )
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
            elif key in (
                "resourcetenantid",
                "hometenantid",
                "userid",
                "id",
                "appdisplayname",
                "userprincipalname",
            ):
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
            getter = attrgetter("id")
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


def _unsupported_property(prop: str, key: str) -> str:
    if key.split("/")[0] not in lower_set(BETA_FIELDS):
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
            raise bad_request(
                f"Invalid filter clause: the lambda operator '{lam.op}' is not supported on "
                f"'{lam.prop}'; use '{lam.prop}/any(t: t eq ...)'."
            )
        if lam.body is None:
            continue
        for c in comparisons(lam.body, "Invalid filter clause: a lambda inside a lambda is not supported."):
            if c.key != lam.var.lower() or c.op not in ("eq", "ne") or not isinstance(c.value, str):
                raise bad_request(
                    f"Invalid filter clause: inside '{lam.prop}/any' only '{lam.var} eq|ne "
                    "'<event type>'' comparisons are supported."
                )
            if c.op == "eq":
                named.add(c.value.lower())
    user = {t.lower() for t in USER_EVENT_TYPES}
    if named & user and named - user:
        raise bad_request(
            "Invalid filter clause: the filter for getting both user and service principal "
            "sign-in event types is not supported."
        )
    return frozenset(t for t in EVENT_TYPES if evaluate(node, {"signineventtypes": [t]}.get))


def _access_types_matching(op: str, literal: str, present: set[str]) -> set[str]:
    """The crossTenantAccessType values (of those present in the log) a comparison accepts.

    signInAccessType is a flags enum, so ``eq``/``ne`` compare the whole value -- the set of flags, in any
    order -- and ``has`` tests for flags (OData 4.01 part 2, 5.1.1.1.10 "Has": true if the right operand's
    flags are all set in the left one): ``crossTenantAccessType has 'serviceProvider'`` matches
    ``b2bCollaboration,serviceProvider``, ``eq 'serviceProvider'`` does not. Unknown names are a 400, as
    for any enum literal that is not a member."""
    wanted = flag_set(literal)
    unknown = sorted(f for f in wanted if f not in ACCESS_TYPE_NAMES)
    if unknown:
        raise bad_request(
            f"Invalid filter clause: The string '{unknown[0]}' is not a valid enumeration type "
            "constant for 'microsoft.graph.signInAccessType'."
        )
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
