"""One product step of the benchmark, in its own process (so its peak memory is its own).

``python -m tools.bench_worker STEP --storage CONN --emulator URL --prefix P --as-of ISO [--profile F]``

STEP is ``sync`` (relationship sync), ``ingest`` (sign-in ingestion, what the timer runs),
``evaluate`` (the evaluation timer's work on the stored data: report, snapshot, policy; no refresh),
``fanout`` (the timer of the sharded evaluation: one message per shard) or ``shard`` (one queue-worker
instance of it: handles shard messages until the queue stays empty for ``--idle`` s). Prints one JSON
line: the step's wall time, its details and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from shared.evaluation.audit import build_report
from shared.platform.settings import Settings
from shared.platform.timeutil import parse_iso
from shared.relationships.sync import sync_relationships
from shared.services import Services
from shared.signins.ingestion import ingest_sign_ins
from tools.bench_floor import peak_rss_mb


def settings_for(storage: str, emulator: str, prefix: str, **extra: str) -> Settings:
    # The bench's emulator does not throttle: ingestion is measured unpaced (the pace is Graph's, not ours).
    env = {
        "AzureWebJobsStorage": storage,
        "EMULATOR_URL": emulator,
        "STORAGE_PREFIX": prefix,
        "NOTIFY_PARTNER_ADDRESSES": "",
        "SIGNIN_PACE": "off",
        "RETRY_DELAY_MS": "200",
        "SIGNIN_LOG_LATENCY_MINUTES": "0",
        "HOST_CLOCK_MAX_SKEW_MINUTES": str(10 * 365 * 24 * 60),
        **extra,
    }
    return Settings.from_env(env)


async def _timed(step: Callable[[], Awaitable[Any]], profile: Path | None) -> tuple[float, Any]:
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    try:
        result = await step()
    finally:
        if profiler:
            profiler.disable()
    seconds = time.perf_counter() - started
    if profiler and profile:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
        profile.write_text(out.getvalue(), encoding="utf-8")
    return seconds, result


async def run_step(args: argparse.Namespace) -> dict[str, Any]:
    settings = settings_for(
        args.storage, args.emulator, args.prefix, **dict(item.split("=", 1) for item in args.setting)
    )
    as_of = parse_iso(args.as_of)
    profile = Path(args.profile) if args.profile else None
    async with Services(settings) as services:
        if args.step == "sync":
            seconds, result = await _timed(lambda: sync_relationships(services, as_of), profile)
            await services.partner_tenant_id()  # cached in the store, as after a first production run
            return {"seconds": seconds, **result}
        if args.step == "ingest":
            await services.partner_tenant_id()
            seconds, result = await _timed(lambda: ingest_sign_ins(services, as_of), profile)
            return {"seconds": seconds, **result}
        if args.step == "evaluate":
            from shared.evaluation.run import run_evaluation

            started = time.perf_counter()
            report = await build_report(services, as_of)
            report_seconds = time.perf_counter() - started
            seconds, summary = await _timed(lambda: run_evaluation(services, as_of, refresh=False), profile)
            return {
                "seconds": seconds,
                "reportSeconds": report_seconds,
                "customers": report["summary"]["customersUnderMonitoring"],
                "summary": report["summary"],
                "evaluationId": summary["evaluationId"],
                "halted": summary["halted"],
            }
        if args.step == "fanout":
            from shared.evaluation.fanout import start_sharded_evaluation

            seconds, result = await _timed(
                lambda: start_sharded_evaluation(services, as_of, refresh=False), profile
            )
            return {"seconds": seconds, **result}
        if args.step == "shard":
            from shared.evaluation.fanout import run_shard_messages

            seconds, result = await _timed(lambda: run_shard_messages(services, max_idle=args.idle), profile)
            return {"seconds": seconds, **result}
    raise ValueError(args.step)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_worker")
    parser.add_argument("step", choices=("sync", "ingest", "evaluate", "fanout", "shard"))
    parser.add_argument("--storage", required=True)
    parser.add_argument("--emulator", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--profile", help="write a cProfile summary of the step to this file")
    parser.add_argument(
        "--idle", type=float, default=2.0, help="shard: stop after this long without messages"
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an app setting for this step (e.g. SIGNIN_PACE=5/1s); repeatable",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(run_step(args))
    result.update({"step": args.step, "maxRssMb": peak_rss_mb()})
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
