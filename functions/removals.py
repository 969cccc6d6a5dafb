"""Removal queue triggers: execute one removal per message; record and alert on poison messages.

Messages are plain JSON (host.json: messageEncoding none). An exception leaves the message to the
host, which retries it (maxDequeueCount 5) and then moves it to ``removals-poison``. A removal that is
busy (another delivery holds it) or must wait (the sign-in log's latency) is not a failure: the message
is sent again, invisible until then, and this delivery ends normally.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.triggers import register_deferring_trigger, register_poison_trigger
from shared.removals.worker import REMOVALS_QUEUE, handle_removal_message, handle_removal_poison

bp = func.Blueprint()
log = logging.getLogger(__name__)

register_deferring_trigger(bp, "removals", REMOVALS_QUEUE, handle_removal_message, "removal message", log)
register_poison_trigger(
    bp, "removals_poison", "removals-poison", handle_removal_poison, "removal message", log
)
