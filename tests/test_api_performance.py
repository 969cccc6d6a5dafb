"""GET /api/customers over 10,000 customers: filter, sort and page from the cached evaluation, exact.

How fast is measured by ``make bench`` (the API's p95 at 10,000 customers, docs/performance.md), never
by a timed test: a timing asserted here fails on a busy machine and proves nothing on a quiet one."""

from __future__ import annotations

import random
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.rules import bucket_of, sort_rows, summarize
from shared.evaluation.store import StoredEvaluation
from shared.web.app import create_app
from shared.web.catalog import SORT_KEYS, CustomerIndex, Query, search_text
from shared.web.http import WebConfig

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

AS_OF = datetime(2026, 11, 21, tzinfo=UTC)
ROLES = [
    "62e90394-69f5-4237-9190-012177145e10",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
]


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def synthetic_report(n: int, seed: int = 3) -> dict[str, Any]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        established = AS_OF - timedelta(days=rnd.randint(0, 900))
        last = (
            None
            if rnd.random() < 0.15
            else AS_OF - timedelta(days=rnd.randint(0, 120), hours=rnd.randint(0, 23))
        )
        d = max(0, (AS_OF - max(x for x in (last, established, AS_OF - timedelta(days=120)) if x)).days)
        types = rnd.choice([["DAP"], ["GDAP"], ["DAP", "GDAP"]])
        rows.append(
            {
                "tenantId": str(uuid.UUID(int=rnd.getrandbits(128))),
                "displayName": f"{rnd.choice(['Contoso', 'Fabrikam', '東京商事', 'Northwind', 'Litware'])} {i:05d}",
                "relationships": [
                    {
                        "type": t,
                        "id": f"{t}-{i}",
                        "displayName": f"{t} {i}",
                        "status": "active",
                        "establishedAt": iso(established),
                        "endsAt": None,
                        "autoExtend": False,
                        "roles": rnd.sample(ROLES, 2),
                    }
                    for t in types
                ],
                "establishedAt": iso(established),
                "daysActive": (AS_OF - established).days,
                "lastSignInAt": iso(last) if last else None,
                "daysInactive": (AS_OF - last).days if last else None,
                "inactiveForAtLeastDays": d,
                "bucket": bucket_of(d),
                "establishedLast7Days": established > AS_OF - timedelta(days=7),
                "agentsSignedInLastDay": rnd.randint(0, 3),
                "signInsLastDay": rnd.randint(0, 9),
                "recommendation": "remove" if d > 60 else "none",
                "excluded": rnd.random() < 0.1,
            }
        )
    rows = sort_rows(rows)
    return {
        "schemaVersion": 1,
        "asOf": iso(AS_OF),
        "partnerTenantId": str(uuid.uuid4()),
        "coverage": {"from": iso(AS_OF - timedelta(days=120)), "to": iso(AS_OF)},
        "policy": {"mode": "report", "recommendAfterDays": 60, "removeAfterDays": 90},
        "summary": summarize(rows),
        "customers": rows,
    }


QUERIES = [
    "",
    "bucket=90%2B",
    "bucket=61-90&sort=name",
    "bucket=30-60&sort=-signInsLastDay",
    "bucket=new",
    "q=contoso",
    "q=%E6%9D%B1%E4%BA%AC",
    "q=global%20reader&sort=-daysInactive",
    "sort=lastSignInAt&page=40",
    "sort=-daysActive&pageSize=250&page=3",
    "recommendation=remove&sort=name&page=7",
    "type=DAP&sort=relationships",
    "q=0999",
    "sort=-agentsSignedInLastDay&page=199",
    "bucket=90%2B&q=fabrikam&sort=-name&page=2",
]


def test_index_answers_10000_customers() -> None:
    report = synthetic_report(10_000)
    index = CustomerIndex("e1", iso(AS_OF), report)
    for _ in range(2):  # the second round reuses the sort orders computed by the first
        for bucket, q, sort, page in [
            (None, "", "-inactiveForAtLeastDays", 1),
            ("90+", "", "name", 3),
            (None, "contoso", "-signInsLastDay", 1),
            ("30-60", "", "lastSignInAt", 2),
            (None, "", "-daysInactive", 150),
            ("new", "", "daysActive", 1),
        ]:
            body = index.page(Query(bucket=bucket, q=q, sort=sort, page=page))
            assert body.startswith(b'{"evaluationId"')


