"""The GDAP lifecycle: requests from role templates, approval follow-up, access assignments, expiry and
least privilege. One service (:class:`GdapService`) behind ``python -m shared.cli gdap ...``, the HTTP API
(``/api/gdap/...``) and the portal, on the same :class:`~shared.services.Services` as everything else.

* **Request.** A relationship is created from a role template kept in the repo
  (``shared/gdap/gdap_templates.json``), locked for approval, and the customer gets the invitation link
  (optionally by mail). The request is remembered in ``GdapRequests`` with its template, so the
  customer's access can be re-established from the same template after a removal.
* **Follow-up.** ``approvalPending -> approved -> activating -> active`` happens at Microsoft when the
  customer approves. Each follow-up (the relationship sync timer, ``gdap follow-up``, the portal)
  reads the relationships this product requested, creates the template's access assignments once
  (partner security group -> roles) when one turns ``active``, and confirms them ``active``.
* **Expiry.** Active relationships without auto-extend that end within 30, 7 or 1 days; a bulk
  auto-extend (``PATCH autoExtendDuration P180D`` with ``If-Match``) with a result per relationship.
* **Least privilege.** Active relationships holding Global Administrator, removed in one action (a
  ``PATCH`` of ``accessDetails`` while ``active``, answered by a long-running operation); access
  assignments whose group's members never signed in to that customer within a window.

Every change is written to the ``Actions`` trail (the customer detail's "actions taken") through the
same :func:`shared.removals.worker.record_action` that removals use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.domain.models import DAP_ROLES, GLOBAL_ADMINISTRATOR, AccessAssignment, Customer, Relationship
from shared.platform.actions import record_action
from shared.platform.retry import UpstreamError
from shared.platform.settings import GUID_RE
from shared.platform.state import StateStore
from shared.platform.storage import partition
from shared.platform.timeutil import (
    DAY,
    day_key,
    day_start,
    iso,
    iso_optional,
    utcnow,
    whole_days,
)
from shared.relationships.store import RelationshipStore
from shared.signins.activity import DayActivity

if TYPE_CHECKING:
    from shared.services import Services
from shared.domain.rules import expires_in_days, includes_global_administrator, is_expiring
from shared.gdap.store import (
    GdapOperation,
    GdapOperationStore,
    GdapRequest,
    GdapRequestStore,
    invitation_link,
)
from shared.gdap.templates import (
    AUTO_EXTEND_DURATION,
    DURATION,
    MAX_DISPLAY_NAME,
    RoleTemplate,
    duration_days,
    group_setting_name,
    group_settings_from_env,
    load_templates,
)

log = logging.getLogger(__name__)

EXPIRY_WINDOWS = (30, 7, 1)
GONE_ASSIGNMENT = ("deleting", "deleted")
RELATIONSHIP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,127}")
CONCURRENCY = 8
MAX_LISTED = 200  # relationships named in one digest
MIN_EVIDENCE_DAYS = 30
ACTOR_SYSTEM = "system"


class GdapError(Exception):
    """A request the service refuses, changing nothing: 400 (bad input), 404 (unknown), 409 (wrong state),
    503 (not configured). The command line maps it to exit code 2."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalidRequest") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


# --- role templates ---------------------------------------------------------------------------------


# --- stored requests and operations -------------------------------------------------------------------


# --- the service ---------------------------------------------------------------------------------------


def _tenant(value: Any) -> str:
    if not isinstance(value, str) or not GUID_RE.match(value.strip()):
        raise GdapError("customer must be a tenant id (GUID)", code="invalidTenantId")
    return value.strip().lower()


def _relationship_id(value: Any) -> str:
    if not isinstance(value, str) or not RELATIONSHIP_ID.fullmatch(value.strip()):
        raise GdapError("not a GDAP relationship id", code="invalidRelationshipId")
    return value.strip()


def _outcome(rel_id: str, tenant: str | None, result: str, reason: str = "", **extra: Any) -> dict[str, Any]:
    return {"relationshipId": rel_id, "tenantId": tenant, "result": result, "reason": reason or None, **extra}


