"""Reading a scenario document: the JSON (sign-ins become rows while it is parsed) and the document-level
settings the estate's parts share (``asyncDurations``, the partner's domains)."""

from __future__ import annotations

import json
from typing import Any

from .errors import bad_request
from .signin_log import signin_row
from .values import parse_duration

# How long each asynchronous change takes in emulator time (scenario "asyncDurations" overrides them,
# top level or per relationship). Microsoft documents no durations; these are plausible and make every
# "still pending" path observable: nothing settles until the clock is moved.
DEFAULT_ASYNC_DURATIONS = {
    "termination": "PT2H",
    "activation": "PT5M",
    "accessAssignment": "PT10M",
    "operation": "PT1H",
    "request": "PT1M",
}


def scenario_object_hook(d: dict[str, Any]) -> Any:
    """``json`` object hook turning sign-in objects into rows while parsing (keeps a 1M load lean)."""
    if "resourceTenantId" in d and "createdDateTime" in d and "gdapRelationships" not in d:
        return signin_row(d)
    return d


def load_scenario_text(text: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(text, object_hook=scenario_object_hook)
    except json.JSONDecodeError as exc:
        raise bad_request(f"The scenario is not valid JSON: {exc}.") from exc
    if not isinstance(data, dict):
        raise bad_request("A scenario is a JSON object.")
    return data


def parse_async_durations(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(k in DEFAULT_ASYNC_DURATIONS for k in value):
        raise bad_request(
            f"'{what}' is an object with some of {', '.join(DEFAULT_ASYNC_DURATIONS)}, "
            'each an ISO 8601 duration such as "PT2H".'
        )
    for v in value.values():
        parse_duration(v)
    return {k: str(v) for k, v in value.items()}


def partner_domain(partner: dict[str, Any]) -> str:
    mailbox = str(partner.get("senderMailbox") or "")
    return mailbox.split("@", 1)[1] if "@" in mailbox else "partner.onmicrosoft.com"


def partner_domains(partner: dict[str, Any]) -> list[str]:
    domains = [str(d) for d in partner.get("verifiedDomains") or [] if isinstance(d, str)]
    main = partner_domain(partner)
    if main not in domains:
        domains.insert(0, main)
    return domains


def load_azure_subscriptions(value: Any, tenant_id: str) -> list[dict[str, Any]]:
    """A customer's ``azureSubscriptions`` from a scenario, checked."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, dict) and s.get("subscriptionId") for s in value):
        raise bad_request(
            f"customer {tenant_id}: 'azureSubscriptions' is a list of {{\"subscriptionId\": ...}}."
        )
    out = []
    for s in value:
        assignments = s.get("roleAssignments") or []
        if not all(
            isinstance(a, dict) and a.get("name") and a.get("roleDefinitionId") and a.get("principalId")
            for a in assignments
        ):
            raise bad_request(
                f"customer {tenant_id}: each role assignment has a name, a roleDefinitionId and a principalId.",
            )
        out.append(
            {
                **s,
                "subscriptionId": str(s["subscriptionId"]),
                "roleAssignments": [dict(a) for a in assignments],
            }
        )
    return out
