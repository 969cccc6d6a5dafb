"""GDAP access assignments: a security group of the partner tenant given some of a relationship's roles;
created ``pending``, deleted through ``deleting``, role changes through a long-running operation."""

from __future__ import annotations

import uuid
from typing import Any

from .entities import SimAccessAssignment, SimOperation, SimRelationship
from .errors import EmulatorError, bad_request, not_found
from .gdap_relationships import RelationshipLifecycle
from .values import lower_set, role_list


class AssignmentLifecycle(RelationshipLifecycle):
    """The access assignments of the estate's relationships (a mixin of the estate)."""

    def settle_assignment(self, aa: SimAccessAssignment, rel: SimRelationship) -> None:
        """``pending`` -> ``active`` and ``deleting`` -> ``deleted`` after ``asyncDurations.accessAssignment``;
        with ``fail`` (or the relationship's ``failAccessAssignments``) they end in ``error``."""
        if aa.status in ("pending", "deleting") and aa.due is not None and self.now >= aa.due:
            aa.status = "error" if aa.fail else ("active" if aa.status == "pending" else "deleted")
            aa.modified, aa.due = aa.due, None
            aa.etag = self.next_etag(aa.id)
        if aa.pending_op is not None:
            self.settle_operation(aa.pending_op)

    def list_assignments(self, rid: str) -> list[SimAccessAssignment]:
        rel = self.get_relationship(rid)
        out = []
        for aa in rel.assignments.values():
            if aa.status == "deleted":
                continue
            self.settle_assignment(aa, rel)
            out.append(aa)
        return out

    def _assignment(self, rel: SimRelationship, aa_id: str) -> SimAccessAssignment:
        aa = rel.assignments.get(aa_id)
        if aa is None:
            raise not_found(f"The access assignment '{aa_id}' was not found.")
        return aa

    def get_assignment(self, rid: str, aa_id: str) -> SimAccessAssignment:
        rel = self.get_relationship(rid)
        aa = self._assignment(rel, aa_id)
        self.settle_assignment(aa, rel)
        return aa

    def create_assignment(self, rid: str, body: Any) -> SimAccessAssignment:
        rel = self.get_relationship(rid)
        if rel.status != "active":
            raise bad_request(
                f"Access assignments can only be created for an active relationship; this one is '{rel.status}'."
            )
        if not isinstance(body, dict):
            raise bad_request("The request body must be a delegatedAdminAccessAssignment object.")
        container = body.get("accessContainer")
        if not isinstance(container, dict) or not isinstance(container.get("accessContainerId"), str):
            raise bad_request("'accessContainer.accessContainerId' is required.")
        ctype = container.get("accessContainerType", "securityGroup")
        if ctype != "securityGroup":
            raise bad_request("'accessContainer.accessContainerType' must be 'securityGroup'.")
        group_id = container["accessContainerId"]
        if group_id.lower() not in self.groups:
            raise bad_request(f"The security group '{group_id}' was not found in the partner tenant.")
        roles = self._assignment_roles(rel, body.get("accessDetails"))
        for aa in rel.assignments.values():
            if aa.group_id.lower() == group_id.lower() and aa.status not in ("deleting", "deleted"):
                raise EmulatorError(
                    409,
                    "Conflict",
                    f"An access assignment for the security group '{group_id}' already exists.",
                )
        aid = str(uuid.uuid4())
        aa = SimAccessAssignment(
            id=aid,
            group_id=group_id,
            roles=roles,
            status="pending",
            created=self.now,
            modified=self.now,
            etag=self.next_etag(aid),
            due=self.now + self.duration("accessAssignment", rel),
            fail=rel.flags.get("failAccessAssignments", False),
        )
        rel.assignments[aid] = aa
        return aa

    @staticmethod
    def _assignment_roles(rel: SimRelationship, details: Any) -> list[str]:
        if details is None:
            raise bad_request("'accessDetails' is required.")
        roles = role_list(details, "accessDetails")
        if not roles:
            raise bad_request("'accessDetails.unifiedRoles' must contain at least one role.")
        extra = lower_set(roles) - lower_set(rel.roles)
        if extra:
            raise bad_request(
                f"The role '{sorted(extra)[0]}' is not part of the relationship's access details."
            )
        return roles

    def update_assignment(
        self, rid: str, aa_id: str, body: Any, if_match: str | None
    ) -> tuple[SimAccessAssignment, SimOperation | None]:
        rel = self.get_relationship(rid)
        aa = self._assignment(rel, aa_id)
        self.check_if_match(aa.etag, if_match)
        if aa.status != "active":
            raise EmulatorError(
                409, "Conflict", f"The access assignment is '{aa.status}' and cannot be updated."
            )
        if not isinstance(body, dict):
            raise bad_request("The request body must be a delegatedAdminAccessAssignment object.")
        fields_ = {k: v for k, v in body.items() if not k.startswith("@")}
        if "accessContainer" in fields_:
            container = fields_["accessContainer"] or {}
            if str(container.get("accessContainerId", aa.group_id)).lower() != aa.group_id.lower():
                raise bad_request("The 'accessContainer' of an access assignment cannot be changed.")
        bad = [k for k in fields_ if k not in ("accessDetails", "accessContainer")]
        if bad:
            raise bad_request(f"The property '{bad[0]}' cannot be updated.")
        if "accessDetails" not in fields_:
            return aa, None
        roles = self._assignment_roles(rel, fields_["accessDetails"])
        if lower_set(roles) == lower_set(aa.roles):
            return aa, None

        def apply() -> None:
            aa.roles = roles

        def on_end() -> None:
            aa.pending_op = None
            aa.modified = max(aa.modified, op.modified)
            aa.etag = self.next_etag(aa.id)

        op = self.start_role_update(
            "delegatedAdminAccessAssignmentUpdate", aa, {"id": aa.id}, roles, rel, apply, on_end
        )
        aa.modified = self.now
        aa.etag = self.next_etag(aa.id)
        return aa, op

    def delete_assignment(self, rid: str, aa_id: str, if_match: str | None) -> None:
        rel = self.get_relationship(rid)
        aa = self._assignment(rel, aa_id)
        self.check_if_match(aa.etag, if_match)
        if aa.status in ("deleting", "deleted"):
            raise EmulatorError(409, "Conflict", f"The access assignment is already '{aa.status}'.")
        aa.status, aa.due = "deleting", self.now + self.duration("accessAssignment", rel)
        aa.modified = self.now
        aa.etag = self.next_etag(aa.id)
