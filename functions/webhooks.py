"""Webhook queue triggers: post one alert, warning or digest per message (once per key and target);
record poison messages."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.triggers import register_deferring_trigger, register_poison_trigger
from shared.notifications.webhook_worker import handle_webhook_message, handle_webhook_poison
from shared.platform.settings import WEBHOOKS_QUEUE

bp = func.Blueprint()
log = logging.getLogger(__name__)

register_deferring_trigger(bp, "webhooks", WEBHOOKS_QUEUE, handle_webhook_message, "webhook message", log)
register_poison_trigger(
    bp, "webhooks_poison", f"{WEBHOOKS_QUEUE}-poison", handle_webhook_poison, "webhook message", log
)
