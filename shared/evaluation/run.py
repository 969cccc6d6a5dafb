"""Policy enforcement: the daily evaluation and the whole automated cycle (docs/definitions.md sections 1-2, 5, 4).

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

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.evaluation.audit import build_report
from shared.evaluation.policy import UNEXPECTED, alert_partner, apply_policy
from shared.notifications.mail import mail_needed, require_sender
from shared.notifications.webhook_worker import drain_webhooks
from shared.notifications.worker import drain_notifications
from shared.platform.retry import UpstreamError
from shared.platform.state import ConcurrentRunError, Coverage, StateStore
from shared.platform.timeutil import iso
from shared.relationships.sync import sync_relationships
from shared.removals.store import RemovalStore
from shared.removals.worker import drain_removals
from shared.signins.ingestion import ingest_sign_ins

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


async def _refresh(services: Services, as_of: datetime) -> str | None:
    """Sync relationships and ingest sign-ins up to as_of; a failure is returned, not raised, so that
    the evaluation still runs, its guards see stale data, and partner admins hear about it."""
    errors = []
    # Any failure, not only Microsoft's (an expired Partner Center token raises PermissionError, a
    # storage write can fail): the evaluation still runs on what the store holds, its staleness guard
    # holds removals back, and the failure is in the summary, the trail and the partner admins' alert.
    try:
        await sync_relationships(services, as_of)
    except Exception as exc:
        log.exception("relationship sync failed")
        errors.append(f"relationship sync failed: {_failure(exc)}")
    try:
        await ingest_sign_ins(services, as_of)
    except Exception as exc:
        log.exception("sign-in ingestion failed")
        errors.append(f"sign-in ingestion failed: {_failure(exc)}")
    return "; ".join(errors) or None


def _failure(exc: BaseException) -> str:
    if isinstance(exc, UpstreamError | ConcurrentRunError):
        return str(exc)
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:500]}{UNEXPECTED}"


async def prepare_evaluation(
    services: Services, as_of: datetime, *, refresh: bool
) -> tuple[str | None, Coverage]:
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
        report = await build_report(services, effective)
        evaluation_id = await services.evaluations.save(report)
        return await apply_policy(services, report, evaluation_id, as_of=as_of, refresh_error=refresh_error)
    except Exception as exc:
        await report_failed_run(services, "evaluation", as_of, exc)
        raise


async def report_failed_run(services: Services, run: str, as_of: datetime, exc: BaseException) -> None:
    """Record and alert a run that failed (best effort: the original error is what the caller raises)."""
    headline = f"the {run} as of {iso(as_of)} failed: {_failure(exc)}"
    try:
        await alert_partner(
            services, "failed", f"failed:{run}:{iso(as_of)}", headline, {"asOf": iso(as_of), "run": run}
        )
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


async def run_cycle(services: Services, as_of: datetime) -> dict[str, Any]:
    """``python -m shared.cli enforce``: the evaluation, then the removal and notification queues,
    drained in-process exactly as their queue functions process them.

    Raises UpstreamError at the end (after everything that could be done is done and written down)
    when a Microsoft service failed for good; the summary is attached as ``exc.summary``.
    """
    summary = await run_evaluation(services, as_of, refresh=True)
    # Mail first (the digest and warnings this evaluation queued): a sender that cannot send is then
    # known before any removal starts, and removals whose customers are to be told wait for it.
    before = await drain_notifications(services)
    removals = await drain_removals(services)
    store = RemovalStore(services.storage)
    for queued in summary["queued"]:
        removal = await store.get(queued["removalId"])
        if removal is None:
            continue
        if removal.status in ("requested", "completed"):
            summary["removed"].append(removal.tenant_id)
        elif removal.status in ("skipped", "failed"):
            summary["skipped"].append(
                {
                    "tenantId": removal.tenant_id,
                    "displayName": removal.display_name,
                    "reason": f"{removal.status}: {removal.status_reason}",
                }
            )
        else:
            summary["skipped"].append(
                {
                    "tenantId": removal.tenant_id,
                    "displayName": removal.display_name,
                    "reason": f"not finished in this run (status {removal.status})",
                }
            )
    notifications = await drain_notifications(services)
    # The webhook's copies of the alerts and the digest. A failing webhook does not fail the cycle (it is
    # in the trail, and mailed: the mail of a given-up delivery is sent right after).
    webhooks = await drain_webhooks(services)
    if webhooks.failed:
        late = await drain_notifications(services)
        notifications.processed += late.processed
        notifications.poisoned += late.poisoned
        notifications.errors += late.errors
    summary["notifications"] = {
        "processed": before.processed + notifications.processed,
        "failed": len(before.poisoned) + len(notifications.poisoned),
    }
    summary["webhooks"] = webhooks.as_json()
    errors = before.errors + removals.errors + notifications.errors
    failures = [e for e in errors if isinstance(e, UpstreamError)]
    if summary.get("refreshError"):
        failures.insert(0, UpstreamError(str(summary["refreshError"])))
    if failures:
        error = UpstreamError(
            f"{failures[0]} (cycle summary: {json.dumps(cycle_summary_json(summary), ensure_ascii=False)})"
        )
        error.summary = summary  # type: ignore[attr-defined]
        raise error
    return cycle_summary_json(summary)


def cycle_summary_json(summary: dict[str, Any]) -> dict[str, Any]:
    """A cycle summary as printed (each queued removal by tenant and id only)."""
    out = dict(summary)
    out["queued"] = [{"tenantId": q["tenantId"], "removalId": q["removalId"]} for q in summary["queued"]]
    return out
