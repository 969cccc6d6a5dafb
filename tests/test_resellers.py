"""Indirect resellers: an indirect provider's customers carry their reseller as Partner Center reports
it (the customer's ``associatedPartnerId``, named by the provider's ``IsIndirectCloudSolutionProviderOf``
relationships), stored with the customer, in the report's rows and the CSV, and filtered by the API's
``reseller=``. Through the emulator's Partner Center API and Azurite."""

from __future__ import annotations

import asyncio
import copy
import csv
import io
from typing import Any

import httpx
import pytest

from shared.evaluation.audit import audit
from shared.platform.settings import SettingsError
from shared.relationships.store import RelationshipStore
from shared.services import Services
from tests.conftest import load_example, settings_with
from tests.test_api import READER, assert_error, client
from tests.test_enforcement import ADATUM, AS_OF, LAMNA, PROSEWARE, RELECLOUD, WINGTIP

RESELLER_A = {"id": "4c3a8b52-0d1e-4f6a-9b7c-2d5e8f1a3b6c", "name": "Fabrikam 販売 KK", "mpnId": "4711"}
RESELLER_B = {"id": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", "name": "=Tailwind Traders", "mpnId": "4712"}


def scenario() -> dict[str, Any]:
    estate = copy.deepcopy(load_example())
    for c in estate["customers"]:
        if c["tenantId"] in (PROSEWARE, LAMNA):
            c["reseller"] = RESELLER_A
        elif c["tenantId"] == WINGTIP:
            c["reseller"] = RESELLER_B
    return estate


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def audited(settings: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with Services(settings) as services:
            return await audit(services, AS_OF)

    return run(go())  # type: ignore[no-any-return]


def test_the_emulator_serves_the_documented_wire_format(env: dict[str, str], emulator: Any) -> None:
    emulator.post_scenario(scenario())
    headers = {"Authorization": "Bearer dev", "Accept": "application/json"}
    customers = httpx.get(f"{emulator.url}/partnercenter/v1/customers?size=500", headers=headers).json()
    by_tenant = {c["id"]: c for c in customers["items"]}
    assert by_tenant[PROSEWARE]["associatedPartnerId"] == RESELLER_A["id"]
    assert "associatedPartnerId" not in by_tenant[ADATUM]
    answer = httpx.get(
        f"{emulator.url}/partnercenter/v1/relationships?relationship_type=IsIndirectCloudSolutionProviderOf",
        headers=headers,
    ).json()
    assert answer["attributes"] == {"objectType": "Collection"} and answer["totalCount"] == 2
    assert {(r["id"], r["name"], r["mpnId"], r["relationshipType"], r["state"]) for r in answer["items"]} == {
        (RESELLER_A["id"], RESELLER_A["name"], "4711", "IsIndirectCloudSolutionProviderOf", "Active"),
        (RESELLER_B["id"], RESELLER_B["name"], "4712", "IsIndirectCloudSolutionProviderOf", "Active"),
    }
    bad = httpx.get(f"{emulator.url}/partnercenter/v1/relationships?relationship_type=Other", headers=headers)
    assert bad.status_code == 400


def test_each_customers_reseller_is_stored_reported_and_in_the_csv(
    env: dict[str, str], emulator: Any
) -> None:
    emulator.post_scenario(scenario())
    settings = settings_with()
    report = audited(settings)
    rows = {r["tenantId"]: r for r in report["customers"]}
    assert rows[PROSEWARE]["reseller"] == {"id": RESELLER_A["id"], "name": RESELLER_A["name"]}
    assert rows[LAMNA]["reseller"] == rows[PROSEWARE]["reseller"]
    assert rows[WINGTIP]["reseller"] == {"id": RESELLER_B["id"], "name": RESELLER_B["name"]}
    assert rows[ADATUM]["reseller"] is None and rows[RELECLOUD]["reseller"] is None

    async def stored() -> Any:
        async with Services(settings) as services:
            return (await RelationshipStore(services.storage).load()).customers

    customers = run(stored())
    assert (customers[PROSEWARE].reseller_id, customers[PROSEWARE].reseller_name) == (
        RESELLER_A["id"],
        RESELLER_A["name"],
    )
    assert customers[ADATUM].reseller_id == ""

    with client(settings) as c:
        text = c.get("/api/audit?format=csv", headers=READER).content.decode("utf-8-sig")
    by_tenant = {r["tenantId"]: r for r in csv.DictReader(io.StringIO(text))}
    assert by_tenant[PROSEWARE]["resellerId"] == RESELLER_A["id"]
    assert by_tenant[PROSEWARE]["resellerName"] == RESELLER_A["name"]
    assert by_tenant[WINGTIP]["resellerName"] == "'=Tailwind Traders"  # formula-safe like every cell
    assert by_tenant[ADATUM]["resellerId"] == "" and by_tenant[ADATUM]["resellerName"] == ""


def test_the_api_filters_customers_by_reseller(env: dict[str, str], emulator: Any) -> None:
    emulator.post_scenario(scenario())
    settings = settings_with()
    audited(settings)
    with client(settings) as c:

        def tenants(query: str) -> list[str]:
            answer = c.get(f"/api/customers?{query}", headers=READER)
            assert answer.status_code == 200, answer.text
            return sorted(r["tenantId"] for r in answer.json()["customers"])

        assert tenants("reseller=fabrikam%20販売%20kk") == sorted([PROSEWARE, LAMNA])  # by name, any case
        assert tenants(f"reseller={RESELLER_B['id'].upper()}") == [WINGTIP]  # by tenant id
        assert tenants("reseller=nobody") == []
        assert tenants("reseller=Fabrikam%20販売%20KK&type=GDAP") == [LAMNA]  # with the other filters
        page = c.get("/api/customers?reseller=nobody", headers=READER).json()
        assert page["query"]["reseller"] == "nobody" and page["total"] == 0
        assert page["resellerSummary"]["customersUnderMonitoring"] == 0
        # The resellers for a filter's choices, and the tiles' counts for one of them.
        whole = c.get("/api/customers", headers=READER).json()
        assert "resellerSummary" not in whole
        assert whole["resellers"] == [
            {"id": RESELLER_B["id"], "name": RESELLER_B["name"], "customers": 1},
            {"id": RESELLER_A["id"], "name": RESELLER_A["name"], "customers": 2},
        ]
        tiles = c.get(f"/api/customers?reseller={RESELLER_A['id']}", headers=READER).json()["resellerSummary"]
        rows = {r["tenantId"]: r for r in whole["customers"]}
        assert tiles["customersUnderMonitoring"] == 2
        assert tiles["inactiveOver90Days"] == sum(rows[t]["bucket"] == "90+" for t in (PROSEWARE, LAMNA))
        assert tiles["recommendedForRemoval"] == sum(
            rows[t]["recommendation"] == "remove" for t in (PROSEWARE, LAMNA)
        )
        assert len(tenants("")) == len(tenants("reseller=")) > 3  # empty: no filter
        csv_text = c.get(f"/api/customers?format=csv&reseller={RESELLER_B['id']}", headers=READER).text
        assert [r["tenantId"] for r in csv.DictReader(io.StringIO(csv_text.lstrip("\ufeff")))] == [WINGTIP]
        assert_error(c.get("/api/customers?reseller=" + "x" * 201, headers=READER), 400)


def test_reseller_names_survive_a_failed_read_and_a_customer_can_go_direct(
    env: dict[str, str], emulator: Any
) -> None:
    estate = scenario()
    emulator.post_scenario(estate)
    settings = settings_with()
    audited(settings)
    # The next sync: the resellers' names cannot be read, and Wingtip is a direct customer now.
    for c in estate["customers"]:
        if c["tenantId"] == WINGTIP:
            del c["reseller"]
    emulator.post_scenario(
        {
            **estate,
            "faults": [
                {"method": "GET", "pathPrefix": "/partnercenter/v1/relationships", "status": 403, "times": 10}
            ],
        }
    )
    rows = {r["tenantId"]: r for r in audited(settings)["customers"]}
    refused = [
        e for e in emulator.log(all_requests=True) if e["path"].startswith("/partnercenter/v1/relationships")
    ]
    assert refused and all(e.get("fault") for e in refused)
    assert rows[PROSEWARE]["reseller"] == {"id": RESELLER_A["id"], "name": RESELLER_A["name"]}
    assert rows[WINGTIP]["reseller"] is None


def test_each_reseller_gets_the_digest_of_its_own_customers(env: dict[str, str], emulator: Any) -> None:
    """RESELLER_DIGEST_CONTACTS: the enforcement digest also goes to each named reseller's contacts, with
    only that reseller's customers; once, like the partner's; a reseller with nothing in it gets none."""
    from shared.evaluation.run import run_cycle
    from shared.notifications.worker import process_notification_queue
    from tests.test_enforcement import ENFORCE, NORTHWIND, TAILSPIN, estate

    enforced = estate()
    for c in enforced["customers"]:
        if c["tenantId"] in (PROSEWARE, TAILSPIN):
            c["reseller"] = RESELLER_A
        elif c["tenantId"] == ADATUM:  # active: in no digest
            c["reseller"] = RESELLER_B
    emulator.post_scenario(enforced)
    contacts = f"{RESELLER_A['id']}=ops@fabrikam.example;cto@fabrikam.example, {RESELLER_B['id']}=it@tailwind.example"
    settings = settings_with(**ENFORCE, RESELLER_DIGEST_CONTACTS=contacts)

    async def cycle() -> None:
        async with Services(settings) as services:
            await run_cycle(services, AS_OF)
            await process_notification_queue(services)
            await run_cycle(services, AS_OF)  # again: nothing new is sent
            await process_notification_queue(services)

    run(cycle())
    to_reseller = [
        m["message"]
        for m in emulator.outbox()
        if "ops@fabrikam.example" in [r["emailAddress"]["address"] for r in m["message"]["toRecipients"]]
    ]
    assert len(to_reseller) == 1, [
        [r["emailAddress"]["address"] for r in m["message"]["toRecipients"]] for m in emulator.outbox()
    ]
    body = to_reseller[0]["body"]["content"]
    assert RESELLER_A["name"] in body and "Proseware" in body and "Tailspin" in body
    assert "Lamna" not in body and "Wingtip" not in body and "Northwind" not in body and NORTHWIND not in body
    assert not [
        m
        for m in emulator.outbox()
        if "it@tailwind.example" in [r["emailAddress"]["address"] for r in m["message"]["toRecipients"]]
    ]
    with pytest.raises(SettingsError, match="RESELLER_DIGEST_CONTACTS"):
        settings_with(**ENFORCE, RESELLER_DIGEST_CONTACTS="fabrikam=ops@fabrikam.example")
