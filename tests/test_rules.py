"""docs/definitions.md sections 1-2 at its edges, as pure functions (no storage, no network)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.domain.models import Relationship
from shared.domain.rules import (
    Policy,
    bucket_of,
    customer_row,
    inactive_for_at_least,
    qualifies,
    sort_rows,
    summarize,
)
from shared.platform.timeutil import day_start, parse_iso
from shared.signins.activity import (
    EVENT,
    INTERACTIVE,
    NON_INTERACTIVE,
    DayActivity,
    last_day_counts,
    latest_at_or_before,
)
from shared.signins.ingestion import slices

AS_OF = parse_iso("2026-11-21T12:00:00Z")
PARTNER = "6513270e-269e-4d37-b2a7-4de452e6b438"
CUSTOMER = "92276658-1e27-41c0-8a6a-63ec24ede6a4"


def dap(status: str = "active", start: datetime | None = None) -> Relationship:
    return Relationship(
        tenant_id=CUSTOMER,
        type="DAP",
        id=CUSTOMER,
        display_name="DAP",
        status=status,
        established_at=start or AS_OF - timedelta(days=400),
    )


def gdap(status: str = "active", activated: datetime | None = None, rid: str = "r1") -> Relationship:
    return Relationship(
        tenant_id=CUSTOMER,
        type="GDAP",
        id=rid,
        display_name=rid,
        status=status,
        established_at=activated,
        roles=["729827e3-9c14-49f7-bb1b-9608f156bbb8"],
    )


def row(
    rels: list[Relationship],
    last: datetime | None = None,
    coverage_from: datetime | None = None,
    policy: Policy | None = None,
    agents: int = 0,
    count: int = 0,
) -> dict | None:
    return customer_row(
        tenant_id=CUSTOMER,
        display_name="Adatum",
        relationships=rels,
        as_of=AS_OF,
        last_sign_in=last,
        agents_last_day=agents,
        sign_ins_last_day=count,
        coverage_from=coverage_from or AS_OF - timedelta(days=365),
        policy=policy or Policy(),
    )


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (0, "active"),
        (29, "active"),
        (30, "30-60"),
        (60, "30-60"),
        (61, "61-90"),
        (90, "61-90"),
        (91, "90+"),
        (400, "90+"),
    ],
)
def test_bucket_edges(days: int, bucket: str) -> None:
    assert bucket_of(days) == bucket


@pytest.mark.parametrize("days", [29, 30, 60, 61, 90, 91])
def test_days_inactive_edges_through_the_row(days: int) -> None:
    r = row([dap()], last=AS_OF - timedelta(days=days))
    assert r is not None
    assert r["daysInactive"] == days
    assert r["inactiveForAtLeastDays"] == days
    assert r["bucket"] == bucket_of(days)
    # recommendation: strictly more than 60 days
    assert r["recommendation"] == ("remove" if days > 60 else "none")


def test_partial_days_round_down() -> None:
    r = row([dap()], last=AS_OF - timedelta(days=60, hours=23, minutes=59))
    assert r is not None and r["daysInactive"] == 60 and r["recommendation"] == "none"
    r = row([dap()], last=AS_OF - timedelta(days=61))
    assert r is not None and r["daysInactive"] == 61 and r["recommendation"] == "remove"


def test_null_last_sign_in_is_blank_but_bounded_by_coverage() -> None:
    r = row([dap()], last=None, coverage_from=AS_OF - timedelta(days=30))
    assert r is not None
    assert r["lastSignInAt"] is None and r["daysInactive"] is None
    # The store only proves 30 days: never "90+" because the log is short.
    assert r["inactiveForAtLeastDays"] == 30 and r["bucket"] == "30-60"


def test_coverage_floor_caps_what_is_proven() -> None:
    # Last sign-in 200 days ago, but the store only holds 45 days of log: proven 45.
    assert (
        inactive_for_at_least(
            AS_OF, AS_OF - timedelta(days=200), AS_OF - timedelta(days=500), AS_OF - timedelta(days=45)
        )
        == 45
    )
    # No coverage at all: nothing is proven.
    assert inactive_for_at_least(AS_OF, None, AS_OF - timedelta(days=500), None) == 0


def test_established_recently_caps_inactivity() -> None:
    r = row([gdap(activated=AS_OF - timedelta(days=10))], last=None)
    assert r is not None
    assert r["inactiveForAtLeastDays"] == 10 and r["daysActive"] == 10


def test_established_last_seven_days_is_exclusive_at_exactly_seven() -> None:
    exactly = row([gdap(activated=AS_OF - timedelta(days=7))])
    inside = row([gdap(activated=AS_OF - timedelta(days=7) + timedelta(seconds=1))])
    assert exactly is not None and inside is not None
    assert exactly["establishedLast7Days"] is False
    assert inside["establishedLast7Days"] is True


def test_only_active_relationships_count() -> None:
    for inactive in (
        dap("disabled"),
        gdap("terminated", AS_OF - timedelta(days=3)),
        gdap("approvalPending", None),
        gdap("expired", AS_OF - timedelta(days=800)),
        gdap("terminationRequested", AS_OF - timedelta(days=5)),
        gdap("created", None),
    ):
        assert row([inactive]) is None, inactive.status


def test_several_relationships_earliest_active_establishes() -> None:
    rels = [
        gdap(activated=AS_OF - timedelta(days=5), rid="b"),
        dap(start=AS_OF - timedelta(days=100)),
        gdap("terminated", AS_OF - timedelta(days=900), rid="old"),
    ]
    r = row(rels)
    assert r is not None
    assert r["daysActive"] == 100
    assert [x["id"] for x in r["relationships"]] == [CUSTOMER, "b"]  # terminated one not listed
    assert r["establishedLast7Days"] is False


def test_excluded_customer_gets_no_recommendation() -> None:
    r = row([dap()], last=AS_OF - timedelta(days=120), policy=Policy(excluded=frozenset({CUSTOMER})))
    assert r is not None and r["excluded"] is True and r["recommendation"] == "none"
    assert r["bucket"] == "90+"


def test_sort_and_summary() -> None:
    rows = [
        {
            "tenantId": "b",
            "inactiveForAtLeastDays": 5,
            "bucket": "active",
            "establishedLast7Days": True,
            "recommendation": "none",
        },
        {
            "tenantId": "a",
            "inactiveForAtLeastDays": 95,
            "bucket": "90+",
            "establishedLast7Days": False,
            "recommendation": "remove",
        },
        {
            "tenantId": "c",
            "inactiveForAtLeastDays": 95,
            "bucket": "90+",
            "establishedLast7Days": False,
            "recommendation": "remove",
        },
        {
            "tenantId": "d",
            "inactiveForAtLeastDays": 45,
            "bucket": "30-60",
            "establishedLast7Days": False,
            "recommendation": "none",
        },
    ]
    assert [r["tenantId"] for r in sort_rows(rows)] == ["a", "c", "d", "b"]
    assert summarize(rows) == {
        "customersUnderMonitoring": 4,
        "inactiveOver90Days": 2,
        "inactive61To90Days": 0,
        "inactive30To60Days": 1,
        "establishedLast7Days": 1,
        "recommendedForRemoval": 2,
    }


def _sign_in(**overrides: object) -> dict:
    base = {
        "id": "x",
        "createdDateTime": "2026-11-21T00:00:00Z",
        "userId": "u",
        "homeTenantId": PARTNER,
        "resourceTenantId": CUSTOMER,
        "crossTenantAccessType": "serviceProvider",
        "status": {"errorCode": 0},
    }
    base.update(overrides)
    return base


def test_qualifying_sign_in() -> None:
    assert qualifies(_sign_in(), PARTNER)
    assert qualifies(_sign_in(crossTenantAccessType="b2bCollaboration,serviceProvider"), PARTNER)
    assert not qualifies(_sign_in(crossTenantAccessType="b2bCollaboration"), PARTNER)
    assert not qualifies(_sign_in(crossTenantAccessType="none"), PARTNER)
    assert not qualifies(_sign_in(status={"errorCode": 50076}), PARTNER)  # failed is not activity
    assert not qualifies(_sign_in(homeTenantId=CUSTOMER), PARTNER)
    assert not qualifies(_sign_in(resourceTenantId=PARTNER), PARTNER)


def _day(*events: tuple[str, str]) -> list[DayActivity]:
    by_day: dict[datetime, DayActivity] = {}
    for when, user in events:
        at = parse_iso(when)
        by_day.setdefault(day_start(at), DayActivity(day_start(at))).add(at, user)
    return list(by_day.values())


def test_last_day_window_is_open_at_start_and_closed_at_as_of() -> None:
    days = _day(
        ("2026-11-20T12:00:00Z", "u1"),  # exactly asOf - 24h: excluded
        ("2026-11-20T12:00:00.000001Z", "u2"),  # just inside
        ("2026-11-21T12:00:00Z", "u3"),  # exactly asOf: included
        ("2026-11-21T12:00:00.000001Z", "u4"),  # after asOf: excluded
        ("2026-11-21T08:00:00Z", "u2"),
    )
    assert last_day_counts(days, AS_OF) == (3, 2, 0)  # sign-ins, agents, of which non-interactive


def test_latest_at_or_before_ignores_sign_ins_after_as_of() -> None:
    (activity,) = _day(("2026-11-21T09:00:00Z", "u"), ("2026-11-21T13:00:00Z", "u"))
    assert latest_at_or_before(activity, AS_OF) == (parse_iso("2026-11-21T09:00:00Z"), INTERACTIVE)


def test_both_kinds_of_sign_in_are_kept_counted_and_named() -> None:
    day = day_start(AS_OF)
    activity = DayActivity(day)
    activity.add(parse_iso("2026-11-21T08:00:00Z"), "u1", INTERACTIVE)
    activity.add(parse_iso("2026-11-21T09:00:00Z"), "u2", NON_INTERACTIVE)
    activity.add(parse_iso("2026-11-21T09:30:00Z"), "u2", NON_INTERACTIVE)
    activity.add(parse_iso("2026-11-21T13:00:00Z"), "u1", INTERACTIVE)  # after asOf
    restored = DayActivity.from_entity(activity.to_entity(CUSTOMER))
    assert sorted(restored.events) == sorted(activity.events)
    assert last_day_counts([restored], AS_OF) == (3, 2, 2)
    assert latest_at_or_before(restored, AS_OF) == (parse_iso("2026-11-21T09:30:00Z"), NON_INTERACTIVE)
    assert restored.last_kind == INTERACTIVE  # the 13:00 one
    # A day stored before non-interactive sign-ins were read has the kind bit clear: interactive.
    old = {
        "PartitionKey": "2026-11-21",
        "RowKey": CUSTOMER,
        "Agents": '["u1"]',
        "Ev0": EVENT.pack(8 * 3600 * 10**6, 0),
    }
    assert DayActivity.from_entity(old).events == [(8 * 3600 * 10**6, 0, INTERACTIVE)]


def test_day_activity_round_trip_and_range_replacement() -> None:
    (activity,) = _day(
        ("2026-11-21T01:00:00.1234567Z", "u1"),
        ("2026-11-21T05:00:00Z", "u2"),
        ("2026-11-21T23:59:59.999999Z", "u1"),
    )
    restored = DayActivity.from_entity(activity.to_entity(CUSTOMER))
    assert sorted(restored.times()) == sorted(activity.times())
    # Re-reading [04:00, 06:00] with one more late sign-in replaces exactly that range.
    (fresh,) = _day(("2026-11-21T05:00:00Z", "u2"), ("2026-11-21T05:30:00Z", "u3"))
    restored.replace_range(parse_iso("2026-11-21T04:00:00Z"), parse_iso("2026-11-21T06:00:00Z"), fresh)
    assert len(restored.events) == 4 and set(restored.agents) == {"u1", "u2", "u3"}
    again = DayActivity.from_entity(restored.to_entity(CUSTOMER))
    again.replace_range(parse_iso("2026-11-21T04:00:00Z"), parse_iso("2026-11-21T06:00:00Z"), fresh)
    assert sorted(again.times()) == sorted(restored.times())


def test_slices_cover_the_window_without_gaps_or_overlap() -> None:
    start, end = parse_iso("2026-11-18T07:30:00Z"), parse_iso("2026-11-21T12:00:00Z")
    pieces = slices(start, end, 24)
    assert pieces[0][0] == start and pieces[-1][1] == end
    for (_, a_end), (b_start, _) in zip(pieces, pieces[1:], strict=False):
        assert b_start - a_end == timedelta(microseconds=1)
        assert day_start(b_start) == b_start
    assert all(day_start(a) == day_start(b) for a, b in pieces)
    assert len(slices(start, end, 6)) > len(pieces)


def test_the_policy_decides_from_the_report_alone() -> None:
    """decide() is the policy without storage or Microsoft: who is a candidate, who is excluded, who the
    coverage floor holds back, who is warned, and when the circuit breaker trips."""
    from shared.domain.report import Report, ReportRow
    from shared.domain.rules import summarize
    from shared.evaluation.policy import decide
    from shared.platform.settings import Settings

    def customer(
        tenant: str, last_days: int, coverage_days: int = 365, established_days: int = 400
    ) -> ReportRow:
        made = customer_row(
            tenant_id=tenant,
            display_name=tenant[:8],
            relationships=[dap(start=AS_OF - timedelta(days=established_days))],
            as_of=AS_OF,
            last_sign_in=AS_OF - timedelta(days=last_days),
            agents_last_day=0,
            sign_ins_last_day=0,
            coverage_from=AS_OF - timedelta(days=coverage_days),
            policy=Policy(excluded=frozenset({EXCLUDED})),
        )
        assert made is not None
        return made

    EXCLUDED, GONE, HELD, SOON, ACTIVE = (f"{n}0000000-0000-4000-8000-000000000000" for n in range(1, 6))
    rows = [customer(EXCLUDED, 120), customer(GONE, 120), customer(SOON, 85), customer(ACTIVE, 2)]
    held = customer(HELD, 120, coverage_days=30)  # the store proves only 30 days
    report: Report = {
        "schemaVersion": 1,
        "asOf": "2026-11-21T12:00:00Z",
        "partnerTenantId": PARTNER,
        "coverage": {"from": "2026-10-22T12:00:00Z", "to": "2026-11-21T12:00:00Z"},
        "policy": Policy().to_json(),
        "summary": summarize(rows + [held]),
        "customers": rows + [held],
    }
    settings = Settings.from_env({"POLICY_MODE": "enforce", "WARN_DAYS_BEFORE_REMOVAL": "7"})
    decision = decide(report, settings)
    assert [r["tenantId"] for r in decision.candidates] == [GONE]
    assert [r["tenantId"] for r in decision.held_back] == [HELD]
    assert [r["tenantId"] for r in decision.to_warn] == [SOON]
    assert [(s["tenantId"], s["reason"][:8]) for s in decision.skipped] == [
        (EXCLUDED, "excluded"),
        (HELD, "coverage"),
    ]
    assert decision.would_halt is None
    tight = decide(report, Settings.from_env({"POLICY_MODE": "enforce", "MAX_REMOVALS_PER_RUN": "0"}))
    assert tight.would_halt and "MAX_REMOVALS_PER_RUN (0)" in tight.would_halt
