"""Alerts where partners work: the bodies posted to ``ALERT_WEBHOOK_URL`` and the POST itself.

Two formats (``ALERT_WEBHOOK_FORMAT``):

``json``: the product's own event document (README, "Webhook"); one per alert, warning or digest::

    {"schemaVersion": 1, "source": "delegated-admin-monitor", "id": "<32 hex, stable per event>",
     "kind": "partner-alert", "key": "alert:...", "time": ISO, "subject": str, "text": str,
     "facts": [{"name": str, "value": str}], "link": "https://<portal>/" | null, "data": {...}}

``teams``: a message with one Adaptive Card attachment, the format Teams' Workflows webhooks (the
"When a Teams webhook request is received" trigger, which replaces the retired Office 365 connectors'
incoming webhooks) accept; they take Adaptive Cards only, not the connectors' message cards
(https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using,
https://learn.microsoft.com/connectors/teams/#microsoft-teams-webhook). Every text that may carry a
customer's name is a ``TextRun`` of a ``RichTextBlock``, which Adaptive Cards render as plain text, never
as Markdown (https://adaptivecards.io/explorer/TextRun.html): a name cannot become a link.

The URL is the webhook's credential (a Workflows URL carries its signature in the query): it is never
logged, never stored, never part of an error. Only its host is named. The POST goes through an httpx
transport directly, not a client, because the client logs every request's URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.notifications.mail import single_line
from shared.platform.retry import backoff_seconds, retry_after_seconds
from shared.platform.settings import Settings

log = logging.getLogger(__name__)

SOURCE = "delegated-admin-monitor"

# Teams refuses messages above about 28 KB; the card's text is cut well below that.
MAX_TEXT = 12_000
MAX_LINES = 80

# Within one delivery: attempts, and the longest Retry-After waited for in process. A longer one defers
# the queue message for that long instead (shared.notifications.webhook_worker).
ATTEMPTS = 4
MAX_WAIT_SECONDS = 60.0
TIMEOUT = httpx.Timeout(20.0, connect=10.0)

# Answers that say "not now": retried with backoff (Retry-After honoured). Any other 4xx is the target
# refusing this request for good (a wrong URL, a disabled flow, a body it does not take): not retried.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def target_id(url: str) -> str:
    """A name for the webhook target that is not its secret: the once-per-key rule is per target."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def target_host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "the webhook"
    except ValueError:
        return "the webhook"


def portal_link(settings: Settings) -> str | None:
    if settings.portal_url:
        return settings.portal_url.rstrip("/") + "/"
    host = os.environ.get("WEBSITE_HOSTNAME", "").strip()  # App Service sets it (shared.web.security)
    return f"https://{host}/" if host else None


LABELS = {
    "en": {
        "kind": "Event",
        "time": "Time",
        "alert": "Alert",
        "asOf": "As of",
        "mode": "Policy mode",
        "removals": "Queued for removal",
        "warned": "Warned",
        "skipped": "Not removed",
        "halted": "Halted",
        "customers": "Customers",
        "candidates": "Candidates",
        "queue": "Queue",
        "ending30": "GDAP ending within 30 days",
        "globalAdmins": "With Global Administrator",
        "open": "Open the portal",
        "test": "Test",
        "testText": "A test message from Delegated Admin Monitor: alerts, warnings and digests arrive here.",
    },
    "ja": {
        "kind": "イベント",
        "time": "日時",
        "alert": "アラート",
        "asOf": "基準日時",
        "mode": "ポリシー モード",
        "removals": "削除キューに追加",
        "warned": "事前警告",
        "skipped": "削除しなかった顧客",
        "halted": "停止",
        "customers": "顧客",
        "candidates": "削除候補",
        "queue": "キュー",
        "ending30": "30 日以内に終了する GDAP",
        "globalAdmins": "グローバル管理者を含む",
        "open": "ポータルを開く",
        "test": "テスト",
        "testText": "Delegated Admin Monitor からのテスト メッセージです。アラート、警告、ダイジェストがここに届きます。",
    },
}


def labels(language: str) -> dict[str, str]:
    return LABELS.get(language, LABELS["en"])


