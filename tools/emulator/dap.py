"""Partner Center's view of DAP: removing a customer's delegated admin privileges and the DAP sign-in
statistics of the CustomerServiceAdminApi (agents, sign-ins, Global Administrator sign-ins in 24 hours)."""

from __future__ import annotations

from bisect import bisect_left
from datetime import timedelta
from typing import Any

from .entities import SimCustomer
from .errors import EmulatorError
from .estate_core import SimEstateCore
from .filters import format_timestamp
from .signin_log import SIGNIN_TS_LEN
from .values import lower_set


class DapCustomers(SimEstateCore):
    """DAP removal and statistics (a mixin of the estate)."""

    def __init__(self) -> None:
        super().__init__()
        self._admins: set[str] | None = None

    def disable_dap(self, tenant_id: str, body: Any) -> SimCustomer:
        customer = self.customers.get(tenant_id.lower())
        if customer is None:
            raise EmulatorError(404, "2000", f"Customer {tenant_id} was not found.")
        if not isinstance(body, dict):
            raise EmulatorError(400, "2001", "The request body must be a Customer object.")
        allow = None
        found = False
        for k, v in body.items():
            kl = k.lower()
            if kl == "allowdelegatedaccess":
                allow, found = v, True
            elif kl in ("attributes", "id"):
                continue
            else:
                raise EmulatorError(400, "2001", f"The property '{k}' cannot be updated with this request.")
        if not found:
            raise EmulatorError(400, "2001", "'AllowDelegatedAccess' is required.")
        if allow is not False:
            raise EmulatorError(
                400, "2001", "Delegated admin privileges can only be removed (AllowDelegatedAccess=false)."
            )
        if customer.dap is not None and customer.dap.get("enabled"):
            customer.dap["enabled"] = False
            customer.dap["endDateTime"] = self.now_ts
        return customer

    def admin_agent_ids(self) -> set[str]:
        """Agents in the AdminAgents group (DAP's Global Administrator path), lower-cased ids."""
        if self._admins is None:
            admin_groups = {
                g["id"].lower() for g in self.groups.values() if g["displayName"].lower() == "adminagents"
            }
            self._admins = {a["id"].lower() for a in self.agents if admin_groups & lower_set(a["groupIds"])}
        return self._admins

    def qualifying_stats(self, tenant_id: str) -> tuple[int, int, int, str | None]:
        """(agents, sign-ins, global-admin-agent sign-ins) in ``(now-24h, now]`` and the latest sign-in."""
        idx = self.signins.qualifying.get(tenant_id)
        if idx is None:
            for key, value in self.signins.qualifying.items():
                if key.lower() == tenant_id.lower():
                    idx = value
                    break
        if idx is None:
            return 0, 0, 0, None
        upper = bisect_left(idx.keys, self.now_ts + "\uffff")
        if upper == 0:
            return 0, 0, 0, None
        latest = idx.keys[upper - 1][:SIGNIN_TS_LEN]
        lower = bisect_left(idx.keys, format_timestamp(self.now - timedelta(days=1)) + "\uffff")
        users = idx.users[lower:upper]
        admins = self.admin_agent_ids()
        ga = sum(1 for u in users if u.lower() in admins)
        return len(set(users)), len(users), ga, latest
