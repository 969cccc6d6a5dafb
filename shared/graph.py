"""Microsoft Graph through the real msgraph-sdk.

One ``GraphClient`` per process owns the credential and the ``GraphServiceClient``. Typed SDK calls
serve the low-volume endpoints (GDAP relationships, mail); the sign-in log, which can run to millions
of rows, goes through the same SDK request adapter and middleware (auth, retry) but is decoded as raw
JSON, because building kiota models for every sign-in costs more than everything else together.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from kiota_abstractions.api_error import APIError
from kiota_abstractions.authentication import AuthenticationProvider
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware import RetryHandler
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.delegated_admin_relationship import DelegatedAdminRelationship
from msgraph.generated.models.delegated_admin_relationship_request import DelegatedAdminRelationshipRequest
from msgraph.generated.models.delegated_admin_relationship_request_action import (
    DelegatedAdminRelationshipRequestAction,
)
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.tenant_relationships.delegated_admin_relationships.delegated_admin_relationships_request_builder import (  # noqa: E501
    DelegatedAdminRelationshipsRequestBuilder,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
from msgraph_core import GraphClientFactory

from shared.models import AccessAssignment, Relationship
from shared.retry import RETRY_STATUSES, UpstreamError, retry_transient
from shared.settings import GUID_RE
from shared.timeutil import graph_literal, parse_optional

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SIGNIN_SELECT = "id,createdDateTime,userId,homeTenantId,resourceTenantId,crossTenantAccessType,status"
SIGNIN_PAGE_SIZE = 1000
RELATIONSHIP_PAGE_SIZE = 300
ERROR_MAP: dict[str, Any] = {"XXX": ODataError}


def _status_of(exc: BaseException) -> int | None:
    return getattr(exc, "response_status_code", None)


def graph_error(exc: APIError, what: str) -> UpstreamError:
    code = None
    message = str(exc)
    if isinstance(exc, ODataError) and exc.error is not None:
        code = exc.error.code
        message = exc.error.message or message
    return UpstreamError(f"{what}: Graph answered {_status_of(exc)} {code or ''} {message}".strip(),
                         status=_status_of(exc), code=code)


def build_http_client(retry_delay: float, max_retries: int) -> Any:
    """The SDK's default middleware, with the retry handler also covering 500 and 502."""
    options: dict[str, Any] = {
        RetryHandlerOption.get_key(): RetryHandlerOption(delay=retry_delay, max_retries=max_retries)}
    middleware = KiotaClientFactory.get_default_middleware(options)
    for handler in middleware:
        if isinstance(handler, RetryHandler):
            handler.retry_on_status_codes = set(RETRY_STATUSES)
    client = KiotaClientFactory.get_default_client()
    return GraphClientFactory.create_with_custom_middleware(middleware, client=client)


