"""The product's command line as the tools run it, in a process of its own (demo, bench)."""

from __future__ import annotations

import sys


def cli_command(*args: str) -> list[str]:
    """``python -m shared.cli *args`` with this interpreter."""
    return [sys.executable, "-m", "shared.cli", *args]


def local_serve_command(emulator_url: str, port: int) -> list[str]:
    """The portal and API against the emulator on loopback ``port``, acting as the local operator."""
    return cli_command(
        "--emulator", emulator_url, "serve", "--host", "127.0.0.1", "--port", str(port), "--local-operator"
    )
