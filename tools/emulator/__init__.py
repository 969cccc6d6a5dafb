"""A local stand-in for Microsoft Graph and Partner Center, driven by a scenario file.

Run ``python -m tools.emulator --scenario FILE``; ``routing.py`` holds the route table and the
``*_api.py`` modules the handlers, ``estate.py`` the simulated estate (its parts in the modules it
imports); README.md names every module. ``generate.py`` writes large realistic scenarios,
``testing.py`` starts the emulator for tests.
"""

from .routing import create_app

__all__ = ["create_app"]
