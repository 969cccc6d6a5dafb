"""An audit: sync, ingest, compute the report; removes nothing (``audit`` in the CLI, ``/api/audit/run``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.domain.report import Report
from shared.evaluation.report import compute_report, current_policy
from shared.platform.timeutil import iso
from shared.relationships.sync import sync_relationships
from shared.signins.ingestion import ingest_sign_ins

if TYPE_CHECKING:
    from shared.services import Services

# How far an asOf may lie from Microsoft's present and still be the present (clock skew, a run's length).
AS_OF_SKEW = timedelta(minutes=5)


class FutureAsOfError(ValueError):
    """An ``asOf`` later than Microsoft's present: time that has not happened cannot be audited."""

    def __init__(self, as_of: datetime, now: datetime) -> None:
        super().__init__(
            f"--as-of {iso(as_of)} lies in the future (Microsoft's clock says {iso(now)}); "
            "only the present or the past can be audited"
        )


async def build_report(services: Services, as_of: datetime) -> Report:
    """The report from what the store holds now."""
    await services.storage.ensure()
    return await compute_report(
        services.storage,
        as_of=as_of,
        partner_tenant_id=await services.partner_tenant_id(),
        policy=await current_policy(services.storage, services.settings),
    )


async def audit(
    services: Services, as_of: datetime, *, store: bool = True, now: datetime | None = None
) -> Report:
    """Sync, ingest up to ``min(as_of, now)``, compute; removes nothing.

    Only an audit of the present is stored as the latest evaluation: a past ``as_of`` is a what-if
    from the store, and a future one is refused (:class:`FutureAsOfError`) before anything is
    written. ``now``: Microsoft's present, if the caller has just asked for it."""
    now = now or await services.now()
    if as_of > now + AS_OF_SKEW:
        raise FutureAsOfError(as_of, now)
    await sync_relationships(services, now)
    await ingest_sign_ins(services, as_of, now)
    report = await build_report(services, as_of)
    if store and abs(as_of - now) <= AS_OF_SKEW:
        await services.evaluations.save(report)
    return report
