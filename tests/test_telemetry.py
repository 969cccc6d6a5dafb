"""The alerts and the workbook read events that really arrive: the real azure-monitor-opentelemetry exporter
sends to a loopback ingestion endpoint (``IngestionEndpoint=http://127.0.0.1:<port>/`` in the connection
string), the product is driven through every condition (tests/telemetry_driver.py, in a process of its
own, as the function app and the CLI run), and every event name and ``customDimensions`` property that
an alert rule or a workbook query uses must be among what was received."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.test_infra import ROOT, kql_event_names

INFRA = ROOT / "infra"


class Collector:
    """Application Insights' ingestion endpoint, on loopback: ``POST /v2.1/track`` with a JSON array of
    envelopes (gzip when the exporter compresses), answered as the service answers."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                items = (
                    json.loads(raw)
                    if raw.strip().startswith(b"[")
                    else [json.loads(line) for line in raw.splitlines() if line.strip()]
                )
                collector.envelopes.extend(items)
                body = json.dumps(
                    {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def events(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for envelope in self.envelopes:
            data = envelope.get("data", {})
            if data.get("baseType") == "EventData":
                base = data["baseData"]
                out.setdefault(base["name"], []).append(base.get("properties") or {})
        return out

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.stop()


def queries() -> list[str]:
    workbook = json.loads((INFRA / "modules" / "workbook.json").read_text(encoding="utf-8"))
    found = [item["content"]["query"] for item in workbook["items"] if item["type"] == 3]
    text = (INFRA / "modules" / "alerts.bicep").read_text(encoding="utf-8")
    found += [
        q.encode().decode("unicode_escape")
        for q in re.findall(r"^\s*query: '((?:[^'\\]|\\.)*)'$", text, re.M)
    ]
    return found


def test_every_event_and_property_the_alerts_and_the_workbook_read_arrives(
    env: dict[str, str], emulator: Any, collector: Collector, tmp_path: Path
) -> None:
    connection = f"InstrumentationKey=00000000-0000-4000-8000-000000000000;IngestionEndpoint={collector.url}"
    environment = {
        **os.environ,
        **env,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": connection,
        "TMPDIR": str(tmp_path),
    }
    environment.pop("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.telemetry_driver"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    arrived = collector.events()
    used = queries()
    assert len(used) >= 10
    missing = []
    for query in used:
        names = kql_event_names(query)
        for name in names:
            if name not in arrived:
                missing.append(f"event {name}")
        for prop in set(re.findall(r"customDimensions\.(\w+)", query)):
            if names and not any(prop in props for name in names for props in arrived.get(name, [])):
                missing.append(f"{sorted(names)}.{prop}")
    assert not missing, (missing, {k: len(v) for k, v in arrived.items()})
    # What the removal alert and the workbook's removal table show, per removal.
    failed = arrived["RemovalFailed"][0]
    assert failed["tenantId"] and failed["type"] in ("DAP", "GDAP", "DAP+GDAP") and failed["reason"]
    evaluation = arrived["EvaluationCompleted"][0]
    buckets = sum(
        int(evaluation[k]) for k in ("bucket_active", "bucket_30_60", "bucket_61_90", "bucket_90_plus")
    )
    assert buckets == int(evaluation["customers"]) and evaluation["mode"] == "enforce"
    assert {p["queue"] for p in arrived["PoisonMessage"]} >= {"removals", "notifications"}
