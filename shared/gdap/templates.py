"""GDAP role templates (``gdap_templates.json``): the roles, duration, auto-extend and access assignments a
new relationship asks for, validated once."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from shared.domain.rules import includes_global_administrator
from shared.platform.settings import GUID_RE, load_local_settings

TEMPLATES_PATH = Path(__file__).resolve().parent / "gdap_templates.json"


AUTO_EXTEND_DURATION = "P180D"


NO_AUTO_EXTEND = "PT0S"


MAX_DURATION_DAYS = 730


MAX_DISPLAY_NAME = 50


GROUP_SETTING_PREFIX = "GDAP_GROUP_"


TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,23}")  # leaves room in a 50-character relationship name


DURATION = re.compile(r"P(\d{1,4})D")


class TemplateError(ValueError):
    """The role template file is not valid: the message names the template and what is wrong."""


@dataclass(frozen=True)
class AssignmentTemplate:
    group: str  # a partner security group id, or a name (GDAP_GROUP_<NAME>, else Graph)
    roles: tuple[str, ...]


@dataclass(frozen=True)
class RoleTemplate:
    name: str
    display_name: dict[str, str]
    description: dict[str, str]
    roles: tuple[str, ...]
    duration: str
    auto_extend: bool
    access_assignments: tuple[AssignmentTemplate, ...]

    @property
    def includes_global_administrator(self) -> bool:
        return includes_global_administrator(self.roles)

    @property
    def auto_extend_duration(self) -> str:
        return AUTO_EXTEND_DURATION if self.auto_extend else NO_AUTO_EXTEND

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "displayName": dict(self.display_name),
            "description": dict(self.description),
            "roles": list(self.roles),
            "duration": self.duration,
            "durationDays": duration_days(self.duration),
            "autoExtend": self.auto_extend,
            "autoExtendDuration": self.auto_extend_duration,
            "includesGlobalAdministrator": self.includes_global_administrator,
            "accessAssignments": [
                {"group": a.group, "roles": list(a.roles)} for a in self.access_assignments
            ],
        }


def duration_days(duration: str) -> int:
    match = DURATION.fullmatch(duration)
    if match is None:
        raise ValueError(f"not a duration in days (P<n>D): {duration!r}")
    return int(match.group(1))


def _text(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not isinstance(value.get("en"), str) or not value["en"].strip():
        raise TemplateError(
            f'{where} must be an object with at least an English text ({{"en": ..., "ja": ...}})'
        )
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)}


def _role_ids(value: Any, where: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(r, str) and GUID_RE.match(r) for r in value)
    ):
        raise TemplateError(f"{where} must be a non-empty list of role definition ids (GUIDs)")
    roles = tuple(dict.fromkeys(r.lower() for r in value))
    return roles


def parse_template(item: Any) -> RoleTemplate:
    if not isinstance(item, dict):
        raise TemplateError("every template is a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not TEMPLATE_NAME.fullmatch(name):
        raise TemplateError(
            f"template name {name!r}: lowercase letters, digits and '-', at most 24 characters"
        )
    where = f"template {name}"
    roles = _role_ids(item.get("roles"), f"{where}: roles")
    duration = item.get("duration")
    if (
        not isinstance(duration, str)
        or DURATION.fullmatch(duration) is None
        or not 1 <= duration_days(duration) <= MAX_DURATION_DAYS
    ):
        raise TemplateError(f"{where}: duration must be P1D..P{MAX_DURATION_DAYS}D, not {duration!r}")
    auto_extend = item.get("autoExtend", False)
    if not isinstance(auto_extend, bool):
        raise TemplateError(f"{where}: autoExtend must be true or false")
    if auto_extend and includes_global_administrator(roles):
        raise TemplateError(
            f"{where}: a relationship with Global Administrator cannot auto-extend (autoExtend must be false)"
        )
    assignments = []
    raw_assignments = item.get("accessAssignments") or []
    if not isinstance(raw_assignments, list):
        raise TemplateError(f"{where}: accessAssignments must be a list")
    seen: set[str] = set()
    for n, raw in enumerate(raw_assignments):
        if not isinstance(raw, dict) or not isinstance(raw.get("group"), str) or not raw["group"].strip():
            raise TemplateError(
                f"{where}: accessAssignments[{n}] needs a group (a security group id or name)"
            )
        group = raw["group"].strip()
        a_roles = _role_ids(raw.get("roles"), f"{where}: accessAssignments[{n}].roles")
        extra = [r for r in a_roles if r not in roles]
        if extra:
            raise TemplateError(
                f"{where}: accessAssignments[{n}] has roles the relationship does not ask for: "
                f"{', '.join(extra)}"
            )
        if group.lower() in seen:
            raise TemplateError(f"{where}: the group {group} is assigned twice")
        seen.add(group.lower())
        assignments.append(AssignmentTemplate(group, a_roles))
    return RoleTemplate(
        name=name,
        display_name=_text(item.get("displayName"), f"{where}: displayName"),
        description=_text(item.get("description") or {"en": name}, f"{where}: description"),
        roles=roles,
        duration=duration,
        auto_extend=auto_extend,
        access_assignments=tuple(assignments),
    )


def parse_templates(document: Any) -> dict[str, RoleTemplate]:
    items = document.get("templates") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise TemplateError('the template file needs a non-empty "templates" list')
    out: dict[str, RoleTemplate] = {}
    for item in items:
        template = parse_template(item)
        if template.name in out:
            raise TemplateError(f"template {template.name} is defined twice")
        out[template.name] = template
    return out


def load_templates(path: Path | None = None) -> dict[str, RoleTemplate]:
    if path is None:
        return _repo_templates()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TemplateError(f"{path}: cannot read role templates ({exc})") from None
    return parse_templates(document)


@lru_cache(maxsize=1)
def _repo_templates() -> dict[str, RoleTemplate]:
    return load_templates(TEMPLATES_PATH)


def group_settings_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``GDAP_GROUP_<NAME>`` values (environment first, then local.settings.json, like the settings)."""
    values = dict(os.environ if env is None else env)
    local = Path("local.settings.json")
    if env is None and local.exists():
        for key, value in load_local_settings(local).items():
            values.setdefault(key, value)
    return {
        k.upper(): v.strip()
        for k, v in values.items()
        if k.upper().startswith(GROUP_SETTING_PREFIX) and v.strip()
    }


def group_setting_name(group: str) -> str:
    return GROUP_SETTING_PREFIX + re.sub(r"[^A-Z0-9]", "_", group.upper())
