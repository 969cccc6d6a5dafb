"""The simulated estate: the partner tenant, its customers, GDAP relationships, sign-ins, mail and faults,
loaded from a scenario and shown back as one (``GET /_emulator/state``).

Everything here is plain Python without HTTP; the API modules (:mod:`.graph_api`, :mod:`.partner_center_api`,
:mod:`.keyvault_api`, :mod:`.control_api`) map it onto the wire. Business rule violations raise
:class:`~tools.emulator.errors.EmulatorError` carrying the HTTP status and a Graph error code. The state
machine of asynchronous changes is described in :mod:`.gdap_relationships`.
"""

from __future__ import annotations

import gc
import re
from datetime import UTC, datetime
from typing import Any

from .customer_side import CustomerSide
from .dap import DapCustomers
from .entities import (
    CUSTOMER_VISIBLE_STATUSES,
    FAILURE_FLAGS,
    SimAccessAssignment,
    SimCustomer,
    SimRelationship,
)
from .errors import bad_request, not_found
from .faults import Fault, Throttle
from .filters import format_timestamp
from .gdap_assignments import AssignmentLifecycle
from .outbox import MailOutbox
from .scenario import (
    DEFAULT_ASYNC_DURATIONS,
    load_azure_subscriptions,
    parse_async_durations,
    partner_domain,
    partner_domains,
)
from .signin_log import SignInLog, SignInRow, signin_row, signin_scenario
from .signin_query import SignInFiltering
from .signin_wire import SignInEncoding
from .values import lower_set, parse_duration, parse_optional_time, parse_time, role_list, stable_guid, ts


