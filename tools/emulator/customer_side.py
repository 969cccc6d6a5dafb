"""The customer's side of delegated admin access: what a customer (or Microsoft) does to the partner's
access outside the partner's APIs, at a given emulator time.

* ``removeDap``: the customer removes the partner's admin roles in the Microsoft 365 admin center
  (Settings > Partner relationships > Remove roles: seed document 000); Partner Center then reports
  ``dapEnabled: false``. Microsoft's removal of inactive DAP looks the same on the wire.
* ``terminateGdap``: the customer ends a GDAP relationship in the admin center. The partner made no
  terminate request, so the relationship has none in its ``requests``; it reads ``terminated`` from then
  on, ``endDateTime`` stamped with that moment.

Given as scenario ``"events": [{"at": ISO, "action": ..., "tenantId" | "relationshipId": ...}]`` or
posted to ``POST /_emulator/customerActions`` (one object or an array; ``at`` defaults to now). An event
takes effect when the emulator's clock reaches ``at``; one at or before now takes effect at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .errors import EmulatorError, bad_request
from .gdap_relationships import RelationshipLifecycle
from .values import parse_time, ts

ACTIONS = ("removeDap", "terminateGdap")
ENDABLE = ("active", "expiring", "terminationRequested", "terminating")


class CustomerSide(RelationshipLifecycle):
    """Scheduled customer actions (a mixin of the estate)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def parse_event(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or item.get("action") not in ACTIONS:
            raise bad_request(f"A customer action is an object with 'action' one of {', '.join(ACTIONS)}.")
        target = "tenantId" if item["action"] == "removeDap" else "relationshipId"
        if not isinstance(item.get(target), str) or not item[target]:
            raise bad_request(f"'{item['action']}' needs '{target}'.")
        at = parse_time(item["at"], "at") if item.get("at") is not None else self.now
        return {"at": at, "action": item["action"], target: item[target]}

    def schedule_events(self, items: Any) -> list[dict[str, Any]]:
        """Check every event first (a bad one changes nothing), then apply the due ones."""
        listed = items if isinstance(items, list) else [items]
        events = [self.parse_event(i) for i in listed]
        for event in events:
            self._target(event)
        self.events.extend(events)
        self.events.sort(key=lambda e: e["at"])
        applied = self.apply_due_events()
        return [self.event_scenario(e) | {"applied": e in applied} for e in events]

    def _target(self, event: dict[str, Any]) -> None:
        if event["action"] == "removeDap":
            if event["tenantId"].lower() not in self.customers:
                raise EmulatorError(404, "NotFound", f"Customer {event['tenantId']} was not found.")
        elif event["relationshipId"] not in self.relationships:
            raise EmulatorError(404, "NotFound", f"Relationship {event['relationshipId']} was not found.")

    def apply_due_events(self) -> list[dict[str, Any]]:
        due = [e for e in self.events if e["at"] <= self.now]
        self.events = [e for e in self.events if e["at"] > self.now]
        for event in due:
            self._apply(event)
        return due

    def _apply(self, event: dict[str, Any]) -> None:
        at: datetime = event["at"]
        if event["action"] == "removeDap":
            customer = self.customers.get(event["tenantId"].lower())
            if customer is not None and customer.dap is not None and customer.dap.get("enabled"):
                customer.dap["enabled"] = False
                customer.dap["endDateTime"] = ts(at)
            return
        rel = self.relationships.get(event["relationshipId"])
        if rel is None:
            return
        self.settle_relationship(rel)  # as it was when the customer acted
        if rel.status in ENDABLE:
            rel.status, rel.end, rel.since = "terminated", at, None
            self._touch(rel, at)

    @staticmethod
    def event_scenario(event: dict[str, Any]) -> dict[str, Any]:
        return {**event, "at": ts(event["at"])}