def facts_of(kind: str, data: dict[str, Any], language: str) -> list[tuple[str, str]]:
    """The few facts of an event worth a glance: counts and moments, never a customer's name."""
    label = labels(language)
    facts: list[tuple[str, str]] = []

    def add(name: str, value: Any) -> None:
        if value is not None and value != "":
            facts.append((label[name], single_line(value, 200)))

    if kind == "partner-alert":
        add("alert", data.get("alert"))
        add("asOf", data.get("asOf"))
        add("candidates", data.get("candidates"))
        add("queue", data.get("queue"))
    elif kind == "partner-digest":
        summary = data.get("summary") or {}
        add("asOf", summary.get("asOf"))
        add("mode", summary.get("mode"))
        add("removals", len(summary.get("removals") or []))
        add("warned", len(summary.get("warned") or []))
        add("skipped", len(summary.get("skipped") or []))
        add("halted", summary.get("halted") or None)
    elif kind == "partner-warning":
        add("customers", len(data.get("customers") or []) + int(data.get("more") or 0))
    elif kind == "partner-gdap-digest":
        add("asOf", data.get("asOf"))
        add("ending30", (data.get("counts") or {}).get("30"))
        add("globalAdmins", len(data.get("globalAdmins") or []) or None)
    return facts


@dataclass
class Event:
    """One alert, warning or digest as the webhook gets it."""

    kind: str
    key: str
    time: str
    subject: str
    text: str
    facts: list[tuple[str, str]]
    link: str | None
    data: dict[str, Any]
    language: str = "en"

    @property
    def id(self) -> str:
        return hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:32]


def _lines(text: str) -> list[str]:
    lines = [single_line(line, 1000) for line in text[:MAX_TEXT].splitlines()]
    lines = [line for line in lines if line]
    return lines[:MAX_LINES] + (["…"] if len(lines) > MAX_LINES else [])


def json_body(event: Event) -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "source": SOURCE,
        "id": event.id,
        "kind": event.kind,
        "key": event.key,
        "time": event.time,
        "subject": event.subject,
        "text": event.text[:MAX_TEXT],
        "facts": [{"name": name, "value": value} for name, value in event.facts],
        "link": event.link,
        "data": event.data,
    }


def _text_block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text, **style}]}


def teams_body(event: Event) -> dict[str, Any]:
    label = labels(event.language)
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            _text_block(event.subject, weight="Bolder", size="Medium"),
            {
                "type": "FactSet",
                "facts": [{"title": name, "value": value} for name, value in event.facts]
                + [{"title": label["time"], "value": event.time}],
            },
            *(_text_block(line) for line in _lines(event.text)),
        ],
    }
    if event.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": label["open"], "url": event.link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def body_of(settings: Settings, event: Event) -> dict[str, Any]:
    return teams_body(event) if settings.alert_webhook_format == "teams" else json_body(event)


@dataclass
class Outcome:
    """What came of posting: ``sent``, ``retry`` (not now: try again later) or ``refused`` (for good)."""

    result: str
    status: int | None
    attempts: int
    detail: str
    retry_after: float | None = None


Sleep = Callable[[float], Awaitable[None]]


async def post(
    settings: Settings,
    body: dict[str, Any],
    *,
    attempts: int = ATTEMPTS,
    sleep: Sleep = asyncio.sleep,
) -> Outcome:
    """POST ``body`` to ``ALERT_WEBHOOK_URL``: retried on 408/425/429/5xx and transport faults with
    backoff, Retry-After honoured up to :data:`MAX_WAIT_SECONDS` (a longer one ends the attempts with
    ``retry`` and that wait). Never raises for the target's answers; never names the URL."""
    url = settings.alert_webhook_url
    host = target_host(url)
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    base = settings.retry_delay_ms / 1000
    detail, status, wait = "", None, None
    async with httpx.AsyncHTTPTransport(retries=0) as transport:
        for attempt in range(1, attempts + 1):
            request = httpx.Request(
                "POST",
                url,
                content=content,
                headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": SOURCE},
                extensions={"timeout": TIMEOUT.as_dict()},
            )
            try:
                response = await transport.handle_async_request(request)
                try:
                    text = (await response.aread()).decode("utf-8", "replace")
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                status, wait = None, None
                detail = f"{type(exc).__name__} reaching {host}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return Outcome("sent", status, attempt, f"HTTP {status} from {host}")
                detail = f"HTTP {status} from {host}" + (
                    f": {single_line(text, 200)}" if text.strip() else ""
                )
                if status not in RETRY_STATUSES:
                    return Outcome("refused", status, attempt, detail)
                wait = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt == attempts:
                break
            if wait is not None and wait > MAX_WAIT_SECONDS:
                return Outcome("retry", status, attempt, detail, retry_after=wait)
            delay = wait if wait is not None else backoff_seconds(attempt - 1, base)
            log.warning("webhook post to %s: %s; retrying in %.1fs", host, detail, delay)
            await sleep(delay)
    return Outcome("retry", status, attempts, detail, retry_after=wait)
