"""State written by the previous layout (one table for several purposes) still counts after the upgrade
to one table per purpose: an outage of the sender mailbox is not forgotten, a sharded evaluation under
way finishes, an on-demand audit run can still be polled."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from shared.evaluation.audit import audit
from shared.evaluation.audit_runs import get_audit_run
from shared.evaluation.fanout import RUNS, RUNS_TABLE, run_shard_messages, start_sharded_evaluation
from shared.evaluation.store import EvaluationStore
from shared.notifications.store import MAIL_STATE, mail_broken, mark_mail_working
from shared.platform.state import StateStore, partner_state
from shared.platform.timeutil import parse_iso
from shared.services import Services
from tests.conftest import settings_with

AS_OF = parse_iso("2026-11-21T00:00:00Z")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_mail_outage_recorded_by_the_earlier_layout_still_halts_removals(env: dict[str, str]) -> None:
    async def go() -> tuple[str | None, str | None, str | None, str | None]:
        async with Services(settings_with()) as services:
            earlier = StateStore(services.storage)
            await earlier.set_value(
                *MAIL_STATE, json.dumps({"at": "2026-11-20T00:00:00Z", "detail": "ErrorAccessDenied"})
            )
            seen = await mail_broken(services)
            moved = await partner_state(services.storage).get(*MAIL_STATE)
            left = await earlier.get_value(*MAIL_STATE)
            await mark_mail_working(services)
            return seen, moved, left, await mail_broken(services)

    seen, moved, left, after = run(go())
    assert seen == "ErrorAccessDenied" and moved and "ErrorAccessDenied" in moved
    assert left == "" and after is None  # moved once; a mail sent again clears it


def test_a_sharded_evaluation_recorded_by_the_earlier_layout_finishes(
    env: dict[str, str], emulator: Any
) -> None:
    async def go() -> tuple[str, str | None]:
        async with Services(settings_with()) as services:
            await audit(services, AS_OF)
            started = await start_sharded_evaluation(services, AS_OF, refresh=False)
            runs = services.storage.table(RUNS_TABLE)
            entity = await runs.get_entity(RUNS, started["evaluationId"])
            await services.storage.table("Evaluations").upsert_entity(dict(entity))  # where it used to be
            await runs.delete_entity(RUNS, started["evaluationId"])
            drained = await run_shard_messages(services)
            assert len(drained["finished"]) == 1, drained
            latest = await EvaluationStore(services.storage).latest()
            return started["evaluationId"], latest.id if latest else None

    started, latest = run(go())
    assert latest == started


def test_an_audit_run_recorded_by_the_earlier_layout_can_still_be_polled(env: dict[str, str]) -> None:
    async def go() -> dict[str, Any] | None:
        async with Services(settings_with()) as services:
            old = {"id": "0123abcd", "status": "succeeded", "startedAt": "2026-11-21T00:00:00Z"}
            await StateStore(services.storage).set_value("auditRun", old["id"], json.dumps(old))
            return await get_audit_run(services, old["id"])

    found = run(go())
    assert found is not None and found["status"] == "succeeded"


def test_digest_marks_of_the_earlier_layout_still_count(env: dict[str, str]) -> None:
    """The partner digest lists a removal once and the GDAP expiry digest goes out once a day, also on the
    day of the upgrade: the marks an earlier version kept (a fake "sent" Notifications row, a
    ``gdapDigest`` value in IngestionState) are still read."""
    from shared.gdap.digest import expiry_digest
    from shared.notifications.digests import listed_in_digest, mark_listed_in_digest
    from shared.notifications.store import NotificationRow, NotificationStore
    from shared.platform.timeutil import day_key, utcnow

    async def go() -> tuple[bool, bool, bool, dict[str, Any]]:
        async with Services(settings_with()) as services:
            await NotificationStore(services.storage).create(
                NotificationRow(
                    key="digest-listed:old",
                    kind="partner-digest",
                    tenant_id="",
                    status="sent",
                    sent_at=utcnow(),
                )
            )
            await mark_listed_in_digest(services.storage, ["new"])
            day = day_key(AS_OF)
            await StateStore(services.storage).set_value("gdapDigest", day, "2026-11-21T01:00:00Z")
            return (
                await listed_in_digest(services.storage, "old"),
                await listed_in_digest(services.storage, "new"),
                await listed_in_digest(services.storage, "never"),
                await expiry_digest(services, AS_OF),
            )

    old, new, never, digest = run(go())
    assert old and new and not never
    assert digest["result"] == "alreadySent"
