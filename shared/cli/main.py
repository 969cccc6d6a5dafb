"""Command line: ``python -m shared.cli [--emulator URL] COMMAND [options]`` (docs/definitions.md section 5).

Exit codes: 0 success; 2 bad arguments or settings (one line on stderr, nothing written);
3 an upstream service failed after retries (what was done so far is kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, NoReturn

from azure.core.exceptions import AzureError

from shared.platform.retry import UpstreamError
from shared.platform.settings import Settings, SettingsError, get_settings
from shared.platform.telemetry import configure_telemetry, flush_telemetry
from shared.platform.timeutil import iso, parse_iso

EXIT_OK, EXIT_USAGE, EXIT_UPSTREAM = 0, 2, 3


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _as_of(value: str) -> datetime:
    try:
        return parse_iso(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {value!r}") from None


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) < 10:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m shared.cli", description="Delegated Admin Monitor")
    parser.add_argument(
        "--emulator",
        type=_url,
        metavar="URL",
        help="point every Microsoft endpoint at this emulator root (development token)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    audit = commands.add_parser("audit", help="sync, ingest and print the audit report; removes nothing")
    audit.add_argument("--as-of", type=_as_of, help="ISO time the audit is computed for (default: now)")
    audit.add_argument("--format", choices=("json", "csv", "table"), default="json")
    audit.add_argument("--limit", type=int, default=None, help="table format: at most this many rows")

    serve = commands.add_parser("serve", help="run the HTTP API and the portal locally")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7071)
    serve.add_argument(
        "--local-operator",
        action="store_true",
        help="treat every request as a local user holding both roles (loopback only)",
    )

    enforce = commands.add_parser("enforce", help="run the whole automated cycle once")
    enforce.add_argument("--as-of", type=_as_of, help="ISO time the cycle runs for (default: now)")

    webhook = commands.add_parser("webhook", help="the alert webhook (ALERT_WEBHOOK_URL)")
    webhook_commands = webhook.add_subparsers(dest="webhook_command", required=True, parser_class=_Parser)
    webhook_commands.add_parser(
        "test", help="post a test event now and print the result (exit 3 when the webhook does not take it)"
    )

    agents = commands.add_parser(
        "agents",
        help="per partner agent: use of customers, the groups that give it access, idle agents flagged "
        "(from the stored estate and sign-in log, with live group membership); removes nothing",
    )
    agents.add_argument("--format", choices=("table", "json", "csv"), default="table")

    archive = commands.add_parser(
        "archive", help="the Entra sign-in archive (SIGNIN_ARCHIVE_CONNECTION): import its history, show it"
    )
    archive_commands = archive.add_subparsers(dest="archive_command", required=True, parser_class=_Parser)
    backfill = archive_commands.add_parser(
        "backfill",
        help="import the archive's sign-ins of [--from, --to] into the store (only what the store does not "
        "hold yet; resumable, idempotent); the coverage grows by the hours the archive holds",
    )
    backfill.add_argument("--from", dest="start", type=_as_of, required=True, help="ISO time to start at")
    backfill.add_argument("--to", dest="end", type=_as_of, help="ISO time to end before (default: now)")
    archive_commands.add_parser("status", help="the sign-in coverage and the last backfill, as JSON")

    from shared.cli.gdap import add_gdap_commands

    add_gdap_commands(commands, _as_of)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    if args.emulator:
        os.environ["EMULATOR_URL"] = args.emulator
    get_settings.cache_clear()
    return get_settings()


def _run(coro_factory: Callable[[], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(coro_factory())


async def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from shared.evaluation.audit import FutureAsOfError, audit
    from shared.evaluation.formats import CSV_BOM, report_csv, report_table
    from shared.services import Services

    async with Services(settings) as services:
        now = await services.now()  # Microsoft's clock: a wrong host clock cannot move the present
        try:
            report = await audit(services, args.as_of or now, now=now)
        except FutureAsOfError as exc:
            raise UsageError(str(exc)) from None
    if args.format == "json":
        sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    elif args.format == "csv":
        sys.stdout.write(CSV_BOM + report_csv(report))  # the same bytes as GET /api/audit?format=csv
    else:
        sys.stdout.write(report_table(report, limit=args.limit))
    return EXIT_OK


async def _enforce(settings: Settings, args: argparse.Namespace) -> int:
    from shared.evaluation.audit import AS_OF_SKEW
    from shared.evaluation.run import run_cycle  # type: ignore[import-not-found, unused-ignore]
    from shared.services import Services

    async with Services(settings) as services:
        now = await services.now()
        as_of = args.as_of or now
        if abs(as_of - now) > AS_OF_SKEW:
            raise UsageError(
                f"enforce acts on the present only: --as-of {iso(as_of)} is not Microsoft's present "
                f"({iso(now)}); use audit --as-of for a what-if"
            )
        try:
            summary = await run_cycle(services, as_of)
        except UpstreamError as exc:
            # What was done so far is kept and reported: the summary still goes to stdout.
            partial = getattr(exc, "summary", None)
            if partial is not None:
                from shared.evaluation.run import cycle_summary_json

                sys.stdout.write(json.dumps(cycle_summary_json(partial), ensure_ascii=False, indent=1) + "\n")
            raise
    sys.stdout.write(json.dumps(summary, ensure_ascii=False, indent=1) + "\n")
    return EXIT_OK


async def _webhook(settings: Settings, args: argparse.Namespace) -> int:
    from shared.notifications.webhook_worker import send_test
    from shared.services import Services

    async with Services(settings) as services:
        result = await send_test(services, actor="cli")
    sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    if result["result"] != "sent":
        # One line, never the URL (it is the webhook's credential): its host and what it answered.
        print(f"error: webhook test failed: {result['detail']}", file=sys.stderr)
        return EXIT_UPSTREAM
    return EXIT_OK


async def _agents(settings: Settings, args: argparse.Namespace) -> int:
    import csv
    import io

    from shared.agents.report import agents_csv_rows, agents_report
    from shared.services import Services

    async with Services(settings) as services:
        report = await agents_report(services)
    if args.format == "json":
        sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
        return EXIT_OK
    rows = agents_csv_rows(report)
    if args.format == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        sys.stdout.write(out.getvalue())
        return EXIT_OK
    columns = (1, 3, 4, 5, 6, 8, 10)  # UPN, last sign-in, 30/90 days, idle days, groups, recommendation
    table = [[row[i] or rows[n][0] if i == 1 else row[i] for i in columns] for n, row in enumerate(rows)]
    widths = [max(len(r[c]) for r in table) for c in range(len(columns))]
    for r in table:
        sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
    if report["note"]:
        sys.stdout.write(f"note: {report['note']}\n")
    for error in report["errors"]:
        sys.stdout.write(f"warning: {error}\n")
    return EXIT_OK


async def _archive(settings: Settings, args: argparse.Namespace) -> int:
    from shared.services import Services
    from shared.signins.ingestion import archive_status, backfill_from_archive

    async with Services(settings) as services:
        if args.archive_command == "backfill":
            result = await backfill_from_archive(services, args.start, args.end)
        else:
            result = await archive_status(services)
    sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    return EXIT_OK


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.local_operator and args.host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError("--local-operator is accepted only with a loopback --host")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {args.port}")
    from shared.web.server import BindError, serve  # type: ignore[import-not-found,unused-ignore]

    try:
        serve(settings, host=args.host, port=args.port, local_operator=args.local_operator)
    except BindError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "limit", None) is not None and args.limit < 1:
            raise UsageError("--limit must be at least 1")
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if not args.verbose:
            logging.getLogger("azure").setLevel(logging.ERROR)
            logging.getLogger("httpx").setLevel(logging.WARNING)
        settings = _settings(args)
        if args.command in ("audit", "enforce"):
            # The same custom events as the function app whenever APPLICATIONINSIGHTS_CONNECTION_STRING
            # is set: a run from the command line shows in the workbook and can fire the alerts.
            configure_telemetry()
            try:
                return _run(lambda: (_audit if args.command == "audit" else _enforce)(settings, args))
            finally:
                flush_telemetry()
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "webhook":
            return _run(lambda: _webhook(settings, args))
        if args.command == "agents":
            return _run(lambda: _agents(settings, args))
        if args.command == "archive":
            return _run(lambda: _archive(settings, args))
        if args.command == "gdap":
            from shared.cli.gdap import run_gdap

            return _run(lambda: run_gdap(settings, args))
        raise UsageError(f"unknown command {args.command}")
    except (UsageError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UpstreamError as exc:
        print(f"error: upstream service failed: {exc}", file=sys.stderr)
        return EXIT_UPSTREAM
    except AzureError as exc:
        print(
            f"error: storage failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            file=sys.stderr,
        )
        return EXIT_UPSTREAM
    except KeyboardInterrupt:
        return 130
