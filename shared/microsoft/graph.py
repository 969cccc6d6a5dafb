"""Microsoft Graph through the real msgraph-sdk.

One ``GraphClient`` per process owns the credential and the ``GraphServiceClient``. Typed SDK calls
serve the low-volume endpoints (GDAP relationships, mail); the sign-in log, which can run to millions
of rows, goes through the same SDK request adapter and middleware (auth, retry) but is decoded as raw
JSON, because building kiota models for every sign-in costs more than everything else together.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware import RetryHandler
from kiota_http.middleware.options import HeadersInspectionHandlerOption, RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder
from msgraph.generated.groups.item.transitive_members.transitive_members_request_builder import (
    TransitiveMembersRequestBuilder,
)
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.delegated_admin_access_assignment import DelegatedAdminAccessAssignment
from msgraph.generated.models.delegated_admin_access_container import DelegatedAdminAccessContainer
from msgraph.generated.models.delegated_admin_access_container_type import DelegatedAdminAccessContainerType
from msgraph.generated.models.delegated_admin_access_details import DelegatedAdminAccessDetails
from msgraph.generated.models.delegated_admin_relationship import DelegatedAdminRelationship
from msgraph.generated.models.delegated_admin_relationship_customer_participant import (
    DelegatedAdminRelationshipCustomerParticipant,
)
from msgraph.generated.models.delegated_admin_relationship_request import DelegatedAdminRelationshipRequest
from msgraph.generated.models.delegated_admin_relationship_request_action import (
    DelegatedAdminRelationshipRequestAction,
)
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.unified_role import UnifiedRole
from msgraph.generated.tenant_relationships.delegated_admin_relationships.delegated_admin_relationships_request_builder import (
    DelegatedAdminRelationshipsRequestBuilder,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
from msgraph_core import GraphClientFactory

from shared.domain.models import AccessAssignment, Relationship
from shared.domain.rules import qualifies
from shared.platform.ratelimit import SlidingWindowLimiter
from shared.platform.retry import RETRY_STATUSES, TRANSIENT_ERRORS, UpstreamError, may_retry, retry_transient
from shared.platform.settings import GUID_RE
from shared.platform.timeutil import graph_literal, observe_response_date, parse_optional

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SIGNIN_SELECT = (
    "id,createdDateTime,userId,userPrincipalName,userDisplayName,homeTenantId,resourceTenantId,"
    "crossTenantAccessType,status"
)
SIGNIN_PAGE_SIZE = 1000
PRECHECK_PAGE_SIZE = 50
# The kinds of user sign-in that are activity, and the signInEventTypes value that lists each.
SIGNIN_EVENT_TYPES = {"interactive": "interactiveUser", "nonInteractive": "nonInteractiveUser"}
RELATIONSHIP_PAGE_SIZE = 300
ERROR_MAP: dict[str, Any] = {"XXX": ODataError}


def _status_of(exc: BaseException) -> int | None:
    return getattr(exc, "response_status_code", None)


# What a refusal means, by Graph's error code: the line an operator reads names what is missing.
REFUSALS = {
    "Authentication_RequestFromNonPremiumTenantOrB2CTenant": "the partner tenant has no Microsoft Entra ID P1 or P2 licence, which reading sign-in logs through "
    "Graph requires",
    "Authentication_MSGraphPermissionMissing": "the app lacks a Microsoft Graph application permission (AuditLog.Read.All for sign-in logs): "
    "grant it admin consent",
    "Authorization_RequestDenied": "the app lacks the Microsoft Graph permission this request needs",
    "ErrorAccessDenied": "the app may not send mail as this mailbox (Mail.Send, or its access policy)",
}


def graph_error(exc: APIError, what: str) -> UpstreamError:
    code = None
    message = str(exc)
    if isinstance(exc, ODataError) and exc.error is not None:
        code = exc.error.code
        message = exc.error.message or message
    hint = REFUSALS.get(code or "")
    text = f"{what}: Graph answered {_status_of(exc)} {code or ''} {message}".strip()
    return UpstreamError(f"{text} ({hint})" if hint else text, status=_status_of(exc), code=code)


def unanswered(exc: BaseException, what: str) -> UpstreamError:
    """A change whose answer never came (reset, timeout, cut body): it may have taken effect, so it is
    not resent here; the caller decides from the live state (removals) or its own retry (mail)."""
    return UpstreamError(f"{what}: no answer ({type(exc).__name__}: {exc})")


class SafeRetryHandler(RetryHandler):
    """The SDK's retry handler, also covering 500 and 502 -- for reads only (``shared.platform.retry.may_retry``):
    a terminate request or a sendMail answered 500 may have taken effect, and is not resent."""

    def should_retry(self, request: Any, options: RetryHandlerOption, response: Any) -> bool:
        return bool(super().should_retry(request, options, response)) and may_retry(
            request.method, response.status_code
        )


def build_http_client(retry_delay: float, max_retries: int) -> Any:
    """The SDK's default middleware, with :class:`SafeRetryHandler` in place of its retry handler."""
    options: dict[str, Any] = {
        RetryHandlerOption.get_key(): RetryHandlerOption(delay=retry_delay, max_retries=max_retries)
    }
    middleware = KiotaClientFactory.get_default_middleware(options)
    for index, handler in enumerate(middleware):
        if isinstance(handler, RetryHandler):
            safe = SafeRetryHandler(handler.options)
            safe.retry_on_status_codes = set(RETRY_STATUSES)
            middleware[index] = safe
    client = KiotaClientFactory.get_default_client()
    client.event_hooks["response"].append(
        observe_response_date
    )  # Microsoft's clock (shared.platform.timeutil)
    return GraphClientFactory.create_with_custom_middleware(middleware, client=client)


