"""Benchmarks against Azurite and the emulator: ``make bench`` (``python -m tools.bench``).

For each generated estate (1,000 customers / 100,000 sign-ins and 10,000 customers / 1,000,000
sign-ins, 30 days, the default 30-day backfill) it runs the product as it runs in Azure -- each step
in its own process, so its peak memory is its own -- and, in the same run, that step's *floor*
(``tools.bench_floor``): the least work that moves the same data. It reports every figure next to
its floor and the ratio product / floor, and judges the targets of the scale issue:

* ingestion no slower than the raw floor (ratio <= 1.0 at 100,000 sign-ins, and at 1,000,000 sign-ins
  of which most are non-interactive: the generator mixes in about 4 per interactive one, and the
  product and the floor both read the log once per kind);
* evaluation of 10,000 customers under 20 s;
* API p95 under 150 ms at 10,000 customers (list, filter, sort, page);
* peak memory under 400 MB while ingesting 1,000,000 sign-ins;
* against an emulator that throttles the sign-in log (a scaled window, 5 requests per 1 s) and the
  product paced to the same limit (``SIGNIN_PACE=5/1s``): at least 95 % of the allowed request rate,
  and no 429 (:func:`measure_pace`).

Writes ``docs/performance.md`` and ``docs/performance.json`` (``--out-dir``). ``--quick`` runs one
small estate in well under 30 s (a smoke test of the harness, written to ``.bench/quick``).

The estates' emulator is unthrottled and the product unpaced: those figures are the product's own
cost, not Graph's pace (5 requests / 10 s per tenant for the sign-in log, which ``shared.platform.ratelimit``
keeps to in Azure); the pace measurement is the one run with the throttle on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from shared.platform.sharding import SHARDS
from tools.azurite import ROOT, RunningAzurite, free_port, start_azurite
from tools.emulator.generate import command as generate_command
from tools.emulator.testing import RunningEmulator, start_emulator
from tools.product import local_serve_command

AS_OF = "2026-11-21T00:00:00Z"
DAYS = 30  # sign-ins spread over the 30 days the default backfill reads
NONINTERACTIVE_PER_INTERACTIVE = "4"  # the generator's default, named: most of the log is non-interactive


@dataclass(frozen=True)
class EstateSpec:
    name: str
    customers: int
    sign_ins: int
    seed: int
    api_requests: int  # per query kind
    fanout_workers: int


FULL = (EstateSpec("1k", 1_000, 100_000, 5, 60, 2), EstateSpec("10k", 10_000, 1_000_000, 6, 100, 2))
QUICK = (EstateSpec("quick", 200, 5_000, 3, 6, 1),)


@dataclass(frozen=True)
class PaceSpec:
    """The pace measurement: a small estate read in short slices, so the run makes many requests."""

    customers: int
    sign_ins: int
    seed: int
    backfill_days: int
    slice_hours: int
    requests: int  # the emulator's throttle and the product's SIGNIN_PACE: this many requests ...
    window_seconds: int  # ... per this many seconds (Graph's 5 per 10 s, scaled down 10x)


PACE_FULL = PaceSpec(1_000, 20_000, 8, 30, 6, 5, 1)  # ~250 requests, ~50 s
PACE_QUICK = PaceSpec(100, 1_000, 9, 4, 24, 5, 1)  # ~10 requests

# GET /api/customers queries by kind (the portal's list, its filters, its sort orders, deep pages).
API_QUERIES: dict[str, list[str]] = {
    "list": ["", "page=2", "pageSize=100"],
    "filter": [
        "bucket=90%2B",
        "bucket=30-60",
        "bucket=new",
        "q=contoso",
        "q=%E6%9D%B1%E4%BA%AC",
        "type=DAP",
        "recommendation=remove",
        "bucket=61-90&q=ltd",
    ],
    "sort": [
        "sort=name",
        "sort=-signInsLastDay",
        "sort=lastSignInAt",
        "sort=-daysActive",
        "sort=relationships",
        "sort=-agentsSignedInLastDay",
        "sort=establishedAt",
        "sort=-name",
    ],
    "page": [
        "page=40",
        "page=100&pageSize=50",
        "pageSize=500&page=3",
        "sort=name&page=150",
        "page=199",
        "bucket=active&page=20",
    ],
}

TARGETS = (
    ("ingestion", "Ingestion no slower than the raw floor at 100,000 sign-ins", "ratio <= 1.0"),
    ("evaluation", "Evaluation of 10,000 customers", "< 20 s"),
    ("api", "API p95 at 10,000 customers (list, filter, sort, page)", "< 150 ms"),
    ("memory", "Peak memory while ingesting 1,000,000 sign-ins", "< 400 MB"),
    (
        "ingestionMixed",
        "Ingestion no slower than the raw floor at 1,000,000 sign-ins, mostly non-interactive",
        "ratio <= 1.0",
    ),
    (
        "pace",
        "Sign-in log request rate against a throttled log (5 per 1 s), paced to the same limit",
        ">= 95 % of the allowed rate, no 429",
    ),
)


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- processes -------------------------------------------------------------------------------------


def store_args(storage: str, emulator_url: str, prefix: str) -> list[str]:
    """The options a bench worker or floor step reads its store and estate from, as of AS_OF."""
    return ["--storage", storage, "--emulator", emulator_url, "--prefix", prefix, "--as-of", AS_OF]


def python_step(
    module: str, *args: str, profile: Path | None = None, timeout: float = 1800
) -> dict[str, Any]:
    """Run ``python -m module args``; its last stdout line is its JSON result."""
    command = [sys.executable, "-m", module, *args]
    if profile is not None:
        command += ["--profile", str(profile)]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {args[0]} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["processSeconds"] = time.perf_counter() - started
    return result


def wait_http(url: str, deadline: float, process: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"no answer from {url}")


@contextlib.contextmanager
def servers(*specs: tuple[list[str], str, dict[str, str] | None]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start every (command, ready URL, env) at once; yield the processes once each one answers."""
    processes = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        for command, _, env in specs
    ]
    try:
        for process, (_, url, _) in zip(processes, specs, strict=True):
            wait_http(url, time.monotonic() + 60, process)
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def server(
    command: list[str], url: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with servers((command, url, env)) as processes:
        yield processes[0]


def peak_rss_of(pid: int) -> float | None:
    """VmHWM (peak resident set) of a running process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# --- measurements ----------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ratio(product: float, floor: float) -> float | None:
    return round(product / floor, 3) if floor > 0 else None


def measure_api(spec: EstateSpec, storage: str, emulator: RunningEmulator, prefix: str) -> dict[str, Any]:
    """The product's HTTP API (``shared.cli serve``, uvicorn) against a floor server of equal answers."""
    port, floor_port = free_port(), free_port()
    product_cmd = local_serve_command(emulator.url, port)
    floor_cmd = [sys.executable, "-m", "tools.bench_floor", "serve", "--port", str(floor_port)]
    env = {"AzureWebJobsStorage": storage, "STORAGE_PREFIX": prefix, "EMULATOR_URL": emulator.url}
    base, floor_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{floor_port}"
    with (
        servers((product_cmd, f"{base}/api/me", env), (floor_cmd, f"{floor_base}/bytes/2", None)) as started_,
        httpx.Client(timeout=60) as client,
    ):
        product = started_[0]
        started = time.perf_counter()
        first = client.get(f"{base}/api/customers")
        cold_ms = (time.perf_counter() - started) * 1000
        first.raise_for_status()
        total = int(first.json()["total"])
        kinds: dict[str, Any] = {}
        for kind, queries in API_QUERIES.items():
            timings, floor_timings, sizes = [], [], []
            for n in range(spec.api_requests):
                query = queries[n % len(queries)]
                t0 = time.perf_counter()
                response = client.get(f"{base}/api/customers?{query}")
                timings.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(
                        f"GET /api/customers?{query}: {response.status_code} {response.text[:300]}"
                    )
                size = len(response.content)
                sizes.append(size)
                t0 = time.perf_counter()
                floor = client.get(f"{floor_base}/bytes/{size}")
                floor_timings.append((time.perf_counter() - t0) * 1000)
                if len(floor.content) != size:
                    raise RuntimeError("floor answered a different size")
            kinds[kind] = {
                "requests": len(timings),
                "queries": queries,
                "meanBytes": round(statistics.mean(sizes)),
                "p50Ms": round(percentile(timings, 50), 2),
                "p95Ms": round(percentile(timings, 95), 2),
                "maxMs": round(max(timings), 2),
                "floorP50Ms": round(percentile(floor_timings, 50), 2),
                "floorP95Ms": round(percentile(floor_timings, 95), 2),
            }
            kinds[kind]["ratioP50"] = ratio(kinds[kind]["p50Ms"], kinds[kind]["floorP50Ms"])
            kinds[kind]["ratioP95"] = ratio(kinds[kind]["p95Ms"], kinds[kind]["floorP95Ms"])
        server_rss = peak_rss_of(product.pid)
    return {
        "customers": total,
        "coldFirstRequestMs": round(cold_ms, 1),
        "kinds": kinds,
        "p95Ms": max(k["p95Ms"] for k in kinds.values()),
        "floorP95Ms": max(k["floorP95Ms"] for k in kinds.values()),
        "serverMaxRssMb": server_rss,
    }


def measure_fanout(spec: EstateSpec, storage: str, emulator: RunningEmulator, prefix: str) -> dict[str, Any]:
    """The sharded evaluation: the timer's fan-out, then ``fanout_workers`` queue-worker processes."""
    common = store_args(storage, emulator.url, prefix)
    started_at = time.time()
    start = python_step("tools.bench_worker", "fanout", *common)
    idle = "0.3" if spec.fanout_workers == 1 else "1.5"  # one worker: nobody else can add messages
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tools.bench_worker", "shard", *common, "--idle", idle],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(spec.fanout_workers)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=1800)
        if worker.returncode != 0:
            raise RuntimeError(f"shard worker failed: {err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    finished = [f for r in results for f in r["finished"]]
    if len(finished) != 1:
        raise RuntimeError(f"the sharded evaluation finished {len(finished)} times")
    # From the timer's start to the finisher's end (the other workers' idle wait excluded).
    seconds = float(finished[0]["finishedAt"]) - started_at
    shard_seconds = sum(r["busySeconds"] for r in results) - float(finished[0]["finishSeconds"])
    return {
        "seconds": seconds,
        "startSeconds": start["seconds"],
        "workers": spec.fanout_workers,
        "shards": sum(r["shards"] for r in results),
        "rows": sum(r["rows"] for r in results),
        "secondsPerShard": shard_seconds / len(SHARDS),
        "finishSeconds": finished[0]["finishSeconds"],
        "perWorker": [
            {"shards": r["shards"], "busySeconds": r["busySeconds"], "maxRssMb": r["maxRssMb"]}
            for r in results
        ],
        "evaluationId": finished[0]["evaluationId"] if finished else None,
        "note": "wall time from the timer's start to the evaluation's finish, worker start-up included",
    }


def generate(customers: int, sign_ins: int, seed: int, scenario: Path) -> None:
    """A generated estate (``tools.emulator.generate``) over DAYS days up to AS_OF, mostly non-interactive."""
    command = generate_command(
        customers=customers,
        signins=sign_ins,
        days=DAYS,
        seed=seed,
        now=AS_OF,
        retention_days=DAYS,
        noninteractive_per_interactive=NONINTERACTIVE_PER_INTERACTIVE,
        out=scenario,
    )
    subprocess.run(command, cwd=ROOT, check=True)


def ingest_figures(step: dict[str, Any], entities_written: Any, **more: Any) -> dict[str, Any]:
    """An ingestion step's (the product's or the floor's) time, rate, entities written, ``more``, peak memory."""
    return {
        "seconds": round(step["seconds"], 3),
        "signInsPerSecond": round(step["signIns"] / step["seconds"]),
        "entitiesWritten": entities_written,
        **more,
        "maxRssMb": round(step["maxRssMb"], 1),
    }


def run_estate(spec: EstateSpec, work: Path, profile: bool) -> dict[str, Any]:
    scenario = work / f"estate-{spec.name}.json"
    log(f"{spec.name}: generating {spec.customers} customers, {spec.sign_ins} sign-ins")
    started = time.perf_counter()
    generate(spec.customers, spec.sign_ins, spec.seed, scenario)
    generate_seconds = time.perf_counter() - started
    prof = (lambda step: work / f"profile-{spec.name}-{step}.txt") if profile else (lambda step: None)

    def timed_emulator() -> tuple[RunningEmulator, float]:
        t0 = time.perf_counter()
        return start_emulator(scenario, timeout=600), time.perf_counter() - t0

    # The emulator and both Azurites start side by side (nothing is measured while they start).
    with ThreadPoolExecutor(3) as pool:
        emulator_future = pool.submit(timed_emulator)
        azurite_futures = [pool.submit(start_azurite, in_memory=True) for _ in range(2)]
        emulator, emulator_seconds = emulator_future.result()
        floor_azurite: RunningAzurite | None = azurite_futures[0].result()
        azurite: RunningAzurite | None = azurite_futures[1].result()
    result: dict[str, Any] = {
        "name": spec.name,
        "customers": spec.customers,
        "signInsGenerated": spec.sign_ins,
        "days": DAYS,
        "asOf": AS_OF,
        "setup": {
            "generateSeconds": round(generate_seconds, 2),
            "emulatorLoadSeconds": round(emulator_seconds, 2),
        },
    }
    try:
        assert floor_azurite is not None and azurite is not None
        # The floor writes every sign-in: its own Azurite, so the product's store stays as in Azure.
        log(f"{spec.name}: ingestion floor (httpx paging, raw 100-entity transactions)")
        floor_ingest = python_step(
            "tools.bench_floor", "ingest", *store_args(floor_azurite.connection_string, emulator.url, "floor")
        )
        floor_azurite.stop()
        floor_azurite = None
        common = store_args(azurite.connection_string, emulator.url, "bench")
        log(f"{spec.name}: relationship sync")
        sync = python_step("tools.bench_worker", "sync", *common, profile=prof("sync"))
        log(f"{spec.name}: ingestion")
        ingest = python_step("tools.bench_worker", "ingest", *common, profile=prof("ingest"))
        log(f"{spec.name}: evaluation")
        evaluate = python_step("tools.bench_worker", "evaluate", *common, profile=prof("evaluate"))
        floor_evaluate = python_step(
            "tools.bench_floor",
            "evaluate",
            "--storage",
            azurite.connection_string,
            "--prefix",
            "bench",
            "--as-of",
            AS_OF,
        )
        log(f"{spec.name}: sharded evaluation ({spec.fanout_workers} workers)")
        fanout = measure_fanout(spec, azurite.connection_string, emulator, "bench")
        log(f"{spec.name}: API")
        api = measure_api(spec, azurite.connection_string, emulator, "bench")
    finally:
        for running in (floor_azurite, azurite):
            if running is not None:
                running.stop()
        emulator.stop()
        with contextlib.suppress(OSError):
            scenario.unlink()

    monitored = int(evaluate["customers"])
    result["setup"]["syncSeconds"] = round(sync["seconds"], 2)
    result["setup"]["syncDetails"] = {
        k: sync[k] for k in ("gdap", "dap", "customers", "relationshipsWritten")
    }
    result["signInsIngested"] = ingest["signIns"]
    result["ingestion"] = {
        "product": ingest_figures(ingest, ingest["entities"], slices=ingest["slices"]),
        "floor": {
            **ingest_figures(
                floor_ingest, floor_ingest["entitiesWritten"], transactions=floor_ingest["transactions"]
            ),
            "signIns": floor_ingest["signIns"],
            "signInsByKind": floor_ingest["signInsByKind"],
            "pages": floor_ingest["pages"],
        },
    }
    if floor_ingest["signIns"] != ingest["signIns"]:
        raise RuntimeError(f"floor paged {floor_ingest['signIns']} sign-ins, the product {ingest['signIns']}")
    result["ingestion"]["ratio"] = ratio(ingest["seconds"], floor_ingest["seconds"])
    result["evaluation"] = {
        "product": {
            "seconds": round(evaluate["seconds"], 3),
            "reportSeconds": round(evaluate["reportSeconds"], 3),
            "customersUnderMonitoring": monitored,
            "customers": spec.customers,
            "secondsPer1000Customers": round(evaluate["seconds"] / (spec.customers / 1000), 3),
            "maxRssMb": round(evaluate["maxRssMb"], 1),
        },
        "floor": {
            "seconds": round(floor_evaluate["seconds"], 3),
            "entitiesRead": floor_evaluate["entitiesRead"],
            "rowsWritten": floor_evaluate["rowsWritten"],
            "maxRssMb": round(floor_evaluate["maxRssMb"], 1),
            "secondsPer1000Customers": round(floor_evaluate["seconds"] / (spec.customers / 1000), 3),
        },
        "fanout": fanout,
    }
    result["evaluation"]["ratio"] = ratio(evaluate["seconds"], floor_evaluate["seconds"])
    result["api"] = api
    result["api"]["ratioP95"] = ratio(api["p95Ms"], api["floorP95Ms"])
    result["memory"] = {
        "ingestMaxRssMb": round(ingest["maxRssMb"], 1),
        "floorMaxRssMb": round(floor_ingest["maxRssMb"], 1),
        "ratio": ratio(ingest["maxRssMb"], floor_ingest["maxRssMb"]),
    }
    return result


def measure_pace(spec: PaceSpec, work: Path) -> dict[str, Any]:
    """The product's ingestion against an emulator that throttles the sign-in log (scenario ``throttle``:
    ``spec.requests`` per ``spec.window_seconds``, 429 with Retry-After past it), the product paced to the
    same limit (``SIGNIN_PACE``). From the emulator's log of every request: the sign-in log requests,
    and the 429s among them -- each 429 the product was answered is retried by the SDK's retry handler,
    which marks the retry with a ``Retry-Attempt`` header, so 429s = log entries carrying it. The rate is
    the requests served (log entries less the 429s) over the ingestion's wall time."""
    scenario = work / "estate-pace.json"
    log(
        f"pace: generating {spec.customers} customers, {spec.sign_ins} sign-ins; throttle and SIGNIN_PACE "
        f"{spec.requests}/{spec.window_seconds}s"
    )
    generate(spec.customers, spec.sign_ins, spec.seed, scenario)
    document = json.loads(scenario.read_text(encoding="utf-8"))
    document["throttle"] = {"requests": spec.requests, "windowSeconds": spec.window_seconds}
    scenario.write_text(json.dumps(document), encoding="utf-8")
    del document
    with ThreadPoolExecutor(2) as pool:
        emulator_future = pool.submit(start_emulator, scenario, timeout=600)
        azurite_future = pool.submit(start_azurite, in_memory=True)
        emulator, azurite = emulator_future.result(), azurite_future.result()
    try:
        common = store_args(azurite.connection_string, emulator.url, "pace")
        python_step("tools.bench_worker", "sync", *common)
        pace = f"{spec.requests}/{spec.window_seconds}s"
        ingest = python_step(
            "tools.bench_worker",
            "ingest",
            *common,
            "--setting",
            f"SIGNIN_PACE={pace}",
            "--setting",
            f"SIGNIN_BACKFILL_DAYS={spec.backfill_days}",
            "--setting",
            f"SIGNIN_SLICE_HOURS={spec.slice_hours}",
        )
        requests = [
            e
            for e in emulator.log(all_requests=True)
            if e["method"] == "GET" and "/auditlogs/signins" in e["path"].lower()
        ]
    finally:
        azurite.stop()
        emulator.stop()
        with contextlib.suppress(OSError):
            scenario.unlink()
    throttled = sum(1 for e in requests if "retry-attempt" in e.get("headers", {}))
    served = len(requests) - throttled
    seconds = float(ingest["seconds"])
    allowed = spec.requests / spec.window_seconds
    rate = served / seconds
    return {
        "customers": spec.customers,
        "signInsGenerated": spec.sign_ins,
        "backfillDays": spec.backfill_days,
        "sliceHours": spec.slice_hours,
        "slices": ingest["slices"],
        "signIns": ingest["signIns"],
        "throttle": {"requests": spec.requests, "windowSeconds": spec.window_seconds},
        "signinPace": pace,
        "seconds": round(seconds, 3),
        "requests": len(requests),
        "served": served,
        "throttled": throttled,
        "requestsPerSecond": round(rate, 3),
        "allowedPerSecond": allowed,
        "shareOfAllowed": round(rate / allowed, 3),
        # No sliding window admits more than requests x ceil(seconds / window) in `seconds`.
        "shareOfMostAdmissible": round(
            served / (spec.requests * math.ceil(seconds / spec.window_seconds)), 3
        ),
    }


def judged(unit: str, product: float, floor: float, ratio: float | None, passed: bool) -> dict[str, Any]:
    """A measured target: the product's and the floor's figure in one ``unit`` format, their ratio, pass."""
    return {"value": unit.format(product), "floor": unit.format(floor), "ratio": ratio, "passed": passed}


def judge(
    estates: list[dict[str, Any]], quick: bool, pace: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    by_name = {e["name"]: e for e in estates}
    small, large = by_name.get("1k"), by_name.get("10k")
    out = []
    for key, name, target in TARGETS:
        entry: dict[str, Any] = {
            "key": key,
            "name": name,
            "target": target,
            "value": None,
            "floor": None,
            "ratio": None,
            "passed": None,
        }
        if quick or small is None or large is None:
            entry["note"] = "judged on the full run only"
        elif key in ("ingestion", "ingestionMixed", "evaluation"):
            section = "evaluation" if key == "evaluation" else "ingestion"
            timed = (small if key == "ingestion" else large)[section]
            product, floor = timed["product"]["seconds"], timed["floor"]["seconds"]
            passed = (
                product < 20 if key == "evaluation" else timed["ratio"] is not None and timed["ratio"] <= 1.0
            )
            entry.update(judged("{:.2f} s", product, floor, timed["ratio"], passed))
        elif key == "api":
            api = large["api"]
            entry.update(
                judged("{:.1f} ms", api["p95Ms"], api["floorP95Ms"], api["ratioP95"], api["p95Ms"] < 150)
            )
        elif key == "memory":
            mem = large["memory"]
            rss = mem["ingestMaxRssMb"]
            entry.update(judged("{:.0f} MB", rss, mem["floorMaxRssMb"], mem["ratio"], rss < 400))
        elif key == "pace":
            if pace is None:
                entry["note"] = "not measured"
            else:
                entry.update(
                    value=f"{pace['requestsPerSecond']:.2f} req/s, {pace['throttled']} x 429",
                    floor=f"{pace['allowedPerSecond']:g} req/s allowed",
                    ratio=pace["shareOfAllowed"],
                    passed=pace["shareOfAllowed"] >= 0.95 and pace["throttled"] == 0,
                )
        out.append(entry)
    return out


# --- the machine and the documents -----------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    node = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    azurite = ""
    with contextlib.suppress(OSError, ValueError):
        azurite = json.loads((ROOT / "node_modules" / "azurite" / "package.json").read_text())["version"]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memoryGb": memory_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "node": node,
        "azurite": azurite,
        "hostname": socket.gethostname(),
        "loadAverageAtStart": [round(x, 2) for x in os.getloadavg()],
    }


def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "# Performance",
        "",
        f"Generated by `make bench` (`python -m tools.bench{' --quick' if doc['quick'] else ''}`) on "
        f"{doc['generatedAt'][:10]}, in {doc['durationSeconds'] / 60:.1f} minutes. Raw figures: "
        "[`performance.json`](performance.json). How the product scales beyond this: [`scale.md`](scale.md).",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memoryGb']} GB RAM; {m['os']}; Python {m['python']}, "
        f"Node {m['node']}, Azurite {m['azurite']} (in memory). Load average at start "
        f"{', '.join(str(x) for x in m['loadAverageAtStart'])}, at the end "
        f"{', '.join(str(x) for x in m.get('loadAverageAtEnd', []))}.",
        "",
        "Everything runs on this one machine: the product step, the emulator (Graph, Partner Center) and Azurite "
        "share its cores, so every figure includes the emulator's cost of serving the data -- which is why each "
        "one is set against a **floor** measured in the same run, on the same estate:",
        "",
        "* **ingestion floor**: the same sign-ins (same day slices, `$filter`, `$select`, `$top=1000`, 4 slices "
        "in flight; like the product, each slice read with one query per kind of user sign-in, interactive then "
        "non-interactive, the `serviceProvider` ones kept) paged out of the emulator with plain httpx and written "
        "raw, one entity per sign-in, to Azurite "
        "in 100-entity transactions (`tools/bench_floor.py`). The product pages through the msgraph-sdk adapter "
        "and middleware, checks and aggregates every sign-in, and writes per-customer-day aggregates and the "
        "last sign-in per customer;",
        "* **evaluation floor**: every entity the evaluation reads (customers, relationships, last sign-ins, the "
        "two day partitions of the last 24 hours) listed from the tables, joined by tenant and written back raw, "
        "one entity per customer; the product computes and stores the report and applies the policy;",
        "* **API floor**: a bare ASGI app under the same uvicorn answering a pre-built body of the same size as "
        "the product's answer, requested right after it by the same client;",
        "* **memory floor**: the peak RSS of the ingestion floor's process.",
        "",
        "The estates run the emulator without its throttle (a scenario setting) and the product unpaced "
        "(`SIGNIN_PACE=off`), so these are the product's own costs. In Azure, Graph serves the sign-in "
        "log at most 5 requests (pages of 1,000) per 10 s per tenant -- 500 sign-ins/s, which the product paces "
        "itself to (`shared/platform/ratelimit.py`); see `scale.md`. How close to that limit the product runs is measured "
        "separately, with the throttle on (below, *Pace against a throttled sign-in log*).",
        "",
        "## Targets",
        "",
        "| target | required | product | floor | ratio | result |",
        "|---|---|---|---|---|---|",
    ]
    for t in doc["targets"]:
        result = "n/a" if t["passed"] is None else ("**pass**" if t["passed"] else "**FAIL**")
        lines.append(
            f"| {t['name']} | {t['target']} | {_fmt(t['value'])} | {_fmt(t['floor'])} | "
            f"{_fmt(t['ratio'], digits=3)} | {result} |"
        )
    for e in doc["estates"]:
        ing, ev, api, mem = e["ingestion"], e["evaluation"], e["api"], e["memory"]
        fan = ev["fanout"]
        kinds = ing["floor"].get("signInsByKind")
        lines += [
            "",
            f"## Estate {e['name']}: {e['customers']:,} customers, {e['signInsGenerated']:,} sign-ins over "
            f"{e['days']} days",
            "",
            f"Generated in {e['setup']['generateSeconds']:.1f} s, loaded by the emulator in "
            f"{e['setup']['emulatorLoadSeconds']:.1f} s; relationship sync (first run: every relationship, access "
            f"assignments and billing profiles) {e['setup']['syncSeconds']:.1f} s "
            f"({e['setup']['syncDetails']['gdap']:,} GDAP, {e['setup']['syncDetails']['dap']:,} DAP). "
            f"{e['signInsIngested']:,} sign-ins qualify (the log's `$filter` leaves out failed and non-partner ones)"
            + (
                f", {kinds['nonInteractive']:,} of them non-interactive "
                f"({100 * kinds['nonInteractive'] / max(1, sum(kinds.values())):.0f} %), read by "
                f"{ing['floor']['pages']:,} requests (both kinds)."
                if kinds
                else "."
            ),
            "",
            "| figure | product | floor | ratio |",
            "|---|---|---|---|",
            f"| ingestion time | {ing['product']['seconds']:.2f} s | {ing['floor']['seconds']:.2f} s | {_fmt(ing['ratio'], digits=3)} |",
            f"| sign-ins ingested per second | {ing['product']['signInsPerSecond']:,} | {ing['floor']['signInsPerSecond']:,} | |",
            f"| entities written | {ing['product']['entitiesWritten']:,} | {ing['floor']['entitiesWritten']:,} | "
            f"{_fmt(ratio(ing['product']['entitiesWritten'], ing['floor']['entitiesWritten']), digits=3)} |",
            f"| peak memory, ingesting (RSS) | {mem['ingestMaxRssMb']:.0f} MB | {mem['floorMaxRssMb']:.0f} MB | {_fmt(mem['ratio'], digits=3)} |",
            f"| evaluation (report, snapshot, policy) | {ev['product']['seconds']:.2f} s | {ev['floor']['seconds']:.2f} s | "
            f"{_fmt(ev['ratio'], digits=3)} |",
            f"| evaluation per 1,000 customers | {ev['product']['secondsPer1000Customers']:.3f} s | "
            f"{ev['floor']['secondsPer1000Customers']:.3f} s | |",
            f"| of which computing the report | {ev['product']['reportSeconds']:.2f} s | | |",
            f"| sharded evaluation, {fan['workers']} worker processes, 16 shards | {fan['seconds']:.2f} s | | |",
            f"| of which one shard (average) / the finish (rows read back, head, policy) | "
            f"{fan['secondsPerShard']:.2f} s / {fan['finishSeconds']:.2f} s | | |",
            f"| API first request (reads the evaluation, builds the index) | {api['coldFirstRequestMs']:.0f} ms | | |",
        ]
        for kind, k in api["kinds"].items():
            lines.append(
                f"| API {kind} p50 / p95 ({k['requests']} requests, ~{k['meanBytes']:,} bytes) | "
                f"{k['p50Ms']:.1f} / {k['p95Ms']:.1f} ms | {k['floorP50Ms']:.1f} / {k['floorP95Ms']:.1f} ms | "
                f"{_fmt(k['ratioP50'], digits=2)} / {_fmt(k['ratioP95'], digits=2)} |"
            )
        lines.append(f"| API server peak memory (RSS) | {_fmt(api['serverMaxRssMb'], ' MB', 0)} | | |")
        lines.append("")
        lines.append(
            f"Evaluation: {ev['product']['customersUnderMonitoring']:,} of the {e['customers']:,} customers "
            f"are under monitoring (an active relationship); the evaluation reads all of them."
        )
    pace = doc.get("pace")
    if pace:
        t = pace["throttle"]
        lines += [
            "",
            "## Pace against a throttled sign-in log",
            "",
            f"The emulator enforces Graph's sign-in log limit scaled down ten times, {t['requests']} requests per "
            f"{t['windowSeconds']} s (scenario `throttle`: a sliding window, 429 with Retry-After past it), and the "
            f"product runs with `SIGNIN_PACE={pace['signinPace']}`. Estate: {pace['customers']:,} customers, "
            f"{pace['signInsGenerated']:,} sign-ins; ingestion of {pace['backfillDays']} days in "
            f"{pace['sliceHours']}-hour slices ({pace['slices']:,} slices, each read once per kind). The emulator's "
            "log of every request (`GET /_emulator/log?all=true`) gives the sign-in log requests; a 429 is "
            "retried by the SDK's retry handler with a `Retry-Attempt` header, so the 429s are the entries "
            "carrying it.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| sign-in log requests served / answered 429 | {pace['served']:,} / {pace['throttled']:,} |",
            f"| ingestion wall time | {pace['seconds']:.2f} s |",
            f"| requests per second (served / wall time) | {pace['requestsPerSecond']:.2f} of "
            f"{pace['allowedPerSecond']:g} allowed ({100 * pace['shareOfAllowed']:.1f} %) |",
            f"| share of the most a sliding window admits in that time (limit x ceil(time / window)) | "
            f"{100 * pace['shareOfMostAdmissible']:.1f} % |",
            f"| sign-ins ingested | {pace['signIns']:,} |",
        ]
    lines += [
        "",
        "## Reading the figures",
        "",
        "* Times are wall-clock seconds of the step inside its own process (imports and process start-up "
        "excluded), peak memory is that process's `ru_maxrss`.",
        "* The machine is shared with the emulator and Azurite (and, during development, with other work): "
        "absolute times move between runs -- by 10-20 % for the product's steps, by up to half for the "
        "million-row ingestion floor, whose cost Azurite's in-memory tables make grow faster than linearly. "
        "The ratios are the stable part.",
        "* Azurite is not Azure: it keeps each table in sorted in-memory arrays, so its cost per write grows "
        "with the table, and it has no per-partition throughput limit. What Azure's limits mean at 100,000 "
        "customers is in [`scale.md`](scale.md).",
        "* `docs/performance.json` holds every figure, the API timings per query kind, and the per-worker split "
        "of the sharded evaluation.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small estate: a smoke run of the harness")
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="where performance.md/.json go (default docs/, or .bench/quick with --quick)",
    )
    parser.add_argument("--work-dir", type=Path, default=ROOT / ".bench", help="scenarios and profiles")
    parser.add_argument(
        "--profile", action="store_true", help="write cProfile summaries of the product steps"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only write performance.md again from the performance.json in --out-dir",
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir or (ROOT / ".bench" / "quick" if args.quick else ROOT / "docs")
    if args.render:
        stored = json.loads((out_dir / "performance.json").read_text(encoding="utf-8"))
        (out_dir / "performance.md").write_text(markdown(stored), encoding="utf-8")
        return 0
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    doc: dict[str, Any] = {
        "schemaVersion": 1,
        "generatedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": args.quick,
        "machine": machine(),
        "estates": [],
    }
    for spec in QUICK if args.quick else FULL:
        doc["estates"].append(run_estate(spec, work, args.profile))
    doc["pace"] = measure_pace(PACE_QUICK if args.quick else PACE_FULL, work)
    doc["targets"] = judge(doc["estates"], args.quick, doc["pace"])
    doc["durationSeconds"] = round(time.perf_counter() - started, 1)
    doc["machine"]["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    (out_dir / "performance.json").write_text(
        json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out_dir / "performance.md").write_text(markdown(doc), encoding="utf-8")
    for t in doc["targets"]:
        status = "n/a" if t["passed"] is None else ("pass" if t["passed"] else "FAIL")
        log(
            f"{t['name']}: {t['value'] or '-'} (floor {t['floor'] or '-'}, ratio {t['ratio']}) {t['target']}: {status}"
        )
    log(f"wrote {out_dir / 'performance.md'} and performance.json in {doc['durationSeconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
