"""Access assignments of a relationship this product requested, once it is ``active``: each of the
template's (partner security group -> roles) created once (a retried POST that had gone through is
adopted; one removed since is not created again), and confirmed ``active`` on a later read, which makes
the request ``active``; until then it is ``assigning``, with the errors of the ones that failed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.domain.models import AccessAssignment
from shared.gdap.base import ACTOR_SYSTEM, record_gdap_action
from shared.gdap.store import GdapRequest
from shared.platform.retry import UpstreamError

if TYPE_CHECKING:
    from shared.services import Services

GONE_ASSIGNMENT = ("deleting", "deleted")


def _adopt(row: GdapRequest, assignments: list[AccessAssignment]) -> None:
    """Take the id and status of each of the row's assignments from what the relationship has."""
    by_group = {a.group_id.lower(): a for a in assignments if a.status not in GONE_ASSIGNMENT}
    for spec in row.assignments:
        found = by_group.get(str(spec["groupId"]).lower())
        if found is not None:
            spec.update(id=found.id, status=found.status, error="")
        elif spec.get("id"):  # created once and removed since: not created again
            spec["status"] = "deleted"


async def assign(services: Services, row: GdapRequest) -> list[AccessAssignment]:
    """Create each of the template's access assignments once and confirm them; returns them as last read."""
    graph, rid = services.graph, row.relationship_id
    current = await graph.list_access_assignments(rid)
    errors: list[str] = []
    created = False
    _adopt(row, current)
    for spec in row.assignments:
        if spec.get("id"):
            continue
        gid = str(spec["groupId"])
        try:
            made = await graph.create_access_assignment(rid, gid, list(spec["roles"]))
        except UpstreamError as exc:
            if exc.status == 409:  # the group has one already (a retried POST went through)
                current = await graph.list_access_assignments(rid)
                _adopt(row, current)
                if spec.get("id"):
                    continue
            spec["error"] = str(exc)[:500]
            errors.append(f"{spec['group']}: {exc}")
            await record_gdap_action(
                services.storage,
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
        await record_gdap_action(
            services.storage,
            row.tenant_id,
            ACTOR_SYSTEM,
            "gdap.accessAssignment",
            "created",
            rid,
            f"{row.display_name}: security group {spec['group']} ({gid}) -> {', '.join(spec['roles'])}",
            action_id=f"gdap:{rid}:{gid}:created",
        )
    if created:  # assignments start pending; confirm them on a later read
        current = await graph.list_access_assignments(rid)
        _adopt(row, current)
    if not errors and all(spec.get("status") in ("active", "deleted") for spec in row.assignments):
        row.state, row.last_error = "active", ""
        await record_gdap_action(
            services.storage,
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