def test_customers_route_over_10000_rows_is_served_from_the_cached_index() -> None:
    report = synthetic_report(10_000)
    stored = StoredEvaluation("0000000000001-perf", AS_OF, report)

    class Evaluations:
        reads = 0

        async def latest(self) -> StoredEvaluation:
            Evaluations.reads += 1
            return stored

    class FakeServices:
        evaluations = Evaluations()

    async def provider() -> Any:
        return FakeServices()

    app = create_app(WebConfig(services=provider, local_operator=True))
    with TestClient(app) as client:
        first = client.get("/api/customers")  # builds the index once
        assert first.status_code == 200 and first.json()["total"] == 10_000
        for query in QUERIES * 2:
            response = client.get("/api/customers?" + query)
            assert response.status_code == 200, (query, response.text)
        page = client.get("/api/customers?bucket=90%2B&sort=name&pageSize=100&page=2").json()
    expected = sorted(
        (r for r in report["customers"] if r["bucket"] == "90+"),
        key=lambda r: (r["displayName"].casefold(), r["tenantId"]),
    )
    assert page["total"] == len(expected) == report["summary"]["inactiveOver90Days"]
    assert [r["tenantId"] for r in page["customers"]] == [r["tenantId"] for r in expected[100:200]]
    # Served from the cached index: at most one look at the stored evaluation per 2 seconds.
    assert Evaluations.reads <= 3


def reference_order(index: CustomerIndex, sort: str) -> list[int]:
    """The definition: a stable sort by the key (ties in report order both ways), blanks last both ways."""
    field = sort.lstrip("-")
    key = SORT_KEYS[field]
    positions = range(len(index.rows))
    present = [i for i in positions if key(index.rows[i]) is not None]
    blank = [i for i in positions if key(index.rows[i]) is None]
    return sorted(present, key=lambda i: key(index.rows[i]), reverse=sort.startswith("-")) + blank


def test_every_sort_order_is_stable_both_ways_with_blanks_last() -> None:
    """The descending orders are derived from the ascending ones (runs of equal keys reversed): each equals
    a stable sort of its own, ties in report order, blank last-sign-ins last, for every sort key."""
    report = synthetic_report(3_000, seed=11)
    for row in report["customers"][::7]:
        row["displayName"] = "Contoso"  # ties on the name as well
    index = CustomerIndex("e1", iso(AS_OF), report)
    for field in SORT_KEYS:
        for sort in (field, f"-{field}"):
            assert index.order(sort) == reference_order(index, sort), sort


def reference_matching(index: CustomerIndex, query: Query) -> list[int]:
    """The definition: every row in the sort order that passes each filter."""
    needle = search_text(query.q.strip())
    out = []
    for i in index.order(query.sort):
        row = index.rows[i]
        if query.bucket == "new" and not row["establishedLast7Days"]:
            continue
        if query.bucket not in (None, "new") and row["bucket"] != query.bucket:
            continue
        if query.recommendation is not None and row["recommendation"] != query.recommendation:
            continue
        if query.relationship_type == "both" and row["relationshipTypes"] != ["DAP", "GDAP"]:
            continue
        if (
            query.relationship_type in ("DAP", "GDAP")
            and query.relationship_type not in row["relationshipTypes"]
        ):
            continue
        if query.excluded is not None and row["excluded"] != query.excluded:
            continue
        if query.role is not None and query.role not in row["roles"]:
            continue
        if needle and needle not in index._haystacks[i]:  # noqa: SLF001 - the reference reads the raw texts
            continue
        out.append(i)
    return out


def test_filters_and_search_select_exactly_the_rows_the_definition_does() -> None:
    """The filters are precomputed sets and the search one scan of the joined texts: every combination
    selects the same rows, in the same order, as testing each row would (names with newlines too)."""
    report = synthetic_report(2_000, seed=5)
    report["customers"][3]["displayName"] = "Line\nBreak Contoso"
    index = CustomerIndex("e1", iso(AS_OF), report)
    rnd = random.Random(7)
    needles = ["", "contoso", "東京", "0199", "Break", "e\nb", "global reader", "zzz", "5", "GDAP"]
    for _ in range(300):
        query = Query(
            bucket=rnd.choice([None, "active", "30-60", "61-90", "90+", "new"]),
            q=rnd.choice(needles),
            sort=rnd.choice(["-inactiveForAtLeastDays", "name", "-lastSignInAt"]),
            recommendation=rnd.choice([None, "remove", "none"]),
            relationship_type=rnd.choice([None, "DAP", "GDAP", "both"]),
            excluded=rnd.choice([None, True, False]),
            role=rnd.choice([None, None, *ROLES[:3], "00000000-0000-0000-0000-000000000000"]),
        )
        assert index.matching(query) == reference_matching(index, query), query
    held = {f["id"]: f["customers"] for f in index.facets["roles"]}
    assert held == {r: sum(r in row["roles"] for row in index.rows) for r in held} and set(held) <= set(ROLES)
