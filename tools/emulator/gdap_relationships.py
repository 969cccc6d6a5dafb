"""GDAP relationships as the service runs them: creation, updates, deletion, lockForApproval and terminate
requests, long-running operations, the customer's approval, expiry and auto-extension.

Asynchronous Microsoft behaviour (terminations, activation after approval, access assignments,
relationship requests, long-running operations) moves with the emulator's clock, not with reads: each
transient state began at a moment and ends after a duration the scenario sets (``asyncDurations``,
defaults :data:`tools.emulator.scenario.DEFAULT_ASYNC_DURATIONS`), in two halves (e.g.
``terminationRequested`` for the first half, ``terminating`` for the second, ``terminated`` at the end).
Any read (or the clock moving) settles an entity to what it is at ``now``; reading twice at the same
instant changes nothing. Failure flags (``failTermination``, ``failOperations``, ``failAccessAssignments``
on a relationship) make the end ``failed`` / ``error`` instead of success. Statuses are Microsoft's
documented enums:

* delegatedAdminRelationshipStatus: activating, active, approvalPending, approved, created, expired,
  expiring, terminated, terminating, terminationRequested
  (https://learn.microsoft.com/graph/api/resources/delegatedadminrelationship).
* delegatedAdminRelationshipRequestStatus: created, pending, succeeded, failed
  (https://learn.microsoft.com/graph/api/resources/delegatedadminrelationshiprequest).
* longRunningOperationStatus of delegatedAdminRelationshipOperation: notStarted, running, succeeded,
  failed (https://learn.microsoft.com/graph/api/resources/delegatedadminrelationshipoperation).
* delegatedAdminAccessAssignmentStatus: pending, active, deleting, deleted, error
  (https://learn.microsoft.com/graph/api/resources/delegatedadminaccessassignment).
* "GDAP relationship requests expire after 90 days" when the customer does nothing
  (https://learn.microsoft.com/partner-center/dap-faq): ``approvalPending`` -> ``expired``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from .entities import (
    AUTO_EXTEND_VALUES,
    GDAP_FILTER_PROPS,
    GLOBAL_ADMIN_ROLE,
    TERMINATING_STATUSES,
    SimAccessAssignment,
    SimCustomer,
    SimOperation,
    SimRelationship,
    SimRelationshipRequest,
)
from .errors import EmulatorError, bad_request, not_found
from .estate_core import SimEstateCore
from .filter_checks import check_props
from .filters import Node, evaluate
from .values import lower_set, parse_duration, role_list


class _Identified(Protocol):
    id: str


_Item = TypeVar("_Item", bound=_Identified)


def _settled(items: list[_Item], settle: Callable[[_Item], None]) -> list[_Item]:
    """A relationship's requests or operations, each settled to ``now``."""
    for item in items:
        settle(item)
    return list(items)


def _settled_one(items: list[_Item], item_id: str, settle: Callable[[_Item], None], what: str) -> _Item:
    """The one with ``item_id``, settled to ``now``; 404 when there is none."""
    for item in items:
        if item.id == item_id:
            settle(item)
            return item
    raise not_found(f"The {what} '{item_id}' was not found.")


APPROVAL_PENDING_LIFETIME = timedelta(days=90)  # dap-faq: an unapproved GDAP request expires after 90 days
MAX_DISPLAY_NAME = 50