class SimEstate(AssignmentLifecycle, CustomerSide, SignInEncoding, SignInFiltering, MailOutbox, DapCustomers):
    """The whole emulated world. Not thread-safe: the aiohttp server runs it on one event loop."""

    def __init__(self, scenario: dict[str, Any]) -> None:
        super().__init__()
        self.now = parse_time(scenario.get("now") or format_timestamp(datetime.now(UTC)), "now")
        self.retention_days = float(scenario.get("signInRetentionDays", 30))
        partner = scenario.get("partner") or {}
        self.partner_tenant_id = str(partner.get("tenantId") or stable_guid("partner"))
        self.partner_display_name = str(partner.get("displayName") or "Partner")
        self.sender_mailbox = str(partner.get("senderMailbox") or f"notices@{partner_domain(partner)}")
        self.partner_domains: list[str] = partner_domains(partner)
        self.groups = {}
        for g in scenario.get("groups") or []:
            if isinstance(g, dict) and g.get("id"):
                self.groups[str(g["id"]).lower()] = {
                    "id": str(g["id"]),
                    "displayName": str(g.get("displayName") or ""),
                }
        self.agents = []
        self.agents_by_id = {}
        for a in scenario.get("agents") or []:
            if not isinstance(a, dict) or not a.get("id"):
                continue
            agent: dict[str, Any] = {
                "id": str(a["id"]),
                "userPrincipalName": str(
                    a.get("userPrincipalName") or f"{a['id']}@{self.partner_domains[0]}"
                ),
                "displayName": str(a.get("displayName") or a.get("userPrincipalName") or a["id"]),
                "groupIds": [str(g) for g in a.get("groupIds") or []],
            }
            self.agents.append(agent)
            self.agents_by_id[agent["id"].lower()] = agent
        self.async_durations = parse_async_durations(scenario.get("asyncDurations"), "asyncDurations")
        window = scenario.get("expiringWindow", "PT0S")
        self.expiring_window = parse_duration(window)  # 0: never "expiring" (Microsoft documents no window)
        self.expiring_window_text = str(window)
        self.customers = {}
        self.relationships = {}
        # Resource Manager (tools.emulator.resource_manager_api): customer tenant -> its subscriptions.
        self.azure_subscriptions: dict[str, list[dict[str, Any]]] = {}
        for c in scenario.get("customers") or []:
            self._load_customer(c)
        for r in scenario.get("gdapRelationshipsWithoutCustomer") or []:
            self._load_relationship(r, None)
        rows: list[SignInRow] = []
        for s in scenario.get("signIns") or []:
            rows.append(s if isinstance(s, SignInRow) else signin_row(s))
        self.signins = SignInLog(rows)
        self.faults: list[Fault] = [Fault.parse(f) for f in scenario.get("faults") or []]
        latency = scenario.get("signInLatencySeconds", 0) or 0
        if not isinstance(latency, int | float) or isinstance(latency, bool) or latency < 0:
            raise bad_request("'signInLatencySeconds' is a number of seconds, at least 0.")
        self.latency_seconds = float(latency)
        self.throttle: Throttle | None = Throttle.parse(scenario.get("throttle"))
        licensed = scenario.get("signInLogLicensed", True)
        if not isinstance(licensed, bool):
            raise bad_request("'signInLogLicensed' is true or false.")
        self.signin_log_licensed = licensed
        missing = scenario.get("missingPermissions") or []
        if not isinstance(missing, list) or not all(isinstance(p, str) for p in missing):
            raise bad_request(
                "'missingPermissions' is a list of permission names, e.g. [\"AuditLog.Read.All\"]."
            )
        self.missing_permissions: list[str] = list(dict.fromkeys(missing))
        # Per identity (a token's appid claim): what each managed identity lacks, where the app runs as
        # several (reads, GDAP writes, mail); a token naming no listed identity gets missingPermissions.
        identities = scenario.get("identities") or {}
        if not isinstance(identities, dict) or not all(
            isinstance(v, dict)
            and isinstance(v.get("missingPermissions", []), list)
            and all(isinstance(p, str) for p in v.get("missingPermissions", []))
            for v in identities.values()
        ):
            raise bad_request(
                "'identities' maps a client id to {\"missingPermissions\": [...]}, e.g. "
                '{"11111111-...": {"missingPermissions": ["Mail.Send"]}}.'
            )
        self.identities: dict[str, list[str]] = {
            str(k).lower(): list(dict.fromkeys(v.get("missingPermissions", [])))
            for k, v in identities.items()
        }
        self.outbox = []
        self.vault: dict[str, list[dict[str, Any]]] = {}  # Key Vault secrets: name -> versions, oldest first
        self.settle_all()
        if scenario.get("events"):
            self.schedule_events(scenario["events"])

    def missing_for(self, app_id: str | None) -> set[str]:
        """The permissions (lower case) that the identity a token names lacks."""
        listed = self.identities.get((app_id or "").lower())
        return {p.lower() for p in (self.missing_permissions if listed is None else listed)}

    # ---- loading

    def _load_customer(self, c: Any) -> None:
        if not isinstance(c, dict) or not c.get("tenantId"):
            return
        tenant_id = str(c["tenantId"])
        name = str(c.get("displayName") or tenant_id)
        dap = c.get("dap")
        if isinstance(dap, dict):
            dap = {
                "enabled": bool(dap.get("enabled", False)),
                "startDateTime": dap.get("startDateTime"),
                **({"endDateTime": dap["endDateTime"]} if dap.get("endDateTime") else {}),
            }
            if dap.get("startDateTime"):
                dap["startDateTime"] = format_timestamp(parse_time(dap["startDateTime"], "dap.startDateTime"))
        else:
            dap = None
        slug = re.sub(r"[^a-z0-9]", "", name.lower()) or tenant_id.split("-")[0]
        customer = SimCustomer(
            tenant_id=tenant_id,
            display_name=name,
            default_domain=str(c.get("defaultDomainName") or f"{slug}.onmicrosoft.com"),
            culture=str(c.get("culture") or "en-US"),
            contacts=[str(x) for x in c.get("contacts") or []],
            dap=dap,
        )
        reseller = c.get("reseller")
        if isinstance(reseller, dict) and reseller.get("id"):
            customer.reseller = {
                "id": str(reseller["id"]).lower(),
                "name": str(reseller.get("name") or ""),
                "mpnId": str(reseller.get("mpnId") or ""),
            }
        self.customers[tenant_id.lower()] = customer
        subscriptions = load_azure_subscriptions(c.get("azureSubscriptions"), tenant_id)
        if subscriptions:
            self.azure_subscriptions[tenant_id.lower()] = subscriptions
        for r in c.get("gdapRelationships") or []:
            self._load_relationship(r, customer)

    def _load_relationship(self, r: Any, customer: SimCustomer | None) -> None:
        if not isinstance(r, dict) or not r.get("id"):
            return
        created = parse_optional_time(r.get("createdDateTime"), "createdDateTime") or self.now
        rid = str(r["id"])
        rel = SimRelationship(
            id=rid,
            display_name=str(r.get("displayName") or rid[:50]),
            status=str(r.get("status") or "active"),
            duration=str(r.get("duration") or "P730D"),
            customer_tenant_id=customer.tenant_id if customer else None,
            customer_display_name=customer.display_name if customer else None,
            created=created,
            activated=parse_optional_time(r.get("activatedDateTime"), "activatedDateTime"),
            end=parse_optional_time(r.get("endDateTime"), "endDateTime"),
            modified=parse_optional_time(r.get("lastModifiedDateTime"), "lastModifiedDateTime")
            or parse_optional_time(r.get("activatedDateTime"), "activatedDateTime")
            or created,
            auto_extend=str(r.get("autoExtendDuration") or "PT0S"),
            roles=role_list(r.get("roles") if "roles" in r else r.get("accessDetails") or [], "roles"),
            etag=self.next_etag(rid),
            durations=parse_async_durations(r.get("asyncDurations"), "asyncDurations"),
            flags={k: bool(r.get(k)) for k in FAILURE_FLAGS if r.get(k)},
        )
        # A transient status in the scenario began "now" and takes its full duration from here; the 90 days
        # of an approvalPending one run from its lastModifiedDateTime (the lock) when the scenario gives one.
        if rel.status in ("terminationRequested", "terminating", "approved", "activating"):
            rel.since = self.now
        elif rel.status == "approvalPending":
            rel.since = parse_optional_time(r.get("lastModifiedDateTime"), "lastModifiedDateTime") or self.now
        for a in r.get("accessAssignments") or []:
            if not isinstance(a, dict) or not a.get("id"):
                continue
            group_id = a.get("groupId") or (a.get("accessContainer") or {}).get("accessContainerId") or ""
            roles = a.get("roles") if "roles" in a else a.get("accessDetails") or []
            aa = SimAccessAssignment(
                id=str(a["id"]),
                group_id=str(group_id),
                roles=role_list(roles, "accessAssignments.roles"),
                status=str(a.get("status") or "active"),
                created=parse_optional_time(a.get("createdDateTime"), "createdDateTime") or rel.modified,
                modified=parse_optional_time(a.get("lastModifiedDateTime"), "lastModifiedDateTime")
                or rel.modified,
                etag=self.next_etag(str(a["id"])),
                fail=bool(a.get("fail")) or rel.flags.get("failAccessAssignments", False),
            )
            if aa.status in ("pending", "deleting"):
                aa.due = self.now + self.duration("accessAssignment", rel)
            rel.assignments[aa.id] = aa
        self.relationships[rid] = rel
        if customer:
            customer.relationships.append(rid)

    # ---- export

    def _customer_scenario(self, c: SimCustomer) -> dict[str, Any]:
        out = c.scenario(self.relationships)
        subscriptions = self.azure_subscriptions.get(c.tenant_id.lower())
        if subscriptions:
            out["azureSubscriptions"] = subscriptions
        return out

    def scenario(self, include_signins: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "now": ts(self.now),
            "signInRetentionDays": self.retention_days
            if self.retention_days % 1
            else int(self.retention_days),
            "partner": {
                "tenantId": self.partner_tenant_id,
                "displayName": self.partner_display_name,
                "senderMailbox": self.sender_mailbox,
            },
            "groups": list(self.groups.values()),
            "agents": self.agents,
            "customers": [self._customer_scenario(c) for c in self.customers.values()],
        }
        orphans = [r.scenario() for r in self.relationships.values() if r.customer_tenant_id is None]
        if orphans:
            out["gdapRelationshipsWithoutCustomer"] = orphans
        if include_signins:
            out["signIns"] = [signin_scenario(r) for r in self.signins.rows]
        out["signInCount"] = len(self.signins)
        if self.latency_seconds:
            out["signInLatencySeconds"] = self.latency_seconds
        if self.throttle is not None:
            out["throttle"] = self.throttle.scenario()
        if not self.signin_log_licensed:
            out["signInLogLicensed"] = False
        if self.missing_permissions:
            out["missingPermissions"] = list(self.missing_permissions)
        if self.identities:
            out["identities"] = {k: {"missingPermissions": list(v)} for k, v in self.identities.items()}
        out["asyncDurations"] = {**DEFAULT_ASYNC_DURATIONS, **self.async_durations}
        if self.expiring_window:
            out["expiringWindow"] = self.expiring_window_text
        out["faults"] = [f.scenario() for f in self.faults]
        if self.events:
            out["events"] = [self.event_scenario(e) for e in self.events]
        out["outbox"] = self.outbox
        return out

    # ---- clock

    def set_clock(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise bad_request('Body must be {"now": ISO} or {"advance": duration}.')
        if "now" in body:
            self.now = parse_time(body["now"], "now")
        elif "advance" in body:
            self.now = self.now + parse_duration(body["advance"])
        else:
            raise bad_request('Body must be {"now": ISO} or {"advance": duration}.')
        self.settle_all()

    def settle_all(self) -> None:
        """Bring every relationship, request, operation and access assignment to what it is at ``now``."""
        self.apply_due_events()
        for rel in self.relationships.values():
            self.settle_relationship(rel)
            for op in rel.operations:
                self.settle_operation(op)
            for aa in rel.assignments.values():
                self.settle_assignment(aa, rel)
            for req in rel.requests:
                self.settle_request(req)

    # ---- sign-ins

    def add_signins(self, items: Any) -> int:
        if isinstance(items, dict) and isinstance(items.get("signIns"), list):
            items = items["signIns"]
        if not isinstance(items, list):
            raise bad_request("Body must be an array of sign-ins.")
        rows = [
            s if isinstance(s, SignInRow) else signin_row(s) for s in items if isinstance(s, dict | SignInRow)
        ]
        return self.signins.add(rows)

    # ---- GDAP customers, contracts, groups

    def delegated_admin_customers(self) -> list[SimCustomer]:
        out = []
        for c in self.customers.values():
            if any(
                self.relationships[r].status in CUSTOMER_VISIBLE_STATUSES
                for r in c.relationships
                if r in self.relationships
            ):
                out.append(c)
        return out

    def customer(self, tenant_id: str) -> SimCustomer | None:
        return self.customers.get(tenant_id.lower())

    def group_members(self, group_id: str) -> list[dict[str, Any]]:
        group = self.groups.get(group_id.lower())
        if group is None:
            raise not_found(
                f"Resource '{group_id}' does not exist or one of its queried reference-property "
                "objects are not present.",
                "Request_ResourceNotFound",
            )
        gid = group["id"].lower()
        return [a for a in self.agents if gid in lower_set(a["groupIds"])]

    def remove_group_member(self, group_id: str, member_id: str) -> None:
        """``DELETE /groups/{id}/members/{id}/$ref``: the user is no longer a direct member (204); an
        unknown group, or a user that is not a direct member, is 404 (Request_ResourceNotFound)."""
        self.group_members(group_id)  # 404 for an unknown group
        gid = group_id.lower()
        for a in self.agents:
            if a["id"].lower() == member_id.lower() and gid in lower_set(a["groupIds"]):
                a["groupIds"] = [g for g in a["groupIds"] if g.lower() != gid]
                self._admins = None  # the AdminAgents members (DAP's Global Administrator path) changed
                return
        raise not_found(
            f"Resource '{member_id}' does not exist or one of its queried reference-property objects are "
            "not present.",
            "Request_ResourceNotFound",
        )


def build_estate(scenario: dict[str, Any]) -> SimEstate:
    """Build the estate without the cyclic GC repeatedly walking a million fresh sign-ins, then move
    everything built so far out of the GC's way (a full collection over 1M rows stalls for seconds)."""
    gc.disable()
    try:
        result = SimEstate(scenario)
    finally:
        gc.enable()
    gc.freeze()
    return result
