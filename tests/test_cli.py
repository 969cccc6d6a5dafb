"""The command line's outer contract: output formats, exit codes, one-line errors, nothing written."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.cli.main import main
from tests.conftest import run_cli


def tables_with_prefix(connection_string: str, prefix: str) -> list[str]:
    with TableServiceClient.from_connection_string(connection_string) as service:
        return [t.name for t in service.list_tables() if t.name.startswith(prefix)]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_audit_json_csv_and_table(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(
        ["--emulator", env["EMULATOR_URL"], "audit", "--as-of", "2026-11-21T00:00:00Z"], capsys
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["summary"]["customersUnderMonitoring"] == 5

    code, out, _ = run_main(["audit", "--as-of", "2026-11-21T00:00:00Z", "--format", "csv"], capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["tenantId"] for r in rows] == [c["tenantId"] for c in report["customers"]]
    assert rows[0]["bucket"] == "30-60" and rows[0]["daysInactive"] == ""

    code, out, _ = run_main(["audit", "--as-of", "2026-11-21T00:00:00Z", "--format", "table"], capsys)
    assert code == 0
    assert "Customers with delegated admin access: 5" in out
    assert "Inactive 30-60 days               2   40.0%" in out
    assert "Adatum Ltd" in out


@pytest.mark.parametrize(
    ("argv", "extra_env", "needle"),
    [
        (["audit", "--as-of", "yesterday"], {}, "not an ISO 8601 timestamp"),
        (["audit", "--format", "xml"], {}, "invalid choice"),
        (["--emulator", "ftp://x", "audit"], {}, "not an http(s) URL"),
        (["frobnicate"], {}, "invalid choice"),
        (["audit"], {"POLICY_MODE": "sometimes"}, "POLICY_MODE"),
        (["audit"], {"SIGNIN_BACKFILL_DAYS": "thirty"}, "SIGNIN_BACKFILL_DAYS"),
        (["audit"], {"EXCLUDED_TENANTS": "not-a-guid"}, "EXCLUDED_TENANTS"),
        (["audit"], {"REMOVAL_SCOPE": "dap,csp"}, "REMOVAL_SCOPE"),
        (["audit"], {"NOTIFY_PARTNER_LANGUAGE": "fr"}, "NOTIFY_PARTNER_LANGUAGE"),
        (
            ["gdap", "templates"],
            {"GDAP_GROUP_HELPDESKAGENTS": "Helpdesk Agents"},
            "GDAP_GROUP_HELPDESKAGENTS",
        ),
        (
            ["audit"],
            {
                "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=eA==;"
                "TableEndpoint=https://x.table.core.windows.net"
            },
            "key-based",
        ),
        (["serve", "--host", "0.0.0.0", "--local-operator"], {}, "loopback"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    env: dict[str, str],
    azurite: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    extra_env: dict[str, str],
    needle: str,
) -> None:
    for key, value in extra_env.items():
        monkeypatch.setenv(key, value)
    code, out, err = run_main(argv, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert tables_with_prefix(azurite.connection_string, env["STORAGE_PREFIX"]) == []


def test_upstream_failure_exits_3_as_a_real_process(env: dict[str, str], emulator: Any) -> None:
    emulator.add_faults([{"method": "GET", "pathPrefix": "/v1.0/organization", "status": 403, "times": 5}])
    result = run_cli("audit", "--as-of", "2026-11-21T00:00:00Z")
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert "upstream service failed" in result.stderr and "403" in result.stderr
