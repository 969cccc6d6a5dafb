"""``python -m tools.bench --quick``: the benchmark harness end to end on a small estate.

Checks that every step ran, that the product and its floors handled the same data, and that the
documents are written -- no timing assertions (figures belong to ``make bench``, not to tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_quick_bench_runs_every_step_and_writes_both_documents(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "--out-dir", str(out), "--work-dir", str(work)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "performance.json").read_text(encoding="utf-8"))
    assert doc["quick"] is True and doc["machine"]["cores"] >= 1
    [estate] = doc["estates"]
    # The product and the floor paged the same sign-ins; the product wrote aggregates, not rows.
    ingestion = estate["ingestion"]
    assert estate["signInsIngested"] == ingestion["floor"]["signIns"] > 1000
    assert 0 < ingestion["product"]["entitiesWritten"] < ingestion["floor"]["entitiesWritten"]
    assert ingestion["ratio"] > 0 and estate["memory"]["ingestMaxRssMb"] > 0
    # The floor reads both kinds, one query each, as the product does; most of the log is non-interactive.
    kinds = ingestion["floor"]["signInsByKind"]
    assert (
        sum(kinds.values()) == ingestion["floor"]["signIns"]
        and kinds["nonInteractive"] > kinds["interactive"] > 0
    )
    evaluation = estate["evaluation"]
    assert evaluation["product"]["customersUnderMonitoring"] > 0 and evaluation["ratio"] > 0
    assert evaluation["floor"]["rowsWritten"] == estate["customers"]
    fanout = evaluation["fanout"]
    assert fanout["shards"] == 16 and fanout["rows"] == evaluation["product"]["customersUnderMonitoring"]
    api = estate["api"]
    assert api["customers"] == evaluation["product"]["customersUnderMonitoring"]
    assert set(api["kinds"]) == {"list", "filter", "sort", "page"}
    assert all(k["requests"] > 0 and k["p95Ms"] >= k["p50Ms"] > 0 for k in api["kinds"].values())
    # Against the throttled emulator, paced to its limit: sign-in requests counted from its log.
    pace = doc["pace"]
    assert pace["served"] >= pace["slices"] * 2 > 0 and pace["signIns"] > 0
    assert pace["requests"] == pace["served"] + pace["throttled"] and pace["requestsPerSecond"] > 0
    # Targets are judged on the full run only.
    assert [t["passed"] for t in doc["targets"]] == [None] * 6
    markdown = (out / "performance.md").read_text(encoding="utf-8")
    assert "## Targets" in markdown and "Estate quick" in markdown and "| API sort p50 / p95" in markdown
    assert "## Pace against a throttled sign-in log" in markdown
    assert not list(work.glob("estate-*.json"))  # the scenario is removed after the run
