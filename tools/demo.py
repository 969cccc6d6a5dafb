"""``make demo``: a generated partner estate through the whole product, on this machine only.

1. generates an estate (300 customers, 90 days of sign-ins, a Graph log kept 30 days as Entra keeps it)
   into .demo/estate.json;
2. starts Azurite and the Graph/Partner Center emulator on free loopback ports; the emulator, as Entra's
   diagnostic setting, archives 100 days of sign-in logs to a second Azurite (the partner's archive
   account, two hours missing), and ``python -m shared.cli archive backfill`` imports them;
3. runs the audit (``python -m shared.cli audit``) and prints the tiles and the customer table;
4. runs one enforcement cycle in ``report`` mode and shows what enforcement would do;
5. serves the portal on http://127.0.0.1:7071 (``DEMO_PORT``) with ``--local-operator`` until interrupted
   (set DEMO_SERVE=0 to stop after step 4).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.evaluation.formats import pad
from tools.azurite import start_azurite
from tools.emulator.generate import command as generate_command
from tools.product import cli_command, local_serve_command

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cli_command(*args), cwd=ROOT, env=env, text=True, capture_output=True)
    if result.stderr:
        sys.stderr.write(result.stderr)
    if check and result.returncode != 0:
        raise SystemExit(f"demo: `shared.cli {' '.join(args)}` exited {result.returncode}")
    return result


def demo_port() -> int:
    """``DEMO_PORT`` (default 7071): the portal's port, checked before anything starts."""
    raw = os.environ.get("DEMO_PORT", "7071").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SystemExit(f"demo: DEMO_PORT must be a port number (1-65535), not {raw!r}")
    return int(raw)


def cli_hint(env: dict[str, str], emulator_url: str) -> str:
    """How to run the command line against the running demo, from another shell."""
    keep = (
        "AzureWebJobsStorage",
        *(k for k in sorted(env) if k.startswith(("SIGNIN_", "NOTIFY_", "HOST_CLOCK"))),
    )
    exports = " ".join(f"{k}={shlex.quote(env[k])}" for k in keep if k in env)
    return (
        f"env {exports} \\\n  .venv/bin/python -m shared.cli --emulator {emulator_url} audit --format table"
    )


def lost_access(env: dict[str, str], emulator: Any, scenario: dict[str, Any]) -> None:
    """The estate's customers act (scenario events: DAP removed, GDAP terminated; a relationship expires):
    the emulator's clock moves two hours, the next sync notices it, and what it found is printed."""
    import asyncio

    from shared.lost.service import list_lost_access
    from shared.platform.settings import Settings
    from shared.services import Services

    emulator.advance("PT2H")
    cli(env, "--emulator", emulator.url, "audit", "--format", "json")

    async def read() -> list[dict[str, Any]]:
        async with Services(Settings.from_env({**env, "EMULATOR_URL": emulator.url})) as services:
            return await list_lost_access(services)

    rows = asyncio.run(read())
    for row in rows:
        what = "DAP" if row["type"] == "DAP" else f"GDAP {row['relationshipName']}"
        print(f"  {pad(row['displayName'][:36], 38)} {pad(what[:30], 32)} {row['cause']}")
    print(
        f"{len(rows)} ended outside this product: alerted once, in the trail, the portal's Lost access page"
    )


