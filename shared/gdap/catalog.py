"""The role templates and partner security groups a run works with: :class:`RoleCatalog` holds the templates
(the repo's ``gdap_templates.json`` unless given) and the ``GDAP_GROUP_<NAME>`` settings, names a template
or refuses with GdapError ``unknownTemplate``, and resolves a template's group to a security group id (the
template's own id, the setting, else Graph by display name)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.gdap.base import GdapError
from shared.gdap.templates import RoleTemplate, group_setting_name, group_settings_from_env, load_templates
from shared.platform.retry import UpstreamError
from shared.platform.settings import GUID_RE, Settings

if TYPE_CHECKING:
    from shared.microsoft.graph import GraphClient


def template_named(templates: Mapping[str, RoleTemplate], name: Any) -> RoleTemplate:
    """The template called ``name``, matched case-insensitively ("helpdesk" is "Helpdesk"); else GdapError
    ``unknownTemplate`` naming the known ones."""
    template = None
    if isinstance(name, str):
        template = templates.get(name) or next(
            (t for key, t in templates.items() if key.casefold() == name.strip().casefold()), None
        )
    if template is None:
        raise GdapError(
            f"unknown template {str(name)[:40]!r}; known: {', '.join(templates)}",
            code="unknownTemplate",
        )
    return template


@dataclass(frozen=True)
class RoleCatalog:
    templates: dict[str, RoleTemplate]
    group_settings: dict[str, str]  # GDAP_GROUP_<NAME> -> security group id

    def template(self, name: Any) -> RoleTemplate:
        return template_named(self.templates, name)

    def template_list(self) -> list[dict[str, Any]]:
        return [t.to_json() for t in self.templates.values()]

    async def resolve_group(self, graph: GraphClient, group: str) -> str:
        """A partner security group id: the template's own id, GDAP_GROUP_<NAME>, or Graph by display name."""
        if GUID_RE.match(group):
            return group.lower()
        setting = group_setting_name(group)
        configured = self.group_settings.get(setting)
        if configured:
            if not GUID_RE.match(configured):
                raise GdapError(
                    f"{setting} must be a security group id (GUID), not {configured!r}",
                    status=503,
                    code="notConfigured",
                )
            return configured.lower()
        try:
            found = await graph.find_groups(group)
        except UpstreamError as exc:
            raise GdapError(
                f"cannot resolve the partner security group {group!r}: set {setting} to its id ({exc})",
                status=503,
                code="notConfigured",
            ) from None
        ids = {str(g.get("id", "")).lower() for g in found if g.get("id")}
        if len(ids) != 1:
            raise GdapError(
                f"{len(ids)} partner security groups are named {group!r}: set {setting} to the id "
                "of the one to use",
                status=503,
                code="notConfigured",
            )
        return ids.pop()


def role_catalog(
    settings: Settings,
    *,
    templates: dict[str, RoleTemplate] | None = None,
    group_settings: Mapping[str, str] | None = None,
) -> RoleCatalog:
    """The catalog of this run (TemplateError when the repo's template file is not valid)."""
    templates = templates if templates is not None else load_templates()
    if group_settings is None:
        # The two groups of the bundled templates are settings (and Bicep parameters); a custom
        # template's group N is read from GDAP_GROUP_<N> like them.
        group_settings = {
            **group_settings_from_env(),
            **{
                name: value
                for name, value in (
                    ("GDAP_GROUP_ADMINAGENTS", settings.gdap_group_admin_agents),
                    ("GDAP_GROUP_HELPDESKAGENTS", settings.gdap_group_helpdesk_agents),
                )
                if value
            },
        }
    return RoleCatalog(templates=templates, group_settings=dict(group_settings))
