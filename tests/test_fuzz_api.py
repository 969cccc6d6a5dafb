"""The HTTP API fuzzed from its own OpenAPI document (schemathesis + Hypothesis), plus principals,
bodies and origins no schema describes.

Every operation of ``/api/openapi.json`` gets generated valid and invalid input, sent with a reader's
principal, a remover's, none, and a forged one. Nothing may answer 5xx; every refusal is a JSON 4xx
with a code and a message; a refused state change changes nothing (no removal, no action record, no
queue message, no request to Microsoft). ``make test`` runs a bounded number of examples
(``FUZZ_EXAMPLES``); ``make soak`` many more.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.platform.settings import Settings
from shared.platform.timeutil import parse_iso
from shared.web.auth import READ_ROLE, REMOVE_ROLE, encode_principal
from shared.web.server import build_app
from tests.conftest import audited_example, figures_name
from tools import chaos

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

AS_OF = parse_iso("2026-11-21T00:00:00Z")
WINGTIP = "ca02135e-92b1-43f2-8ede-0d7ac3baea9e"
PRINCIPALS = {
    "reader": {"X-MS-CLIENT-PRINCIPAL": encode_principal("reader@contoso.example", [READ_ROLE])},
    "remover": {"X-MS-CLIENT-PRINCIPAL": encode_principal("admin@contoso.example", [READ_ROLE, REMOVE_ROLE])},
    "none": {},
    "forged": {
        "X-MS-CLIENT-PRINCIPAL": base64.b64encode(
            b'{"claims":[{"typ":"roles","val":"' + REMOVE_ROLE.encode() + b'"}]}'
        ).decode()
    },
}
FIGURES: Counter[str] = Counter()


def examples() -> int:
    return int(os.environ.get("FUZZ_EXAMPLES", "3"))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def state_of(settings: Settings) -> tuple[int, int, int]:
    """(removals, action records, queued removal messages): what a refused request must not change.
    Synchronous clients: cheap enough to ask after every refused state change."""
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueServiceClient

    from shared.platform.storage import expand_connection_string

    conn = expand_connection_string(settings.storage_connection)
    with TableServiceClient.from_connection_string(conn) as tables:
        removals = sum(
            1
            for _ in tables.get_table_client(settings.table_name("Removals")).list_entities(select=["RowKey"])
        )
        actions = sum(
            1
            for _ in tables.get_table_client(settings.table_name("Actions")).list_entities(select=["RowKey"])
        )
    with QueueServiceClient.from_connection_string(conn) as queues:
        props = queues.get_queue_client(settings.queue_name("removals")).get_queue_properties()
    return removals, actions, int(props.approximate_message_count or 0)


@pytest.fixture
def audited(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    return audited_example(monkeypatch, AS_OF)


@pytest.fixture
def client(audited: Settings) -> Iterator[TestClient]:
    app = build_app(audited, local_operator=False, drain_removals=False, trust_principal_header=True)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c


def check_answer(response: Any, label: str) -> None:
    FIGURES["requests"] += 1
    FIGURES[f"status {response.status_code}"] += 1
    assert response.status_code < 500, (label, response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), label
        error = response.json()["error"]
        assert error["code"] and error["message"], label


def send(client: TestClient, case: Any, headers: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {
        "params": case.query or None,
        "headers": {**{k: str(v) for k, v in (case.headers or {}).items()}, **headers},
    }
    body = case.body
    if body is not None and type(body).__name__ != "NotSet":
        kwargs["content"] = json.dumps(body).encode() if not isinstance(body, bytes) else body
        kwargs["headers"].setdefault("Content-Type", case.media_type or "application/json")
    return client.request(case.method, case.formatted_path, **kwargs)


def fuzz_operation(
    client: TestClient, audited: Settings, operation: Any, mode: Any, baseline: tuple[int, int, int]
) -> None:
    """``examples()`` generated cases of one operation, each sent as a random one of the principals."""
    changes = operation.method.upper() == "POST"
    FIGURES["examplesPerOperationAndMode"] = max(FIGURES["examplesPerOperationAndMode"], examples())

    @settings(
        max_examples=examples(),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), who=st.sampled_from(sorted(PRINCIPALS)))
    def fuzz(case: Any, who: str) -> None:
        response = send(client, case, PRINCIPALS[who])
        check_answer(response, f"{operation.label} {mode.value} as {who}")
        FIGURES[f"{operation.label}"] += 1
        if who in ("none", "forged"):
            assert response.status_code == 401, (operation.label, response.status_code)
        if changes and response.status_code >= 400:
            assert state_of(audited) == baseline, (operation.label, case.body)

    try:
        fuzz()
    except Exception as exc:
        if "Unsatisfiable" not in type(exc).__name__:  # a mode that cannot produce a case here: skip
            raise


def test_every_operation_fuzzed_from_the_openapi_document(
    client: TestClient, audited: Settings, emulator: Any
) -> None:
    import schemathesis
    from schemathesis import GenerationMode

    document = client.get("/api/openapi.json", headers=PRINCIPALS["reader"]).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    baseline = state_of(audited)
    microsoft_calls = len(emulator.log())
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(client, audited, operation, mode, baseline)
    # Refused state changes reached nothing: no removal, no action, no message, no call to Microsoft.
    removals, actions, queued = state_of(audited)
    assert removals == baseline[0] and queued == baseline[2]
    assert (
        len([e for e in emulator.log() if e["method"] in ("PATCH", "DELETE") or "/requests" in e["path"]])
        == 0
    )
    FIGURES["operations"] = len(operations)
    FIGURES["microsoftCallsBefore"] = microsoft_calls


# --- what no schema describes -----------------------------------------------------------------------------


def random_principals(rng: random.Random, n: int) -> list[str]:
    """Malformed X-MS-CLIENT-PRINCIPAL values: garbage, truncations, wrong shapes, huge ones."""
    good = PRINCIPALS["remover"]["X-MS-CLIENT-PRINCIPAL"]
    out = [
        "",
        " ",
        "=",
        "====",
        good[:-4],
        good + "!",
        good[: len(good) // 2],
        "x" * 20_000,
        base64.b64encode(b"\x00" * 64).decode(),
        base64.b64encode(json.dumps({"claims": [{}]}).encode()).decode(),
        base64.b64encode(
            json.dumps({"claims": [{"typ": "roles", "val": REMOVE_ROLE}] * 500}).encode()
        ).decode(),
        base64.b64encode(json.dumps({"claims": None, "name_typ": 5}).encode()).decode(),
        base64.b64encode(b"[" * 12_000).decode(),  # nested deeper than the JSON parser recurses
        base64.b64encode(b'{"claims": ' + b"[" * 6_000 + b"]" * 6_000 + b"}").decode(),
    ]
    for _ in range(n):
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
        out.append(base64.b64encode(raw).decode() if rng.random() < 0.5 else raw.decode("latin-1"))
    return out


def test_malformed_principals_are_401_and_change_nothing(
    client: TestClient, audited: Settings, emulator: Any
) -> None:
    rng = random.Random(7)
    baseline = state_of(audited)
    values = random_principals(rng, 40 if examples() <= 12 else 400)
    for value in values:
        header = value.encode("latin-1")  # raw bytes, as a client may send them
        for method, path in (("GET", "/api/customers"), ("POST", "/api/removals")):
            response = client.request(
                method,
                path,
                headers={"X-MS-CLIENT-PRINCIPAL": header},  # type: ignore
                json={"tenantIds": [WINGTIP], "customerNotified": True},
            )
            check_answer(response, f"principal {value[:40]!r}")
            assert response.status_code == 401, (value[:80], response.status_code)
    FIGURES["malformedPrincipals"] += len(values)
    assert state_of(audited) == baseline
    assert emulator.log() == []


def test_oversized_and_cross_site_bodies_are_refused(client: TestClient, audited: Settings) -> None:
    remover = PRINCIPALS["remover"]
    baseline = state_of(audited)
    body = json.dumps({"tenantIds": [WINGTIP], "customerNotified": True, "reason": "x" * 70_000}).encode()
    cases = [
        ({**remover, "Content-Type": "application/json"}, body, 413),
        ({**remover, "Content-Type": "application/json", "Content-Length": "99999999999"}, b"{}", 413),
        # no Content-Length at all (chunked): counted as it is read
        (
            {**remover, "Content-Type": "application/json"},
            iter([b'{"tenantIds":["', b"a" * 70_000, b'"]}']),
            413,
        ),
        (
            {**remover, "Content-Type": "application/json", "Origin": "https://evil.example"},
            json.dumps({"tenantIds": [WINGTIP], "customerNotified": True}).encode(),
            403,
        ),
        (
            {**remover, "Content-Type": "application/json", "Sec-Fetch-Site": "same-site"},
            json.dumps({"tenantIds": [WINGTIP], "customerNotified": True}).encode(),
            403,
        ),
        (
            {**remover, "Content-Type": "text/plain"},
            json.dumps({"tenantIds": [WINGTIP], "customerNotified": True}).encode(),
            415,
        ),
        ({**remover, "Content-Type": "application/json; charset=utf-7"}, b'{"tenantIds":+AFs-}', 400),
        (
            {**remover, "Content-Type": "application/json"},
            b'{"tenantIds": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
            400,
        ),
        (
            {**remover, "Content-Type": "application/json"},
            b'{"tenantIds": ["' + WINGTIP.encode() + b'"], "customerNotified": true, "reason": "\\ud800"}',
            400,
        ),
    ]
    for headers, content, status in cases:
        response = client.post("/api/removals", headers=headers, content=content)
        check_answer(response, f"body {status}")
        assert response.status_code == status, (status, response.status_code, response.text[:300])
        FIGURES["refusedBodies"] += 1
    assert state_of(audited) == baseline


@pytest.fixture(scope="module", autouse=True)
def write_figures(request: pytest.FixtureRequest) -> Any:
    yield
    if FIGURES:
        chaos.record(figures_name(request, "fuzz"), dict(sorted(FIGURES.items())))


@pytest.mark.soak
def test_soak_fuzz_with_many_examples(
    client: TestClient, audited: Settings, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUZZ_EXAMPLES", os.environ.get("FUZZ_SOAK_EXAMPLES", "200"))
    test_every_operation_fuzzed_from_the_openapi_document(client, audited, emulator)
    test_malformed_principals_are_401_and_change_nothing(client, audited, emulator)
