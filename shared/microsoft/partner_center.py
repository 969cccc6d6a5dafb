"""Partner Center REST and the CustomerServiceAdminApi (legacy DAP), over httpx.

Retries 429 and 5xx honouring Retry-After, and transport faults with backoff. Tokens come from an
azure-identity style credential (App+User in Azure, a fixed token against the emulator).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from shared.platform.identity import CUSTOMER_ADMIN_SCOPE, PARTNER_CENTER_SCOPE
from shared.platform.retry import UpstreamError, send_with_retries
from shared.platform.timeutil import observe_response_date, parse_optional

log = logging.getLogger(__name__)

# Page sizes below the services' maxima (300 and 500): smaller pages fail and retry cheaper.
DAP_PAGE_SIZE = 100
CUSTOMER_PAGE_SIZE = 200
MAX_DAP_CUSTOMERS = 1_000_000  # a guard against a service that never answers a short page
# Transport failures that prove the request never left: safe to retry even for a change.


@dataclass
class DapCustomer:
    tenant_id: str
    display_name: str
    dap_enabled: bool
    start: datetime | None
    last_sign_in: datetime | None
    end: datetime | None = None  # endDateTime: when DAP was removed (list-delegated-admin-customers)


@dataclass
class PartnerCustomer:
    tenant_id: str
    company_name: str
    domain: str
    # associatedPartnerId: the indirect reseller of an indirect provider's customer (its tenant id)
    # (https://learn.microsoft.com/partner-center/developer/customer-resources#customer).
    reseller_id: str = ""


@dataclass
class BillingProfile:
    email: str
    culture: str
    language: str
    company_name: str


class PartnerCenterClient:
    def __init__(
        self,
        partner_center_root: str,
        customer_admin_root: str,
        credential: Any,
        *,
        max_retries: int = 5,
        retry_base: float = 1.0,
        timeout: float = 60.0,
    ) -> None:
        self.pc_root = partner_center_root.rstrip("/")
        self.admin_root = customer_admin_root.rstrip("/")
        self._credential = credential
        self._max_retries = max_retries
        self._retry_base = retry_base
        self._http = httpx.AsyncClient(timeout=timeout, event_hooks={"response": [observe_response_date]})

    async def close(self) -> None:
        await self._http.aclose()

    async def _token(self, scope: str) -> str:
        get_token = self._credential.get_token
        if asyncio.iscoroutinefunction(get_token):
            result = await get_token(scope)
        else:
            # A synchronous credential (MSAL redeeming a refresh token makes an HTTP call) runs in a
            # worker thread, never on the event loop that serves every other request.
            result = await asyncio.to_thread(get_token, scope)
        return str(result.token)

    async def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """One call with retries. Returns the response when its status is in ``ok``; raises otherwise."""
        what = f"{method} {url.split('?')[0]}"

        async def send() -> httpx.Response:
            request_headers = {
                "Authorization": f"Bearer {await self._token(scope)}",
                "Accept": "application/json",
                "MS-CorrelationId": str(uuid.uuid4()),
                "MS-RequestId": str(uuid.uuid4()),
                **(headers or {}),
            }
            return await self._http.request(method, url, json=json_body, headers=request_headers)

        response = await send_with_retries(
            send, method=method, what=what, ok=ok, max_retries=self._max_retries, retry_base=self._retry_base
        )
        if response.status_code in ok:
            return response
        raise UpstreamError(
            f"{what}: answered {response.status_code} {_error_text(response)}",
            status=response.status_code,
        )

    async def _json(self, method: str, url: str, *, scope: str, **kwargs: Any) -> Any:
        response = await self.request(method, url, scope=scope, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise UpstreamError(f"{method} {url}: answered malformed JSON") from exc

    # --- DAP: CustomerServiceAdminApi -------------------------------------------------------------
    async def list_dap_customers(self) -> list[DapCustomer]:
        """Every DAP customer. The CustomerServiceAdminApi pages with ``$top`` (at most 300) and
        ``$skip`` and sends no nextLink: pages are asked for until one comes back short. A customer
        that moves between pages while they are read is kept once."""
        out: dict[str, DapCustomer] = {}
        skip = 0
        while True:
            url = f"{self.admin_root}/v1/delegatedAdminCustomers?$top={DAP_PAGE_SIZE}&$skip={skip}"
            page = await self._json("GET", url, scope=CUSTOMER_ADMIN_SCOPE)
            items = [item for item in page.get("value") or [] if isinstance(item, dict)]
            for item in items:
                tenant = str(item.get("customerTenantId") or item.get("id") or "").lower()
                if tenant:
                    out.setdefault(
                        tenant,
                        DapCustomer(
                            tenant_id=tenant,
                            display_name=str(item.get("organizationDisplayName") or ""),
                            dap_enabled=bool(item.get("dapEnabled")),
                            start=parse_optional(item.get("startDateTime")),
                            last_sign_in=parse_optional(item.get("lastSignInDateTime")),
                            end=parse_optional(item.get("endDateTime")),
                        ),
                    )
            skip += len(items)
            if len(items) < DAP_PAGE_SIZE or skip >= MAX_DAP_CUSTOMERS:
                return list(out.values())

    # --- Partner Center REST --------------------------------------------------------------------
    async def list_customers(self) -> list[PartnerCustomer]:
        url = f"{self.pc_root}/v1/customers?size={CUSTOMER_PAGE_SIZE}"
        headers: dict[str, str] = {}
        out: list[PartnerCustomer] = []
        while True:
            page = await self._json("GET", url, scope=PARTNER_CENTER_SCOPE, headers=headers)
            for item in page.get("items", []):
                profile = item.get("companyProfile") or {}
                tenant = str(profile.get("tenantId") or item.get("id") or "").lower()
                if tenant:
                    out.append(
                        PartnerCustomer(
                            tenant,
                            str(profile.get("companyName") or ""),
                            str(profile.get("domain") or ""),
                            str(item.get("associatedPartnerId") or "").lower(),
                        )
                    )
            following = (page.get("links") or {}).get("next")
            if not following:
                return out
            headers = {h["key"]: h["value"] for h in following.get("headers", []) if "key" in h}
            # links.next.uri is relative to the API root ("/v1/customers?size=500").
            url = self_root_join(self.pc_root, str(following.get("uri") or url))

    async def indirect_resellers(self) -> dict[str, str]:
        """An indirect provider's resellers, tenant id -> name: ``GET /v1/relationships?relationship_type=
        IsIndirectCloudSolutionProviderOf``, a collection of PartnerRelationship resources (``id`` is the
        reseller's tenant id, ``name`` its name)
        (https://learn.microsoft.com/partner-center/developer/retrieve-a-list-of-indirect-resellers,
        https://learn.microsoft.com/partner-center/developer/relationships-resources)."""
        page = await self._json(
            "GET",
            f"{self.pc_root}/v1/relationships?relationship_type=IsIndirectCloudSolutionProviderOf",
            scope=PARTNER_CENTER_SCOPE,
        )
        out: dict[str, str] = {}
        for item in page.get("items") or []:
            if isinstance(item, dict) and item.get("id"):
                out[str(item["id"]).lower()] = str(item.get("name") or "")
        return out

    async def billing_profile(self, tenant_id: str) -> BillingProfile | None:
        try:
            data = await self._json(
                "GET", f"{self.pc_root}/v1/customers/{tenant_id}/profiles/billing", scope=PARTNER_CENTER_SCOPE
            )
        except UpstreamError as exc:
            if exc.status == 404:
                return None
            raise
        return BillingProfile(
            email=str(data.get("email") or ""),
            culture=str(data.get("culture") or ""),
            language=str(data.get("language") or ""),
            company_name=str(data.get("companyName") or ""),
        )

    async def disable_dap(self, tenant_id: str) -> None:
        """Remove DAP (AllowDelegatedAccess false). Never touches the reseller relationship."""
        await self.request(
            "PATCH",
            f"{self.pc_root}/v1/customers/{tenant_id}",
            scope=PARTNER_CENTER_SCOPE,
            json_body={"AllowDelegatedAccess": False, "attributes": {"objectType": "Customer"}},
        )


def self_root_join(root: str, uri: str) -> str:
    return uri if uri.startswith(("http://", "https://")) else root + "/" + uri.lstrip("/")


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict):
        if isinstance(data.get("error"), dict):
            return str(data["error"].get("message") or data["error"].get("code") or "")
        return str(data.get("description") or data.get("errorName") or "")
    return ""
