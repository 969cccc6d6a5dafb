"""The command line's outer contract: output formats, exit codes, one-line errors, nothing written."""

from __future__ import annotations

import csv
import io
import json
import os
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
    assert out.startswith("\ufefftenantId,")  # Excel's UTF-8 mark, as the API's download has it
    rows = list(csv.DictReader(io.StringIO(out.removeprefix("\ufeff"))))
    assert any("Global Administrator" in r["roleNames"] for r in rows)  # names beside the role ids
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
        (
            ["audit"],
            {"RECOMMEND_AFTER_DAYS": "60", "REMOVE_AFTER_DAYS": "30"},
            "REMOVE_AFTER_DAYS (30) must be at least RECOMMEND_AFTER_DAYS (60)",
        ),
        (
            ["audit"],
            {"EVALUATION_SCHEDULE": "30 6 * * *"},
            "EVALUATION_SCHEDULE: '30 6 * * *' is not an NCRONTAB",
        ),
        (["audit"], {"SIGNIN_INGEST_SCHEDULE": "0 */15 25 * * *"}, "hour: '25' is not within 0-23"),
        (["audit"], {"AzureWebJobsStorage": "not a connection string"}, "AzureWebJobsStorage"),
        (["audit"], {"AzureWebJobsStorage": "AccountName=x;AccountKey=%%%"}, "AzureWebJobsStorage"),
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


def test_a_port_in_use_is_one_line_exit_2(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """``serve`` on a port another process holds printed a traceback (OSError from bind)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_main(["serve", "--port", str(port), "--local-operator"], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], err


def test_an_unreachable_storage_account_is_one_line_exit_3(env: dict[str, str]) -> None:
    """Storage that answers nothing: one line and exit 3, no traceback and no "Unclosed client session"
    left behind by the clients of a run that never started."""
    closed = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=eA==;" + "".join(
        f"{kind}Endpoint=http://127.0.0.1:9/devstoreaccount1;" for kind in ("Blob", "Queue", "Table")
    )
    result = run_cli(
        "audit", "--as-of", "2026-11-21T00:00:00Z", env={**os.environ, "AzureWebJobsStorage": closed}
    )
    assert result.returncode == 3 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: storage failed:"), result.stderr


def test_the_demo_takes_its_port_from_demo_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """``make demo`` serves on DEMO_PORT; a value that is not a port stops it before anything starts."""
    from tools.demo import demo_port

    monkeypatch.setenv("DEMO_PORT", "8123")
    assert demo_port() == 8123
    monkeypatch.delenv("DEMO_PORT")
    assert demo_port() == 7071
    for bad in ("http", "0", "70000", "-1"):
        monkeypatch.setenv("DEMO_PORT", bad)
        with pytest.raises(SystemExit, match="DEMO_PORT must be a port number"):
            demo_port()
