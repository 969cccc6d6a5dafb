"""The emulator's refusals: :class:`EmulatorError` carries the HTTP status, the service's error code and
its message; :mod:`tools.emulator.routing` renders it as Graph's (or Partner Center's) error body."""

from __future__ import annotations


class EmulatorError(Exception):
    """A request the real service would refuse: HTTP status + Graph error code + message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str, code: str = "BadRequest") -> EmulatorError:
    return EmulatorError(400, code, message)


def not_found(message: str, code: str = "NotFound") -> EmulatorError:
    return EmulatorError(404, code, message)