def sign_in_archive(env: dict[str, str], emulator: Any, connection: str, now: str) -> None:
    """The diagnostic setting archives 100 days (two hours of it lost), then the backfill imports them."""
    from datetime import timedelta

    end = datetime.fromisoformat(now.replace("Z", "+00:00"))
    start = (end - timedelta(days=100)).replace(minute=0)
    lost = (end - timedelta(days=98)).replace(minute=0)

    def at(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    written = emulator.write_archive(
        connection, at(start), at(end), skip=[{"from": at(lost), "to": at(lost + timedelta(hours=2))}]
    )
    print(
        f"Entra's diagnostic setting wrote {written['blobs']} hourly blobs ({written['signIns']} partner "
        "sign-ins into customers, and the partner's own) to insights-logs-signinlogs and "
        "insights-logs-noninteractiveusersigninlogs"
    )
    print(f"python -m shared.cli archive backfill --from {at(start)}")
    result = json.loads(
        cli(env, "--emulator", emulator.url, "archive", "backfill", "--from", at(start)).stdout
    )
    print(f"imported {result['signIns']} qualifying sign-ins from {result['blobsRead']} blobs")
    for a, b in result["coverage"]:
        print(f"  the store holds {a} .. {b}")
    for a, b in result["gaps"]:
        print(f"  gap (no blob in the archive): {a} .. {b}")


def customers(n: int) -> str:
    """ "1 customer", "2 customers"."""
    return f"{n} customer" + ("" if n == 1 else "s")


def main() -> int:
    port = demo_port()
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir()
    now = datetime.now(UTC).replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    estate = DEMO / "estate.json"
    banner("1. Generating a partner estate: 300 customers, 90 days of sign-ins, the Graph log kept 30 days")
    subprocess.run(
        generate_command(
            customers=300,
            signins=20000,
            days=90,
            retention_days=30,
            seed=42,
            now=now,
            lost_access=1,
            out=estate,
        ),
        cwd=ROOT,
        check=True,
    )
    scenario: dict[str, Any] = json.loads(estate.read_text(encoding="utf-8"))
    print(
        f"{len(scenario['customers'])} customers, {len(scenario['signIns'])} sign-ins, partner "
        f"{scenario['partner']['displayName']} ({scenario['partner']['tenantId']})"
    )

    banner("2. Starting Azurite and the Microsoft endpoint emulator on loopback")
    azurite = start_azurite(str(DEMO / "azurite"))
    from tools.emulator.testing import start_emulator

    emulator = start_emulator(estate)
    archive = start_azurite(str(DEMO / "archive"))
    print(
        f"Azurite tables on 127.0.0.1:{azurite.ports[2]}, emulator on {emulator.url}, "
        f"the sign-in archive account's blobs on 127.0.0.1:{archive.ports[0]}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AzureWebJobs")}
    env.update(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            # Graph keeps the log 30 days, as Entra does; the older history is the archive's (step 2b).
            "SIGNIN_ARCHIVE_CONNECTION": archive.connection_string,
            # The demo's emulator does not throttle, so the demo need not wait for Graph's pace.
            "SIGNIN_PACE": "off",
            # The emulator's clock stands still, so a removal waiting for the log to settle would wait for ever.
            "SIGNIN_LOG_LATENCY_MINUTES": "0",
            # The generated estate has a date of its own; this host's clock is not Microsoft's here.
            "HOST_CLOCK_MAX_SKEW_MINUTES": str(10 * 365 * 24 * 60),
            "GDAP_POLL_SECONDS": "1",
            "NOTIFY_SENDER": scenario["partner"]["senderMailbox"],
            "NOTIFY_PARTNER_ADDRESSES": "partner-admins@"
            + scenario["partner"]["senderMailbox"].split("@", 1)[1],
            "POLICY_MODE": "report",
        }
    )
    try:
        banner("2b. Evidence from day one: 100 days of Entra's sign-in archive, imported")
        sign_in_archive(env, emulator, archive.connection_string, now)

        banner("3. Audit: python -m shared.cli --emulator URL audit --format table")
        result = cli(env, "--emulator", emulator.url, "audit", "--format", "table", "--limit", "25")
        print(result.stdout, end="")

        banner("3b. Two hours later: access lost without this product removing it")
        lost_access(env, emulator, scenario)

        banner("4. One enforcement cycle in report mode (nothing is removed)")
        result = cli(env, "--emulator", emulator.url, "enforce", check=False)
        if result.returncode == 0:
            summary = json.loads(result.stdout)
            would = summary.get("wouldRemove", [])
            print(
                f"mode={summary['mode']}: removed {len(summary['removed'])}, warned {len(summary['warned'])}, "
                f"halted {summary['halted']}"
            )
            if summary.get("wouldHalt"):
                print(f"In enforce mode the circuit breaker would halt the run: {summary['wouldHalt']}")
            if would:
                print(f"In enforce mode, {customers(len(would))} would lose delegated access, e.g.:")
                for item in would[:10]:
                    rels = ", ".join(item.get("relationships", []))
                    print(
                        f"  {pad(item['displayName'][:36], 38)} {item['inactiveForAtLeastDays']:>4} days  {rels}"
                    )
            warn = summary.get("wouldWarn", [])
            if warn:
                print(
                    f"{customers(len(warn))} would get an advance warning "
                    f"({env.get('WARN_DAYS_BEFORE_REMOVAL', '14')} days before removal)."
                )
        else:
            print("(enforcement cycle unavailable)")

        if os.environ.get("DEMO_SERVE", "1") != "0":
            banner(f"5. Portal on http://127.0.0.1:{port} (local operator with both roles). Ctrl-C to stop")
            print("The command line against this demo, from another shell (gdap, enforce ... the same way):")
            print(cli_hint(env, emulator.url), flush=True)
            server = subprocess.Popen(local_serve_command(emulator.url, port), cwd=ROOT, env=env)
            try:
                server.wait()
            except KeyboardInterrupt:
                server.send_signal(signal.SIGINT)
                server.wait(timeout=10)
    finally:
        emulator.stop()
        azurite.stop()
        archive.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