class GraphClient:
    """Everything the product asks of Microsoft Graph, in the partner tenant.

    Reads go out as ``credential``; the GDAP writes (terminate, requests, access assignments, PATCH) as
    ``write_credential`` and sendMail as ``mail_credential`` when given: in Azure each is a managed
    identity of its own holding only its permissions (docs/deploy.md, "Identities"), so a job that only
    reads cannot write even through a bug, and the mail identity can send as the one mailbox only.
    """

    def __init__(
        self,
        root: str,
        credential: Any,
        *,
        write_credential: Any = None,
        mail_credential: Any = None,
        retry_delay: float = 3.0,
        max_retries: int = 5,
        sign_in_limiter: SlidingWindowLimiter | None = None,
    ) -> None:
        self.root = root.rstrip("/")
        # Graph's sign-in log serves 5 requests / 10 s per app per tenant: pace the requests (None: no limit).
        self.sign_in_limiter = sign_in_limiter
        self._http = build_http_client(retry_delay, max_retries)
        self.adapter = self._adapter(credential)
        self.client = GraphServiceClient(request_adapter=self.adapter)
        self._write_adapter = self.adapter if write_credential is None else self._adapter(write_credential)
        self._writer = GraphServiceClient(request_adapter=self._write_adapter)
        mailer = self.adapter if mail_credential is None else self._adapter(mail_credential)
        self._mailer = GraphServiceClient(request_adapter=mailer)

    def _adapter(self, credential: Any) -> GraphRequestAdapter:
        """A request adapter signing with ``credential``; all share one HTTP client and its middleware."""
        auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE])
        adapter = GraphRequestAdapter(auth, client=self._http)
        # The setter, not httpx's base_url: the latter adds a trailing slash (reference 5.3).
        adapter.base_url = f"{self.root}/v1.0"
        return adapter

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, what: str, operation: Callable[[], Any]) -> Any:
        try:
            return await retry_transient(operation, what=what)
        except APIError as exc:
            raise graph_error(exc, what) from exc

    # --- organisation -------------------------------------------------------------------------
    async def _organization(self) -> dict[str, Any]:
        # Decoded as JSON: the SDK's Organization model pulls in every Graph model on first use (~3 s).
        info = self.client.organization.to_get_request_information()
        document = await self._send_json(info, "GET /organization")
        values = [v for v in document.get("value") or [] if isinstance(v, dict)]
        return values[0] if values else {}

    async def ping(self) -> None:
        """One light request (``GET /organization?$select=id``): its ``Date`` header sets the clock."""
        await self._get_json(f"{self.root}/v1.0/organization?$select=id", "GET /organization")

    async def partner_tenant_id(self) -> str:
        organization = await self._organization()
        if not organization.get("id"):
            raise UpstreamError("GET /organization returned no organisation")
        return str(organization["id"])

    # --- sign-in log (beta: crossTenantAccessType and signInEventTypes exist only there) ----------
    # Without a signInEventTypes filter the list holds interactive user sign-ins only; non-interactive
    # ones (refresh tokens, token exchange: how Partner Center AOBO, PowerShell and MSP automation reach
    # customers) are listed only when the filter names them, one event type per query
    # (https://learn.microsoft.com/graph/api/signin-list?view=graph-rest-beta). Both are activity.
    # crossTenantAccessType is a flags enum (signInAccessType, IsFlags in the beta CSDL): `eq` would
    # compare the whole value and drop "b2bCollaboration,serviceProvider", so the query asks for every
    # cross-tenant sign-in (`ne 'none'`, as Microsoft's MSIdentityTools does) and ``qualifies`` keeps
    # the values that include the serviceProvider flag.
    def _sign_in_log_url(self, kind: str, page_size: int, *clauses: str) -> str:
        """A sign-in log query for qualifying sign-ins of one kind that also meet ``clauses``."""
        event_type = SIGNIN_EVENT_TYPES[kind]
        flt = " and ".join(
            [
                *clauses,
                "crossTenantAccessType ne 'none'",
                "status/errorCode eq 0",
                f"signInEventTypes/any(t: t eq '{event_type}')",
            ]
        )
        query = urlencode(
            {"$filter": flt, "$select": SIGNIN_SELECT, "$top": str(page_size)},
            quote_via=quote,
            safe="$,/'",
        )
        return f"{self.root}/beta/auditLogs/signIns?{query}"

    def sign_in_url(self, start: datetime, end: datetime, kind: str = "interactive") -> str:
        return self._sign_in_log_url(
            kind,
            SIGNIN_PAGE_SIZE,
            f"createdDateTime ge {graph_literal(start)}",
            f"createdDateTime le {graph_literal(end)}",
        )

    async def _send_raw(self, info: RequestInformation, *, write: bool = False) -> dict[str, Any]:
        info.headers.try_add("Accept", "application/json")
        adapter = self._write_adapter if write else self.adapter
        raw = await adapter.send_primitive_async(info, "bytes", ERROR_MAP)
        document = json.loads(raw or b"{}")
        if not isinstance(document, dict):
            raise json.JSONDecodeError("not a JSON object", "", 0)
        return document

    async def _send_json(self, info: RequestInformation, what: str) -> dict[str, Any]:
        return await self._call(what, lambda: self._send_raw(info))

    async def _write_json(self, info: RequestInformation, what: str) -> dict[str, Any]:
        """A GDAP write, sent as the write identity."""
        return await self._call(what, lambda: self._send_raw(info, write=True))

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        info = RequestInformation()
        info.http_method = Method.GET
        info.url = url  # verbatim: a URI template would drop the commas of $select
        return await self._send_json(info, what)

    async def _sign_in_log_pages(self, url: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every page of one sign-in log query, paced; a page may be empty and still have a nextLink."""
        while url:
            if self.sign_in_limiter is None:
                page = await self._get_json(url, "GET /beta/auditLogs/signIns")
            else:
                async with self.sign_in_limiter.slot():  # held until the answer, the SDK's retries included
                    page = await self._get_json(url, "GET /beta/auditLogs/signIns")
            values = page.get("value") or []
            yield [v for v in values if isinstance(v, dict)]
            url = page.get("@odata.nextLink")

    async def sign_in_pages(
        self, start: datetime, end: datetime, kind: str = "interactive"
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of raw sign-ins of one kind with start <= createdDateTime <= end, newest first."""
        async for page in self._sign_in_log_pages(self.sign_in_url(start, end, kind)):
            yield page

    def customer_sign_in_url(self, tenant_id: str, since: datetime, kind: str = "interactive") -> str:
        if not GUID_RE.match(tenant_id):
            raise ValueError(f"not a tenant id: {tenant_id!r}")
        return self._sign_in_log_url(
            kind,
            PRECHECK_PAGE_SIZE,
            f"resourceTenantId eq '{tenant_id.lower()}'",
            f"createdDateTime ge {graph_literal(since)}",
        )

    async def latest_sign_in(
        self, tenant_id: str, since: datetime, partner_tenant: str | None = None
    ) -> dict[str, Any] | None:
        """The newest qualifying sign-in of either kind into one customer at or after ``since`` (None:
        none). Asked right before a removal: activity after the evaluation must stop it.

        Each kind is read until a qualifying sign-in turns up or its pages end: Graph may answer a page
        with zero results and a nextLink, and an empty first page is not "no activity"."""
        found: list[dict[str, Any]] = []
        for kind in SIGNIN_EVENT_TYPES:
            async for page in self._sign_in_log_pages(self.customer_sign_in_url(tenant_id, since, kind)):
                hit = next(
                    (
                        item
                        for item in page
                        if str(item.get("resourceTenantId") or "").lower() == tenant_id.lower()
                        and qualifies(item, partner_tenant or str(item.get("homeTenantId") or ""))
                        and (parse_sign_in_time(item.get("createdDateTime")) or since) >= since
                    ),
                    None,
                )
                if hit is not None:
                    found.append({**hit, "kind": kind})
                    break
        return max(
            found, key=lambda item: parse_sign_in_time(item.get("createdDateTime")) or since, default=None
        )

    async def partner_display_name(self) -> str:
        """The partner organisation's name (signs customer mail)."""
        return str((await self._organization()).get("displayName") or "")

    # --- GDAP -----------------------------------------------------------------------------------
    # Requests are built by the SDK's request builders and sent through its adapter and middleware;
    # responses are decoded as JSON, because the SDK's model deserialisation (Entity's table of
    # hundreds of field deserialisers, rebuilt per object) costs ~10 ms per relationship.
    @property
    def _relationships(self) -> DelegatedAdminRelationshipsRequestBuilder:
        return self.client.tenant_relationships.delegated_admin_relationships

    async def _pages(self, first: RequestInformation, what: str) -> AsyncIterator[dict[str, Any]]:
        document = await self._send_json(first, what)
        while True:
            for item in document.get("value") or []:
                if isinstance(item, dict):
                    yield item
            link = document.get("@odata.nextLink")
            if not link:
                return
            document = await self._get_json(str(link), what)

    async def list_relationships(self, status_filter: str | None = None) -> list[Relationship]:
        params = DelegatedAdminRelationshipsRequestBuilder.DelegatedAdminRelationshipsRequestBuilderGetQueryParameters(
            top=RELATIONSHIP_PAGE_SIZE, filter=status_filter
        )
        info = self._relationships.to_get_request_information(RequestConfiguration(query_parameters=params))
        # Keyed by id: a relationship that moves between pages while they are read is listed twice, and
        # two rows with one key would fail the whole table transaction that stores them.
        unique = {rel.id: rel async for rel in self._relationship_items(info)}
        return list(unique.values())

    async def _relationship_items(self, info: RequestInformation) -> AsyncIterator[Relationship]:
        async for item in self._pages(info, "GET /tenantRelationships/delegatedAdminRelationships"):
            yield relationship_from_json(item)

    async def get_relationship(self, relationship_id: str) -> Relationship | None:
        what = f"GET /tenantRelationships/delegatedAdminRelationships/{relationship_id}"
        info = self._relationships.by_delegated_admin_relationship_id(
            relationship_id
        ).to_get_request_information()
        try:
            return relationship_from_json(await retry_transient(lambda: self._send_raw(info), what=what))
        except APIError as exc:
            if _status_of(exc) == 404:
                return None
            raise graph_error(exc, what) from exc

    async def list_access_assignments(self, relationship_id: str) -> list[AccessAssignment]:
        # The URL directly, not the request builder: its URI-template expansion costs about a
        # millisecond of CPU, and a first sync makes one such call per active GDAP relationship.
        info = RequestInformation()
        info.http_method = Method.GET
        info.url = (
            f"{self.root}/v1.0/tenantRelationships/delegatedAdminRelationships/"
            f"{quote(relationship_id, safe='')}/accessAssignments"
        )
        out: dict[str, AccessAssignment] = {}  # by id: an item repeated across pages is kept once
        async for item in self._pages(info, f"GET .../{relationship_id}/accessAssignments"):
            assignment = access_assignment_from_json(item)
            out.setdefault(assignment.id, assignment)
        return list(out.values())

    async def request_termination(self, relationship_id: str) -> str:
        """POST a terminate request. Returns the request id. Raises UpstreamError (status 404/409/...)."""
        body = DelegatedAdminRelationshipRequest(action=DelegatedAdminRelationshipRequestAction.Terminate)
        builder = self._writer.tenant_relationships.delegated_admin_relationships.by_delegated_admin_relationship_id(
            relationship_id
        ).requests
        what = f"POST .../{relationship_id}/requests terminate"
        try:
            result = await builder.post(body)
        except APIError as exc:
            raise graph_error(exc, what) from exc
        except TRANSIENT_ERRORS as exc:
            raise unanswered(exc, what) from exc
        return str(result.id) if result is not None and result.id else ""

    async def get_request(self, relationship_id: str, request_id: str) -> dict[str, Any] | None:
        """One request of a relationship (raw JSON; ``status`` created | succeeded | failed), None if unknown
        (https://learn.microsoft.com/graph/api/delegatedadminrelationshiprequest-get)."""
        builder = self._relationships.by_delegated_admin_relationship_id(
            relationship_id
        ).requests.by_delegated_admin_relationship_request_id(request_id)
        return await self._get_or_none(
            builder.to_get_request_information(), f"GET .../{relationship_id}/requests/{request_id}"
        )

    async def _get_or_none(self, info: RequestInformation, what: str) -> dict[str, Any] | None:
        """One entity as raw JSON, or None when Graph answers 404."""
        try:
            return await retry_transient(lambda: self._send_raw(info), what=what)
        except APIError as exc:
            if _status_of(exc) == 404:
                return None
            raise graph_error(exc, what) from exc

    # --- GDAP lifecycle: requests, approvals, access assignments, expiry, least privilege ---------
    # Durations are passed as ISO 8601 strings: the SDK writes a timedelta as str() ("180 days, 0:00:00").
    async def create_relationship(
        self,
        *,
        display_name: str,
        duration: str,
        tenant_id: str,
        customer_name: str,
        roles: list[str],
        auto_extend_duration: str,
    ) -> Relationship:
        """POST a new relationship (status ``created``). Raises UpstreamError (409: the name is taken)."""
        body = DelegatedAdminRelationship(
            display_name=display_name,
            duration=duration,  # type: ignore[arg-type]
            customer=DelegatedAdminRelationshipCustomerParticipant(
                tenant_id=tenant_id, display_name=customer_name or None
            ),
            access_details=DelegatedAdminAccessDetails(
                unified_roles=[UnifiedRole(role_definition_id=r) for r in roles]
            ),
            auto_extend_duration=auto_extend_duration,  # type: ignore[arg-type]
        )
        info = self._relationships.to_post_request_information(body)
        document = await self._write_json(info, "POST /tenantRelationships/delegatedAdminRelationships")
        return relationship_from_json(document)

    async def request_lock_for_approval(self, relationship_id: str) -> str:
        """POST a lockForApproval request (created -> approvalPending). Returns the request id."""
        body = DelegatedAdminRelationshipRequest(
            action=DelegatedAdminRelationshipRequestAction.LockForApproval
        )
        builder = self._relationships.by_delegated_admin_relationship_id(relationship_id).requests
        document = await self._write_json(
            builder.to_post_request_information(body), f"POST .../{relationship_id}/requests lockForApproval"
        )
        return str(document.get("id") or "")

    async def update_relationship(
        self,
        relationship_id: str,
        etag: str,
        *,
        auto_extend_duration: str | None = None,
        roles: list[str] | None = None,
    ) -> tuple[Relationship | None, str | None]:
        """PATCH with ``If-Match: etag``. Returns (the relationship when answered 200, the operation URL
        when answered 202: removing Global Administrator is a long-running operation). A changed ETag
        raises UpstreamError with status 412."""
        body = DelegatedAdminRelationship()
        if auto_extend_duration is not None:
            body.auto_extend_duration = auto_extend_duration  # type: ignore[assignment]
        if roles is not None:
            body.access_details = DelegatedAdminAccessDetails(
                unified_roles=[UnifiedRole(role_definition_id=r) for r in roles]
            )
        inspection = HeadersInspectionHandlerOption(
            inspect_request_headers=False, inspect_response_headers=True
        )
        config: RequestConfiguration[Any] = RequestConfiguration(options=[inspection])
        config.headers.add("If-Match", etag)
        info = self._relationships.by_delegated_admin_relationship_id(
            relationship_id
        ).to_patch_request_information(body, config)
        document = await self._write_json(
            info, f"PATCH /tenantRelationships/delegatedAdminRelationships/{relationship_id}"
        )
        location = next(iter(inspection.response_headers.get("location") or []), None)
        if document.get("id"):
            return relationship_from_json(document), location
        return None, location

    async def get_operation(self, relationship_id: str, operation_id: str) -> dict[str, Any] | None:
        """A long-running operation of a relationship (raw JSON; ``status``), or None when unknown."""
        builder = self._relationships.by_delegated_admin_relationship_id(
            relationship_id
        ).operations.by_delegated_admin_relationship_operation_id(operation_id)
        return await self._get_or_none(
            builder.to_get_request_information(), f"GET .../{relationship_id}/operations/{operation_id}"
        )

    async def list_operations(self, relationship_id: str) -> list[dict[str, Any]]:
        builder = self._relationships.by_delegated_admin_relationship_id(relationship_id).operations
        return [
            item
            async for item in self._pages(
                builder.to_get_request_information(), f"GET .../{relationship_id}/operations"
            )
        ]

    async def create_access_assignment(
        self, relationship_id: str, group_id: str, roles: list[str]
    ) -> AccessAssignment:
        """POST an access assignment (a partner security group gets roles; ``pending`` at first).
        Raises UpstreamError (409: the group has one already)."""
        body = DelegatedAdminAccessAssignment(
            access_container=DelegatedAdminAccessContainer(
                access_container_id=group_id,
                access_container_type=DelegatedAdminAccessContainerType.SecurityGroup,
            ),
            access_details=DelegatedAdminAccessDetails(
                unified_roles=[UnifiedRole(role_definition_id=r) for r in roles]
            ),
        )
        builder = self._relationships.by_delegated_admin_relationship_id(relationship_id).access_assignments
        item = await self._write_json(
            builder.to_post_request_information(body), f"POST .../{relationship_id}/accessAssignments"
        )
        return access_assignment_from_json(item)

    async def get_access_assignment(self, relationship_id: str, assignment_id: str) -> dict[str, Any] | None:
        """One access assignment as raw JSON (``status``, ``@odata.etag``), None when Graph answers 404
        (https://learn.microsoft.com/graph/api/delegatedadminaccessassignment-get)."""
        builder = self._relationships.by_delegated_admin_relationship_id(
            relationship_id
        ).access_assignments.by_delegated_admin_access_assignment_id(assignment_id)
        return await self._get_or_none(
            builder.to_get_request_information(),
            f"GET .../{relationship_id}/accessAssignments/{assignment_id}",
        )

    async def delete_access_assignment(self, relationship_id: str, assignment_id: str, etag: str) -> None:
        """DELETE an access assignment with ``If-Match: etag`` (required; 204 No Content: the group loses
        the roles; the assignment goes through ``deleting`` to ``deleted``), as the write identity
        (https://learn.microsoft.com/graph/api/delegatedadminaccessassignment-delete). A changed ETag
        raises UpstreamError with status 412, one being deleted already 409."""
        config: RequestConfiguration[Any] = RequestConfiguration()
        config.headers.add("If-Match", etag)
        builder = self._relationships.by_delegated_admin_relationship_id(
            relationship_id
        ).access_assignments.by_delegated_admin_access_assignment_id(assignment_id)
        await self._write_json(
            builder.to_delete_request_information(config),
            f"DELETE .../{relationship_id}/accessAssignments/{assignment_id}",
        )

    async def group_member_ids(self, group_id: str) -> list[str]:
        """Ids of the users in a partner security group, nested groups included (transitiveMembers)."""
        params = TransitiveMembersRequestBuilder.TransitiveMembersRequestBuilderGetQueryParameters(
            select=["id"], top=999
        )
        builder = self.client.groups.by_group_id(group_id).transitive_members
        info = builder.to_get_request_information(RequestConfiguration(query_parameters=params))
        # Nested groups (and devices, contacts) are members too: only users sign in.
        return [
            str(item["id"]).lower()
            async for item in self._pages(info, f"GET /groups/{group_id}/transitiveMembers")
            if item.get("id") and item.get("@odata.type", "#microsoft.graph.user") == "#microsoft.graph.user"
        ]

    async def group_member_users(self, group_id: str) -> list[dict[str, str]]:
        """The users in a partner security group, nested groups included (transitiveMembers), each as
        ``{"id" (lower case), "userPrincipalName", "displayName"}``."""
        params = TransitiveMembersRequestBuilder.TransitiveMembersRequestBuilderGetQueryParameters(
            select=["id", "userPrincipalName", "displayName"], top=999
        )
        builder = self.client.groups.by_group_id(group_id).transitive_members
        info = builder.to_get_request_information(RequestConfiguration(query_parameters=params))
        return [
            {
                "id": str(item["id"]).lower(),
                "userPrincipalName": str(item.get("userPrincipalName") or ""),
                "displayName": str(item.get("displayName") or ""),
            }
            async for item in self._pages(info, f"GET /groups/{group_id}/transitiveMembers")
            if item.get("id") and item.get("@odata.type", "#microsoft.graph.user") == "#microsoft.graph.user"
        ]

    async def remove_group_member(self, group_id: str, member_id: str) -> bool:
        """Remove a user from a partner security group, as the write identity: ``DELETE
        /groups/{id}/members/{memberId}/$ref`` answers 204 No Content; the least privileged application
        permission is GroupMember.ReadWrite.All (https://learn.microsoft.com/graph/api/group-delete-members).
        False when Graph answers 404 (not a direct member, or already removed): nothing was changed."""
        info = RequestInformation()
        info.http_method = Method.DELETE
        info.url = (
            f"{self.root}/v1.0/groups/{quote(group_id, safe='')}/members/{quote(member_id, safe='')}/$ref"
        )
        what = f"DELETE /groups/{group_id}/members/{member_id}/$ref"
        try:
            await retry_transient(lambda: self._send_raw(info, write=True), what=what)
        except APIError as exc:
            if _status_of(exc) == 404:
                return False
            raise graph_error(exc, what) from exc
        return True

    async def group_display_name(self, group_id: str) -> str | None:
        info = self.client.groups.by_group_id(group_id).to_get_request_information()
        what = f"GET /groups/{group_id}"
        try:
            document = await retry_transient(lambda: self._send_raw(info), what=what)
        except APIError as exc:
            if _status_of(exc) == 404:
                return None
            raise graph_error(exc, what) from exc
        return str(document.get("displayName") or "")

    async def find_groups(self, display_name: str) -> list[dict[str, Any]]:
        """Partner security groups with exactly this display name (``$filter=displayName eq '...'``)."""
        literal = display_name.replace("'", "''")
        params = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
            filter=f"displayName eq '{literal}'", select=["id", "displayName"], top=10
        )
        info = self.client.groups.to_get_request_information(RequestConfiguration(query_parameters=params))
        return [item async for item in self._pages(info, "GET /groups")]

    # --- mail -------------------------------------------------------------------------------------
    async def send_mail(
        self,
        sender: str,
        to: list[str],
        subject: str,
        text: str,
        html: str | None = None,
        cc: list[str] | None = None,
    ) -> None:
        message = Message(
            subject=subject,
            body=ItemBody(content_type=BodyType.Html if html else BodyType.Text, content=html or text),
            to_recipients=[Recipient(email_address=EmailAddress(address=a)) for a in to],
            cc_recipients=[Recipient(email_address=EmailAddress(address=a)) for a in (cc or [])],
        )
        body = SendMailPostRequestBody(message=message, save_to_sent_items=True)
        builder = self._mailer.users.by_user_id(sender).send_mail
        try:
            await builder.post(body)
        except APIError as exc:
            raise graph_error(exc, f"POST /users/{sender}/sendMail") from exc
        except TRANSIENT_ERRORS as exc:
            raise unanswered(exc, f"POST /users/{sender}/sendMail") from exc


