"""Removing an idle partner agent from a group that gives it access to customers: an action a person
asks for (role Relationships.Remove, with a reason and an explicit confirmation), never automatic.

Right before acting the sign-in log is ingested up to Microsoft's present and the agents report is
computed again: an agent that signed in since, is no longer proven idle, or is no longer a member is not
removed. Graph's ``DELETE /groups/{id}/members/{memberId}/$ref`` is sent as the write identity
(:meth:`shared.microsoft.graph.GraphClient.remove_group_member`). Every outcome that changes something
or refuses a request is written to the audit trail (``agent.groupRemoval``); a repeated request for a
removal already done sends nothing and answers ``unchanged``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared.agents.report import agents_report
from shared.gdap.base import GdapError
from shared.platform.actions import POLICY_ACTOR, record_action
from shared.platform.retry import UpstreamError
from shared.platform.settings import GUID_RE
from shared.signins.ingestion import ingest_sign_ins

if TYPE_CHECKING:
    from shared.services import Services

ACTION = "agent.groupRemoval"
MAX_REASON = 1000


def _guid(value: Any, what: str) -> str:
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise GdapError(f"{what} must be an object id (GUID)", code="malformedBody")
    return value.lower()


def removal_request(user_id: Any, group_id: Any, body: Any) -> tuple[str, str, str]:
    """(user id, group id, reason) of a valid request; else GdapError 400 and nothing is done."""
    user, group = _guid(user_id, "userId"), _guid(group_id, "groupId")
    if not isinstance(body, dict):
        raise GdapError('the body is {"reason": str, "confirm": true}', code="malformedBody")
    if body.get("confirm") is not True:
        raise GdapError(
            "confirm must be true: removing an agent from a group is confirmed", code="notConfirmed"
        )
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise GdapError(f"reason is required (1 to {MAX_REASON} characters)", code="malformedBody")
    return user, group, reason.strip()


async def remove_agent_from_group(
    services: Services, user_id: Any, group_id: Any, body: Any, *, actor: str
) -> dict[str, Any]:
    """Remove the agent from the group when it is still proven idle and a member. Returns
    ``{"result": "removed" | "unchanged", ...}``; refusals raise GdapError (404 unknown, 409 in use);
    Graph failures raise UpstreamError after the failure is recorded (nothing was removed)."""
    user, group, reason = removal_request(user_id, group_id, body)
    await services.storage.ensure()
    now = await services.now()
    await ingest_sign_ins(services, now, now)  # the re-check reads the log up to the present
    report = await agents_report(services, now)
    return await _remove_one(services, report, user, group, reason, actor)


async def remove_idle_agents(services: Services) -> dict[str, Any]:
    """``AGENT_REMOVAL_MODE=enforce`` only: remove every idle agent from every group that gives it
    access, after ingesting the log up to the present (the same re-check as a person's request). More
    removals than ``MAX_REMOVALS_PER_RUN`` remove none (``halted``, recorded). Off by default."""
    summary: dict[str, Any] = {"removed": [], "refused": [], "failed": [], "halted": None}
    if services.settings.agent_removal_mode != "enforce":
        return summary
    await services.storage.ensure()
    now = await services.now()
    await ingest_sign_ins(services, now, now)
    report = await agents_report(services, now)
    pairs = [(a["userId"], g["groupId"]) for a in report["agents"] if a["idle"] for g in a["groups"]]
    limit = services.settings.max_removals_per_run
    if len(pairs) > limit:
        summary["halted"] = (
            f"{len(pairs)} agent group memberships to remove, more than MAX_REMOVALS_PER_RUN ({limit})"
        )
        await record_action(
            services.storage,
            tenant_id=None,
            actor=POLICY_ACTOR,
            action=ACTION,
            result="halted",
            reason=summary["halted"],
            detail=json.dumps({"pairs": len(pairs)}),
        )
        return summary
    reason = f"no sign-in into any customer for at least {report['inactiveDays']} days (AGENT_REMOVAL_MODE=enforce)"
    for user, group in pairs:
        try:
            await _remove_one(services, report, user, group, reason, POLICY_ACTOR)
            summary["removed"].append({"userId": user, "groupId": group})
        except GdapError as exc:
            summary["refused"].append({"userId": user, "groupId": group, "reason": exc.message})
        except UpstreamError as exc:
            summary["failed"].append({"userId": user, "groupId": group, "reason": str(exc)})
    return summary


async def _remove_one(
    services: Services, report: dict[str, Any], user: str, group: str, reason: str, actor: str
) -> dict[str, Any]:
    agent = next((a for a in report["agents"] if a["userId"] == user), None)
    membership = None if agent is None else next((g for g in agent["groups"] if g["groupId"] == group), None)
    detail: dict[str, Any] = {"userId": user, "groupId": group}
    if membership is None:
        if not await _group_known(services, group):
            raise GdapError(
                f"group {group} gives no access to customers; nothing was removed",
                status=404,
                code="unknownGroup",
            )
        # Not (or no longer) a member: a repeated request, or a removal someone else made.
        return {"result": "unchanged", **detail, "reason": "the agent is not a member of the group"}
    detail |= {
        "groupName": membership["groupName"],
        "kind": membership["kind"],
        "customers": membership["customers"],
        "inactiveForAtLeastDays": agent["inactiveForAtLeastDays"] if agent else None,
        "lastSignInAt": agent["lastSignInAt"] if agent else None,
    }

    async def trail(result: str, **extra: str) -> dict[str, Any]:
        """This removal's row in the audit trail (every outcome has one)."""
        return await record_action(
            services.storage,
            tenant_id=None,
            actor=actor,
            action=ACTION,
            result=result,
            reason=reason,
            detail=json.dumps({**detail, **extra}),
        )

    if agent is None or not agent["idle"]:
        why = (
            f"the agent is not proven idle for {report['inactiveDays']} days "
            f"(last sign-in {agent['lastSignInAt'] if agent else None}, "
            f"at least {agent['inactiveForAtLeastDays'] if agent else 0} days idle in the stored log)"
        )
        await trail("refused", why=why)
        raise GdapError(f"{why}; nothing was removed", status=409, code="agentInUse")
    try:
        removed = await services.graph.remove_group_member(group, user)
    except UpstreamError as exc:
        await trail("failed", error=str(exc)[:1000])
        raise
    if not removed:
        # 404: the user is a member through a nested group only; removing it there is for a person.
        why = "the agent is a member through a nested group only: remove it from that group"
        await trail("refused", why=why)
        raise GdapError(f"{why}; nothing was removed", status=409, code="nestedMembership")
    row = await trail("completed")
    return {"result": "removed", **detail, "actionId": row["id"]}


async def _group_known(services: Services, group: str) -> bool:
    from shared.agents.report import access_groups

    return group in await access_groups(services)
