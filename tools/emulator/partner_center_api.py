"""Partner Center: the REST API's customers (paged with ``MS-ContinuationToken``), customer, billing
profile and DAP removal ``PATCH``; and the CustomerServiceAdminApi's ``delegatedAdminCustomers``."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aiohttp import web

from .entities import SimCustomer
from .errors import EmulatorError, bad_request
from .filter_checks import parse_filter_or_400
from .filters import Compare
from .values import stable_guid
from .wire import body_json, decode_token, encode_token, estate, page_size, pc_json, query_params

DAC_PAGE_MAX = 300
PC_PAGE_MAX = 500


def pc_customer(c: SimCustomer) -> dict[str, Any]:
    return {
        "id": c.tenant_id,
        "commerceId": c.commerce_id,
        "companyProfile": {
            "tenantId": c.tenant_id,
            "domain": c.default_domain,
            "companyName": c.display_name,
            "attributes": {"objectType": "CustomerCompanyProfile"},
        },
        "relationshipToPartner": "reseller",
        **({"associatedPartnerId": c.reseller["id"]} if c.reseller else {}),
        "allowDelegatedAccess": bool(c.dap and c.dap.get("enabled")),
        "links": {"self": {"uri": f"/v1/customers/{c.tenant_id}", "method": "GET", "headers": []}},
        "attributes": {"objectType": "Customer"},
    }


_ADDRESSES = {
    "ja": {
        "country": "JP",
        "region": "Tokyo",
        "city": "Chiyoda-ku",
        "addressLine1": "1-1-1 Marunouchi",
        "postalCode": "100-0005",
        "phoneNumber": "+81-3-0000-0000",
    },
    "de": {
        "country": "DE",
        "region": "Berlin",
        "city": "Berlin",
        "addressLine1": "Unter den Linden 1",
        "postalCode": "10117",
        "phoneNumber": "+49-30-000000",
    },
    "fr": {
        "country": "FR",
        "region": "Ile-de-France",
        "city": "Paris",
        "addressLine1": "1 Rue de Rivoli",
        "postalCode": "75001",
        "phoneNumber": "+33-1-00-00-00-00",
    },
    "en": {
        "country": "US",
        "region": "WA",
        "city": "Redmond",
        "addressLine1": "1 Microsoft Way",
        "postalCode": "98052",
        "phoneNumber": "+1-425-000-0000",
    },
}


def pc_billing_profile(c: SimCustomer) -> dict[str, Any]:
    email = c.contacts[0] if c.contacts else None
    local = (email or "billing").split("@", 1)[0]
    parts = [p for p in re.split(r"[._\-+]", local) if p] or ["Billing"]
    first, last = parts[0].capitalize(), (parts[1].capitalize() if len(parts) > 1 else "Contact")
    language = c.culture.split("-", 1)[0].lower() or "en"
    address = dict(_ADDRESSES.get(language, _ADDRESSES["en"]))
    if c.culture.lower() == "en-gb":
        address.update(
            country="GB",
            region="London",
            city="London",
            addressLine1="1 Victoria Street",
            postalCode="SW1H 0ET",
            phoneNumber="+44-20-0000-0000",
        )
    address.update(firstName=first, lastName=last)
    etag = hashlib.sha1(f"{c.tenant_id}|{email}|{c.culture}".encode()).hexdigest()
    return {
        "id": stable_guid("billing", c.tenant_id),
        "firstName": first,
        "lastName": last,
        "email": email,
        "culture": c.culture,
        "language": language,
        "companyName": c.display_name,
        "defaultAddress": address,
        "links": {
            "self": {"uri": f"/v1/customers/{c.tenant_id}/profiles/billing", "method": "GET", "headers": []}
        },
        "attributes": {"etag": etag, "objectType": "CustomerBillingProfile"},
    }


def _pc_customer_or_404(request: web.Request, tenant_id: str) -> SimCustomer:
    c = estate(request).customer(tenant_id)
    if c is None:
        raise EmulatorError(404, "2000", f"Customer {tenant_id} was not found.")
    return c


async def pc_list_customers(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    e = estate(request)
    params = query_params(request)
    size_raw = params.get("size")
    start = 0
    size: int | None = None
    token = request.headers.get("MS-ContinuationToken")
    if token:
        data = decode_token(token)
        if not isinstance(data, dict) or not isinstance(data.get("o"), int):
            raise EmulatorError(400, "2001", "The continuation token is invalid.")
        start, size = data["o"], int(data.get("s") or PC_PAGE_MAX)
    if size_raw:
        try:
            size = int(size_raw)
        except ValueError as exc:
            raise EmulatorError(400, "2001", f"Invalid size '{size_raw}'.") from exc
        if not 1 <= size <= PC_PAGE_MAX:
            raise EmulatorError(400, "2001", f"The size must be between 1 and {PC_PAGE_MAX}.")
    size = size or PC_PAGE_MAX
    customers = list(e.customers.values())
    page = customers[start : start + size]
    body: dict[str, Any] = {"totalCount": len(page), "items": [pc_customer(c) for c in page], "links": {}}
    if start + size < len(customers):
        body["links"]["next"] = {
            "uri": f"/v1/customers?size={size}",
            "method": "GET",
            "headers": [
                {"key": "MS-ContinuationToken", "value": encode_token({"o": start + size, "s": size})}
            ],
        }
    body["links"]["self"] = {"uri": f"/v1/customers?size={size}", "method": "GET", "headers": []}
    body["attributes"] = {"objectType": "Collection"}
    return pc_json(body)


async def pc_relationships(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    """``GET /v1/relationships?relationship_type=IsIndirectCloudSolutionProviderOf``: the signed-in
    indirect provider's resellers as PartnerRelationship resources (a ResourceCollection), the resellers
    its customers name in ``associatedPartnerId``
    (https://learn.microsoft.com/partner-center/developer/retrieve-a-list-of-indirect-resellers)."""
    kind = query_params(request).get("relationship_type")
    if kind not in ("IsIndirectCloudSolutionProviderOf", "IsIndirectResellerOf"):
        raise EmulatorError(400, "2001", f"Invalid relationship_type '{kind}'.")
    resellers: dict[str, dict[str, str]] = {}
    if kind == "IsIndirectCloudSolutionProviderOf":
        for c in estate(request).customers.values():
            if c.reseller:
                resellers.setdefault(c.reseller["id"], c.reseller)
    items = [
        {
            "id": r["id"],
            "name": r["name"],
            "relationshipType": "IsIndirectCloudSolutionProviderOf",
            "state": "Active",
            "mpnId": r["mpnId"],
            "location": "",
            "attributes": {"objectType": "PartnerRelationship"},
        }
        for r in sorted(resellers.values(), key=lambda r: r["id"])
    ]
    return pc_json({"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}})


async def pc_get_customer(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    return pc_json(pc_customer(_pc_customer_or_404(request, m["id"])))


async def pc_billing(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    return pc_json(pc_billing_profile(_pc_customer_or_404(request, m["id"])))


async def pc_patch_customer(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    _pc_customer_or_404(request, m["id"])
    try:
        body = body_json(request)
    except EmulatorError as exc:
        raise EmulatorError(400, "2001", exc.message) from exc
    c = estate(request).disable_dap(m["id"], body)
    return pc_json(pc_customer(c))


async def ca_delegated_admin_customers(request: web.Request, m: dict[str, str]) -> web.StreamResponse:
    """Partner Center's ``delegatedAdminCustomers`` (CustomerServiceAdminApi), paged by the caller with
    ``$top`` (at most 300) and ``$skip``; the documented response carries ``value`` (and ``@odata.count``
    with ``$count=true``) but no ``@odata.nextLink``
    (https://learn.microsoft.com/partner-center/developer/list-delegated-admin-customers). The documentation
    names no default page size; a request without ``$top`` gets the maximum, 300."""
    e = estate(request)
    params = query_params(request)
    top = page_size(params, DAC_PAGE_MAX, DAC_PAGE_MAX)
    try:
        skip = int(params.get("skip") or 0)
    except ValueError as exc:
        raise bad_request("Invalid $skip.") from exc
    if skip < 0:
        raise bad_request("Invalid $skip.")
    wanted: bool | None = None
    filt = parse_filter_or_400(params.get("filter"))
    if filt is not None:
        if not (
            isinstance(filt, Compare)
            and filt.key == "dapenabled"
            and filt.op == "eq"
            and isinstance(filt.value, bool)
        ):
            raise bad_request("Invalid filter clause: only 'dapEnabled eq true|false' is supported.")
        wanted = filt.value
    items = []
    for c in e.customers.values():
        if c.dap is None or (wanted is not None and bool(c.dap.get("enabled")) != wanted):
            continue
        agents, count, ga, latest = e.qualifying_stats(c.tenant_id)
        items.append(
            {
                "id": c.tenant_id,
                "customerTenantId": c.tenant_id,
                "organizationDisplayName": c.display_name,
                "partnerAgentCount": agents,
                "partnerSignInCount": count,
                "globalAdminSignInCount": ga,
                "dapEnabled": bool(c.dap.get("enabled")),
                "startDateTime": c.dap.get("startDateTime"),
                "endDateTime": c.dap.get("endDateTime"),
                "lastSignInDateTime": latest,
            }
        )
    page = items[skip : skip + top]
    body: dict[str, Any] = {"value": page}
    if params.get("count", "").lower() == "true":
        body["@odata.count"] = len(items)
    return pc_json(body)
