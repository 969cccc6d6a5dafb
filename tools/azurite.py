"""Start Azurite (from the repo's node_modules) on free loopback ports, for tests, the demo and benchmarks.

``python -m tools.azurite [--location DIR]`` prints the connection string as its first line and
serves until terminated.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connection_string(blob: int, queue: int, table: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob}/{ACCOUNT};QueueEndpoint=http://127.0.0.1:{queue}/{ACCOUNT};"
        f"TableEndpoint=http://127.0.0.1:{table}/{ACCOUNT};"
    )


def _wait_port(port: int, deadline: float, process: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with {process.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"Azurite did not listen on {port}")


@dataclass
class RunningAzurite:
    process: subprocess.Popen[bytes]
    ports: tuple[int, int, int]
    location: str
    owns_location: bool
    in_memory: bool = False

    @property
    def connection_string(self) -> str:
        return connection_string(*self.ports)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.owns_location:
            shutil.rmtree(self.location, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same ports and data folder (fault tests)."""
        owns, self.owns_location = self.owns_location, False
        self.stop()
        self.owns_location = owns
        self.process = _launch(self.ports, self.location, self.in_memory)
        deadline = time.monotonic() + 30
        for port in self.ports:
            _wait_port(port, deadline, self.process)


def azurite_binary() -> str:
    binary = ROOT / "node_modules" / ".bin" / "azurite"
    if not binary.exists():
        raise RuntimeError("Azurite is not installed: run `make setup` (npm ci)")
    return str(binary)


def _launch(ports: tuple[int, int, int], location: str, in_memory: bool = False) -> subprocess.Popen[bytes]:
    blob, queue, table = ports
    command = [
        azurite_binary(),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
        "--blobHost",
        "127.0.0.1",
        "--queueHost",
        "127.0.0.1",
        "--tableHost",
        "127.0.0.1",
        "--blobPort",
        str(blob),
        "--queuePort",
        str(queue),
        "--tablePort",
        str(table),
    ]
    # In memory (benchmarks): no periodic save of the whole database to disk, which with a million
    # entities blocks Azurite for seconds at a time.
    command += ["--inMemoryPersistence"] if in_memory else ["--location", location]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def start_azurite(location: str | None = None, *, in_memory: bool = False) -> RunningAzurite:
    owns = location is None
    location = location or tempfile.mkdtemp(prefix="azurite-")
    os.makedirs(location, exist_ok=True)
    ports = (free_port(), free_port(), free_port())
    process = _launch(ports, location, in_memory)
    running = RunningAzurite(process, ports, location, owns, in_memory)
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            _wait_port(port, deadline, process)
    except Exception:
        running.stop()
        raise
    return running


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.azurite")
    parser.add_argument("--location", help="data folder (default: a temporary one, removed on exit)")
    args = parser.parse_args()
    running = start_azurite(args.location)
    print(running.connection_string, flush=True)

    def stop(*_: object) -> None:
        running.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while running.process.poll() is None:
        time.sleep(0.5)
    return 1


if __name__ == "__main__":
    sys.exit(main())