class GraphClient:
    """Everything the product asks of Microsoft Graph, in the partner tenant."""

    def __init__(self, root: str, credential: Any, *, retry_delay: float = 3.0, max_retries: int = 5,
                 auth_provider: AuthenticationProvider | None = None) -> None:
        self.root = root.rstrip("/")
        auth = auth_provider or AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE])
        self._http = build_http_client(retry_delay, max_retries)
        self.adapter = GraphRequestAdapter(auth, client=self._http)
        # The setter, not httpx's base_url: the latter adds a trailing slash (reference 5.3).
        self.adapter.base_url = f"{self.root}/v1.0"
        self.client = GraphServiceClient(request_adapter=self.adapter)

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, what: str, operation: Callable[[], Any]) -> Any:
        try:
            return await retry_transient(operation, what=what)
        except APIError as exc:
            raise graph_error(exc, what) from exc

    # --- organisation -------------------------------------------------------------------------
    async def partner_tenant_id(self) -> str:
        result = await self._call("GET /organization", lambda: self.client.organization.get())
        if result is None or not result.value or not result.value[0].id:
            raise UpstreamError("GET /organization returned no organisation")
        return str(result.value[0].id)

    # --- sign-in log (beta: crossTenantAccessType exists only there) ---------------------------
    def sign_in_url(self, start: datetime, end: datetime) -> str:
        flt = (f"createdDateTime ge {graph_literal(start)} and createdDateTime le {graph_literal(end)}"
               " and crossTenantAccessType eq 'serviceProvider' and status/errorCode eq 0")
        query = urlencode({"$filter": flt, "$select": SIGNIN_SELECT, "$top": str(SIGNIN_PAGE_SIZE)},
                          quote_via=quote, safe="$,/'")
        return f"{self.root}/beta/auditLogs/signIns?{query}"

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        async def fetch() -> dict[str, Any]:
            info = RequestInformation()
            info.http_method = Method.GET
            info.url = url  # verbatim: a URI template would drop the commas of $select
            info.headers.try_add("Accept", "application/json")
            raw = await self.adapter.send_primitive_async(info, "bytes", ERROR_MAP)
            document = json.loads(raw or b"{}")
            if not isinstance(document, dict):
                raise json.JSONDecodeError("not a JSON object", "", 0)
            return document

        return await self._call(what, fetch)  # type: ignore[no-any-return]

    async def sign_in_pages(self, start: datetime, end: datetime) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of raw sign-ins with start <= createdDateTime <= end, newest first."""
        url: str | None = self.sign_in_url(start, end)
        while url:
            page = await self._get_json(url, "GET /beta/auditLogs/signIns")
            values = page.get("value") or []
            yield [v for v in values if isinstance(v, dict)]
            url = page.get("@odata.nextLink")

    def customer_sign_in_url(self, tenant_id: str, since: datetime) -> str:
        if not GUID_RE.match(tenant_id):
            raise ValueError(f"not a tenant id: {tenant_id!r}")
        flt = (f"resourceTenantId eq '{tenant_id.lower()}' and createdDateTime ge {graph_literal(since)}"
               " and crossTenantAccessType eq 'serviceProvider' and status/errorCode eq 0")
        query = urlencode({"$filter": flt, "$select": SIGNIN_SELECT, "$top": "1"}, quote_via=quote, safe="$,/'")
        return f"{self.root}/beta/auditLogs/signIns?{query}"

    async def latest_sign_in(self, tenant_id: str, since: datetime) -> dict[str, Any] | None:
        """The newest qualifying sign-in into one customer at or after ``since`` (None: none).

        Asked right before a removal: activity after the evaluation must stop it.
        """
        page = await self._get_json(self.customer_sign_in_url(tenant_id, since), "GET /beta/auditLogs/signIns")
        for item in page.get("value") or []:
            if isinstance(item, dict) and str(item.get("resourceTenantId") or "").lower() == tenant_id.lower():
                return item
        return None

    async def partner_display_name(self) -> str:
        """The partner organisation's name (signs customer mail)."""
        result = await self._call("GET /organization", lambda: self.client.organization.get())
        if result is None or not result.value:
            return ""
        return str(result.value[0].display_name or "")

    # --- GDAP -----------------------------------------------------------------------------------
    @property
    def _relationships(self) -> DelegatedAdminRelationshipsRequestBuilder:
        return self.client.tenant_relationships.delegated_admin_relationships

    async def list_relationships(self, status_filter: str | None = None) -> list[Relationship]:
        params = DelegatedAdminRelationshipsRequestBuilder.DelegatedAdminRelationshipsRequestBuilderGetQueryParameters(
            top=RELATIONSHIP_PAGE_SIZE, filter=status_filter)
        config = RequestConfiguration(query_parameters=params)
        what = "GET /tenantRelationships/delegatedAdminRelationships"
        page = await self._call(what, lambda: self._relationships.get(request_configuration=config))
        out: list[Relationship] = []
        while page is not None:
            out.extend(_relationship(item) for item in page.value or [])
            link = page.odata_next_link
            if not link:
                break
            page = await self._call(what, _bind(self._relationships.with_url(link).get))
        return out

    async def get_relationship(self, relationship_id: str) -> Relationship | None:
        what = f"GET /tenantRelationships/delegatedAdminRelationships/{relationship_id}"
        builder = self._relationships.by_delegated_admin_relationship_id(relationship_id)
        try:
            item = await retry_transient(lambda: builder.get(), what=what)
        except APIError as exc:
            if _status_of(exc) == 404:
                return None
            raise graph_error(exc, what) from exc
        return None if item is None else _relationship(item)

    async def list_access_assignments(self, relationship_id: str) -> list[AccessAssignment]:
        builder = self._relationships.by_delegated_admin_relationship_id(relationship_id).access_assignments
        what = f"GET .../{relationship_id}/accessAssignments"
        page = await self._call(what, lambda: builder.get())
        out: list[AccessAssignment] = []
        while page is not None:
            for item in page.value or []:
                container = item.access_container
                roles = [r.role_definition_id for r in (item.access_details.unified_roles or [])
                         if r.role_definition_id] if item.access_details else []
                out.append(AccessAssignment(
                    id=str(item.id), group_id=str(container.access_container_id if container else ""),
                    roles=[str(r) for r in roles], status=_enum(item.status)))
            link = page.odata_next_link
            if not link:
                break
            page = await self._call(what, _bind(builder.with_url(link).get))
        return out

    async def request_termination(self, relationship_id: str) -> str:
        """POST a terminate request. Returns the request id. Raises UpstreamError (status 404/409/...)."""
        body = DelegatedAdminRelationshipRequest(action=DelegatedAdminRelationshipRequestAction.Terminate)
        builder = self._relationships.by_delegated_admin_relationship_id(relationship_id).requests
        what = f"POST .../{relationship_id}/requests terminate"
        try:
            result = await builder.post(body)
        except APIError as exc:
            raise graph_error(exc, what) from exc
        return str(result.id) if result is not None and result.id else ""

    # --- mail -------------------------------------------------------------------------------------
    async def send_mail(self, sender: str, to: list[str], subject: str, text: str, html: str | None = None,
                        cc: list[str] | None = None) -> None:
        message = Message(
            subject=subject,
            body=ItemBody(content_type=BodyType.Html if html else BodyType.Text, content=html or text),
            to_recipients=[Recipient(email_address=EmailAddress(address=a)) for a in to],
            cc_recipients=[Recipient(email_address=EmailAddress(address=a)) for a in (cc or [])],
        )
        body = SendMailPostRequestBody(message=message, save_to_sent_items=True)
        builder = self.client.users.by_user_id(sender).send_mail
        try:
            await builder.post(body)
        except APIError as exc:
            raise graph_error(exc, f"POST /users/{sender}/sendMail") from exc


