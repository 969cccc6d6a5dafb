"""Azure role assignments that survive DAP and GDAP: read from Resource Manager (through the emulator's
``/arm`` routes, with api-version, nextLink paging, 204 / 403 / 409 answers), reported per customer and
counted, deleted with ``REMOVAL_SCOPE`` including ``azure`` and otherwise listed in the customer's notice.

The estate is the example with subscriptions added: Proseware (DAP only, ja-JP, idle) and Lamna (DAP and
GDAP, idle) are removal candidates with REMOVE_AFTER_DAYS=15; Adatum is active; Fourth Coffee (DAP enabled
here) has only other partners' foreign principals, which are not this partner's to show or remove.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shared.evaluation.audit import audit
from shared.evaluation.run import run_cycle
from shared.platform.actions import list_actions
from shared.platform.settings import Settings, SettingsError
from shared.platform.timeutil import parse_iso
from shared.services import Services
from tests.conftest import load_example, settings_with

AS_OF = parse_iso("2026-11-21T00:00:00Z")
ADATUM = "92276658-1e27-41c0-8a6a-63ec24ede6a4"
PROSEWARE = "ec66a787-95e7-41d1-b731-af10506bf2ef"
LAMNA = "3f98e277-4cbd-47ad-9c90-a9587403e430"
FOURTH = "9be4bcfc-49b6-4a08-b2e6-cc3ababced20"
HELPDESK_GROUP = "9531985d-5d9d-49f8-9818-e811892f902b"  # the partner's GDAP group in Lamna's relationship
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
SUB_P1 = "11111111-aaaa-4aaa-8aaa-000000000001"
SUB_P2 = "11111111-aaaa-4aaa-8aaa-000000000002"
SUB_L1 = "22222222-bbbb-4bbb-8bbb-000000000001"
SUB_A1 = "33333333-cccc-4ccc-8ccc-000000000001"
SUB_F1 = "44444444-dddd-4ddd-8ddd-000000000001"
# The partner's AdminAgents group: its object id is the principal of its Azure roles in every customer.
ADMIN_AGENTS = "d23f0824-128b-4f33-8c5c-7fd0a6a3a450"
FP_PROSEWARE = FP_LAMNA = FP_ADATUM = ADMIN_AGENTS
CUSTOMER_USER = "bbbbbbbb-0000-4000-8000-00000000e001"
ENFORCE = {
    "POLICY_MODE": "enforce",
    "RECOMMEND_AFTER_DAYS": "15",
    "REMOVE_AFTER_DAYS": "15",
    "NOTIFY_SENDER": "notices@contoso.example",
    "NOTIFY_PARTNER_ADDRESSES": "admins@contoso.example",
    "PARTNER_CENTER_APP_ID": "",
}
WITH_AZURE = {**ENFORCE, "REMOVAL_SCOPE": "dap,gdap,azure"}


def assignment(
    name: str, role: str, principal: str, sub: str, kind: str = "ForeignGroup", scope: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "roleDefinitionId": role,
        "principalId": principal,
        "principalType": kind,
        **({"scope": scope} if scope else {}),
    }


def estate(**marks: dict[str, Any]) -> dict[str, Any]:
    """The example plus Azure subscriptions; ``marks`` adds fields to a subscription by id (denied ...)."""
    scenario = copy.deepcopy(load_example())
    subscriptions = {
        PROSEWARE: [
            {
                "subscriptionId": SUB_P1,
                "displayName": "Proseware Production",
                "roleAssignments": [
                    assignment("00000000-0000-4000-8000-0000000000p1", OWNER, FP_PROSEWARE, SUB_P1),
                    assignment(
                        "00000000-0000-4000-8000-0000000000p2",
                        CONTRIBUTOR,
                        FP_PROSEWARE,
                        SUB_P1,
                        scope=f"/subscriptions/{SUB_P1}/resourceGroups/web",
                    ),
                    assignment("00000000-0000-4000-8000-0000000000p3", OWNER, CUSTOMER_USER, SUB_P1, "User"),
                ],
            },
            {
                "subscriptionId": SUB_P2,
                "displayName": "Proseware Dev",
                "roleAssignments": [
                    assignment("00000000-0000-4000-8000-0000000000p4", OWNER, FP_PROSEWARE, SUB_P2)
                ],
            },
        ],
        LAMNA: [
            {
                "subscriptionId": SUB_L1,
                "displayName": "Lamna Azure plan",
                "roleAssignments": [
                    assignment("00000000-0000-4000-8000-0000000000l1", OWNER, FP_LAMNA, SUB_L1),
                    assignment("00000000-0000-4000-8000-0000000000l2", READER, HELPDESK_GROUP, SUB_L1),
                ],
            }
        ],
        ADATUM: [
            {
                "subscriptionId": SUB_A1,
                "displayName": "Adatum",
                "roleAssignments": [
                    assignment("00000000-0000-4000-8000-0000000000a1", OWNER, FP_ADATUM, SUB_A1)
                ],
            }
        ],
        FOURTH: [
            {
                "subscriptionId": SUB_F1,
                "displayName": "Fourth Coffee",
                "roleAssignments": [
                    assignment(
                        "00000000-0000-4000-8000-0000000000f1",
                        OWNER,
                        "cccccccc-0000-4000-8000-000000000001",
                        SUB_F1,
                    ),
                    assignment(
                        "00000000-0000-4000-8000-0000000000f2",
                        OWNER,
                        "cccccccc-0000-4000-8000-000000000002",
                        SUB_F1,
                    ),
                ],
            }
        ],
    }
    for c in scenario["customers"]:
        if c["tenantId"] == FOURTH:
            c["dap"]["enabled"] = True  # under monitoring, with DAP: its foreign principals are in question
        subs = subscriptions.get(c["tenantId"])
        if subs:
            c["azureSubscriptions"] = [{**s, **marks.get(s["subscriptionId"], {})} for s in subs]
    return scenario


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def with_services(settings: Settings, work: Callable[[Services], Awaitable[Any]]) -> Any:
    async with Services(settings) as services:
        return await work(services)


def report(settings: Settings) -> dict[str, Any]:
    return run(with_services(settings, lambda s: audit(s, AS_OF)))  # type: ignore[no-any-return]


def cycle(settings: Settings) -> dict[str, Any]:
    return run(with_services(settings, lambda s: run_cycle(s, AS_OF)))  # type: ignore[no-any-return]


def arm_deletes(emulator: Any) -> list[str]:
    return [
        e["path"].rsplit("/", 1)[-1]
        for e in emulator.log()
        if e["method"] == "DELETE" and e["path"].startswith("/arm/") and not e.get("fault")
    ]


def remaining(emulator: Any, tenant: str) -> dict[str, list[str]]:
    state = {c["tenantId"]: c for c in emulator.state(sign_ins=False)["customers"]}
    return {
        s["subscriptionId"]: sorted(a["name"] for a in s["roleAssignments"])
        for s in state[tenant]["azureSubscriptions"]
    }


@pytest.fixture
def azure_estate(env: dict[str, str], emulator: Any) -> Any:
    emulator.post_scenario(estate())
    return emulator


def test_role_assignments_are_reported_per_customer_and_counted(azure_estate: Any) -> None:
    result = report(settings_with())
    rows = {r["tenantId"]: r for r in result["customers"]}
    proseware = rows[PROSEWARE]
    assert proseware["azureRolesState"] == "read"
    # Only the partner's foreign principal, on every subscription and scope; the customer's own user is not listed.
    assert sorted(
        (a["subscriptionName"], a["roleName"], a["scope"], a["principal"])
        for a in proseware["azureRoleAssignments"]
    ) == [
        ("Proseware Dev", "Owner", f"/subscriptions/{SUB_P2}", "adminAgents"),
        ("Proseware Production", "Contributor", f"/subscriptions/{SUB_P1}/resourceGroups/web", "adminAgents"),
        ("Proseware Production", "Owner", f"/subscriptions/{SUB_P1}", "adminAgents"),
    ]
    lamna = {(a["roleName"], a["principal"]) for a in rows[LAMNA]["azureRoleAssignments"]}
    assert lamna == {("Owner", "adminAgents"), ("Reader", "gdapGroup")}
    assert rows[ADATUM]["azureRoleAssignments"][0]["principalId"] == FP_ADATUM
    # Other partners' foreign groups are not this partner's: none is claimed (or removed).
    assert rows[FOURTH]["azureRoleAssignments"] == []
    assert result["summary"]["customersWithAzureRoleAssignments"] == 3
    from shared.evaluation.formats import report_table

    assert "  Azure role assignments held       3" in report_table(result)  # the CLI's tiles (make demo)
    # The lists were read to their end through nextLink (three assignments, pages of two).
    reads = [
        e
        for e in azure_estate.log(all_requests=True)
        if e["path"].endswith(f"{SUB_P1}/providers/Microsoft.Authorization/roleAssignments")
    ]
    assert len(reads) == 2
    assert not arm_deletes(azure_estate)  # an audit removes nothing


def test_removal_with_azure_scope_deletes_them_once_and_mails_them_as_removed(azure_estate: Any) -> None:
    settings = settings_with(**WITH_AZURE)
    summary = cycle(settings)
    assert {PROSEWARE, LAMNA} <= set(summary["removed"])
    assert sorted(arm_deletes(azure_estate)) == sorted(
        [
            "00000000-0000-4000-8000-0000000000p1",
            "00000000-0000-4000-8000-0000000000p2",
            "00000000-0000-4000-8000-0000000000p4",
            "00000000-0000-4000-8000-0000000000l1",
            "00000000-0000-4000-8000-0000000000l2",
        ]
    )
    # The customer's own assignment stays; the active customer's are untouched.
    assert remaining(azure_estate, PROSEWARE) == {
        SUB_P1: ["00000000-0000-4000-8000-0000000000p3"],
        SUB_P2: [],
    }
    assert remaining(azure_estate, ADATUM) == {SUB_A1: ["00000000-0000-4000-8000-0000000000a1"]}
    trail = run(with_services(settings, lambda s: list_actions(s.storage, tenant_id=LAMNA)))
    deleted = [a for a in trail if a["action"] == "azure.roleAssignment.delete"]
    assert sorted(a["result"] for a in deleted) == ["removed", "removed"]
    body = _first_notice_for(azure_estate, "lamna")
    assert "Lamna Azure plan" in body and "Owner" in body and "Reader" in body
    assert "holds no roles on your Azure subscriptions any more" in body
    ja = _first_notice_for(azure_estate, "proseware")
    assert "Proseware Production" in ja and "Proseware Dev" in ja and "もう保持していません" in ja
    # Never twice: another cycle finds nothing to delete.
    before = len(arm_deletes(azure_estate))
    cycle(settings)
    assert len(arm_deletes(azure_estate)) == before


def test_without_azure_scope_nothing_is_deleted_and_the_notice_lists_what_remains(azure_estate: Any) -> None:
    cycle(settings_with(**ENFORCE))
    assert not arm_deletes(azure_estate)
    body = _first_notice_for(azure_estate, "lamna")
    assert "still holds these roles" in body and "Lamna Azure plan" in body and "Owner, Reader" in body
    ja = _first_notice_for(azure_estate, "proseware")
    assert "引き続き保持" in ja and "Proseware Production" in ja and "Contributor、Owner" in ja


def test_an_excluded_customer_keeps_its_azure_roles(azure_estate: Any) -> None:
    cycle(settings_with(**WITH_AZURE, EXCLUDED_TENANTS=PROSEWARE))
    deleted = arm_deletes(azure_estate)
    assert deleted and not any(name.endswith(("p1", "p2", "p3", "p4")) for name in deleted)
    assert remaining(azure_estate, PROSEWARE)[SUB_P1] == [
        "00000000-0000-4000-8000-0000000000p1",
        "00000000-0000-4000-8000-0000000000p2",
        "00000000-0000-4000-8000-0000000000p3",
    ]


def test_a_refused_read_removes_nothing_in_azure_and_says_so(env: dict[str, str], emulator: Any) -> None:
    emulator.post_scenario(estate(**{SUB_L1: {"denied": True}}))
    settings = settings_with(**WITH_AZURE)
    rows = {r["tenantId"]: r for r in report(settings)["customers"]}
    assert rows[LAMNA]["azureRolesState"] == "denied" and rows[LAMNA]["azureRoleAssignments"] == []
    cycle(settings)
    assert not any(name.endswith(("l1", "l2")) for name in arm_deletes(emulator))
    assert remaining(emulator, LAMNA)[SUB_L1] == [
        "00000000-0000-4000-8000-0000000000l1",
        "00000000-0000-4000-8000-0000000000l2",
    ]
    trail = run(with_services(settings, lambda s: list_actions(s.storage, tenant_id=LAMNA)))
    assert any(a["action"] == "azure.read" and a["result"] == "failed" for a in trail)
    # The DAP and GDAP removal went ahead; the notice keeps the general advice (nothing could be read).
    assert "Access control (IAM)" in _first_notice_for(emulator, "lamna")


def test_a_refused_delete_keeps_the_assignment_and_lists_it_as_remaining(
    env: dict[str, str], emulator: Any
) -> None:
    scenario = estate()
    scenario["faults"] = [
        {
            "method": "DELETE",
            "pathPrefix": f"/arm/subscriptions/{SUB_L1}/providers",
            "status": 403,
            "times": -1,
        }
    ]
    emulator.post_scenario(scenario)
    settings = settings_with(**WITH_AZURE)
    cycle(settings)
    assert remaining(emulator, LAMNA)[SUB_L1] == [
        "00000000-0000-4000-8000-0000000000l1",
        "00000000-0000-4000-8000-0000000000l2",
    ]
    trail = run(with_services(settings, lambda s: list_actions(s.storage, tenant_id=LAMNA)))
    assert sorted(a["result"] for a in trail if a["action"] == "azure.roleAssignment.delete") == [
        "kept",
        "kept",
    ]
    body = _first_notice_for(emulator, "lamna")
    assert "still holds these roles" in body and "Owner, Reader" in body


def test_azure_scope_without_credentials_is_refused_before_anything(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMULATOR_URL")
    settings = settings_with(REMOVAL_SCOPE="dap,gdap,azure", DAP_ENABLED="false")
    with pytest.raises(SettingsError, match="REMOVAL_SCOPE includes azure"):
        Services(settings)
    with pytest.raises(SettingsError, match="REMOVAL_SCOPE"):
        settings_with(REMOVAL_SCOPE="azure")


def _first_notice_for(emulator: Any, slug: str) -> str:
    for mail in emulator.outbox():
        message = mail["message"]
        to = [r["emailAddress"]["address"] for r in message.get("toRecipients", [])]
        if any(slug in address for address in to) and "admins@" not in ",".join(to):
            return str(message["body"]["content"])
    raise AssertionError(f"no notice to {slug}")


def test_the_customer_api_and_the_report_carry_them(azure_estate: Any) -> None:
    from tests.test_api import READER, client

    settings = settings_with()
    report(settings)
    with client(settings) as c:
        detail = c.get(f"/api/customers/{LAMNA}", headers=READER).json()
        audit_json = c.get("/api/audit", headers=READER).json()
    assert detail["azureRoles"]["state"] == "read" and detail["azureRoles"]["readAt"]
    assert {(a["subscriptionName"], a["roleName"]) for a in detail["azureRoles"]["assignments"]} == {
        ("Lamna Azure plan", "Owner"),
        ("Lamna Azure plan", "Reader"),
    }
    assert audit_json["summary"]["customersWithAzureRoleAssignments"] == 3
    row = next(r for r in audit_json["customers"] if r["tenantId"] == LAMNA)
    assert len(row["azureRoleAssignments"]) == 2


def test_the_emulator_speaks_resource_manager(azure_estate: Any) -> None:
    import httpx

    from shared.platform.identity import tenant_development_token

    auth = {"Authorization": f"Bearer {tenant_development_token(PROSEWARE)}"}
    base = azure_estate.url + "/arm"
    missing = httpx.get(f"{base}/subscriptions", headers=auth)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "MissingApiVersionParameter"
    subs = httpx.get(f"{base}/subscriptions?api-version=2022-12-01", headers=auth).json()
    assert [s["subscriptionId"] for s in subs["value"]] == [SUB_P1, SUB_P2] and "nextLink" not in subs
    # Another tenant's subscription is not found with this tenant's token.
    other = httpx.get(
        f"{base}/subscriptions/{SUB_L1}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
        headers=auth,
    )
    assert other.status_code == 404 and other.json()["error"]["code"] == "SubscriptionNotFound"
    page = httpx.get(
        f"{base}/subscriptions/{SUB_P1}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
        headers=auth,
    ).json()
    assert len(page["value"]) == 2 and page["nextLink"].startswith(base)
    rest = httpx.get(page["nextLink"], headers=auth).json()
    assert len(rest["value"]) == 1 and "nextLink" not in rest
    filtered = httpx.get(
        f"{base}/subscriptions/{SUB_P1}/providers/Microsoft.Authorization/roleAssignments"
        f"?api-version=2022-04-01&$filter=principalId eq '{CUSTOMER_USER}'",
        headers=auth,
    ).json()
    assert [a["properties"]["principalType"] for a in filtered["value"]] == ["User"]
    target = page["value"][0]["id"]
    first = httpx.delete(f"{base}{target}?api-version=2022-04-01", headers=auth)
    again = httpx.delete(f"{base}{target}?api-version=2022-04-01", headers=auth)
    assert (first.status_code, first.json()["id"], again.status_code) == (200, target, 204)


def test_deleted_azure_roles_are_mailed_even_when_no_relationship_was_left(
    env: dict[str, str], emulator: Any
) -> None:
    """Proseware's DAP PATCH answers 404 (the customer is gone from Partner Center): the DAP part is
    skipped, but its Azure roles were deleted, so the removal completes and the customer is told."""
    scenario = estate()
    scenario["faults"] = [
        {
            "method": "PATCH",
            "pathPrefix": f"/partnercenter/v1/customers/{PROSEWARE}",
            "status": 404,
            "times": -1,
        }
    ]
    emulator.post_scenario(scenario)
    summary = cycle(settings_with(**WITH_AZURE))
    assert PROSEWARE in summary["removed"]
    assert remaining(emulator, PROSEWARE) == {SUB_P1: ["00000000-0000-4000-8000-0000000000p3"], SUB_P2: []}
    ja = _first_notice_for(emulator, "proseware")
    assert "Proseware Production" in ja and "代理管理特権 (DAP)" not in ja


def test_the_resource_manager_token_is_the_app_user_chain_at_the_customer_authority() -> None:
    """One refresh token for Partner Center and every customer tenant: a token for a customer tenant comes
    from that tenant's authority, is cached apart, and the rotated refresh token is the one used next."""
    from tests.test_identity import credential

    made, provider = credential()
    authorities: list[str] = []
    made._apps = {}

    class Recording:
        def __init__(self, authority: str) -> None:
            self.authority = authority

        def acquire_token_by_refresh_token(self, refresh_token: str, scopes: list[str]) -> dict[str, Any]:
            authorities.append(self.authority)
            return provider.acquire_token_by_refresh_token(refresh_token, scopes)

    made._apps[f"https://login.microsoftonline.com/{LAMNA}"] = Recording(LAMNA)
    pc = made.get_token("https://api.partnercenter.microsoft.com/user_impersonation").token
    arm = made.get_token("https://management.azure.com/user_impersonation", tenant_id=LAMNA).token
    again = made.get_token("https://management.azure.com/user_impersonation", tenant_id=LAMNA).token
    assert pc != arm and arm == again and authorities == [LAMNA]
    assert provider.calls == ["refresh-0", "refresh-1"]


