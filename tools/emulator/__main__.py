"""``python -m tools.emulator --scenario FILE [--host 127.0.0.1] [--port 0]``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from pathlib import Path

from aiohttp import web

from .errors import EmulatorError
from .routing import create_app
from .scenario import load_scenario_text


async def serve(scenario_path: Path, host: str, port: int) -> None:
    gc.disable()  # parsing a million sign-ins allocates millions of objects; see build_estate
    try:
        scenario = load_scenario_text(scenario_path.read_bytes())
    finally:
        gc.enable()
    app = create_app(scenario)
    del scenario
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound_port = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound_port = int(address[1])
            break
    shown = f"[{host}]" if ":" in host else host
    sys.stdout.write(f"listening on http://{shown}:{bound_port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.emulator", description="Local Microsoft Graph / Partner Center emulator."
    )
    parser.add_argument("--scenario", required=True, type=Path, help="scenario JSON file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default=0, type=int, help="0 = pick a free port")
    args = parser.parse_args(argv)
    if not args.scenario.is_file():
        print(f"scenario file not found: {args.scenario}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args.scenario, args.host, args.port))
    except EmulatorError as exc:
        print(f"invalid scenario: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