class RelationshipLifecycle(SimEstateCore):
    """The GDAP relationships of the estate, their requests and operations (a mixin of the estate)."""

    def _touch(self, rel: SimRelationship, at: datetime) -> None:
        rel.modified = max(rel.modified, at)
        rel.etag = self.next_etag(rel.id)

    def _terminate_request(self, rel: SimRelationship) -> SimRelationshipRequest | None:
        return next(
            (
                r
                for r in reversed(rel.requests)
                if r.action == "terminate" and r.status in ("created", "pending")
            ),
            None,
        )

    def settle_relationship(self, rel: SimRelationship) -> None:
        """Move ``rel`` to its status at ``now`` (idempotent: a second read at the same instant changes nothing).

        Each transition happens at the emulator time it was due, which is the ``lastModifiedDateTime`` it gets."""
        if rel.status in ("terminationRequested", "terminating") and rel.since is not None:
            took = self.duration("termination", rel)
            halfway, done = rel.since + took / 2, rel.since + took
            if self.now >= done:
                request = self._terminate_request(rel)
                if rel.flags.get("failTermination"):
                    rel.status = rel.before_termination  # the service gave up: the access stays
                else:
                    rel.status, rel.end = "terminated", done
                rel.since = None
                if request is not None:
                    request.status = "failed" if rel.flags.get("failTermination") else "succeeded"
                    request.modified = max(request.modified, done)
                self._touch(rel, done)
            elif self.now >= halfway and rel.status == "terminationRequested":
                rel.status = "terminating"
                self._touch(rel, halfway)
        elif rel.status in ("approved", "activating") and rel.since is not None:
            took = self.duration("activation", rel)
            halfway, done = rel.since + took / 2, rel.since + took
            if self.now >= done:
                rel.status, rel.activated, rel.since = "active", done, None
                rel.end = done + parse_duration(rel.duration)
                self._touch(rel, done)
            elif self.now >= halfway and rel.status == "approved":
                rel.status = "activating"
                self._touch(rel, halfway)
        elif rel.status == "approvalPending" and rel.since is not None:
            lapse = rel.since + APPROVAL_PENDING_LIFETIME
            if self.now >= lapse:  # dap-faq: "GDAP relationship requests expire after 90 days"
                rel.status, rel.end, rel.since = "expired", lapse, None
                self._touch(rel, lapse)
        if rel.status in ("active", "expiring") and rel.end is not None:
            self._settle_end(rel)
        if rel.pending_op is not None:
            self.settle_operation(rel.pending_op)

    def _settle_end(self, rel: SimRelationship) -> None:
        assert rel.end is not None
        auto = rel.auto_extend.upper() not in ("PT0S", "P0D")
        if rel.end <= self.now:
            if not auto:
                rel.status = "expired"
                self._touch(rel, rel.end)
                return
            step = parse_duration(rel.auto_extend)
            while rel.end <= self.now:
                rel.end += step
            self._touch(rel, self.now)
        if (
            rel.status == "active"
            and not auto
            and self.expiring_window
            and self.now >= rel.end - self.expiring_window
        ):
            rel.status = "expiring"
            self._touch(rel, max(rel.modified, rel.end - self.expiring_window))

    def settle_operation(self, op: SimOperation) -> None:
        if op.status in ("succeeded", "failed") or op.due is None:
            return
        halfway = op.due - (op.due - op.created) / 2
        if self.now >= op.due:
            op.status = "failed" if op.fail else "succeeded"
            op.modified = op.due
            op.etag = self.next_etag(op.id)
            apply, op.apply = op.apply, None
            on_end, op.on_end = op.on_end, None
            if apply is not None and not op.fail:
                apply()
            if on_end is not None:
                on_end()
        elif self.now >= halfway and op.status == "notStarted":
            op.status = "running"
            op.modified = halfway
            op.etag = self.next_etag(op.id)

    def get_relationship(self, rid: str, advance: bool = True) -> SimRelationship:
        rel = self.relationships.get(rid)
        if rel is None:
            for key, value in self.relationships.items():
                if key.lower() == rid.lower():
                    rel = value
                    break
        if rel is None:
            raise not_found(f"The delegated admin relationship with id '{rid}' was not found.")
        self.settle_relationship(rel)  # ``advance`` is kept for callers; settling is idempotent
        return rel

    def list_relationships(
        self, filt: Node | None, top: int, after: tuple[str, str] | None, advance: bool = True
    ) -> tuple[list[SimRelationship], tuple[str, str] | None]:
        """A page in (createdDateTime, id) order starting after ``after``; returns the next cursor.

        Every relationship the scan passes is settled to ``now`` first."""
        if filt is not None:
            check_props(filt, GDAP_FILTER_PROPS, "microsoft.graph.delegatedAdminRelationship")
        ordered = sorted(self.relationships.values(), key=SimRelationship.sort_key)
        out: list[SimRelationship] = []
        for rel in ordered:
            if after is not None and rel.sort_key() <= after:
                continue
            self.settle_relationship(rel)
            if filt is not None and not evaluate(filt, rel.filter_value):
                continue
            if len(out) == top:
                return out, out[-1].sort_key()
            out.append(rel)
        return out, None

    def _validate_display_name(self, name: Any, exclude: str | None = None) -> str:
        if not isinstance(name, str) or not name.strip():
            raise bad_request("The 'displayName' property is required.")
        if len(name) > MAX_DISPLAY_NAME:
            raise bad_request(f"The 'displayName' must be at most {MAX_DISPLAY_NAME} characters.")
        for rel in self.relationships.values():
            if rel.id != exclude and rel.display_name.lower() == name.lower():
                raise EmulatorError(
                    409, "Conflict", f"A delegated admin relationship named '{name}' already exists."
                )
        return name

    @staticmethod
    def _validate_duration(value: Any) -> str:
        if value is None:
            raise bad_request("The 'duration' property is required.")
        d = parse_duration(value)
        if not timedelta(days=1) <= d <= timedelta(days=730):
            raise bad_request("The 'duration' must be between P1D and P730D (2 years).")
        return str(value)

    @staticmethod
    def _validate_auto_extend(value: Any, roles: list[str]) -> str:
        if not isinstance(value, str) or value.upper() not in AUTO_EXTEND_VALUES:
            raise bad_request("The 'autoExtendDuration' must be one of P0D, PT0S, P180D.")
        value = AUTO_EXTEND_VALUES[value.upper()]
        if value == "P180D" and GLOBAL_ADMIN_ROLE in lower_set(roles):
            raise bad_request(
                "Relationships that include the Global Administrator role cannot be auto-extended.",
                "AutoExtendNotSupportedForGlobalAdministrator",
            )
        return value

    def _customer_for(self, body: Any) -> SimCustomer | None:
        if body is None:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("tenantId"), str) or not body["tenantId"]:
            raise bad_request("'customer.tenantId' is required when 'customer' is given.")
        tenant_id = body["tenantId"]
        customer = self.customers.get(tenant_id.lower())
        if customer is None:  # a tenant we did not know yet: the real service accepts any tenant id
            name = str(body.get("displayName") or tenant_id)
            slug = re.sub(r"[^a-z0-9]", "", name.lower()) or tenant_id.split("-")[0]
            customer = SimCustomer(tenant_id, name, f"{slug}.onmicrosoft.com", "en-US", [], None)
            self.customers[tenant_id.lower()] = customer
        return customer

    def create_relationship(self, body: Any) -> SimRelationship:
        if not isinstance(body, dict):
            raise bad_request("The request body must be a delegatedAdminRelationship object.")
        name = self._validate_display_name(body.get("displayName"))
        duration = self._validate_duration(body.get("duration"))
        if body.get("accessDetails") is None:
            raise bad_request("The 'accessDetails' property is required.")
        roles = role_list(body.get("accessDetails"), "accessDetails")
        if not roles:
            raise bad_request("'accessDetails.unifiedRoles' must contain at least one role.")
        auto = self._validate_auto_extend(body.get("autoExtendDuration", "PT0S"), roles)
        customer = self._customer_for(body.get("customer"))
        base = str(uuid.uuid4())
        rid = f"{base}-{customer.tenant_id}" if customer else base
        rel = SimRelationship(
            id=rid,
            display_name=name,
            status="created",
            duration=duration,
            customer_tenant_id=customer.tenant_id if customer else None,
            customer_display_name=customer.display_name if customer else None,
            created=self.now,
            activated=None,
            end=None,
            modified=self.now,
            auto_extend=auto,
            roles=roles,
            etag=self.next_etag(rid),
        )
        self.relationships[rid] = rel
        if customer:
            customer.relationships.append(rid)
        return rel

    @staticmethod
    def check_if_match(entity_etag: str, if_match: str | None) -> None:
        if if_match is None or not if_match.strip():
            raise EmulatorError(
                400, "MissingIfMatchHeader", "The 'If-Match' header is required for this request."
            )
        candidates = [p.strip() for p in if_match.split(",")]
        if "*" in candidates:
            return
        # tolerate strong/weak mismatch (W/ prefix dropped by some clients)
        norm = entity_etag[2:] if entity_etag.startswith("W/") else entity_etag
        for cand in candidates:
            c = cand[2:] if cand.startswith("W/") else cand
            if c == norm or c.strip('"') == norm.strip('"'):
                return
        raise EmulatorError(
            412,
            "PreconditionFailed",
            "The 'If-Match' header does not match the current version of the entity.",
        )

    def update_relationship(
        self, rid: str, body: Any, if_match: str | None
    ) -> tuple[SimRelationship, SimOperation | None]:
        rel = self.get_relationship(rid)
        self.check_if_match(rel.etag, if_match)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a delegatedAdminRelationship object.")
        fields_ = {k: v for k, v in body.items() if not k.startswith("@")}
        if rel.status == "created":
            allowed = {"displayName", "duration", "accessDetails", "customer", "autoExtendDuration"}
            bad = [k for k in fields_ if k not in allowed]
            if bad:
                raise bad_request(f"The property '{bad[0]}' cannot be updated.")
            name = (
                self._validate_display_name(fields_["displayName"], rel.id)
                if "displayName" in fields_
                else None
            )
            duration = self._validate_duration(fields_["duration"]) if "duration" in fields_ else None
            roles = (
                role_list(fields_["accessDetails"], "accessDetails") if "accessDetails" in fields_ else None
            )
            if roles is not None and not roles:
                raise bad_request("'accessDetails.unifiedRoles' must contain at least one role.")
            auto = self._validate_auto_extend(
                fields_.get("autoExtendDuration", rel.auto_extend), roles if roles is not None else rel.roles
            )
            customer = (
                self._customer_for(fields_["customer"]) if fields_.get("customer") is not None else None
            )
            if name is not None:
                rel.display_name = name
            if duration is not None:
                rel.duration = duration
            if roles is not None:
                rel.roles = roles
            rel.auto_extend = auto
            if customer is not None and customer.tenant_id != rel.customer_tenant_id:
                old = self.customers.get((rel.customer_tenant_id or "").lower())
                if old and rel.id in old.relationships:
                    old.relationships.remove(rel.id)
                customer.relationships.append(rel.id)
                rel.customer_tenant_id = customer.tenant_id
                rel.customer_display_name = customer.display_name
            rel.modified = self.now
            rel.etag = self.next_etag(rel.id)
            return rel, None
        if rel.status != "active":
            raise EmulatorError(
                409,
                "Conflict",
                f"The delegated admin relationship is in status '{rel.status}' and cannot be updated.",
            )
        bad = [k for k in fields_ if k not in ("autoExtendDuration", "accessDetails")]
        if bad:
            raise bad_request(
                f"The property '{bad[0]}' can only be updated while the relationship is in status 'created'."
            )
        new_roles: list[str] | None = None
        if "accessDetails" in fields_:
            wanted = role_list(fields_["accessDetails"], "accessDetails")
            current = lower_set(rel.roles)
            if lower_set(wanted) != current:
                if GLOBAL_ADMIN_ROLE not in current or lower_set(wanted) != current - {GLOBAL_ADMIN_ROLE}:
                    raise bad_request(
                        "Only the removal of the Global Administrator role is supported on an active "
                        "relationship.",
                        "InvalidAccessDetailsUpdate",
                    )
                if rel.pending_op is not None:
                    raise EmulatorError(
                        409, "Conflict", "An update of this relationship is already in progress."
                    )
                new_roles = [r for r in rel.roles if r.lower() != GLOBAL_ADMIN_ROLE]
        if "autoExtendDuration" in fields_:
            rel.auto_extend = self._validate_auto_extend(
                fields_["autoExtendDuration"], new_roles if new_roles is not None else rel.roles
            )
        op: SimOperation | None = None
        if new_roles is not None:
            roles_after = new_roles

            def apply() -> None:
                rel.roles = roles_after

            def on_end() -> None:  # succeeded or failed: the relationship may be updated again
                ended, rel.pending_op = rel.pending_op, None
                self._touch(rel, ended.modified if ended is not None else self.now)

            op = self.start_role_update(
                "delegatedAdminRelationshipUpdate", rel, {}, new_roles, rel, apply, on_end
            )
        rel.modified = self.now
        rel.etag = self.next_etag(rel.id)
        return rel, op

    def start_role_update(
        self,
        op_type: str,
        target: SimRelationship | SimAccessAssignment,
        data: dict[str, Any],
        roles: list[str],
        rel: SimRelationship,
        apply: Callable[[], None],
        on_end: Callable[[], None],
    ) -> SimOperation:
        """A change of ``target``'s roles as a long-running operation of ``rel`` (``data`` and the new
        ``accessDetails``); ``target`` is busy with it until it ends."""
        op = self.new_operation(
            op_type,
            {**data, "accessDetails": {"unifiedRoles": [{"roleDefinitionId": r} for r in roles]}},
            apply,
            rel,
            on_end,
        )
        rel.operations.append(op)
        target.pending_op = op
        return op

    def new_operation(
        self,
        op_type: str,
        data: dict[str, Any],
        apply: Callable[[], None],
        rel: SimRelationship,
        on_end: Callable[[], None],
    ) -> SimOperation:
        """A long-running operation: ``notStarted`` for the first half of ``asyncDurations.operation``,
        ``running`` for the second, then ``succeeded`` (``apply`` runs) or, with the relationship's
        ``failOperations``, ``failed`` (nothing changes)."""
        oid = str(uuid.uuid4())
        return SimOperation(
            id=oid,
            operation_type=op_type,
            data=json.dumps(data),
            status="notStarted",
            created=self.now,
            modified=self.now,
            etag=self.next_etag(oid),
            apply=apply,
            due=self.now + self.duration("operation", rel),
            fail=rel.flags.get("failOperations", False),
            on_end=on_end,
        )

    def delete_relationship(self, rid: str, if_match: str | None) -> None:
        rel = self.get_relationship(rid)
        self.check_if_match(rel.etag, if_match)
        if rel.status != "created":
            raise EmulatorError(
                409,
                "Conflict",
                f"Only relationships in status 'created' can be deleted; this one is '{rel.status}'. "
                "Use a terminate request instead.",
            )
        del self.relationships[rel.id]
        customer = self.customers.get((rel.customer_tenant_id or "").lower())
        if customer and rel.id in customer.relationships:
            customer.relationships.remove(rel.id)

    def create_request(self, rid: str, body: Any) -> SimRelationshipRequest:
        rel = self.get_relationship(rid)
        action = body.get("action") if isinstance(body, dict) else None
        if not isinstance(action, str):
            raise bad_request("The 'action' property is required.")
        if action == "lockForApproval":
            if rel.status != "created":
                raise bad_request(
                    f"lockForApproval is only allowed in status 'created'; the relationship is '{rel.status}'."
                )
            rel.status, rel.since = "approvalPending", self.now
        elif action == "terminate":
            if rel.status in TERMINATING_STATUSES:
                raise EmulatorError(
                    409, "Conflict", f"The relationship is already being terminated (status '{rel.status}')."
                )
            if rel.status not in ("active", "expiring"):
                raise bad_request(
                    f"terminate is only allowed for an active relationship; the relationship is '{rel.status}'."
                )
            rel.before_termination, rel.status, rel.since = rel.status, "terminationRequested", self.now
        elif action in ("approve", "reject"):
            raise bad_request(f"The action '{action}' is only available to indirect resellers.")
        else:
            raise bad_request(f"The action '{action}' is not valid.")
        rel.modified = self.now
        rel.etag = self.next_etag(rel.id)
        req = SimRelationshipRequest(
            id=str(uuid.uuid4()),
            action=action,
            status="created",
            created=self.now,
            modified=self.now,
            due=self.now + self.duration("request", rel),
        )
        rel.requests.append(req)
        return req

    def settle_request(self, req: SimRelationshipRequest) -> None:
        """``created`` for the first half of ``asyncDurations.request``, then ``pending``; a lockForApproval
        request then ``succeeded``; a terminate request ends with its termination (``succeeded`` when the
        relationship is ``terminated``, ``failed`` when ``failTermination`` made it fail)."""
        if req.due is None or req.status not in ("created", "pending"):
            return
        halfway = req.due - (req.due - req.created) / 2
        if req.status == "created" and self.now >= halfway:
            req.status, req.modified = "pending", halfway
        if req.action != "terminate" and self.now >= req.due:
            req.status, req.modified = "succeeded", req.due

    def list_requests(self, rid: str) -> list[SimRelationshipRequest]:
        return _settled(self.get_relationship(rid).requests, self.settle_request)

    def get_request(self, rid: str, req_id: str) -> SimRelationshipRequest:
        return _settled_one(self.get_relationship(rid).requests, req_id, self.settle_request, "request")

    def list_operations(self, rid: str) -> list[SimOperation]:
        return _settled(self.get_relationship(rid).operations, self.settle_operation)

    def get_operation(self, rid: str, op_id: str) -> SimOperation:
        return _settled_one(self.get_relationship(rid).operations, op_id, self.settle_operation, "operation")

    def approve(self, rid: str, body: Any) -> SimRelationship:
        """Emulator control: the customer approves an approvalPending relationship."""
        rel = self.get_relationship(rid)
        if rel.status != "approvalPending":
            raise EmulatorError(
                409, "Conflict", f"The relationship is '{rel.status}', not 'approvalPending'."
            )
        if rel.customer_tenant_id is None:
            customer = self._customer_for((body or {}).get("customer") if isinstance(body, dict) else None)
            if customer is None:
                raise bad_request('This relationship has no customer yet: post {"customer": {"tenantId"}}.')
            customer.relationships.append(rel.id)
            rel.customer_tenant_id = customer.tenant_id
            rel.customer_display_name = customer.display_name
        rel.status, rel.since = "approved", self.now  # active after asyncDurations.activation
        rel.modified = self.now
        rel.etag = self.next_etag(rel.id)
        return rel