def test_the_admin_agents_group_is_the_setting_or_the_one_graph_names() -> None:
    from types import SimpleNamespace

    from shared.azure_roles.store import admin_agents_group

    class Graph:
        def __init__(self, found: list[dict[str, str]]) -> None:
            self.found = found

        async def find_groups(self, name: str) -> list[dict[str, str]]:
            assert name == "AdminAgents"
            return self.found

    def services(setting: str, found: list[dict[str, str]]) -> Any:
        return SimpleNamespace(settings=SimpleNamespace(gdap_group_admin_agents=setting), graph=Graph(found))

    one = [{"id": ADMIN_AGENTS.upper()}]
    two = [{"id": ADMIN_AGENTS}, {"id": CUSTOMER_USER}]
    assert run(admin_agents_group(services("", one))) == ADMIN_AGENTS
    assert run(admin_agents_group(services(CUSTOMER_USER, two))) == CUSTOMER_USER
    assert (
        run(admin_agents_group(services("", two))) is None
    )  # in doubt: no Admin Agents assignment is claimed
    assert run(admin_agents_group(services("", []))) is None


# --- the portal (browser tests last: Playwright's module-scoped browser holds an event loop) ---


@pytest.fixture(scope="module")
def portal(azurite: Any, emulator_process: Any) -> Any:
    import uuid

    from tests.browser import Portal, require_chromium, serve, serve_environment

    require_chromium()
    scenario = estate()
    emulator_process.post_scenario(scenario)
    env = serve_environment(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "STORAGE_PREFIX": "z" + uuid.uuid4().hex[:12],
            "EMULATOR_URL": emulator_process.url,
            "NOTIFY_SENDER": "notices@contoso.example",
        }
    )
    report(Settings.from_env(env))
    # Lamna's access is removed with its Azure roles; Proseware (excluded) keeps everything.
    cycle(Settings.from_env({**env, **WITH_AZURE, "EXCLUDED_TENANTS": PROSEWARE}))
    with serve(env) as url:
        yield Portal(url, scenario, emulator_process)


