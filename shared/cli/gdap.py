"""``python -m shared.cli gdap ...``: the GDAP lifecycle from the command line (shared/gdap/).

Every command prints JSON. Exit codes as for the other commands: 0 success; 2 bad arguments, an
unknown customer, template or relationship, a state that does not allow the change, or missing
settings (nothing written); 3 a Microsoft service failed after retries (for ``extend``: any
relationship failed; every result is still printed).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.relationships.sync import sync_relationships

if TYPE_CHECKING:
    from shared.gdap.service import GdapService
    from shared.platform.settings import Settings

EXIT_OK, EXIT_USAGE, EXIT_UPSTREAM = 0, 2, 3


def _positive_days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {value!r}") from None
    if not 1 <= days <= 730:
        raise argparse.ArgumentTypeError("days must be between 1 and 730")
    return days


def add_gdap_commands(commands: Any, as_of: Callable[[str], datetime]) -> None:
    """The ``gdap`` command group on the main parser's subcommands."""
    gdap = commands.add_parser("gdap", help="GDAP lifecycle: requests, approvals, expiry, least privilege")
    sub = gdap.add_subparsers(dest="gdap_command", required=True, parser_class=type(gdap))

    sub.add_parser("templates", help="list the role templates kept in the repo")

    request = sub.add_parser("request", help="create a relationship from a template and lock it for approval")
    request.add_argument("--customer", required=True, metavar="TENANT_ID")
    request.add_argument("--template", required=True, metavar="NAME")
    request.add_argument(
        "--notify-customer", action="store_true", help="mail the invitation to the customer's contacts"
    )

    requests = sub.add_parser("requests", help="requests this product made that are not finished (with age)")
    requests.add_argument("--all", action="store_true", help="finished ones too")

    sub.add_parser("follow-up", help="move approved requests on: create and confirm their access assignments")

    expiring = sub.add_parser("expiring", help="active relationships without auto-extend that end soon")
    expiring.add_argument("--within", type=_positive_days, default=30, metavar="DAYS")
    expiring.add_argument("--as-of", type=as_of)

    extend = sub.add_parser("extend", help="turn on auto-extend (P180D), with a result per relationship")
    which = extend.add_mutually_exclusive_group(required=True)
    which.add_argument("--relationship", action="append", metavar="ID", help="repeatable")
    which.add_argument(
        "--all-expiring", action="store_true", help="every relationship of 'expiring' (no limit)"
    )
    extend.add_argument("--within", type=_positive_days, default=30, metavar="DAYS")
    extend.add_argument("--as-of", type=as_of)

    remove = sub.add_parser(
        "remove-global-admin", help="remove Global Administrator from an active relationship"
    )
    remove.add_argument("--relationship", required=True, metavar="ID")
    remove.add_argument(
        "--no-wait", action="store_true", help="do not wait for Microsoft's long-running operation"
    )

    reestablish = sub.add_parser("reestablish", help="a new request from the template used before a removal")
    reestablish.add_argument("--customer", required=True, metavar="TENANT_ID")
    reestablish.add_argument("--notify-customer", action="store_true")

    digest = sub.add_parser("digest", help="mail partner admins what ends within 30 days (once per UTC day)")
    digest.add_argument("--as-of", type=as_of)

    least = sub.add_parser("least-privilege", help="Global Administrator and unused access assignments")
    least.add_argument("--days", type=_positive_days, default=90, help="sign-in window (default 90)")
    least.add_argument("--as-of", type=as_of)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment
        return "cli"


def _print(document: Any) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=1) + "\n")


async def run_gdap(settings: Settings, args: argparse.Namespace) -> int:
    from shared.gdap.base import GdapError
    from shared.gdap.service import GdapService
    from shared.gdap.templates import TemplateError
    from shared.services import Services

    try:
        check_arguments(args)  # bad input: one line, exit 2, nothing written (not even the tables)
        async with Services(settings) as services:
            return await _dispatch(GdapService(services), args)
    except (GdapError, TemplateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def check_arguments(args: Any) -> None:
    """The command line's arguments that can be checked without storage or Graph (GdapError when wrong)."""
    from shared.gdap.base import relationship_id_of, tenant_id_of
    from shared.gdap.catalog import template_named
    from shared.gdap.templates import load_templates

    if getattr(args, "customer", None) is not None:
        tenant_id_of(args.customer)
    if getattr(args, "template", None) is not None:
        template_named(load_templates(), args.template)
    relationship = getattr(args, "relationship", None)
    for rid in relationship if isinstance(relationship, list) else [relationship] if relationship else []:
        relationship_id_of(rid)


async def _dispatch(service: GdapService, args: argparse.Namespace) -> int:
    from shared.gdap.base import GdapError
    from shared.platform.timeutil import utcnow

    command = args.gdap_command
    actor = _actor()
    if command == "templates":
        _print({"templates": service.template_list()})
    elif command == "request":
        try:
            result, _ = await service.request(
                args.customer, args.template, requested_by=actor, notify_customer=args.notify_customer
            )
        except GdapError as exc:
            if exc.code != "unknownCustomer":
                raise
            # A customer the store has not seen yet: read the partner's customers once, then try again.
            await sync_relationships(service.services, utcnow())
            result, _ = await service.request(
                args.customer, args.template, requested_by=actor, notify_customer=args.notify_customer
            )
        _print(result)
    elif command == "requests":
        _print(await service.pending_requests(include_finished=args.all))
    elif command == "follow-up":
        _print(await service.follow_up())
    elif command == "expiring":
        _print(await service.expiring(args.within, args.as_of))
    elif command == "extend":
        summary = await service.extend(
            args.relationship,
            all_expiring=args.all_expiring,
            within_days=args.within,
            as_of=args.as_of,
            actor=actor,
        )
        _print(summary)
        return EXIT_UPSTREAM if summary["failed"] else EXIT_OK
    elif command == "remove-global-admin":
        _print(await service.remove_global_admin(args.relationship, actor=actor, wait=not args.no_wait))
    elif command == "reestablish":
        result, _ = await service.reestablish(
            args.customer, actor=actor, notify_customer=args.notify_customer
        )
        _print(result)
    elif command == "digest":
        _print(await service.expiry_digest(args.as_of))
    elif command == "least-privilege":
        _print(await service.least_privilege(args.as_of, args.days))
    else:
        raise GdapError(f"unknown gdap command {command}")
    return EXIT_OK
