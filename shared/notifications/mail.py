"""Mail as people read it: the Jinja2 templates (HTML autoescaped, plain text beside), the customer's
language, addresses, and the settings that decide whether mail is sent."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.domain.roles import role_name
from shared.notifications.wording import mode_label, reason_label, run_label, status_label, zone_name, zone_of
from shared.platform.settings import Settings, SettingsError
from shared.platform.timeutil import parse_optional

TEMPLATES = Path(__file__).resolve().parent / "templates"


ADDRESS = re.compile(r"^[^@\s,;<>\"()\[\]\\]+@[^@\s,;<>\"()\[\]\\]+\.[^@\s,;<>\"()\[\]\\]+$")


def require_sender(settings: Settings) -> str:
    if not settings.notify_sender:
        raise SettingsError(
            "NOTIFY_SENDER is not set: it is required whenever mail is sent (NOTIFY_PARTNER_ADDRESSES, "
            "NOTIFY_CUSTOMERS after removals); set it to the mailbox that sends, e.g. the partner's "
            "notices mailbox"
        )
    return settings.notify_sender


def mail_needed(settings: Settings) -> bool:
    """Whether an evaluation run could send mail with these settings."""
    if settings.notify_partner_addresses:
        return True
    return settings.enforce and (settings.notify_customers or settings.notify_customers_before_removal)


def language_of(culture: str | None) -> str:
    return "ja" if (culture or "").lower().startswith("ja") else "en"


def valid_address(value: str) -> bool:
    return bool(ADDRESS.match(value)) and len(value) <= 254


def single_line(value: Any, limit: int = 255) -> str:
    """Control and format characters (CR, LF, U+2028 ...) become spaces: one line, always."""
    text = "".join(
        " " if unicodedata.category(ch)[0] in ("C", "Z") and ch != " " else ch for ch in str(value)
    )
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit]


def _moment(value: Any) -> datetime | None:
    moment = parse_optional(value) if isinstance(value, str) else value
    return moment if isinstance(moment, datetime) else None


def _date(value: Any, language: str = "en") -> str:
    """The day a moment falls on in the zone of the mail's language (a bare date is that day)."""
    if isinstance(value, str) and len(value) == 10:
        moment = _moment(value)
    else:
        moment = _moment(value)
        moment = moment.astimezone(zone_of(language)) if moment is not None else None
    if moment is None:
        return ""
    return (
        f"{moment.year}年{moment.month}月{moment.day}日" if language == "ja" else moment.strftime("%Y-%m-%d")
    )


def _datetime(value: Any, language: str = "en") -> str:
    """A moment in the zone of the mail's language, the zone named: Japanese mail in JST, English in UTC."""
    moment = _moment(value)
    if moment is None:
        return ""
    moment = moment.astimezone(zone_of(language))
    if language == "ja":
        return f"{moment.year}年{moment.month}月{moment.day}日 {moment:%H:%M} {zone_name(language)}"
    return moment.strftime("%Y-%m-%d %H:%M ") + zone_name(language)


def _days(value: Any) -> str:
    """A count of days in English: "1 day", "20 days"."""
    return f"{value} day" if value == 1 else f"{value} days"


def _plural(value: Any, noun: str) -> str:
    """A count in English: "1 customer", "3 customers"."""
    return f"{value} {noun}" if value == 1 else f"{value} {noun}s"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["oneline"] = single_line
    env.filters["date"] = _date
    env.filters["datetime"] = _datetime
    env.filters["role"] = role_name
    env.filters["days"] = _days
    env.filters["plural"] = _plural
    env.filters["mode"] = mode_label
    env.filters["run"] = run_label
    env.filters["reason"] = reason_label
    env.filters["status"] = status_label
    return env


@dataclass
class Rendered:
    subject: str
    text: str
    html: str


def render(kind: str, language: str, context: dict[str, Any]) -> Rendered:
    env = environment()
    name = kind.replace("-", "_")
    language = language if (TEMPLATES / language / f"{name}.html").exists() else "en"
    ctx = {**context, "lang": language}
    subject = single_line(env.get_template(f"{language}/{name}.subject.txt").render(ctx))
    return Rendered(
        subject=subject,
        text=env.get_template(f"{language}/{name}.txt").render(ctx),
        html=env.get_template(f"{language}/{name}.html").render(ctx),
    )
