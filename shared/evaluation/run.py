"""Policy enforcement: the daily evaluation and the whole automated cycle (CONTRACTS sections 1, 4, 6).

``run_evaluation`` is what the evaluation timer runs: refresh the store, compute and keep the report
(the daily snapshot the trends read), then apply the policy -- recommendations are in the report;
advance warnings go to partner admins (and customers, if enabled) once per customer per inactivity
stretch; removal candidates go onto the removal queue, one message per customer.

Guards, each reported in the summary, written to ``Actions`` and alerted, never silent:

* coverage floor: a customer whose inactivity the stored sign-in log cannot prove is never a
  candidate (``inactiveForAtLeastDays`` encodes it); the ones held back only by it are listed;
* staleness: no removals and no warnings when the last successful sign-in ingestion is older than
  ``INGESTION_STALE_HOURS``;
* circuit breaker: more candidates than ``MAX_REMOVALS_PER_RUN`` and none is removed;
* exclusions: ``EXCLUDED_TENANTS`` are never touched.

``run_cycle`` (``python -m shared.cli enforce``) runs the evaluation and then drains the removal
and notification queues in-process with the same handlers the queue functions call.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError

from shared.domain.rules import days_until_candidate
from shared.evaluation.digest import listed_in_digest, mark_listed_in_digest
from shared.evaluation.report import policy_from_settings
from shared.notifications.enqueue import (
    enqueue_customer_warning,
    enqueue_partner_alert,
    enqueue_partner_digest,
    enqueue_partner_warning,
)
from shared.notifications.mail import mail_needed, require_sender
from shared.notifications.store import mail_broken
from shared.notifications.worker import drain_notifications
from shared.platform.actions import POLICY_ACTOR, record_action
from shared.platform.retry import UpstreamError
from shared.platform.state import ConcurrentRunError, Coverage, StateStore
from shared.platform.storage import get_or_none
from shared.platform.timeutil import iso, parse_iso, parse_optional, utcnow, whole_days
from shared.removals.progress import refresh_requested_removals
from shared.removals.request import in_scope, queue_removal, removal_from_row
from shared.removals.store import RemovalStore, removal_id_for, stretch_of
from shared.removals.worker import drain_removals

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

MAX_LISTED = 200  # customers named in one alert or digest


def _brief(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tenantId": row["tenantId"], "displayName": row["displayName"],
            "inactiveForAtLeastDays": row["inactiveForAtLeastDays"], "lastSignInAt": row["lastSignInAt"],
            "relationships": [r["type"] if r["type"] == "DAP" else f"GDAP {r['displayName'] or r['id']}"
                              for r in row["relationships"]], **extra}


def _unproven_days(row: dict[str, Any], as_of: datetime) -> int:
    """Days since the last known activity, ignoring the coverage floor (what the store cannot prove)."""
    evidence = [t for t in (parse_optional(row.get("lastSignInAt")), parse_optional(row.get("establishedAt")))
                if t is not None]
    return whole_days(as_of - max(evidence)) if evidence else 0


def _warning_key(stretch: str) -> str:
    return "".join("_" if ch in "/\\#?" or ord(ch) < 32 or 127 <= ord(ch) < 160 else ch for ch in stretch)[:500]


async def _refresh(services: Services, as_of: datetime) -> str | None:
    """Sync relationships and ingest sign-ins up to as_of; a failure is returned, not raised, so that
    the evaluation still runs, its guards see stale data, and partner admins hear about it."""
    errors = []
    # Any failure, not only Microsoft's (an expired Partner Center token raises PermissionError, a
    # storage write can fail): the evaluation still runs on what the store holds, its staleness guard
    # holds removals back, and the failure is in the summary, the trail and the partner admins' alert.
    try:
        await services.sync_relationships(as_of)
    except Exception as exc:
        log.exception("relationship sync failed")
        errors.append(f"relationship sync failed: {_failure(exc)}")
    try:
        await services.ingest_sign_ins(as_of)
    except Exception as exc:
        log.exception("sign-in ingestion failed")
        errors.append(f"sign-in ingestion failed: {_failure(exc)}")
    return "; ".join(errors) or None


UNEXPECTED = " (unexpected)"  # marks a refresh failure that is neither Microsoft's nor another run's


def _failure(exc: BaseException) -> str:
    if isinstance(exc, UpstreamError | ConcurrentRunError):
        return str(exc)
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:500]}{UNEXPECTED}"


async def prepare_evaluation(services: Services, as_of: datetime, *, refresh: bool) -> tuple[str | None, Coverage]:
    """What every evaluation (whole or sharded) starts with: check the mail settings before anything is
    written, make sure the tables exist, refresh the data, read the sign-in coverage. Returns the
    refresh error (if any) and the coverage."""
    if mail_needed(services.settings):
        require_sender(services.settings)  # SettingsError before anything is written
    await services.storage.ensure()
    refresh_error = await _refresh(services, as_of) if refresh else None
    return refresh_error, await StateStore(services.storage).load_coverage()


async def run_evaluation(services: Services, as_of: datetime, *, refresh: bool = True) -> dict[str, Any]:
    """The evaluation timer's work: report, snapshot, policy. Removals are queued, not executed.

    A failure of the evaluation itself is written down and alerted before it is raised: a run that
    dies is never silent (no report, no alert, no removals for anyone)."""
    refresh_error, coverage = await prepare_evaluation(services, as_of, refresh=refresh)
    try:
        effective = effective_as_of(coverage, as_of)
        report = await services.report(effective)
        evaluation_id = await services.evaluations.save(report)
        return await apply_policy(services, report, evaluation_id, as_of=as_of, refresh_error=refresh_error)
    except Exception as exc:
        await report_failed_run(services, "evaluation", as_of, exc)
        raise


async def report_failed_run(services: Services, run: str, as_of: datetime, exc: BaseException) -> None:
    """Record and alert a run that failed (best effort: the original error is what the caller raises)."""
    headline = f"the {run} as of {iso(as_of)} failed: {_failure(exc)}"
    try:
        await _alert(services, "failed", f"failed:{run}:{iso(as_of)}", headline, {"asOf": iso(as_of), "run": run})
    except Exception:
        log.exception("could not record or alert the failed %s", run)


def effective_as_of(coverage: Coverage, as_of: datetime) -> datetime:
    """Ingestion did not reach as_of (it failed, or another run holds it): report the newest moment
    the store holds completely rather than a moment it holds nothing about."""
    if coverage.covering(as_of) is None:
        end = coverage.latest_end_before(as_of)
        if end is not None:
            return end
    return as_of


async def apply_policy(services: Services, report: dict[str, Any], evaluation_id: str, *, as_of: datetime,
                       refresh_error: str | None) -> dict[str, Any]:
    """The evaluation's second half, on a stored report: guards, warnings, removal queue, digest.
    (The sharded evaluation, ``shared.evaluation.fanout``, runs it once all shards are stored.)"""
    settings = services.settings
    state = StateStore(services.storage)
    effective = parse_iso(report["asOf"])
    try:
        await refresh_requested_removals(services)
    except Exception:  # progress of earlier removals must not stop today's evaluation
        log.exception("refreshing requested removals failed")

    rows: list[dict[str, Any]] = report["customers"]
    scope = settings.removal_scope
    remove_after = settings.remove_after_days
    coverage_from = parse_optional(report["coverage"]["from"])
    enforce = settings.enforce
    policy = policy_from_settings(settings)
    summary: dict[str, Any] = {
        "asOf": report["asOf"], "mode": settings.policy_mode, "evaluationId": evaluation_id,
        "candidates": [], "removed": [], "warned": [], "skipped": [], "halted": None,
        "queued": [], "wouldRemove": [], "wouldWarn": [], "wouldHalt": None, "recommended": [],
        "refreshError": refresh_error,
    }
    summary["recommended"] = [r["tenantId"] for r in rows if r["recommendation"] == "remove"]

    over = [r for r in rows if r["inactiveForAtLeastDays"] > remove_after and in_scope(r["relationships"], scope)]
    candidates = [r for r in over if not r["excluded"]]
    for r in over:
        if r["excluded"]:
            summary["skipped"].append({"tenantId": r["tenantId"], "displayName": r["displayName"],
                                       "reason": "excluded (EXCLUDED_TENANTS)"})
    held_back = [r for r in rows if not r["excluded"] and in_scope(r["relationships"], scope)
                 and r["inactiveForAtLeastDays"] <= remove_after
                 and _unproven_days(r, effective) > remove_after]
    for r in held_back:
        summary["skipped"].append({
            "tenantId": r["tenantId"], "displayName": r["displayName"],
            "reason": (f"coverage: the sign-in log held since {report['coverage']['from'] or 'nowhere'} proves only "
                       f"{r['inactiveForAtLeastDays']} days of inactivity")})
    summary["wouldRemove"] = [_brief(r) for r in candidates]
    if len(candidates) > settings.max_removals_per_run:
        summary["wouldHalt"] = (f"circuit breaker: {len(candidates)} removal candidates, more than "
                                f"MAX_REMOVALS_PER_RUN ({settings.max_removals_per_run})")
    to_warn = [r for r in rows if not r["excluded"] and in_scope(r["relationships"], scope)
               and r["inactiveForAtLeastDays"] <= remove_after
               and 0 < days_until_candidate(r, policy) <= settings.warn_days_before_removal]
    summary["wouldWarn"] = [_brief(r, removeOn=_remove_on(r, effective, settings.remove_after_days))
                            for r in to_warn]

    if enforce:
        summary["candidates"] = [r["tenantId"] for r in candidates]
    last_success, _ = await state.last_success("signins")
    stale_after = timedelta(hours=settings.ingestion_stale_hours)
    if last_success is None or as_of - last_success > stale_after:
        summary["halted"] = (f"stale: the last successful sign-in ingestion ({iso(last_success) if last_success else 'never'})"
                             f" is more than {settings.ingestion_stale_hours} hours before {iso(as_of)}")
        await _alert(services, "stale", f"stale:{iso(as_of)[:10]}", summary["halted"], {
            "asOf": iso(as_of), "lastSuccess": iso(last_success) if last_success else None,
            "hours": settings.ingestion_stale_hours, "error": refresh_error or ""})
        return summary
    if refresh_error and UNEXPECTED in refresh_error:
        # Not stale (yet), but a refresh failed in a way nobody planned for (an expired Partner Center
        # token, storage): say so now, not the day the data turns stale. (Microsoft's failures are in
        # the summary and the staleness guard; another run holding the checkpoint is no failure.)
        await _alert(services, "failed", f"refresh:{evaluation_id}", f"refreshing the data failed: {refresh_error}",
                     {"asOf": iso(as_of), "run": "refresh", "error": refresh_error})
    if not enforce:
        return summary
    broken = await mail_broken(services) if settings.notify_customers else None
    if broken:
        summary["halted"] = (f"mail: customer notices cannot be sent ({broken[:300]}); nothing is removed until a "
                             "mail goes out again")
        await _alert(services, "mail", f"mail:{iso(as_of)[:10]}", summary["halted"], {"asOf": iso(as_of)})
        return summary

    if summary["wouldHalt"]:
        summary["halted"] = f"{summary['wouldHalt']}; nothing removed"
        await _alert(services, "breaker", f"breaker:{evaluation_id}", summary["halted"], {
            "asOf": report["asOf"], "candidates": len(candidates), "limit": settings.max_removals_per_run,
            "customers": [_brief(r) for r in candidates[:MAX_LISTED]]})
    else:
        for row in candidates:
            stretch = stretch_of(row)
            removal = removal_from_row(
                row, removal_id=await removal_id_for(services.storage, row["tenantId"], stretch), source="policy",
                requested_by=POLICY_ACTOR, customer_notified=True, scope=scope, evaluation_id=evaluation_id,
                as_of=parse_iso(report["asOf"]), coverage_from=coverage_from, now=utcnow(),
                reason=(f"no partner sign-in for at least {row['inactiveForAtLeastDays']} days "
                        f"(policy: remove after {remove_after} days)"))
            stored, created = await queue_removal(services, removal)
            if stored.status in ("queued", "requesting"):
                summary["queued"].append({"tenantId": row["tenantId"], "removalId": stored.id, "new": created})
            else:
                summary["skipped"].append({"tenantId": row["tenantId"], "displayName": row["displayName"],
                                           "reason": f"removal {stored.id} for this inactivity stretch is "
                                                     f"already {stored.status}"})

    warned = await _warn(services, to_warn, effective)
    summary["warned"] = [w["tenantId"] for w in warned]
    if held_back:
        await _alert(services, "coverage", f"coverage:{report['coverage']['from']}",
                     f"{len(held_back)} customer(s) held back by the coverage floor", {
                         "count": len(held_back), "coverageFrom": report["coverage"]["from"],
                         "removeAfterDays": remove_after,
                         "customers": [_brief(r) for r in held_back[:MAX_LISTED]]})
    # Every removal still waiting for the worker that no digest has listed yet is announced: the ones a
    # run queued and then died before announcing are announced by the next run. Listed removals are
    # marked right after the digest is enqueued, so no later run lists them again, and the key, named by
    # the removals, makes two runs that compute the same list at the same moment send it once.
    pending = [q for q in summary["queued"] if not await listed_in_digest(services.storage, q["removalId"])]
    if pending or warned or summary["halted"]:
        by_id = {r["tenantId"]: r for r in rows}
        named = json.dumps(sorted(q["removalId"] for q in pending)).encode()
        key = f"digest:{hashlib.sha256(named).hexdigest()[:32]}" if pending else f"digest:{evaluation_id}"
        if await enqueue_partner_digest(services, key, {
                "asOf": report["asOf"], "mode": settings.policy_mode, "halted": summary["halted"],
                "removals": [_brief(by_id[q["tenantId"]]) for q in pending][:MAX_LISTED],
                "warned": warned[:MAX_LISTED],
                "skipped": summary["skipped"][:MAX_LISTED]}):
            await mark_listed_in_digest(services.storage, [q["removalId"] for q in pending])
    return summary


def _remove_on(row: dict[str, Any], as_of: datetime, remove_after: int) -> str:
    days = max(0, remove_after + 1 - int(row["inactiveForAtLeastDays"]))
    return iso((as_of + timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0))


async def _alert(services: Services, alert: str, key: str, headline: str, data: dict[str, Any]) -> None:
    await record_action(services.storage, tenant_id=None, actor=POLICY_ACTOR, action=f"enforcement.{alert}",
                        result="halted" if alert in ("stale", "breaker") else "alerted", detail=headline,
                        action_id=f"alert:{key}")
    await enqueue_partner_alert(services, alert, key, {"detail": headline, **data})


async def _warn(services: Services, rows: list[dict[str, Any]], as_of: datetime) -> list[dict[str, Any]]:
    """Advance warnings, once per customer per inactivity stretch (``Warnings`` rows)."""
    settings = services.settings
    table = services.storage.table("Warnings")
    fresh: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
    for row in rows:
        stretch = stretch_of(row)
        if await get_or_none(table, row["tenantId"], _warning_key(stretch)) is not None:
            continue
        fresh.append((row, stretch, _brief(row, removeOn=_remove_on(row, as_of, settings.remove_after_days))))
    if not fresh:
        return []
    # The key names exactly this set of warnings: a run that crashes after enqueueing and before the
    # Warnings rows are written enqueues the same key again, which the notification worker dedupes.
    digest = hashlib.sha256(json.dumps(sorted(f"{r['tenantId']}|{s}" for r, s, _ in fresh)).encode()).hexdigest()
    await enqueue_partner_warning(services, f"partner-warning:{digest[:32]}", [b for _, _, b in fresh])
    warned: list[dict[str, Any]] = []
    for row, stretch, brief in fresh:
        if settings.notify_customers_before_removal:
            await enqueue_customer_warning(services, row, stretch, brief["removeOn"])
        # Recorded before the row that makes it done: a run that dies in between records it again
        # (idempotent), rather than leaving a warning without its record.
        await record_action(services.storage, tenant_id=row["tenantId"], actor=POLICY_ACTOR, action="warning.queued",
                            result="warned", detail=f"will lose delegated access on {brief['removeOn'][:10]} "
                                                    f"unless an agent signs in",
                            action_id=f"warning:{row['tenantId']}:{stretch}")
        try:
            await table.create_entity({"PartitionKey": row["tenantId"], "RowKey": _warning_key(stretch),
                                       "Stretch": stretch, "RemoveOn": brief["removeOn"],
                                       "InactiveDays": row["inactiveForAtLeastDays"], "At": iso(utcnow())})
        except ResourceExistsError:
            continue  # another evaluation, running at the same time, warned (and reports) it
        warned.append(brief)
    return warned


async def run_cycle(services: Services, as_of: datetime) -> dict[str, Any]:
    """``python -m shared.cli enforce``: the evaluation, then the removal and notification queues,
    drained in-process exactly as their queue functions process them.

    Raises UpstreamError at the end (after everything that could be done is done and written down)
    when a Microsoft service failed for good; the summary is attached as ``exc.summary``.
    """
    summary = await run_evaluation(services, as_of, refresh=True)
    removals = await drain_removals(services)
    store = RemovalStore(services.storage)
    for queued in summary["queued"]:
        removal = await store.get(queued["removalId"])
        if removal is None:
            continue
        if removal.status in ("requested", "completed"):
            summary["removed"].append(removal.tenant_id)
        elif removal.status in ("skipped", "failed"):
            summary["skipped"].append({"tenantId": removal.tenant_id, "displayName": removal.display_name,
                                       "reason": f"{removal.status}: {removal.status_reason}"})
        else:
            summary["skipped"].append({"tenantId": removal.tenant_id, "displayName": removal.display_name,
                                       "reason": f"not finished in this run (status {removal.status})"})
    notifications = await drain_notifications(services)
    summary["notifications"] = {"processed": notifications.processed, "failed": len(notifications.poisoned)}
    failures = [e for e in removals.errors + notifications.errors if isinstance(e, UpstreamError)]
    if summary.get("refreshError"):
        failures.insert(0, UpstreamError(str(summary["refreshError"])))
    if failures:
        error = UpstreamError(f"{failures[0]} (cycle summary: {json.dumps(cycle_summary_json(summary), ensure_ascii=False)})")
        error.summary = summary  # type: ignore[attr-defined]
        raise error
    return cycle_summary_json(summary)


def cycle_summary_json(summary: dict[str, Any]) -> dict[str, Any]:
    """A cycle summary as printed (each queued removal by tenant and id only)."""
    out = dict(summary)
    out["queued"] = [{"tenantId": q["tenantId"], "removalId": q["removalId"]} for q in summary["queued"]]
    return out
