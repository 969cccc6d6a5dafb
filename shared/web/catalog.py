"""The latest stored evaluation, indexed for the portal: filter, sort and page 10,000 customers fast.

Built once per evaluation (the stored evaluation is immutable): search text, sort orders and each
row's JSON are computed on first use and reused by every later request, so a request costs one pass
over a precomputed order plus the serialisation of one page.
"""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from shared.domain.report import Report, ReportRow, Summary
from shared.domain.roles import role_name
from shared.domain.rules import summarize
from shared.evaluation.formats import report_csv
from shared.platform.timeutil import parse_iso

BUCKET_FILTERS = ("active", "30-60", "61-90", "90+", "new")  # "new": established in the last 7 days
DEFAULT_SORT = "-inactiveForAtLeastDays"
MAX_PAGE_SIZE = 500


SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    # One string, not a (name, tenant) tuple: half the comparison cost. "\0" sorts before every other
    # character, so the order is the tuple's (a display name holding NUL is not a real one).
    "name": lambda r: f"{r['displayName'].casefold()}\0{r['tenantId']}",
    "tenantId": lambda r: r["tenantId"],
    "relationships": lambda r: r["_relationshipLabel"],
    "agentsSignedInLastDay": lambda r: r["agentsSignedInLastDay"],
    "signInsLastDay": lambda r: r["signInsLastDay"],
    "daysActive": lambda r: r["daysActive"],
    "daysInactive": lambda r: r["daysInactive"],
    "lastSignInAt": lambda r: r["lastSignInAt"],
    "inactiveForAtLeastDays": lambda r: r["inactiveForAtLeastDays"],
    "establishedAt": lambda r: r["establishedAt"],
    "recommendation": lambda r: (r["recommendation"] == "remove", r["inactiveForAtLeastDays"]),
}
NULLABLE_SORTS = {"daysInactive", "lastSignInAt"}


def sort_field(sort: str) -> str:
    return sort[1:] if sort.startswith("-") else sort


RELATIONSHIP_FILTERS = (None, "DAP", "GDAP", "both")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class QueryError(ValueError):
    """A query parameter the index cannot answer (a 400 for the caller)."""


