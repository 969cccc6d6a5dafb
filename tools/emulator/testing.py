"""Start and drive the emulator from tests: ``with start_emulator(scenario) as emu: ...``.

The emulator runs as a real subprocess (``python -m tools.emulator``) so tests exercise exactly what a
developer runs; control calls go through the ``/_emulator`` API with httpx.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "example.json"
STARTUP_TIMEOUT = 30.0


class EmulatorStartError(RuntimeError):
    """The emulator process did not announce its address in time."""


class RunningEmulator:
    """A started emulator process. ``url`` is its root, e.g. ``http://127.0.0.1:54321``."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        url: str,
        stderr_path: Path,
        temp_dir: tempfile.TemporaryDirectory[str] | None,
    ) -> None:
        self.process = process
        self.url = url
        self._stderr_path = stderr_path
        self._temp_dir = temp_dir
        self._client = httpx.Client(base_url=url, timeout=120.0)

    # -- URLs for product clients
    @property
    def graph_v1(self) -> str:
        return f"{self.url}/v1.0"

    @property
    def graph_beta(self) -> str:
        return f"{self.url}/beta"

    @property
    def partner_center(self) -> str:
        return f"{self.url}/partnercenter/v1"

    def _call(self, method: str, path: str, body: Any = None, content: bytes | None = None) -> Any:
        kwargs: dict[str, Any] = {}
        if content is not None:
            kwargs["content"] = content
            kwargs["headers"] = {"Content-Type": "application/json"}
        elif body is not None:
            kwargs["json"] = body
        resp = self._client.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"emulator {method} {path} -> {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    # -- control API
    def post_scenario(self, scenario: dict[str, Any] | Path | str) -> None:
        """Replace the whole estate (and clear log, outbox, faults)."""
        if isinstance(scenario, dict):
            self._call("POST", "/_emulator/scenario", content=json.dumps(scenario).encode())
        else:
            self._call("POST", "/_emulator/scenario", content=Path(scenario).read_bytes())

    def state(self, sign_ins: bool = True) -> dict[str, Any]:
        suffix = "" if sign_ins else "?signIns=false"
        result: dict[str, Any] = self._call("GET", "/_emulator/state" + suffix)
        return result

    def gdap_relationship(self, rel_id: str) -> dict[str, Any]:
        """One GDAP relationship as the emulator's state holds it (AssertionError when it holds none)."""
        for customer in self.state(sign_ins=False)["customers"]:
            for rel in customer["gdapRelationships"]:
                if rel["id"] == rel_id:
                    return dict(rel)
        raise AssertionError(f"relationship {rel_id} not in the emulator's state")

    def log(self, all_requests: bool = False) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(
            "GET", "/_emulator/log" + ("?all=true" if all_requests else "")
        )
        return result

    def outbox(self) -> list[dict[str, Any]]:
        return list(self.state(sign_ins=False)["outbox"])

    def advance(self, duration: str | None = None, *, now: str | None = None) -> str:
        """Move the clock: ``advance("P1D")`` or ``advance(now="2026-12-01T00:00:00Z")``; returns the new now."""
        body = {"now": now} if now is not None else {"advance": duration or "P1D"}
        result = self._call("POST", "/_emulator/clock", body)
        return str(result["now"])

    def set_now(self, now: str) -> str:
        return self.advance(now=now)

    def add_sign_ins(self, sign_ins: list[dict[str, Any]]) -> int:
        return int(self._call("POST", "/_emulator/signIns", sign_ins)["added"])

    def add_faults(self, faults: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("POST", "/_emulator/faults", faults)
        return result

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/_emulator/faults")
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/_emulator/faults")

    def approve(self, relationship_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/_emulator/approve/{relationship_id}", body or {})
        return result

    def customer_actions(self, actions: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]]:
        """The customer removes DAP or terminates GDAP (``at`` optional: now), see customer_side.py."""
        result: list[dict[str, Any]] = self._call("POST", "/_emulator/customerActions", actions)
        return result

    def write_archive(self, connection: str, start: str, end: str, **options: Any) -> dict[str, Any]:
        """Entra's diagnostic setting archives the sign-ins created in [start, end) to the storage account
        behind ``connection`` (options: see ``tools/emulator/archive.py``)."""
        result: dict[str, Any] = self._call(
            "POST", "/_emulator/archive", {"connection": connection, "from": start, "to": end, **options}
        )
        return result

    def stderr(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        self._client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_emulator(
    scenario: dict[str, Any] | Path | str | None = None,
    *,
    host: str = "127.0.0.1",
    timeout: float = STARTUP_TIMEOUT,
) -> RunningEmulator:
    """Launch ``python -m tools.emulator`` on a free port and wait until it listens."""
    temp_dir = tempfile.TemporaryDirectory(prefix="emulator-")
    if scenario is None:
        path = EXAMPLE_SCENARIO
    elif isinstance(scenario, dict):
        path = Path(temp_dir.name) / "scenario.json"
        path.write_text(json.dumps(scenario), encoding="utf-8")
    else:
        path = Path(scenario)
    stderr_path = Path(temp_dir.name) / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.emulator", "--scenario", str(path), "--host", host, "--port", "0"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    lines: queue.Queue[bytes] = queue.Queue()

    def read_first_line() -> None:
        assert process.stdout is not None
        lines.put(process.stdout.readline())

    threading.Thread(target=read_first_line, daemon=True).start()
    try:
        line = lines.get(timeout=timeout).decode().strip()
    except queue.Empty:
        line = ""
    prefix = "listening on "
    if not line.startswith(prefix):
        process.kill()
        process.wait(timeout=10)
        err = stderr_path.read_text(errors="replace")[-2000:]
        temp_dir.cleanup()
        raise EmulatorStartError(f"emulator did not start (first line {line!r}): {err}")
    return RunningEmulator(process, line[len(prefix) :], stderr_path, temp_dir)