def _role_ids(item: dict[str, Any]) -> list[str]:
    roles = (item.get("accessDetails") or {}).get("unifiedRoles") or []
    return [str(r["roleDefinitionId"]) for r in roles if isinstance(r, dict) and r.get("roleDefinitionId")]


def access_assignment_from_json(item: dict[str, Any]) -> AccessAssignment:
    container = item.get("accessContainer") or {}
    return AccessAssignment(
        id=str(item.get("id", "")),
        group_id=str(container.get("accessContainerId", "")),
        roles=_role_ids(item),
        status=str(item.get("status", "")),
    )


def relationship_from_json(item: dict[str, Any]) -> Relationship:
    customer = item.get("customer") or {}
    return Relationship(
        tenant_id=str(customer.get("tenantId") or "").lower(),
        type="GDAP",
        id=str(item.get("id", "")),
        display_name=str(item.get("displayName") or ""),
        status=str(item.get("status") or ""),
        established_at=_time(item.get("activatedDateTime")),
        created_at=_time(item.get("createdDateTime")),
        ends_at=_time(item.get("endDateTime")),
        duration=str(item.get("duration") or ""),
        auto_extend_duration=str(item.get("autoExtendDuration") or ""),
        roles=_role_ids(item),
        etag=item.get("@odata.etag"),
        customer_name=str(customer.get("displayName") or ""),
    )


def _time(value: Any) -> datetime | None:
    return parse_sign_in_time(value)


def parse_sign_in_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_optional(value)
    except ValueError:
        return None