def _bind(method: Callable[[], Any]) -> Callable[[], Any]:
    """A zero-argument callable for one page request (retried as a unit)."""
    return lambda: method()


def _enum(value: Any) -> str:
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def _duration(value: Any) -> str:
    """Edm.Duration comes back as a timedelta; keep the ISO form."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    total = int(value.total_seconds())
    if total == 0:
        return "PT0S"
    days, rest = divmod(total, 86400)
    if rest == 0:
        return f"P{days}D"
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"P{days}DT{hours}H{minutes}M{seconds}S" if days else f"PT{hours}H{minutes}M{seconds}S"


def _relationship(item: DelegatedAdminRelationship) -> Relationship:
    customer = item.customer
    roles = []
    if item.access_details and item.access_details.unified_roles:
        roles = [str(r.role_definition_id) for r in item.access_details.unified_roles if r.role_definition_id]
    extra = getattr(item, "additional_data", None) or {}
    return Relationship(
        tenant_id=str(customer.tenant_id if customer else "").lower(),
        type="GDAP",
        id=str(item.id),
        display_name=str(item.display_name or ""),
        status=_enum(item.status),
        established_at=item.activated_date_time,
        created_at=item.created_date_time,
        ends_at=item.end_date_time,
        duration=_duration(item.duration),
        auto_extend_duration=_duration(item.auto_extend_duration),
        roles=roles,
        etag=extra.get("@odata.etag"),
        customer_name=str(customer.display_name or "") if customer else "",
    )


def parse_sign_in_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_optional(value)
    except ValueError:
        return None