@pytest.mark.browser
def test_the_customer_view_lists_them_as_text(page: Any, portal: Any) -> None:
    p = page.page
    p.goto(f"{portal.url}/#/customers/{PROSEWARE}")
    p.wait_for_selector("#azure-roles table tbody tr")
    rows = p.locator("#azure-roles table tbody tr").all_inner_texts()
    assert len(rows) == 3
    assert any(
        "Proseware Production" in r and "Owner" in r and "Admin Agents (foreign principal)" in r for r in rows
    )
    assert any(f"/subscriptions/{SUB_P1}/resourceGroups/web" in r and "Contributor" in r for r in rows)
    assert p.locator("#azure-roles-title").text_content() == "Azure role assignments"
    # Read, the roles are listed: the generic "review your Azure roles" advice is not shown.
    assert p.locator("#azure-rbac-note").is_hidden()
    p.goto(f"{portal.url}/#/customers/{FOURTH}")
    p.wait_for_function(
        "() => (document.querySelector('#azure-roles p') || {}).textContent?.startsWith('No Azure role assignments')"
    )


@pytest.mark.browser
def test_the_customer_view_shows_their_deletion_in_the_trail(page: Any, portal: Any) -> None:
    p = page.page
    p.goto(f"{portal.url}/#/customers/{LAMNA}")
    p.wait_for_selector("#actions table tbody tr")
    trail = p.locator("#actions table").inner_text()
    assert "Azure: role assignment deleted" in trail and "removed" in trail
    assert p.locator("#azure-roles p").first.text_content().startswith("No Azure role assignments")


@pytest.mark.browser
def test_the_customer_view_in_japanese(page_ja: Any, portal: Any) -> None:
    p = page_ja.page
    p.goto(f"{portal.url}/#/customers/{PROSEWARE}")
    p.wait_for_selector("#azure-roles table tbody tr")
    assert p.locator("#azure-roles-title").text_content() == "Azure のロールの割り当て"
    text = p.locator("#azure-roles").inner_text()
    assert "管理エージェント (外部プリンシパル)" in text and "Proseware Production" in text
    assert "サブスクリプション" in p.locator("#azure-roles table thead").inner_text()