class GdapService:
    def __init__(
        self,
        services: Services,
        *,
        templates: dict[str, RoleTemplate] | None = None,
        group_settings: Mapping[str, str] | None = None,
    ) -> None:
        self.services = services
        self.storage = services.storage
        self.graph = services.graph
        self.settings = services.settings
        self.templates = templates if templates is not None else load_templates()
        if group_settings is None:
            # The two groups of the bundled templates are settings (and Bicep parameters); a custom
            # template's group N is read from GDAP_GROUP_<N> like them.
            group_settings = {
                **group_settings_from_env(),
                **{
                    name: value
                    for name, value in (
                        ("GDAP_GROUP_ADMINAGENTS", self.settings.gdap_group_admin_agents),
                        ("GDAP_GROUP_HELPDESKAGENTS", self.settings.gdap_group_helpdesk_agents),
                    )
                    if value
                },
            }
        self.group_settings = dict(group_settings)
        self.requests = GdapRequestStore(self.storage)
        self.operations = GdapOperationStore(self.storage)
        self.relationships = RelationshipStore(self.storage)
        self._poll_seconds = float(
            services.settings.gdap_poll_seconds
        )  # when the service names no Retry-After

    # --- templates and groups ----------------------------------------------------------------------
    def template(self, name: Any) -> RoleTemplate:
        template = self.templates.get(name) if isinstance(name, str) else None
        if template is None:
            raise GdapError(
                f"unknown template {str(name)[:40]!r}; known: {', '.join(self.templates)}",
                code="unknownTemplate",
            )
        return template

    def template_list(self) -> list[dict[str, Any]]:
        return [t.to_json() for t in self.templates.values()]

    async def resolve_group(self, group: str) -> str:
        """A partner security group id: the template's own id, GDAP_GROUP_<NAME>, or Graph by display name."""
        if GUID_RE.match(group):
            return group.lower()
        setting = group_setting_name(group)
        configured = self.group_settings.get(setting)
        if configured:
            if not GUID_RE.match(configured):
                raise GdapError(
                    f"{setting} must be a security group id (GUID), not {configured!r}",
                    status=503,
                    code="notConfigured",
                )
            return configured.lower()
        try:
            found = await self.graph.find_groups(group)
        except UpstreamError as exc:
            raise GdapError(
                f"cannot resolve the partner security group {group!r}: set {setting} to its id ({exc})",
                status=503,
                code="notConfigured",
            ) from None
        ids = {str(g.get("id", "")).lower() for g in found if g.get("id")}
        if len(ids) != 1:
            raise GdapError(
                f"{len(ids)} partner security groups are named {group!r}: set {setting} to the id "
                "of the one to use",
                status=503,
                code="notConfigured",
            )
        return ids.pop()

    # --- request -----------------------------------------------------------------------------------
    async def _customer(self, tenant: str) -> tuple[Customer, list[Relationship]]:
        customer, rels = await self.relationships.load_customer(tenant)
        if customer is None and not rels:
            raise GdapError(
                f"{tenant} is not a known customer (not in the synced customer list)",
                status=404,
                code="unknownCustomer",
            )
        if customer is None:
            customer = Customer(tenant, next((r.customer_name for r in rels if r.customer_name), ""))
        return customer, rels

    def _display_name(self, template: RoleTemplate, tenant: str, now: datetime) -> str:
        # Unique (the service refuses a duplicate) and at most 50 characters.
        return f"{template.name}-{tenant[:8]}-{now:%Y%m%d}-{secrets.token_hex(2)}"[:MAX_DISPLAY_NAME]

    async def _create(self, template: RoleTemplate, customer: Customer, now: datetime) -> Relationship:
        for _ in range(3):
            name = self._display_name(template, customer.tenant_id, now)
            try:
                return await self.graph.create_relationship(
                    display_name=name,
                    duration=template.duration,
                    tenant_id=customer.tenant_id,
                    customer_name=customer.display_name,
                    roles=list(template.roles),
                    auto_extend_duration=template.auto_extend_duration,
                )
            except UpstreamError as exc:
                if exc.status != 409:
                    raise
                # The name is taken: by this very request when a retried POST had gone through, else by chance.
                literal = name.replace("'", "''")
                existing = [
                    r
                    for r in await self.graph.list_relationships(f"displayName eq '{literal}'")
                    if r.tenant_id == customer.tenant_id and r.status in ("created", "approvalPending")
                ]
                if existing and set(existing[0].roles) == set(template.roles):
                    return existing[0]
                log.info("relationship name %s is taken; trying another", name)
        raise UpstreamError("could not find a unique relationship name in 3 attempts", status=409)

    async def request(
        self,
        tenant_id: Any,
        template_name: Any,
        *,
        requested_by: str,
        notify_customer: bool = False,
        source: str = "request",
    ) -> tuple[dict[str, Any], bool]:
        """Create a relationship from a template, lock it for approval, hand back the invitation link.

        Returns (the request, created now). An open request for the same customer and template is
        returned instead of a second one. Nothing is created when the template's groups cannot be
        resolved or the customer cannot be mailed although that was asked for.
        """
        await self.storage.ensure()
        tenant = _tenant(tenant_id)
        template = self.template(template_name)
        customer, _ = await self._customer(tenant)
        now = utcnow()
        for row in await self.requests.for_tenant(tenant):
            if row.template == template.name and row.open:
                return row.to_json(now), False
        recipients: list[str] = []
        if notify_customer:
            from shared.notifications.mail import valid_address

            if not self.settings.notify_sender:
                raise GdapError(
                    "NOTIFY_SENDER is not set: the invitation cannot be mailed",
                    status=503,
                    code="notConfigured",
                )
            recipients = [a for a in dict.fromkeys(customer.contacts) if valid_address(a)]
            if not recipients:
                raise GdapError(
                    f"no e-mail address is known for {customer.display_name or tenant}: send the "
                    "invitation link yourself",
                    code="noContact",
                )
        groups = [await self.resolve_group(a.group) for a in template.access_assignments]
        rel = await self._create(template, customer, now)
        row = GdapRequest(
            tenant_id=tenant,
            relationship_id=rel.id,
            display_name=rel.display_name,
            customer_name=customer.display_name,
            template=template.name,
            roles=list(template.roles),
            duration=template.duration,
            auto_extend_duration=template.auto_extend_duration,
            requested_by=requested_by,
            requested_at=now,
            source=source,
            state=rel.status or "created",
            status=rel.status or "created",
            updated_at=now,
            assignments=[
                {
                    "group": a.group,
                    "groupId": gid,
                    "roles": list(a.roles),
                    "id": "",
                    "status": "",
                    "error": "",
                }
                for a, gid in zip(template.access_assignments, groups, strict=True)
            ],
        )
        await self.requests.save(row)
        await self._action(
            row.tenant_id,
            requested_by,
            "gdap.request",
            "created",
            row.relationship_id,
            f"{rel.display_name}: template {template.name}, {template.duration}, auto-extend "
            f"{template.auto_extend_duration}",
            action_id=f"gdap:{rel.id}:created",
        )
        if row.state == "created":
            try:
                await self._lock(row, requested_by)
            except UpstreamError as exc:  # the follow-up locks it later
                row.last_error = f"lockForApproval: {exc}"
                await self.requests.save(row)
                log.warning("relationship %s created but not locked for approval: %s", rel.id, exc)
        rel.status = row.status
        await self.relationships.keep_seen(rel)  # the customer view shows it before the next sync
        if recipients and row.state == "approvalPending":
            await self._send_invitation(row, customer, recipients, requested_by)
        return row.to_json(now), True

    async def _lock(self, row: GdapRequest, actor: str) -> None:
        try:
            await self.graph.request_lock_for_approval(row.relationship_id)
            status = "approvalPending"
        except UpstreamError as exc:
            if exc.status not in (400, 409):
                raise
            # Locked already (a retry after the request went through) or moved on: the relationship says.
            current = await self.graph.get_relationship(row.relationship_id)
            if current is None or current.status == "created":
                raise
            status = current.status
        row.state = row.status = status
        row.last_error, row.updated_at = "", utcnow()
        await self.requests.save(row)
        await self._action(
            row.tenant_id,
            actor,
            "gdap.lockForApproval",
            status,
            row.relationship_id,
            f"{row.display_name}: invitation {invitation_link(row.relationship_id)}",
            action_id=f"gdap:{row.relationship_id}:locked",
        )

    async def _send_invitation(
        self, row: GdapRequest, customer: Customer, recipients: list[str], actor: str
    ) -> None:
        from shared.notifications.mail import language_of, render
        from shared.notifications.worker import partner_name

        language = language_of(customer.culture)
        template = self.templates.get(row.template)
        context = {
            "customerName": customer.display_name or row.customer_name,
            "domain": customer.default_domain,
            "tenantId": row.tenant_id,
            "partnerName": await partner_name(self.services),
            "contact": self.settings.notify_sender,
            "link": invitation_link(row.relationship_id),
            "relationshipName": row.display_name,
            "roles": list(row.roles),
            "templateName": (template.display_name.get(language) or template.display_name["en"])
            if template
            else row.template,
            "durationDays": duration_days(row.duration) if DURATION.fullmatch(row.duration) else 0,
            "autoExtend": row.auto_extend_duration == AUTO_EXTEND_DURATION,
        }
        rendered = render("customer-gdap-invitation", language, context)
        try:
            await self.graph.send_mail(
                self.settings.notify_sender, recipients, rendered.subject, rendered.text, rendered.html
            )
        except UpstreamError as exc:
            row.last_error = f"invitation mail: {exc}"
            await self.requests.save(row)
            await self._action(
                row.tenant_id, actor, "gdap.invitation", "failed", row.relationship_id, str(exc)
            )
            return
        row.notified_to, row.notified_at = recipients, utcnow()
        await self.requests.save(row)
        await self._action(
            row.tenant_id,
            actor,
            "gdap.invitation",
            "sent",
            row.relationship_id,
            f"{rendered.subject} -> {', '.join(recipients)}",
            action_id=f"gdap:{row.relationship_id}:invited",
        )

    async def pending_requests(
        self, as_of: datetime | None = None, *, include_finished: bool = False
    ) -> dict[str, Any]:
        await self.storage.ensure()
        moment = as_of or utcnow()
        rows = await (self.requests.all() if include_finished else self.requests.open_rows())
        return {"asOf": iso(moment), "requests": [r.to_json(moment) for r in rows]}

    # --- follow-up: approval -> active -> access assignments -------------------------------------------
    async def follow_up(self, now: datetime | None = None) -> dict[str, Any]:
        """Move every open request on one step where Microsoft has, and confirm pending operations.

        One relationship failing does not hold back the others; its error is kept on its row.
        """
        await self.storage.ensure()
        moment = now or utcnow()
        rows = await self.requests.open_rows()
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(row: GdapRequest) -> dict[str, Any]:
            async with semaphore:
                try:
                    await self._follow_request(row, moment)
                except UpstreamError as exc:
                    row.last_error, row.updated_at = str(exc)[:4000], moment
                    await self.requests.save(row)
            return {
                "id": row.relationship_id,
                "tenantId": row.tenant_id,
                "state": row.state,
                "status": row.status,
                "error": row.last_error or None,
            }

        results = await asyncio.gather(*(one(r) for r in rows))
        operations = []
        for op in await self.operations.open_operations():
            try:
                await self._follow_operation(op)
            except UpstreamError as exc:
                log.warning("operation %s: %s", op.operation_id, exc)
            operations.append(op.to_json())
        return {
            "at": iso(moment),
            "requests": list(results),
            "operations": operations,
            "errors": sum(1 for r in results if r["error"]),
        }

    async def _follow_request(self, row: GdapRequest, now: datetime) -> None:
        rel = await self.graph.get_relationship(row.relationship_id)
        if rel is None:
            row.state = row.status = "notFound"
            row.updated_at = now
            await self.requests.save(row)
            await self._action(
                row.tenant_id,
                ACTOR_SYSTEM,
                "gdap.request",
                "notFound",
                row.relationship_id,
                f"{row.display_name}: the relationship no longer exists",
                action_id=f"gdap:{row.relationship_id}:notFound",
            )
            return
        row.status = rel.status
        if rel.status == "created":
            await self._lock(row, ACTOR_SYSTEM)
            return
        if rel.status in ("approvalPending", "approved", "activating"):
            row.state = rel.status
        elif rel.status == "active":
            if row.activated_at is None:
                row.activated_at = rel.established_at or now
                await self._action(
                    row.tenant_id,
                    ACTOR_SYSTEM,
                    "gdap.approved",
                    "active",
                    row.relationship_id,
                    f"{row.display_name}: approved by the customer, active since {iso(row.activated_at)}",
                    action_id=f"gdap:{row.relationship_id}:active",
                )
            rel.access_assignments = await self._assign(row)
        else:  # declined, lapsed or ended before it was set up: the request is over
            row.state = rel.status
            await self._action(
                row.tenant_id,
                ACTOR_SYSTEM,
                "gdap.request",
                rel.status,
                row.relationship_id,
                f"{row.display_name}: {rel.status}",
                action_id=f"gdap:{row.relationship_id}:{rel.status}",
            )
        row.updated_at = now
        await self.requests.save(row)
        await self.relationships.keep_seen(rel)

    async def _assign(self, row: GdapRequest) -> list[AccessAssignment]:
        """Create each of the template's access assignments once and confirm them; returns them as last read."""
        rid = row.relationship_id
        current = await self.graph.list_access_assignments(rid)
        errors: list[str] = []
        created = False

        def adopt(assignments: list[AccessAssignment]) -> None:
            by_group = {a.group_id.lower(): a for a in assignments if a.status not in GONE_ASSIGNMENT}
            for spec in row.assignments:
                found = by_group.get(str(spec["groupId"]).lower())
                if found is not None:
                    spec.update(id=found.id, status=found.status, error="")
                elif spec.get("id"):  # created once and removed since: not created again
                    spec["status"] = "deleted"

        adopt(current)
        for spec in row.assignments:
            if spec.get("id"):
                continue
            gid = str(spec["groupId"])
            try:
                made = await self.graph.create_access_assignment(rid, gid, list(spec["roles"]))
            except UpstreamError as exc:
                if exc.status == 409:  # the group has one already (a retried POST went through)
                    current = await self.graph.list_access_assignments(rid)
                    adopt(current)
                    if spec.get("id"):
                        continue
                spec["error"] = str(exc)[:500]
                errors.append(f"{spec['group']}: {exc}")
                await self._action(
                    row.tenant_id,
                    ACTOR_SYSTEM,
                    "gdap.accessAssignment",
                    "failed",
                    rid,
                    f"{row.display_name}: {spec['group']} ({gid}): {exc}",
                    action_id=f"gdap:{rid}:{gid}:failed",
                )
                continue
            spec.update(id=made.id, status=made.status, error="")
            created = True
            await self._action(
                row.tenant_id,
                ACTOR_SYSTEM,
                "gdap.accessAssignment",
                "created",
                rid,
                f"{row.display_name}: security group {spec['group']} ({gid}) -> {', '.join(spec['roles'])}",
                action_id=f"gdap:{rid}:{gid}:created",
            )
        if created:  # assignments start pending; confirm them on a later read
            current = await self.graph.list_access_assignments(rid)
            adopt(current)
        if not errors and all(spec.get("status") in ("active", "deleted") for spec in row.assignments):
            row.state, row.last_error = "active", ""
            await self._action(
                row.tenant_id,
                ACTOR_SYSTEM,
                "gdap.accessAssignments",
                "active",
                rid,
                f"{row.display_name}: " + "; ".join(f"{s['group']}: {s['status']}" for s in row.assignments),
                action_id=f"gdap:{rid}:assigned",
            )
        else:
            row.state = "assigning"
            row.last_error = "; ".join(errors)
        return current

    async def _follow_operation(self, op: GdapOperation) -> None:
        """Read the long-running operation (longRunningOperationStatus: notStarted, running, succeeded,
        failed; learn.microsoft.com/graph/api/resources/delegatedadminrelationshipoperation). Until it ends
        the removal stays ``requested``; at the end the relationship itself is read, and the removal is
        ``succeeded`` only when Global Administrator is really gone (never assumed from the status)."""
        document = await self.graph.get_operation(op.relationship_id, op.operation_id)
        status = str((document or {}).get("status") or "notFound")
        op.status, op.updated_at = status, utcnow()
        at = str((document or {}).get("lastModifiedDateTime") or "")
        if status not in ("succeeded", "failed", "notFound"):
            op.reason = f"operation {op.operation_id} still {status}" + (f" (since {at})" if at else "")
        else:
            rel = await self.graph.get_relationship(op.relationship_id)
            still_ga = rel is None or includes_global_administrator(rel.roles)
            op.state = "succeeded" if not still_ga else "failed"
            if status == "failed":
                op.reason = (
                    f"Microsoft reports operation {op.operation_id} failed"
                    + (f" at {at}" if at else "")
                    + ("; Global Administrator is still granted" if still_ga else "")
                )
            elif still_ga:
                op.reason = f"operation {op.operation_id} {status}, but the relationship " + (
                    "no longer exists" if rel is None else "still grants Global Administrator"
                )
            else:
                op.reason = ""
            await self._action(
                op.tenant_id,
                op.requested_by,
                "gdap.removeGlobalAdministrator",
                "completed" if op.state == "succeeded" else "failed",
                op.relationship_id,
                f"{op.display_name}: operation {op.operation_id} {status}"
                + (f": {op.reason}" if op.reason else ""),
                action_id=f"gdap:{op.operation_id}:{op.state}",
            )
            if rel is not None:
                await self.relationships.keep_seen(rel)
        await self.operations.save(op)

    # --- expiry -------------------------------------------------------------------------------------
    async def expiring_relationships(self, within_days: int, as_of: datetime) -> list[Relationship]:
        estate = await self.relationships.load()
        rels = [r for rs in estate.relationships.values() for r in rs if is_expiring(r, as_of, within_days)]
        for rel in rels:
            if not rel.customer_name and rel.tenant_id in estate.customers:
                rel.customer_name = estate.customers[rel.tenant_id].display_name
        return sorted(rels, key=lambda r: (r.ends_at or as_of, r.tenant_id, r.id))

    async def expiring(self, within_days: int = 30, as_of: datetime | None = None) -> dict[str, Any]:
        """Active GDAP relationships without auto-extend ending within ``within_days`` (and the 30/7/1 counts)."""
        await self.storage.ensure()
        moment = as_of or utcnow()
        widest = max(within_days, *EXPIRY_WINDOWS)
        rels = await self.expiring_relationships(widest, moment)
        counts = {str(w): sum(1 for r in rels if is_expiring(r, moment, w)) for w in EXPIRY_WINDOWS}
        items = []
        for rel in rels:
            if not is_expiring(rel, moment, within_days):
                continue
            ga = includes_global_administrator(rel.roles)
            items.append(
                {
                    "relationshipId": rel.id,
                    "tenantId": rel.tenant_id,
                    "customerName": rel.customer_name,
                    "displayName": rel.display_name,
                    "endsAt": iso_optional(rel.ends_at),
                    "expiresInDays": expires_in_days(rel.ends_at, moment),
                    "roles": list(rel.roles),
                    "includesGlobalAdministrator": ga,
                    "canAutoExtend": not ga,
                    "window": next((w for w in sorted(EXPIRY_WINDOWS) if is_expiring(rel, moment, w)), None),
                }
            )
        return {"asOf": iso(moment), "within": within_days, "counts": counts, "relationships": items}

    async def summary(self, as_of: datetime | None = None) -> dict[str, Any]:
        """The portal's GDAP tiles, from the store: ending within 30/7/1 days, with Global Administrator."""
        await self.storage.ensure()
        moment = as_of or utcnow()
        estate = await self.relationships.load()
        active = [r for rs in estate.relationships.values() for r in rs if r.type == "GDAP" and r.active]
        removals = {op.relationship_id for op in await self.operations.open_operations()}
        with_ga = [r for r in active if includes_global_administrator(r.roles)]
        return {
            "asOf": iso(moment),
            "expiring": {str(w): sum(1 for r in active if is_expiring(r, moment, w)) for w in EXPIRY_WINDOWS},
            "withGlobalAdministrator": len(with_ga),
            "globalAdministratorRemovalsPending": sum(1 for r in with_ga if r.id in removals),
            "pendingRequests": len(await self.requests.open_rows()),
        }

    async def extend(
        self,
        relationship_ids: list[str] | None = None,
        *,
        all_expiring: bool = False,
        within_days: int = 30,
        as_of: datetime | None = None,
        actor: str,
    ) -> dict[str, Any]:
        """Turn on auto-extend (P180D) for each relationship, with a result per relationship. No batch limit."""
        await self.storage.ensure()
        moment = as_of or utcnow()
        targets: list[tuple[str, str | None]]
        if all_expiring:
            targets = [(r.id, r.tenant_id) for r in await self.expiring_relationships(within_days, moment)]
        else:
            ids = [_relationship_id(i) for i in relationship_ids or []]
            if not ids:
                raise GdapError("name at least one relationship, or all expiring ones", code="malformedBody")
            targets = [(i, None) for i in dict.fromkeys(ids)]
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(rid: str, tenant: str | None) -> dict[str, Any]:
            async with semaphore:
                return await self._extend_one(rid, tenant, actor)

        results = await asyncio.gather(*(one(rid, tenant) for rid, tenant in targets))
        counts = {
            k: sum(1 for r in results if r["result"] == k)
            for k in ("extended", "unchanged", "skipped", "failed")
        }
        return {
            "asOf": iso(moment),
            "within": within_days if all_expiring else None,
            "requested": len(results),
            **counts,
            "results": list(results),
        }

    async def _extend_one(self, rid: str, tenant: str | None, actor: str) -> dict[str, Any]:
        try:
            for attempt in range(3):
                rel = await self.graph.get_relationship(rid)
                if rel is None:
                    return _outcome(rid, tenant, "skipped", "the relationship no longer exists")
                tenant = rel.tenant_id
                extra = {
                    "displayName": rel.display_name,
                    "customerName": rel.customer_name,
                    "endsAt": iso_optional(rel.ends_at),
                }
                if rel.status != "active":
                    return _outcome(rid, tenant, "skipped", f"not active (status {rel.status})", **extra)
                if rel.auto_extend:
                    return _outcome(
                        rid,
                        tenant,
                        "unchanged",
                        f"auto-extends already ({rel.auto_extend_duration})",
                        autoExtendDuration=rel.auto_extend_duration,
                        **extra,
                    )
                if includes_global_administrator(rel.roles):
                    return _outcome(
                        rid,
                        tenant,
                        "skipped",
                        "includes Global Administrator, which cannot "
                        "auto-extend: remove Global Administrator first",
                        **extra,
                    )
                try:
                    updated, _ = await self.graph.update_relationship(
                        rid, rel.etag or "", auto_extend_duration=AUTO_EXTEND_DURATION
                    )
                except UpstreamError as exc:
                    if exc.status == 412 and attempt < 2:
                        continue  # changed since it was read: read it again
                    raise
                fresh = updated or await self.graph.get_relationship(rid) or rel
                await self.relationships.keep_seen(fresh)
                await self._action(
                    tenant,
                    actor,
                    "gdap.extend",
                    "extended",
                    rid,
                    f"{rel.display_name}: auto-extend {AUTO_EXTEND_DURATION} (ends "
                    f"{iso_optional(rel.ends_at) or '?'})",
                )
                return _outcome(
                    rid,
                    tenant,
                    "extended",
                    "",
                    autoExtendDuration=fresh.auto_extend_duration or AUTO_EXTEND_DURATION,
                    **extra,
                )
            raise UpstreamError(f"PATCH {rid}: the relationship kept changing (412)", status=412)
        except UpstreamError as exc:
            await self._action(tenant, actor, "gdap.extend", "failed", rid, str(exc))
            return _outcome(rid, tenant, "failed", str(exc)[:500])

    # --- least privilege ------------------------------------------------------------------------------
    async def remove_global_admin(
        self, relationship_id: Any, *, actor: str, wait: bool = False
    ) -> dict[str, Any]:
        """Remove Global Administrator from an active relationship (PATCH with If-Match; the service
        applies it as a long-running operation, confirmed by the follow-up or, with ``wait``, here)."""
        await self.storage.ensure()
        rid = _relationship_id(relationship_id)
        for op in await self.operations.for_relationship(rid):
            if op.state == "requested":  # asked for already: follow that one
                if wait:
                    await self._wait(op)
                return self._ga_result(op)
        for _ in range(4):
            rel = await self.graph.get_relationship(rid)
            if rel is None:
                raise GdapError(f"no GDAP relationship {rid}", status=404, code="unknownRelationship")
            base = {"relationshipId": rid, "tenantId": rel.tenant_id, "displayName": rel.display_name}
            if not includes_global_administrator(rel.roles):
                return {
                    **base,
                    "result": "unchanged",
                    "reason": "does not include Global Administrator",
                    "rolesAfter": list(rel.roles),
                }
            if rel.status != "active":
                raise GdapError(
                    f"Global Administrator can be removed only while the relationship is active "
                    f"(it is {rel.status})",
                    status=409,
                    code="notActive",
                )
            remaining = [r for r in rel.roles if r.lower() != GLOBAL_ADMINISTRATOR]
            if not remaining:
                raise GdapError(
                    "Global Administrator is the relationship's only role: terminate the relationship "
                    "instead",
                    status=409,
                    code="onlyGlobalAdministrator",
                )
            try:
                updated, location = await self.graph.update_relationship(rid, rel.etag or "", roles=remaining)
            except UpstreamError as exc:
                if exc.status == 412:
                    continue  # changed since it was read: read it again
                if exc.status == 409:
                    location = await self._pending_update(rid)
                    if location is None:
                        raise
                    updated = None
                else:
                    raise
            break
        else:
            raise UpstreamError(f"PATCH {rid}: the relationship kept changing (412)", status=412)
        if not location:  # applied at once
            fresh = updated or await self.graph.get_relationship(rid) or rel
            await self.relationships.keep_seen(fresh)
            await self._action(
                rel.tenant_id,
                actor,
                "gdap.removeGlobalAdministrator",
                "completed",
                rid,
                f"{rel.display_name}: roles now {', '.join(fresh.roles)}",
            )
            return {**base, "result": "completed", "rolesAfter": list(fresh.roles)}
        op = GdapOperation(
            tenant_id=rel.tenant_id,
            operation_id=location.rstrip("/").rsplit("/", 1)[-1],
            relationship_id=rid,
            display_name=rel.display_name,
            kind="removeGlobalAdministrator",
            requested_by=actor,
            requested_at=utcnow(),
            roles_after=remaining,
        )
        await self.operations.save(op)
        await self._action(
            rel.tenant_id,
            actor,
            "gdap.removeGlobalAdministrator",
            "requested",
            rid,
            f"{rel.display_name}: keeping {len(remaining)} role(s); operation {op.operation_id}",
            action_id=f"gdap:{op.operation_id}:requested",
        )
        if wait:
            await self._wait(op)
        return self._ga_result(op)

    async def _pending_update(self, rid: str) -> str | None:
        for item in await self.graph.list_operations(rid):
            if item.get("status") in ("notStarted", "running") and item.get("id"):
                return str(item["id"])
        return None

    async def _wait(self, op: GdapOperation, polls: int = 30) -> None:
        for _ in range(polls):
            await self._follow_operation(op)
            if op.state != "requested":
                return
            await asyncio.sleep(self._poll_seconds)

    @staticmethod
    def _ga_result(op: GdapOperation) -> dict[str, Any]:
        result = {"requested": "requested", "succeeded": "completed"}.get(op.state, "failed")
        return {
            "relationshipId": op.relationship_id,
            "tenantId": op.tenant_id,
            "displayName": op.display_name,
            "result": result,
            "operationId": op.operation_id,
            "operationStatus": op.status,
            "rolesAfter": list(op.roles_after),
            "reason": op.reason or None,
        }

    async def least_privilege(self, as_of: datetime | None = None, window_days: int = 90) -> dict[str, Any]:
        """Relationships holding Global Administrator, and access assignments nobody in the group used.

        An assignment is flagged when no (transitive) member of its security group signed in to that
        customer since ``evidenceFrom`` = the latest of asOf - window, the start of the stored sign-in
        log and the relationship's activation, and that evidence spans at least 30 days (or the window).
        """
        await self.storage.ensure()
        moment = as_of or utcnow()
        estate = await self.relationships.load()
        coverage = await StateStore(self.storage).load_coverage()
        span = coverage.covering(moment)
        coverage_from = span[0] if span else None
        window_from = moment - timedelta(days=window_days)
        active = [r for rs in estate.relationships.values() for r in rs if r.type == "GDAP" and r.active]
        names = {t: c.display_name for t, c in estate.customers.items()}
        ga = await self._global_admins(active, names)
        unused: list[dict[str, Any]] = []
        errors: list[str] = []
        checked = 0
        note = None
        if coverage_from is None:
            note = "no sign-in data is stored for asOf: nothing can be proven unused"
        else:
            evidence_start = max(window_from, coverage_from)
            assignments = [(rel, a) for rel in active for a in rel.access_assignments if a.status == "active"]
            groups = sorted({a.group_id.lower() for _, a in assignments})
            members, group_names = await self._groups(groups, errors)
            agents = await self._agents_in_window(
                evidence_start, moment, {rel.tenant_id for rel, _ in assignments}
            )
            for rel, a in assignments:
                gid = a.group_id.lower()
                if gid not in members:
                    continue
                checked += 1
                since = max(evidence_start, rel.established_at or evidence_start)
                days = whole_days(moment - since)
                used = members[gid] & agents.get(rel.tenant_id, set())
                if used or days < min(MIN_EVIDENCE_DAYS, window_days):
                    continue
                unused.append(
                    {
                        "tenantId": rel.tenant_id,
                        "customerName": names.get(rel.tenant_id) or rel.customer_name,
                        "relationshipId": rel.id,
                        "relationshipName": rel.display_name,
                        "assignmentId": a.id,
                        "groupId": a.group_id,
                        "groupName": group_names.get(gid) or None,
                        "roles": list(a.roles),
                        "members": len(members[gid]),
                        "evidenceFrom": iso(since),
                        "evidenceDays": days,
                        "recommendation": "removeAssignment",
                        "reason": (
                            f"no member of the group signed in to this customer in the {days} days since "
                            f"{iso(since)}"
                            if members[gid]
                            else "the group has no members"
                        ),
                    }
                )
        return {
            "asOf": iso(moment),
            "windowDays": window_days,
            "windowFrom": iso(window_from),
            "coverageFrom": iso_optional(coverage_from),
            "globalAdministrator": ga,
            "unusedAssignments": unused,
            "assignmentsChecked": checked,
            "errors": errors,
            "note": note,
        }

    async def _global_admins(self, active: list[Relationship], names: dict[str, str]) -> list[dict[str, Any]]:
        ops = {op.relationship_id: op for op in await self.operations.open_operations()}
        out = []
        for rel in sorted(active, key=lambda r: (r.tenant_id, r.id)):
            if includes_global_administrator(rel.roles):
                op = ops.get(rel.id)
                if op is None:  # a removal that failed is reported as failed, with its reason
                    latest = (await self.operations.for_relationship(rel.id))[:1]
                    op = latest[0] if latest and latest[0].state == "failed" else None
                out.append(
                    {
                        "relationshipId": rel.id,
                        "tenantId": rel.tenant_id,
                        "customerName": names.get(rel.tenant_id) or rel.customer_name,
                        "displayName": rel.display_name,
                        "endsAt": iso_optional(rel.ends_at),
                        "roles": list(rel.roles),
                        "rolesAfterRemoval": [r for r in rel.roles if r.lower() != GLOBAL_ADMINISTRATOR],
                        "removal": op.to_json() if op else None,
                    }
                )
        return out

    async def expiry_digest(self, as_of: datetime | None = None) -> dict[str, Any]:
        """Once per UTC day, mail the partner admins (NOTIFY_PARTNER_ADDRESSES) the relationships that end
        within 30 days without auto-extend, and those with Global Administrator. Nothing when nothing ends."""
        await self.storage.ensure()
        moment = as_of or utcnow()
        day = day_key(moment)
        state = StateStore(self.storage)
        if await state.get_value("gdapDigest", day):
            return {"day": day, "result": "alreadySent"}
        expiring = await self.expiring(30, moment)
        if not expiring["relationships"]:
            return {"day": day, "result": "nothingEnding"}
        recipients = list(self.settings.notify_partner_addresses)
        if not recipients or not self.settings.notify_sender:
            return {
                "day": day,
                "result": "notConfigured",
                "reason": "NOTIFY_PARTNER_ADDRESSES and NOTIFY_SENDER are needed to mail the digest",
            }
        from shared.notifications.mail import render

        estate = await self.relationships.load()
        names = {t: c.display_name for t, c in estate.customers.items()}
        active = [r for rs in estate.relationships.values() for r in rs if r.type == "GDAP" and r.active]
        listed = expiring["relationships"][:MAX_LISTED]
        rendered = render(
            "partner-gdap-digest",
            self.settings.notify_partner_language,
            {
                "asOf": iso(moment),
                "counts": expiring["counts"],
                "relationships": listed,
                "more": len(expiring["relationships"]) - len(listed),
                "globalAdmins": (await self._global_admins(active, names))[:MAX_LISTED],
            },
        )
        await self.graph.send_mail(
            self.settings.notify_sender, recipients, rendered.subject, rendered.text, rendered.html
        )
        await state.set_value("gdapDigest", day, iso(utcnow()))
        await record_action(
            self.storage,
            tenant_id=None,
            actor=ACTOR_SYSTEM,
            action="gdap.digest",
            result="sent",
            detail=f"{rendered.subject} -> {', '.join(recipients)}",
            action_id=f"gdap:digest:{day}",
        )
        return {
            "day": day,
            "result": "sent",
            "relationships": len(expiring["relationships"]),
            "recipients": recipients,
        }

    async def _groups(
        self, group_ids: list[str], errors: list[str]
    ) -> tuple[dict[str, set[str]], dict[str, str]]:
        semaphore = asyncio.Semaphore(CONCURRENCY)
        members: dict[str, set[str]] = {}
        display: dict[str, str] = {}

        async def one(gid: str) -> None:
            async with semaphore:
                try:
                    members[gid] = set(await self.graph.group_member_ids(gid))
                    display[gid] = await self.graph.group_display_name(gid) or ""
                except UpstreamError as exc:
                    errors.append(f"group {gid}: {exc}")

        await asyncio.gather(*(one(g) for g in group_ids))
        return members, display

    async def _agents_in_window(
        self, start: datetime, end: datetime, tenants: set[str]
    ) -> dict[str, set[str]]:
        """Agents with a qualifying sign-in in [start, end], per customer, from the stored daily aggregates."""
        table = self.storage.table("SignInDays")
        out: dict[str, set[str]] = {}
        days = []
        day = day_start(start)
        while day <= end:
            days.append(day)
            day += DAY
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(day: datetime) -> None:
            edge = day == day_start(start) or day == day_start(end)
            async with semaphore:
                entities = await partition(table, day_key(day), None if edge else ["RowKey", "Agents"])
            for entity in entities:
                tenant = str(entity["RowKey"])
                if tenant not in tenants:
                    continue
                if edge:  # only the sign-ins inside [start, end]
                    activity = DayActivity.from_entity(entity)
                    found = {user for at, user in activity.times() if start <= at <= end}
                else:
                    found = set(json.loads(entity.get("Agents") or "[]"))
                out.setdefault(tenant, set()).update(u.lower() for u in found)

        await asyncio.gather(*(one(d) for d in days))
        return out

    # --- re-establish -----------------------------------------------------------------------------------
    async def reestablish(
        self, tenant_id: Any, *, actor: str, notify_customer: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """A new request for a customer whose access was removed, from the template used before
        (the recorded request; else the template whose roles best match the last relationship's,
        never one with Global Administrator by guesswork)."""
        await self.storage.ensure()
        tenant = _tenant(tenant_id)
        customer, rels = await self._customer(tenant)
        if any(r.active for r in rels):
            raise GdapError(
                f"{customer.display_name or tenant} still has active delegated admin access",
                status=409,
                code="stillActive",
            )
        rows = await self.requests.for_tenant(tenant)
        pending = next((r for r in rows if r.open), None)
        if pending is not None:
            return {**pending.to_json(), "basis": "pendingRequest"}, False
        template, basis = self.template_used_before(rows, rels)
        if template is None:
            raise GdapError(
                f"{customer.display_name or tenant} had no delegated admin access to re-establish: "
                "use Request GDAP",
                status=409,
                code="nothingToReestablish",
            )
        result, created = await self.request(
            tenant, template.name, requested_by=actor, notify_customer=notify_customer, source="reestablish"
        )
        if created:
            await self._action(
                tenant,
                actor,
                "gdap.reestablish",
                "created",
                result["id"],
                f"template {template.name} ({basis})",
            )
        return {**result, "basis": basis}, created

    def template_used_before(
        self, rows: list[GdapRequest], rels: list[Relationship]
    ) -> tuple[RoleTemplate | None, str]:
        for row in rows:  # newest first
            if row.template in self.templates:
                return self.templates[row.template], "previousRequest"
        past = sorted(
            rels,
            key=lambda r: r.established_at or r.created_at or datetime(1970, 1, 1, tzinfo=UTC),
            reverse=True,
        )
        candidates = [t for t in self.templates.values() if not t.includes_global_administrator]
        for rel in past:
            roles = {r.lower() for r in (DAP_ROLES if rel.type == "DAP" else rel.roles)}
            if not roles or not candidates:
                continue
            best = max(
                candidates,
                key=lambda t: (len(roles & set(t.roles)) / len(roles | set(t.roles)), -len(t.roles)),
            )
            if roles & set(best.roles):
                return best, "matchingRoles"
        return None, ""

    # --- helpers ------------------------------------------------------------------------------------------
    async def _action(
        self,
        tenant: str | None,
        actor: str,
        action: str,
        result: str,
        relationship_id: str,
        detail: str,
        action_id: str | None = None,
    ) -> None:
        await record_action(
            self.storage,
            tenant_id=tenant,
            actor=actor,
            action=action,
            result=result,
            detail=detail,
            relationship_type="GDAP",
            relationship_id=relationship_id,
            action_id=action_id,
        )


def check_arguments(args: Any) -> None:
    """The command line's arguments that can be checked without storage or Graph (GdapError when wrong)."""
    if getattr(args, "customer", None) is not None:
        _tenant(args.customer)
    if getattr(args, "template", None) is not None and args.template not in load_templates():
        raise GdapError(
            f"unknown template {args.template[:40]!r}; known: {', '.join(load_templates())}",
            code="unknownTemplate",
        )
    relationship = getattr(args, "relationship", None)
    for rid in relationship if isinstance(relationship, list) else [relationship] if relationship else []:
        _relationship_id(rid)


async def run_follow_up(services: Services, now: datetime | None = None) -> dict[str, Any]:
    """What the relationship sync timer runs after each sync: the follow-up, then the daily expiry
    digest. Never fails the timer (the sync itself has succeeded; the next run tries again)."""
    out: dict[str, Any] = {}
    try:
        service = GdapService(services)
        out["followUp"] = await service.follow_up(now)
        out["digest"] = await service.expiry_digest(now)
    except Exception as exc:
        log.exception("GDAP follow-up failed")
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out
