"""The report of docs/definitions.md section 3 (:class:`shared.domain.report.Report`), computed from the store.

The same computation backs ``python -m shared.cli audit``, ``GET /api/audit`` and the evaluation timer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.azure_roles.store import AzureRoleStore
from shared.domain.report import Report, ReportHead, ReportRow
from shared.domain.rules import Policy, customer_row, sort_rows, summarize
from shared.exclusions.store import excluded_tenants
from shared.platform.state import Coverage, StateStore
from shared.platform.storage import Storage
from shared.platform.timeutil import iso
from shared.relationships.groups import GroupNames, access_groups
from shared.relationships.store import Estate, RelationshipStore
from shared.signins.activity import ActivityReader

SCHEMA_VERSION = 1


def policy_from_settings(settings: Any, excluded: frozenset[str] | None = None) -> Policy:
    """The policy of the settings; ``excluded`` (EXCLUDED_TENANTS and the stored exclusions,
    :func:`current_policy`) replaces the setting's exclusions when given."""
    return Policy(
        mode=settings.policy_mode,
        recommend_after_days=settings.recommend_after_days,
        remove_after_days=settings.remove_after_days,
        excluded=frozenset(settings.excluded_tenants) if excluded is None else excluded,
    )


async def current_policy(storage: Storage, settings: Any) -> Policy:
    """The policy as it stands: the settings, with the exclusions managed in the portal added."""
    return policy_from_settings(settings, await excluded_tenants(storage, settings))


async def compute_report(
    storage: Storage,
    *,
    as_of: datetime,
    partner_tenant_id: str,
    policy: Policy,
    estate: Estate | None = None,
    shard: str | None = None,
    coverage: Coverage | None = None,
) -> Report:
    """The report from what the store holds (no calls to Microsoft).

    ``shard`` restricts it to the customers of one shard (``shared.platform.sharding``), reading only that
    shard's partitions; ``coverage`` fixes the coverage the rows are computed against (the sharded
    evaluation hands every shard the same one).
    """
    estate = estate or await RelationshipStore(storage).load(shard=shard)
    coverage = coverage or await StateStore(storage).load_coverage()
    span = coverage.covering(as_of)
    coverage_from = span[0] if span else None
    monitored = estate.monitored()
    activity = await ActivityReader(storage).read(as_of, monitored, coverage_from, shard=shard)
    group_names = await GroupNames(storage).load()
    azure = await AzureRoleStore(storage).load(shard=shard)
    rows: list[ReportRow] = []
    for tenant in monitored:
        customer = estate.customers.get(tenant)
        rels = estate.relationships.get(tenant, [])
        name = (customer.display_name if customer else "") or next(
            (r.customer_name for r in rels if r.customer_name), ""
        )
        a = activity[tenant]
        row = customer_row(
            tenant_id=tenant,
            display_name=name,
            relationships=rels,
            as_of=as_of,
            last_sign_in=a.last_sign_in_at,
            agents_last_day=a.agents_last_day,
            sign_ins_last_day=a.sign_ins_last_day,
            coverage_from=coverage_from,
            policy=policy,
            non_interactive_last_day=a.non_interactive_last_day,
            last_sign_in_kind=a.last_sign_in_kind,
            reseller=(
                {"id": customer.reseller_id, "name": customer.reseller_name}
                if customer and customer.reseller_id
                else None
            ),
        )
        if row is not None:
            by_id = {r.id: r for r in rels}
            for shown in row["relationships"]:
                rel = by_id.get(shown["id"])
                shown["accessGroups"] = access_groups(rel, group_names) if rel is not None else []
            # The customer's culture decides the time zone people see its times in (ja-JP: JST).
            row["culture"] = customer.culture if customer else ""
            roles = azure.get(tenant)
            row["azureRoleAssignments"] = list(roles.assignments) if roles else []  # type: ignore[arg-type]
            row["azureRolesState"] = roles.state if roles else None
            rows.append(row)
    rows = sort_rows(rows)
    return {
        **report_head(as_of=as_of, partner_tenant_id=partner_tenant_id, span=span, policy=policy, rows=rows),
        "customers": rows,
    }


def report_head(
    *,
    as_of: datetime,
    partner_tenant_id: str,
    span: tuple[datetime, datetime] | None,
    policy: Policy,
    rows: list[ReportRow],
) -> ReportHead:
    """The report's head for ``rows`` (sorted): one definition for whole and sharded evaluations."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "asOf": iso(as_of),
        "partnerTenantId": partner_tenant_id,
        "coverage": {"from": iso(span[0]) if span else None, "to": iso(span[1]) if span else None},
        "policy": policy.to_json(),
        "summary": summarize(rows, as_of),
    }
