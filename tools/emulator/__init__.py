"""A local stand-in for Microsoft Graph and Partner Center, driven by a scenario file.

Run ``python -m tools.emulator --scenario FILE``; see ``server.py`` for the routes and ``state.py`` for
the state machine. ``generate.py`` writes large realistic scenarios, ``testing.py`` starts the emulator
for tests.
"""

from .server import create_app

__all__ = ["create_app"]
