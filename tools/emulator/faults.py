"""Injected faults and the sign-in log's throttle: what a scenario (or ``/_emulator/faults``) makes fail,
and when Graph would answer 429. Plain state; :mod:`tools.emulator.routing` serves them."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .errors import bad_request


@dataclass
class Fault:
    """An injected failure or oddity for requests whose path starts with ``path_prefix``.

    ``status`` / ``kind`` fail the request; ``empty`` answers a Graph list with 200, no items and an
    ``@odata.nextLink`` that resumes the same query; ``page_size`` serves a Graph list normally but at most
    that many items a page. Both are legal paging: the end of a collection is the absence of a nextLink, not
    a short or empty page ("you must continue to call Microsoft Graph with the @odata.nextLink property
    returned in each response until the @odata.nextLink property is no longer returned",
    https://learn.microsoft.com/graph/paging). They apply only to Graph GET list routes.
    """

    method: str
    path_prefix: str
    status: int
    times: int
    retry_after: Any = None
    kind: str | None = None
    delay_seconds: float = 30.0
    served: int = 0
    after: int = 0  # matching requests to let through before the fault fires (e.g. page 1 of a list)
    passed: int = 0
    empty: bool = False
    page_size: int | None = None

    @property
    def list_only(self) -> bool:
        return self.empty or self.page_size is not None

    @property
    def label(self) -> str | int:
        """How the request log names what the fault did."""
        if self.empty:
            return "empty"
        if self.page_size is not None:
            return "pageSize"
        return self.kind or self.status

    @classmethod
    def parse(cls, d: Any) -> Fault:
        if not isinstance(d, dict):
            raise bad_request("A fault is a JSON object.")
        prefix = d.get("pathPrefix")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise bad_request("A fault needs a 'pathPrefix' starting with '/'.")
        kind = d.get("kind")
        if kind not in (None, "reset", "timeout", "truncate"):
            raise bad_request("A fault 'kind' is one of reset, timeout, truncate.")
        empty = d.get("empty", False)
        if not isinstance(empty, bool):
            raise bad_request("A fault 'empty' is true or false.")
        size = d.get("pageSize")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise bad_request("A fault 'pageSize' is a whole number of at least 1.")
        if (empty or size is not None) and (kind is not None or d.get("status", 200) != 200):
            raise bad_request(
                "A fault with 'empty' or 'pageSize' answers 200; it takes no other 'status' or 'kind'."
            )
        if empty and size is not None:
            raise bad_request("A fault is either 'empty' or 'pageSize', not both.")
        status = d.get("status", 200 if (kind is not None or empty or size is not None) else 503)
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise bad_request("A fault 'status' is an HTTP status code.")
        times = d.get("times", 1)
        if not isinstance(times, int):
            raise bad_request("A fault 'times' is an integer (-1 = forever).")
        after = d.get("after", 0)
        if not isinstance(after, int) or after < 0:
            raise bad_request("A fault 'after' is a whole number of matching requests to let through first.")
        return cls(
            method=str(d.get("method") or "*").upper(),
            path_prefix=prefix,
            status=status,
            times=times,
            retry_after=d.get("retryAfter"),
            kind=kind,
            delay_seconds=float(d.get("delaySeconds", 30)),
            after=after,
            empty=empty,
            page_size=size,
        )

    def matches(self, method: str, path: str, is_list: bool = False) -> bool:
        """``is_list``: the request is a Graph GET list route (the only kind ``empty``/``page_size`` touch)."""
        if self.list_only and not is_list:
            return False
        return self.times != 0 and self.method in ("*", method.upper()) and path.startswith(self.path_prefix)

    def let_through(self) -> bool:
        """For a matching request: True (and counted) while ``after`` requests are still to pass."""
        if self.passed < self.after:
            self.passed += 1
            return True
        return False

    def consume(self) -> None:
        if self.times > 0:
            self.times -= 1
        self.served += 1

    def scenario(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "pathPrefix": self.path_prefix,
            "status": self.status,
            "times": self.times,
            "served": self.served,
        }
        if self.retry_after is not None:
            out["retryAfter"] = self.retry_after
        if self.after:
            out["after"], out["passed"] = self.after, self.passed
        if self.kind:
            out["kind"] = self.kind
            out["delaySeconds"] = self.delay_seconds
        if self.empty:
            out["empty"] = True
        if self.page_size is not None:
            out["pageSize"] = self.page_size
        return out


@dataclass
class Throttle:
    """A sliding-window request limit in wall-clock time: at most ``requests`` per ``window_seconds``.

    Microsoft Graph, identity and access reports (auditLogRoot: the sign-in log): "Five requests per 10
    seconds" per app per tenant (https://learn.microsoft.com/graph/throttling-limits#identity-and-access-
    reports-service-limits). Only admitted requests take a slot: a request answered 429 does not, so a
    client that waits the Retry-After it was given is let through (Graph documents no other counting, and
    its own guidance is to wait Retry-After and retry, https://learn.microsoft.com/graph/throttling).
    """

    requests: int
    window_seconds: float
    admitted: deque[float] = field(default_factory=deque)

    @classmethod
    def parse(cls, d: Any) -> Throttle | None:
        if d is None:
            return None
        if not isinstance(d, dict):
            raise bad_request('\'throttle\' is {"requests": n, "windowSeconds": s}.')
        n, window = d.get("requests"), d.get("windowSeconds")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise bad_request("'throttle.requests' is a whole number of at least 1.")
        if not isinstance(window, int | float) or isinstance(window, bool) or window <= 0:
            raise bad_request("'throttle.windowSeconds' is a positive number of seconds.")
        return cls(n, float(window))

    def admit(self, now: float) -> float | None:
        """None (and the request takes a slot) when under the limit, else the seconds until a slot frees."""
        admitted = self.admitted
        while admitted and admitted[0] <= now - self.window_seconds:
            admitted.popleft()
        if len(admitted) >= self.requests:
            return admitted[0] + self.window_seconds - now
        admitted.append(now)
        return None

    def scenario(self) -> dict[str, Any]:
        window = self.window_seconds
        return {"requests": self.requests, "windowSeconds": int(window) if window.is_integer() else window}
