"""The policy applied to a report: exclusions, thresholds, the circuit breaker, and the removals and
warnings it decides (report mode decides and changes nothing)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.agents.digest import idle_agents_for_digest, mark_idle_agents_in_digest
from shared.agents.removal import remove_idle_agents
from shared.domain.report import Report, ReportRow
from shared.domain.rules import days_until_candidate
from shared.evaluation.report import policy_from_settings
from shared.evaluation.warnings import brief_row, remove_on, warn_before_removal
from shared.lost.service import lost_for_digest, mark_lost_in_digest
from shared.notifications.digests import listed_in_digest, mark_listed_in_digest
from shared.notifications.enqueue import (
    enqueue_notification,
    enqueue_partner_alert,
    enqueue_partner_digest,
)
from shared.notifications.store import mail_broken
from shared.platform.actions import POLICY_ACTOR, record_action
from shared.platform.retry import UpstreamError
from shared.platform.settings import Settings
from shared.platform.state import StateStore
from shared.platform.telemetry import EVENT_EVALUATION_COMPLETED, track_event
from shared.platform.timeutil import iso, parse_iso, parse_optional, utcnow, whole_days
from shared.removals.progress import refresh_requested_removals
from shared.removals.request import in_scope, queue_removal, removal_from_row
from shared.removals.store import removal_id_for, stretch_of

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


UNEXPECTED = " (unexpected)"  # marks a refresh failure that is neither Microsoft's nor another run's
MAX_LISTED = 200  # customers named in one alert or digest


def unproven_days(row: ReportRow, as_of: datetime) -> int:
    """Days since the last known activity, ignoring the coverage floor (what the store cannot prove)."""
    evidence = [
        t
        for t in (parse_optional(row.get("lastSignInAt")), parse_optional(row.get("establishedAt")))
        if t is not None
    ]
    return whole_days(as_of - max(evidence)) if evidence else 0


@dataclass
class Decision:
    """What the policy decides on a report, before anything is checked against the world or changed:
    a pure function of the rows and the settings (:func:`decide`), testable without storage."""

    candidates: list[ReportRow]  # over the threshold, in scope, not excluded
    held_back: list[ReportRow]  # over the threshold by their evidence, but not by what the coverage proves
    to_warn: list[ReportRow]  # within WARN_DAYS_BEFORE_REMOVAL of becoming candidates
    skipped: list[dict[str, Any]]  # excluded and held-back customers, with the reason
    would_halt: str | None  # the circuit breaker's reason, if it trips


def decide(report: Report, settings: Settings) -> Decision:
    rows = report["customers"]
    scope, remove_after = settings.removal_scope, settings.remove_after_days
    effective = parse_iso(report["asOf"])
    policy = policy_from_settings(settings)
    over = [
        r for r in rows if r["inactiveForAtLeastDays"] > remove_after and in_scope(r["relationships"], scope)
    ]
    skipped: list[dict[str, Any]] = [
        {
            "tenantId": r["tenantId"],
            "displayName": r["displayName"],
            "reason": "excluded (EXCLUDED_TENANTS)"
            if r["tenantId"] in settings.excluded_tenants
            else "excluded (an exclusion managed in the portal)",
        }
        for r in over
        if r["excluded"]
    ]
    under = [
        r
        for r in rows
        if not r["excluded"]
        and in_scope(r["relationships"], scope)
        and r["inactiveForAtLeastDays"] <= remove_after
    ]
    held_back = [r for r in under if unproven_days(r, effective) > remove_after]
    skipped += [
        {
            "tenantId": r["tenantId"],
            "displayName": r["displayName"],
            "reason": (
                f"coverage: the sign-in log held since {report['coverage']['from'] or 'nowhere'} proves only "
                f"{r['inactiveForAtLeastDays']} days of inactivity"
            ),
        }
        for r in held_back
    ]
    candidates = [r for r in over if not r["excluded"]]
    would_halt = None
    if len(candidates) > settings.max_removals_per_run:
        would_halt = (
            f"circuit breaker: {len(candidates)} removal candidates, more than "
            f"MAX_REMOVALS_PER_RUN ({settings.max_removals_per_run})"
        )
    to_warn = [r for r in under if 0 < days_until_candidate(r, policy) <= settings.warn_days_before_removal]
    return Decision(candidates, held_back, to_warn, skipped, would_halt)


async def apply_policy(
    services: Services, report: Report, evaluation_id: str, *, as_of: datetime, refresh_error: str | None
) -> dict[str, Any]:
    """The evaluation's second half, on a stored report: guards, warnings, removal queue, digest.
    (The sharded evaluation, ``shared.evaluation.fanout``, runs it once all shards are stored.)
    Ends with the ``EvaluationCompleted`` event, whose bucket counts the workbook charts."""
    summary = await _apply(services, report, evaluation_id, as_of=as_of, refresh_error=refresh_error)
    counts = report["summary"]
    inactive = counts["inactive30To60Days"] + counts["inactive61To90Days"] + counts["inactiveOver90Days"]
    track_event(
        EVENT_EVALUATION_COMPLETED,
        {
            "evaluationId": evaluation_id,
            "asOf": report["asOf"],
            "mode": summary["mode"],
            "customers": counts["customersUnderMonitoring"],
            "bucket_active": counts["customersUnderMonitoring"] - inactive,
            "bucket_30_60": counts["inactive30To60Days"],
            "bucket_61_90": counts["inactive61To90Days"],
            "bucket_90_plus": counts["inactiveOver90Days"],
            "recommended": counts["recommendedForRemoval"],
            "candidates": len(summary["wouldRemove"]),
            "queued": len(summary["queued"]),
            "halted": summary["halted"] or "",
        },
    )
    return summary


async def _apply(
    services: Services, report: Report, evaluation_id: str, *, as_of: datetime, refresh_error: str | None
) -> dict[str, Any]:
    settings = services.settings
    effective = parse_iso(report["asOf"])
    try:
        await refresh_requested_removals(services)
    except Exception:  # progress of earlier removals must not stop today's evaluation
        log.exception("refreshing requested removals failed")
    decision = decide(report, settings)
    summary: dict[str, Any] = {
        "asOf": report["asOf"],
        "mode": settings.policy_mode,
        "evaluationId": evaluation_id,
        "candidates": [r["tenantId"] for r in decision.candidates] if settings.enforce else [],
        "removed": [],
        "warned": [],
        "skipped": decision.skipped,
        "halted": None,
        "queued": [],
        "wouldRemove": [brief_row(r) for r in decision.candidates],
        "wouldWarn": [
            brief_row(r, removeOn=remove_on(r, effective, settings.remove_after_days))
            for r in decision.to_warn
        ],
        "wouldHalt": decision.would_halt,
        "recommended": [r["tenantId"] for r in report["customers"] if r["recommendation"] == "remove"],
        "refreshError": refresh_error,
    }
    summary["halted"] = await _guards(
        services, summary, evaluation_id, as_of=as_of, refresh_error=refresh_error
    )
    if settings.agent_removal_mode == "enforce" and not summary["halted"]:
        # Idle agents out of their groups (never with the default AGENT_REMOVAL_MODE=off).
        try:
            summary["agentRemovals"] = await remove_idle_agents(services)
        except UpstreamError as exc:
            summary["agentRemovals"] = {"error": str(exc)}
    if summary["halted"] or not settings.enforce:
        return summary
    if decision.would_halt:
        summary["halted"] = f"{decision.would_halt}; nothing removed"
        await alert_partner(
            services,
            "breaker",
            f"breaker:{evaluation_id}",
            summary["halted"],
            {
                "asOf": report["asOf"],
                "candidates": len(decision.candidates),
                "limit": settings.max_removals_per_run,
                "customers": [brief_row(r) for r in decision.candidates[:MAX_LISTED]],
            },
        )
    else:
        await _queue_removals(services, report, decision.candidates, evaluation_id, summary)
    warned = await warn_before_removal(services, decision.to_warn, effective)
    summary["warned"] = [w["tenantId"] for w in warned]
    if decision.held_back:
        await alert_partner(
            services,
            "coverage",
            f"coverage:{report['coverage']['from']}",
            f"{len(decision.held_back)} customer(s) held back by the coverage floor",
            {
                "count": len(decision.held_back),
                "coverageFrom": report["coverage"]["from"],
                "removeAfterDays": settings.remove_after_days,
                "customers": [brief_row(r) for r in decision.held_back[:MAX_LISTED]],
            },
        )
    await _digest(services, report, summary, warned, evaluation_id)
    return summary


async def _guards(
    services: Services,
    summary: dict[str, Any],
    evaluation_id: str,
    *,
    as_of: datetime,
    refresh_error: str | None,
) -> str | None:
    """Why nothing may be removed now (stale data; in enforce mode, mail that cannot be sent), alerted;
    None when the run may go on. An unexpected refresh failure is alerted without halting."""
    settings = services.settings
    last_success, _ = await StateStore(services.storage).last_success("signins")
    if last_success is None or as_of - last_success > timedelta(hours=settings.ingestion_stale_hours):
        halted = (
            f"stale: the last successful sign-in ingestion ({iso(last_success) if last_success else 'never'})"
            f" is more than {settings.ingestion_stale_hours} hours before {iso(as_of)}"
        )
        await alert_partner(
            services,
            "stale",
            f"stale:{iso(as_of)[:10]}",
            halted,
            {
                "asOf": iso(as_of),
                "lastSuccess": iso(last_success) if last_success else None,
                "hours": settings.ingestion_stale_hours,
                "error": refresh_error or "",
            },
        )
        return halted
    if refresh_error and UNEXPECTED in refresh_error:
        # Not stale (yet), but a refresh failed in a way nobody planned for (an expired Partner Center
        # token, storage): say so now, not the day the data turns stale. (Microsoft's failures are in
        # the summary and the staleness guard; another run holding the checkpoint is no failure.)
        await alert_partner(
            services,
            "failed",
            f"refresh:{evaluation_id}",
            f"refreshing the data failed: {refresh_error}",
            {"asOf": iso(as_of), "run": "refresh", "error": refresh_error},
        )
    if not settings.enforce:
        return None
    broken = await mail_broken(services) if settings.notify_customers else None
    if broken:
        halted = (
            f"mail: customer notices cannot be sent ({broken[:300]}); nothing is removed until a "
            "mail goes out again"
        )
        await alert_partner(services, "mail", f"mail:{iso(as_of)[:10]}", halted, {"asOf": iso(as_of)})
        return halted
    return None


async def _queue_removals(
    services: Services,
    report: Report,
    candidates: list[ReportRow],
    evaluation_id: str,
    summary: dict[str, Any],
) -> None:
    """One removal per candidate and inactivity stretch (a conditional write: a stretch already removed,
    skipped or failed is not queued again)."""
    settings = services.settings
    coverage_from = parse_optional(report["coverage"]["from"])
    for row in candidates:
        stretch = stretch_of(row)
        removal = removal_from_row(
            row,
            removal_id=await removal_id_for(services.storage, row["tenantId"], stretch),
            source="policy",
            requested_by=POLICY_ACTOR,
            customer_notified=True,
            scope=settings.removal_scope,
            evaluation_id=evaluation_id,
            as_of=parse_iso(report["asOf"]),
            coverage_from=coverage_from,
            now=utcnow(),
            reason=(
                f"no partner sign-in for at least {row['inactiveForAtLeastDays']} days "
                f"(policy: remove after {settings.remove_after_days} days)"
            ),
        )
        stored, created = await queue_removal(services, removal)
        if stored.status in ("queued", "requesting"):
            summary["queued"].append({"tenantId": row["tenantId"], "removalId": stored.id, "new": created})
        else:
            summary["skipped"].append(
                {
                    "tenantId": row["tenantId"],
                    "displayName": row["displayName"],
                    "reason": f"removal {stored.id} for this inactivity stretch is already {stored.status}",
                }
            )


async def _digest(
    services: Services,
    report: Report,
    summary: dict[str, Any],
    warned: list[dict[str, Any]],
    evaluation_id: str,
) -> None:
    """The partner digest of this run.

    Every removal still waiting for the worker that no digest has listed yet is announced: the ones a
    run queued and then died before announcing are announced by the next run. Listed removals are
    marked right after the digest is enqueued, so no later run lists them again, and the key, named by
    the removals, makes two runs that compute the same list at the same moment send it once."""
    pending = [q for q in summary["queued"] if not await listed_in_digest(services.storage, q["removalId"])]
    lost = await lost_for_digest(services)  # access lost outside this product, each listed once
    idle = await idle_agents_for_digest(services, parse_iso(report["asOf"]))  # each idle stretch once
    if not (pending or warned or summary["halted"] or lost or idle):
        return
    by_id = {r["tenantId"]: r for r in report["customers"]}
    names: Any = sorted(q["removalId"] for q in pending)
    if lost:
        names = {"removals": names, "lostAccess": sorted(item["id"] for item in lost)}
    if idle:
        names = {"named": names, "idleAgents": sorted(item["mark"] for item in idle)}
    named = json.dumps(names).encode()
    key = (
        f"digest:{hashlib.sha256(named).hexdigest()[:32]}"
        if pending or lost or idle
        else f"digest:{evaluation_id}"
    )
    if await enqueue_partner_digest(
        services,
        key,
        {
            "asOf": report["asOf"],
            "mode": services.settings.policy_mode,
            "halted": summary["halted"],
            "removals": [brief_row(by_id[q["tenantId"]]) for q in pending][:MAX_LISTED],
            "warned": warned[:MAX_LISTED],
            "skipped": summary["skipped"][:MAX_LISTED],
            "lostAccess": lost[:MAX_LISTED],
            "idleAgents": idle[:MAX_LISTED],
        },
    ):
        await reseller_digests(services, key, report, pending, warned, summary, lost)
        await mark_listed_in_digest(services.storage, [q["removalId"] for q in pending])
        await mark_lost_in_digest(services, [item["id"] for item in lost[:MAX_LISTED]])
        await mark_idle_agents_in_digest(services, idle[:MAX_LISTED])


def reseller_of(row: Any) -> str:
    """The row's indirect reseller's tenant id (lower case), "" for a direct customer."""
    reseller: dict[str, Any] = dict(row.get("reseller") or {})
    return str(reseller.get("id") or "").lower()


def reseller_name(row: Any) -> str:
    reseller: dict[str, Any] = dict(row.get("reseller") or {})
    return str(reseller.get("name") or "")


async def reseller_digests(
    services: Services,
    key: str,
    report: Report,
    pending: list[dict[str, Any]],
    warned: list[dict[str, Any]],
    summary: dict[str, Any],
    lost: list[dict[str, Any]],
) -> None:
    """The same digest to each indirect reseller named in RESELLER_DIGEST_CONTACTS, with only its own
    customers (nothing when none of them is in it); keyed by the partner digest's key, so sent once."""
    contacts = services.settings.reseller_contacts
    if not contacts:
        return
    by_id = {r["tenantId"]: r for r in report["customers"]}
    for reseller, addresses in contacts.items():
        mine = {t for t, r in by_id.items() if reseller_of(r) == reseller}
        if not mine:
            continue
        part = {
            "removals": [brief_row(by_id[q["tenantId"]]) for q in pending if q["tenantId"] in mine],
            "warned": [w for w in warned if w.get("tenantId") in mine],
            "skipped": [s for s in summary["skipped"] if s.get("tenantId") in mine],
            "lostAccess": [x for x in lost if x.get("tenantId") in mine],
        }
        if not any(part.values()):
            continue
        name = next((reseller_name(by_id[t]) for t in mine), "")
        await enqueue_notification(
            services.storage,
            "partner-digest",
            f"{key}:reseller:{reseller}",
            {
                "summary": {
                    "asOf": report["asOf"],
                    "mode": services.settings.policy_mode,
                    "halted": summary["halted"],
                    **{k: v[:MAX_LISTED] for k, v in part.items()},
                    "reseller": {"id": reseller, "name": name},
                },
                "recipients": list(addresses),  # shown in the trail; the worker reads the setting
            },
        )


async def alert_partner(
    services: Services, alert: str, key: str, headline: str, data: dict[str, Any]
) -> None:
    await record_action(
        services.storage,
        tenant_id=None,
        actor=POLICY_ACTOR,
        action=f"enforcement.{alert}",
        result="halted" if alert in ("stale", "breaker") else "alerted",
        detail=headline,
        action_id=f"alert:{key}",
    )
    await enqueue_partner_alert(services, alert, key, {"detail": headline, **data})
