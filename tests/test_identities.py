"""Separate identities: the app reads as its own managed identity, makes the GDAP writes as a second one
and sends mail as a third (GRAPH_WRITE_CLIENT_ID, MAIL_CLIENT_ID), each holding only its permissions. The
emulator refuses each identity what its scenario entry says it lacks, as Graph would."""

from __future__ import annotations

import contextlib
from typing import Any

from shared.platform.retry import UpstreamError
from tests.conftest import settings_with
from tests.test_enforcement import (
    AS_OF,
    ENFORCE,
    LAMNA,
    cycle,
    estate,
    gdap_ids,
    mails,
    removal_requests,
)

READER = "1a1a1a1a-0000-4000-8000-000000000001"
WRITER = "2b2b2b2b-0000-4000-8000-000000000002"
MAILER = "3c3c3c3c-0000-4000-8000-000000000003"
EVERY = [
    "AuditLog.Read.All",
    "DelegatedAdminRelationship.Read.All",
    "DelegatedAdminRelationship.ReadWrite.All",
    "GroupMember.Read.All",
    "Mail.Send",
]


def lacking(*granted: str) -> dict[str, list[str]]:
    return {"missingPermissions": [p for p in EVERY if p not in granted]}


def split_estate() -> dict[str, Any]:
    scenario = estate()
    scenario["identities"] = {
        READER: lacking("AuditLog.Read.All", "DelegatedAdminRelationship.Read.All", "GroupMember.Read.All"),
        WRITER: lacking("DelegatedAdminRelationship.ReadWrite.All"),
        MAILER: lacking("Mail.Send"),
    }
    return scenario


def test_reads_writes_and_mail_each_go_out_as_their_own_identity(env: dict[str, str], emulator: Any) -> None:
    """Enforcement with the three identities removes and mails: every write and every mail went out as the
    identity that holds its permission (the reader holds neither)."""
    scenario = split_estate()
    emulator.post_scenario(scenario)
    settings = settings_with(
        **ENFORCE, AZURE_CLIENT_ID=READER, GRAPH_WRITE_CLIENT_ID=WRITER, MAIL_CLIENT_ID=MAILER
    )
    summary = cycle(settings, AS_OF)
    assert summary["halted"] is None and summary["queued"]
    assert ("GDAP", gdap_ids(scenario, LAMNA)[0]) in removal_requests(emulator)
    assert any(m["subject"].startswith("Delegated admin enforcement") for m in mails(emulator))
    requests = emulator.log(all_requests=True)
    assert [e for e in requests if e.get("status") == 403] == []
    writes = [e for e in requests if e["method"] != "GET" and "delegatedAdminRelationships" in e["path"]]
    sends = [e for e in requests if e["path"].endswith("/sendMail")]
    reads = [e for e in requests if e["method"] == "GET" and e["path"].startswith(("/v1.0/", "/beta/"))]
    assert writes and {e["appId"] for e in writes} == {WRITER}
    assert sends and {e["appId"] for e in sends} == {MAILER}
    assert reads and {e["appId"] for e in reads} == {READER}


def test_one_identity_without_the_write_permission_removes_nothing(
    env: dict[str, str], emulator: Any
) -> None:
    """The same estate with the writes left to the reader's identity: Graph refuses every terminate
    request, so the identities really are told apart (and access is kept)."""
    scenario = split_estate()
    emulator.post_scenario(scenario)
    settings = settings_with(**ENFORCE, AZURE_CLIENT_ID=READER, MAIL_CLIENT_ID=MAILER)
    with contextlib.suppress(UpstreamError):  # the refused removals fail the cycle; what matters is below
        cycle(settings, AS_OF)
    terminations = [e for e in emulator.log() if e["path"].endswith("/requests")]
    assert terminations and {(e["appId"], e["status"]) for e in terminations} == {(READER, 403)}
    refused = [e for e in emulator.log(all_requests=True) if e.get("status") == 403]
    assert all("delegatedAdminRelationships" in e["path"] for e in refused)
    lamna = next(c for c in emulator.state(sign_ins=False)["customers"] if c["tenantId"] == LAMNA)
    assert {r["status"] for r in lamna["gdapRelationships"]} == {"active"}  # access is kept