def search_text(text: str) -> str:
    """Case- and width-insensitive form (full-width Latin and half-width kana match their usual forms)."""
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True)
class Query:
    bucket: str | None = None
    q: str = ""
    sort: str = DEFAULT_SORT
    page: int = 1
    page_size: int = 50
    recommendation: str | None = None
    relationship_type: str | None = None  # DAP, GDAP, or both (customers holding both kinds)
    excluded: bool | None = None
    role: str | None = None  # a role definition id some relationship of the customer holds
    reseller: str | None = None  # an indirect reseller's tenant id or name (any case)

    def validate(self) -> None:
        if self.bucket is not None and self.bucket not in BUCKET_FILTERS:
            raise QueryError(f"bucket must be one of {', '.join(BUCKET_FILTERS)}")
        if sort_field(self.sort) not in SORT_KEYS:
            raise QueryError(f"sort must be one of {', '.join(SORT_KEYS)} (prefix - for descending)")
        if self.page < 1:
            raise QueryError("page must be at least 1")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise QueryError(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
        if self.recommendation not in (None, "remove", "none"):
            raise QueryError("recommendation must be remove or none")
        if self.relationship_type not in RELATIONSHIP_FILTERS:
            raise QueryError("type must be DAP, GDAP or both")
        if self.role is not None and not GUID_RE.match(self.role):
            raise QueryError("role must be a role definition id (GUID)")
        if len(self.q) > 200:
            raise QueryError("q must be at most 200 characters")
        if self.reseller is not None and not 1 <= len(self.reseller.strip()) <= 200:
            raise QueryError("reseller must be a reseller's tenant id or name (at most 200 characters)")


class CustomerIndex:
    def __init__(self, evaluation_id: str, created_at: str, report: Report) -> None:
        self.evaluation_id = evaluation_id
        self.created_at = created_at
        self.report = report
        self.head: dict[str, Any] = {k: v for k, v in report.items() if k != "customers"}
        rows: list[dict[str, Any]] = []
        haystacks: list[str] = []
        for row in report["customers"]:
            relationships: list[dict[str, Any]] = [
                {**rel, "roleNames": [role_name(r) for r in rel["roles"]]} for rel in row["relationships"]
            ]
            types = sorted({rel["type"] for rel in relationships})
            role_ids = sorted({r for rel in relationships for r in rel["roles"]})
            view: dict[str, Any] = {
                **row,
                "relationships": relationships,
                "relationshipTypes": types,
                "roles": role_ids,
                "roleNames": sorted({role_name(r) for r in role_ids}),
            }
            view["_relationshipLabel"] = "+".join(types) + " " + " ".join(view["roleNames"])
            rows.append(view)
            haystacks.append(
                search_text(
                    " ".join(
                        [
                            row["displayName"],
                            row["tenantId"],
                            *view["roleNames"],
                            *(rel["displayName"] for rel in relationships),
                            *types,
                        ]
                    )
                )
            )
        self.rows = rows
        self._haystacks = haystacks
        self._position = {r["tenantId"]: i for i, r in enumerate(rows)}
        self._orders: dict[str, list[int]] = {}
        self._columns: dict[str, list[Any]] = {}
        # The filters as sets of positions, and the search texts joined by newlines with each row's start,
        # for one C-level scan: a needle without a newline cannot span two rows.
        self._by_bucket: dict[str, set[int]] = {}
        self._by_recommendation: dict[str, set[int]] = {}
        self._by_type: dict[str, set[int]] = {}
        self._by_excluded: dict[bool, set[int]] = {True: set(), False: set()}
        self._by_role: dict[str, set[int]] = {}
        for i, shown in enumerate(rows):
            self._by_excluded[bool(shown["excluded"])].add(i)
            for role in shown["roles"]:
                self._by_role.setdefault(role.lower(), set()).add(i)
        self._by_reseller: dict[str, set[int]] = {}  # by the reseller's tenant id and by its name, folded
        resellers: dict[str, dict[str, Any]] = {}
        for i, shown in enumerate(rows):
            reseller = shown.get("reseller") or {}
            for name in {str(reseller.get("id") or ""), str(reseller.get("name") or "")} - {""}:
                self._by_reseller.setdefault(search_text(name), set()).add(i)
            if reseller.get("id"):
                entry = resellers.setdefault(
                    reseller["id"], {"id": reseller["id"], "name": reseller.get("name") or "", "customers": 0}
                )
                entry["customers"] += 1
            self._by_bucket.setdefault(shown["bucket"], set()).add(i)
            if shown["establishedLast7Days"]:
                self._by_bucket.setdefault("new", set()).add(i)
            self._by_recommendation.setdefault(shown["recommendation"], set()).add(i)
            for kind in shown["relationshipTypes"]:
                self._by_type.setdefault(kind, set()).add(i)
        self._by_type["both"] = self._by_type.get("DAP", set()) & self._by_type.get("GDAP", set())
        # What the filter control offers: every role some customer holds, with how many hold it.
        self.facets = {
            "roles": [
                {"id": role, "name": role_name(role), "customers": len(positions)}
                for role, positions in sorted(self._by_role.items(), key=lambda x: (-len(x[1]), x[0]))
            ]
        }
        # The resellers the rows name, for a filter's choices: by name, then id.
        self.resellers = sorted(resellers.values(), key=lambda r: (search_text(r["name"]), r["id"]))
        self._starts: list[int] = []
        offset = 0
        for text in haystacks:
            self._starts.append(offset)
            offset += len(text) + 1
        self._joined = "\n".join(haystacks)
        for field in SORT_KEYS:  # a few ms each at 10,000 rows, once per evaluation: no request pays them
            self.column(field)
        self._json: list[str | None] = [None] * len(rows)
        self._report_json: bytes | None = None
        self._report_csv: bytes | None = None

    # --- whole report ------------------------------------------------------------------------
    def report_json(self) -> bytes:
        if self._report_json is None:
            self._report_json = json.dumps(self.report, ensure_ascii=False).encode("utf-8")
        return self._report_json

    def report_csv(self) -> bytes:
        if self._report_csv is None:
            self._report_csv = report_csv(self.report).encode("utf-8")
        return self._report_csv

    def row(self, tenant_id: str) -> dict[str, Any] | None:
        position = self._position.get(tenant_id)
        return None if position is None else self.public(position)

    def public(self, position: int) -> dict[str, Any]:
        return {k: v for k, v in self.rows[position].items() if not k.startswith("_")}

    def row_json(self, position: int) -> str:
        cached = self._json[position]
        if cached is None:
            cached = self._json[position] = json.dumps(self.public(position), ensure_ascii=False)
        return cached

    # --- queries ---------------------------------------------------------------------------------
    def column(self, field: str) -> list[Any]:
        """Every row's sort key for ``field``, computed once."""
        cached = self._columns.get(field)
        if cached is None:
            key = SORT_KEYS[field]
            cached = self._columns[field] = [key(row) for row in self.rows]
        return cached

    def order(self, sort: str) -> list[int]:
        """Row positions in ``sort`` order; ties keep the report's order. Blanks sort last both ways.

        The ascending order is one sort over the precomputed keys; the descending one is derived from it
        (its runs of equal keys in reverse, each run kept in report order), not sorted again: a cold sort
        was most of the API's tail at 10,000 customers."""
        cached = self._orders.get(sort)
        if cached is not None:
            return cached
        field = sort_field(sort)
        keys = self.column(field)
        if sort.startswith("-"):
            ascending = self.order(field)
            present = len(ascending) - (keys.count(None) if field in NULLABLE_SORTS else 0)
            runs: list[list[int]] = []
            start = 0
            for j in range(1, present + 1):
                if j == present or keys[ascending[j]] != keys[ascending[start]]:
                    runs.append(ascending[start:j])
                    start = j
            order = [i for run in reversed(runs) for i in run] + ascending[present:]
        elif field in NULLABLE_SORTS:
            order = sorted((i for i, k in enumerate(keys) if k is not None), key=keys.__getitem__)
            order += [i for i, k in enumerate(keys) if k is None]
        else:
            order = sorted(range(len(keys)), key=keys.__getitem__)
        self._orders[sort] = order
        return order

    def matching(self, query: Query) -> list[int]:
        """Positions of the rows ``query`` selects, in its sort order.

        Each filter is a precomputed set of positions (bucket, recommendation, type) or one scan of the
        joined search text in C (``str.find``), intersected; the order is then walked once. A Python
        pass that tested every row's fields was most of a filtered request at 10,000 customers."""
        query.validate()
        needle = search_text(query.q.strip())
        chosen: set[int] | None = None
        for subset in (
            None if query.bucket is None else self._by_bucket.get(query.bucket, set()),
            None
            if query.recommendation is None
            else self._by_recommendation.get(query.recommendation, set()),
            None if query.relationship_type is None else self._by_type.get(query.relationship_type, set()),
            None if query.excluded is None else self._by_excluded[query.excluded],
            None if query.role is None else self._by_role.get(query.role.lower(), set()),
            None
            if query.reseller is None
            else self._by_reseller.get(search_text(query.reseller.strip()), set()),
            self._search(needle) if needle else None,
        ):
            if subset is not None:  # never changed in place: & makes a new set
                chosen = subset if chosen is None else chosen & subset
        order = self.order(query.sort)
        if chosen is None:
            return list(order)
        return [i for i in order if i in chosen]

    def _search(self, needle: str) -> set[int]:
        """Rows whose search text holds ``needle``: found in the joined text, each row once."""
        if "\n" in needle:
            return {i for i, text in enumerate(self._haystacks) if needle in text}
        text, starts = self._joined, self._starts
        found: set[int] = set()
        position = text.find(needle)
        while position != -1:
            row = bisect_right(starts, position) - 1
            found.add(row)
            position = text.find(needle, starts[row + 1] if row + 1 < len(starts) else len(text))
        return found

    def page(self, query: Query) -> bytes:
        """The JSON answer of ``GET /api/customers`` for ``query``."""
        matches = self.matching(query)
        total = len(matches)
        pages = max(1, -(-total // query.page_size))
        start = (query.page - 1) * query.page_size
        chosen = matches[start : start + query.page_size]
        head = {
            "evaluationId": self.evaluation_id,
            "evaluatedAt": self.created_at,
            "asOf": self.head["asOf"],
            "coverage": self.head["coverage"],
            "policy": self.head["policy"],
            "summary": self.head["summary"],
            "query": {
                "bucket": query.bucket,
                "q": query.q,
                "sort": query.sort,
                "page": query.page,
                "pageSize": query.page_size,
                "recommendation": query.recommendation,
                "type": query.relationship_type,
                "excluded": query.excluded,
                "role": query.role,
                "reseller": query.reseller,
            },
            "facets": self.facets,
            "resellers": self.resellers,
            **({"resellerSummary": self._reseller_summary(query.reseller)} if query.reseller else {}),
            "total": total,
            "page": query.page,
            "pageSize": query.page_size,
            "pages": pages,
        }
        prefix = json.dumps(head, ensure_ascii=False)[:-1]
        body = ",".join(self.row_json(i) for i in chosen)
        return f'{prefix},"customers":[{body}]}}'.encode()

    def _reseller_summary(self, reseller: str) -> Summary:
        """The tiles' counts for one reseller's customers (``summary`` is the whole estate's)."""
        chosen = sorted(self._by_reseller.get(search_text(reseller.strip()), set()))
        return summarize(cast(list[ReportRow], [self.rows[i] for i in chosen]), parse_iso(self.head["asOf"]))

    def csv(self, query: Query) -> bytes:
        matches = self.matching(query)
        return report_csv(cast(Report, {"customers": [self.rows[i] for i in matches]})).encode("utf-8")
