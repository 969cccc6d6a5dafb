"""Notification queue triggers: send one mail per message (idempotent); record poison messages."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.triggers import register_deferring_trigger, register_poison_trigger
from shared.notifications.worker import (
    NOTIFICATIONS_QUEUE,
    handle_notification_message,
    handle_notification_poison,
)

bp = func.Blueprint()
log = logging.getLogger(__name__)

register_deferring_trigger(
    bp, "notifications", NOTIFICATIONS_QUEUE, handle_notification_message, "notification message", log
)
register_poison_trigger(
    bp,
    "notifications_poison",
    "notifications-poison",
    handle_notification_poison,
    "notification message",
    log,
)
