"""Typed application settings, read from the environment (app settings in Azure,
``local.settings.json`` values locally).

Built lazily through :func:`get_settings` so tests can set the environment first; nothing here
runs at import time. Every value that differs between environments lives here and nowhere else.
Invalid values raise :class:`SettingsError` with one line a person can act on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# Queue names used by the app; the infrastructure creates each of them and its poison queue.
REMOVALS_QUEUE = "removals"
NOTIFICATIONS_QUEUE = "notifications"
EVALUATION_SHARDS_QUEUE = "evaluation-shards"  # one message per customer shard (shared.evaluation.fanout)
AUDIT_RUNS_QUEUE = "audit-runs"  # one message per on-demand audit (shared.evaluation.audit_runs)
WEBHOOKS_QUEUE = "webhooks"  # one message per webhook delivery (shared.notifications.webhook_worker)
QUEUES = (REMOVALS_QUEUE, NOTIFICATIONS_QUEUE, EVALUATION_SHARDS_QUEUE, AUDIT_RUNS_QUEUE, WEBHOOKS_QUEUE)

WEBHOOK_FORMATS = ("json", "teams")


# The timer trigger's NCRONTAB: six fields, {second} {minute} {hour} {day} {month} {day-of-week}, each a
# list of *, values, ranges and /steps; months and days of the week may be named
# (https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#ncrontab-expressions).
NCRONTAB_FIELDS = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)


def _ncrontab_value(token: str, low: int, names: tuple[str, ...]) -> int:
    """A field value: a number, or a month or weekday name (-1 when it is neither)."""
    if token.isdigit():
        return int(token)
    upper = token.upper()
    return names.index(upper) + low if upper in names else -1


def ncrontab_problem(expression: str) -> str | None:
    """What is wrong with a six-field NCRONTAB expression, or None."""
    fields_ = expression.split()
    if len(fields_) != 6:
        return f"{len(fields_)} fields, not 6: second minute hour day month day-of-week"
    for text, (what, low, high, names) in zip(fields_, NCRONTAB_FIELDS, strict=True):
        for item in text.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) < 1):
                return f"{what}: step {step!r}"
            if base == "*":
                continue
            bounds = [_ncrontab_value(token, low, names) for token in base.split("-", 1)]
            if not all(low <= b <= high for b in bounds):
                return f"{what}: {item!r} is not within {low}-{high}"
            if bounds != sorted(bounds):
                return f"{what}: range {item!r} runs backwards"
    return None


class SettingsError(ValueError):
    """A setting is missing or malformed. The message names the setting and what is wrong."""


def _env_name(f: Any) -> str:
    return str(f.metadata["env"])


def _setting(env: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    # --- storage -------------------------------------------------------------------------------
    storage_connection: str = _setting(
        "AzureWebJobsStorage",
        "",
        "Storage connection string (Azurite locally); empty in Azure, where "
        "AzureWebJobsStorage__tableServiceUri / __queueServiceUri with the managed identity are used",
    )
    table_service_uri: str = _setting(
        "AzureWebJobsStorage__tableServiceUri", "", "Table endpoint (identity-based)"
    )
    queue_service_uri: str = _setting(
        "AzureWebJobsStorage__queueServiceUri", "", "Queue endpoint (identity-based)"
    )
    blob_service_uri: str = _setting(
        "AzureWebJobsStorage__blobServiceUri",
        "",
        "Blob endpoint (identity-based): the audit trail's immutable copy",
    )
    storage_prefix: str = _setting(
        "STORAGE_PREFIX", "", "Prefix for table and queue names; lets tests share one Azurite"
    )

    # --- Microsoft endpoints -------------------------------------------------------------------
    partner_tenant_id: str = _setting(
        "PARTNER_TENANT_ID", "", "Partner tenant id; read from Graph /organization when empty"
    )
    graph_base_url: str = _setting("GRAPH_BASE_URL", "https://graph.microsoft.com", "Graph root (no version)")
    partner_center_base_url: str = _setting(
        "PARTNER_CENTER_BASE_URL", "https://api.partnercenter.microsoft.com", "Partner Center REST root"
    )
    customer_admin_base_url: str = _setting(
        "CUSTOMER_ADMIN_BASE_URL",
        "https://traf-pcsvcadmin-prod.trafficmanager.net/CustomerServiceAdminApi/Web",
        "Partner Center CustomerServiceAdminApi root (delegatedAdminCustomers)",
    )
    resource_manager_base_url: str = _setting(
        "RESOURCE_MANAGER_BASE_URL",
        "https://management.azure.com",
        "Azure Resource Manager root (the partner's Azure role assignments in customer tenants)",
    )
    emulator_url: str = _setting(
        "EMULATOR_URL", "", "Development only: point every Microsoft endpoint at this emulator root"
    )
    azure_client_id: str = _setting(
        "AZURE_CLIENT_ID",
        "",
        "Client id of the user-assigned managed identity the app runs as: storage, Key Vault, Graph reads",
    )
    graph_write_client_id: str = _setting(
        "GRAPH_WRITE_CLIENT_ID",
        "",
        "Client id of the managed identity that makes the GDAP writes (terminate, requests, access "
        "assignments); empty: AZURE_CLIENT_ID's",
    )
    mail_client_id: str = _setting(
        "MAIL_CLIENT_ID",
        "",
        "Client id of the managed identity that sends mail as NOTIFY_SENDER; empty: AZURE_CLIENT_ID's",
    )
    partner_center_app_id: str = _setting(
        "PARTNER_CENTER_APP_ID", "", "App registration used for Partner Center App+User calls (DAP)"
    )
    partner_center_app_secret: str = _setting(
        "PARTNER_CENTER_APP_SECRET", "", "Its secret (a Key Vault reference in Azure)"
    )
    partner_center_refresh_token: str = _setting(
        "PARTNER_CENTER_REFRESH_TOKEN", "", "App+User refresh token (a Key Vault reference in Azure)"
    )
    partner_center_refresh_token_secret_uri: str = _setting(
        "PARTNER_CENTER_REFRESH_TOKEN_SECRET_URI",
        "",
        "Key Vault secret holding that refresh token "
        "(https://<vault>.vault.azure.net/secrets/<name>): read on first use, and every rotated token is "
        "written back as a new version through the app's identity",
    )
    dap_enabled: bool = _setting(
        "DAP_ENABLED", True, "Read and remove legacy DAP through Partner Center (needs App+User credentials)"
    )

    # --- schedules (NCRONTAB, referenced as %SETTING% in the timer decorators) -----------------
    relationship_sync_schedule: str = _setting(
        "RELATIONSHIP_SYNC_SCHEDULE", "0 0 * * * *", "When relationships are synced (hourly)"
    )
    signin_ingest_schedule: str = _setting(
        "SIGNIN_INGEST_SCHEDULE", "0 */15 * * * *", "When sign-ins are ingested (every 15 minutes)"
    )
    evaluation_schedule: str = _setting(
        "EVALUATION_SCHEDULE", "0 30 6 * * *", "When the policy is evaluated (daily, 06:30 UTC)"
    )

    # --- ingestion ------------------------------------------------------------------------------
    signin_backfill_days: int = _setting(
        "SIGNIN_BACKFILL_DAYS", 30, "How far back the first ingestion reads; never more than log retention"
    )
    signin_overlap_minutes: int = _setting(
        "SIGNIN_OVERLAP_MINUTES", 120, "Each ingestion re-reads this much before its checkpoint (late logs)"
    )
    signin_slice_hours: int = _setting(
        "SIGNIN_SLICE_HOURS", 24, "Ingestion reads the log in time slices of this size, checkpointing each"
    )
    signin_pace: str = _setting(
        "SIGNIN_PACE",
        "5/10s",
        "Sign-in log requests started per window (N/Ts: Graph's limit is 5 per 10 s "
        "per app per tenant); off: as fast as they are answered",
    )
    signin_log_latency_minutes: int = _setting(
        "SIGNIN_LOG_LATENCY_MINUTES",
        15,
        "How late Entra may write a sign-in to the log: removals wait this "
        "long past their decision before their last check, and ingestion re-reads at least this much",
    )
    # --- the Entra sign-in archive (diagnostic settings -> a storage account) ----------------------
    signin_archive_connection: str = _setting(
        "SIGNIN_ARCHIVE_CONNECTION",
        "",
        "Optional: the storage account Entra's diagnostic settings archive sign-in logs to, as a "
        "connection string (Azurite locally) or its blob endpoint https://<account>.blob.core.windows.net "
        "(read with the app's identity, which needs Storage Blob Data Reader there)",
    )
    signin_archive_containers: tuple[str, ...] = _setting(
        "SIGNIN_ARCHIVE_CONTAINERS",
        ("insights-logs-signinlogs", "insights-logs-noninteractiveusersigninlogs"),
        "The archive's containers to read, one per sign-in category (Azure names them insights-logs-"
        "<category>): an hour counts as read only when each holds its blob",
    )
    signin_archive_quiet_hours: int = _setting(
        "SIGNIN_ARCHIVE_QUIET_HOURS",
        0,
        "Hours a container may lack a blob while another container has the hour's blob and it has "
        "blobs that close before and after (a category with no sign-ins that hour); 0: none",
    )
    signin_source: str = _setting(
        "SIGNIN_SOURCE",
        "graph",
        "Where ongoing ingestion reads sign-ins: graph (the Graph log), or archive (the archive, "
        "also on each new blob); the last check before a removal always asks Graph",
    )
    host_clock_max_skew_minutes: int = _setting(
        "HOST_CLOCK_MAX_SKEW_MINUTES",
        5,
        "Ingestion refuses to run when this host's clock and Microsoft's (the "
        "Date header) disagree by more than this: the product reads Microsoft's time, but its leases and run "
        "records are this host's",
    )
    retry_delay_ms: int = _setting(
        "RETRY_DELAY_MS",
        3000,
        "Base delay between retries of a failed Microsoft request when the answer "
        "names no Retry-After (Partner Center uses a third of it)",
    )
    gdap_poll_seconds: int = _setting(
        "GDAP_POLL_SECONDS",
        10,
        "Wait between polls of a GDAP long-running operation that names no Retry-After",
    )

    # --- policy (docs/definitions.md section 4) ------------------------------------------------------------
    policy_mode: str = _setting("POLICY_MODE", "report", "report: never remove; enforce: remove candidates")
    recommend_after_days: int = _setting("RECOMMEND_AFTER_DAYS", 60, "Recommend removal after this many days")
    remove_after_days: int = _setting("REMOVE_AFTER_DAYS", 90, "Removal candidate after this many days")
    warn_days_before_removal: int = _setting(
        "WARN_DAYS_BEFORE_REMOVAL", 14, "Warn this many days before a customer becomes a candidate"
    )
    removal_scope: tuple[str, ...] = _setting(
        "REMOVAL_SCOPE",
        ("dap", "gdap"),
        "Relationship types removed; azure also deletes the partner's Azure role assignments",
    )
    max_removals_per_run: int = _setting(
        "MAX_REMOVALS_PER_RUN", 25, "Circuit breaker: more candidates than this and nothing is removed"
    )
    excluded_tenants: frozenset[str] = _setting(
        "EXCLUDED_TENANTS", frozenset(), "Customer tenant ids never removed automatically"
    )
    ingestion_stale_hours: int = _setting(
        "INGESTION_STALE_HOURS", 6, "No enforcement when the last successful ingestion is older than this"
    )
    evaluation_shard_threshold: int = _setting(
        "EVALUATION_SHARD_THRESHOLD",
        20000,
        "The evaluation fans out to one queue message per customer shard "
        "when the previous evaluation had at least this many customers (0: always)",
    )

    # --- notifications ----------------------------------------------------------------------------
    notify_sender: str = _setting(
        "NOTIFY_SENDER", "", "Mailbox that sends mail (default: partner senderMailbox)"
    )
    notify_partner_addresses: tuple[str, ...] = _setting(
        "NOTIFY_PARTNER_ADDRESSES", (), "Partner admin addresses for warnings, digests and alerts"
    )
    notify_customers: bool = _setting(
        "NOTIFY_CUSTOMERS", True, "Mail the customer's contacts after a removal"
    )
    reseller_digest_contacts: str = _setting(
        "RESELLER_DIGEST_CONTACTS",
        "",
        "Optional, indirect providers: each enforcement digest also to an indirect reseller's contacts, "
        "with only that reseller's customers: '<reseller tenant id>=a@x.example;b@x.example, <id>=...'",
    )
    notify_customers_before_removal: bool = _setting(
        "NOTIFY_CUSTOMERS_BEFORE_REMOVAL", False, "Also warn customers ahead of removal"
    )
    notify_partner_language: str = _setting(
        "NOTIFY_PARTNER_LANGUAGE",
        "en",
        "Language of the partner admins' mail: en or ja (customers get "
        "theirs from the billing-profile culture)",
    )

    # --- webhook (shared.notifications.webhook) ----------------------------------------------------
    alert_webhook_url: str = _setting(
        "ALERT_WEBHOOK_URL",
        "",
        "Webhook that also receives the partner admins' alerts, warnings and digests (a secret: a Key "
        "Vault reference in Azure; never logged); empty: mail only",
    )
    alert_webhook_format: str = _setting(
        "ALERT_WEBHOOK_FORMAT",
        "json",
        "Body posted to ALERT_WEBHOOK_URL: json (the product's own event document) or teams (an "
        "Adaptive Card message for a Teams Workflows webhook)",
    )
    portal_url: str = _setting(
        "PORTAL_URL",
        "",
        "Portal address webhook messages link to; empty: https://<WEBSITE_HOSTNAME>/ where App Service "
        "sets it, else no link",
    )

    # --- GDAP (shared.gdap) ---------------------------------------------------------------------------
    gdap_group_admin_agents: str = _setting(
        "GDAP_GROUP_ADMINAGENTS",
        "",
        "Partner security group id for the templates' AdminAgents group; "
        "empty: looked up in Graph by display name. Another template group name N reads GDAP_GROUP_<N>",
    )
    gdap_group_helpdesk_agents: str = _setting(
        "GDAP_GROUP_HELPDESKAGENTS",
        "",
        "Partner security group id for the templates' HelpdeskAgents group; "
        "empty: looked up in Graph by display name",
    )

    # --- Agents: standing access nobody uses (shared.agents) ----------------------------------------
    agent_inactive_days: int = _setting(
        "AGENT_INACTIVE_DAYS",
        90,
        "A partner agent with group membership and no sign-in into any customer for this many days "
        "(proven by the stored sign-in log) is flagged idle, with a recommendation to remove it from the group",
    )
    agent_removal_mode: str = _setting(
        "AGENT_REMOVAL_MODE",
        "off",
        "off: idle agents are only flagged and removed from a group by a person; enforce: each evaluation "
        "also removes them from every group that gives them access",
    )

    # --- derived helpers ------------------------------------------------------------------------
    @property
    def graph_root(self) -> str:
        return (self.emulator_url or self.graph_base_url).rstrip("/")

    @property
    def partner_center_root(self) -> str:
        if self.emulator_url:
            return self.emulator_url.rstrip("/") + "/partnercenter"
        return self.partner_center_base_url.rstrip("/")

    @property
    def customer_admin_root(self) -> str:
        if self.emulator_url:
            return self.emulator_url.rstrip("/") + "/customeradmin"
        return self.customer_admin_base_url.rstrip("/")

    @property
    def resource_manager_root(self) -> str:
        if self.emulator_url:
            return self.emulator_url.rstrip("/") + "/arm"
        return self.resource_manager_base_url.rstrip("/")

    @property
    def enforce(self) -> bool:
        return self.policy_mode == "enforce"

    def table_name(self, name: str) -> str:
        return f"{self.storage_prefix}{name}"

    def queue_name(self, name: str) -> str:
        return f"{self.storage_prefix.lower()}{name}"

    @classmethod
    def setting_names(cls) -> list[str]:
        """Every environment variable the settings class reads (the infrastructure sets each)."""
        return [_env_name(f) for f in fields(cls)]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = _env_name(f)
            raw = source.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(name, raw.strip(), f.default)
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def reseller_contacts(self) -> dict[str, tuple[str, ...]]:
        """RESELLER_DIGEST_CONTACTS as reseller tenant id (lower case) -> addresses."""
        out: dict[str, tuple[str, ...]] = {}
        for part in (p.strip() for p in self.reseller_digest_contacts.split(",")):
            if not part:
                continue
            reseller, _, addresses = part.partition("=")
            reseller = reseller.strip().lower()
            listed = tuple(a.strip() for a in addresses.split(";") if a.strip())
            if not GUID_RE.match(reseller) or not listed:
                raise SettingsError(
                    f"RESELLER_DIGEST_CONTACTS: {part!r} is not '<reseller tenant id>=address;address'"
                )
            out[reseller] = out.get(reseller, ()) + listed
        return out

    def validate(self) -> None:
        if self.policy_mode not in ("report", "enforce"):
            raise SettingsError(f"POLICY_MODE must be 'report' or 'enforce', not {self.policy_mode!r}")
        if self.agent_removal_mode not in ("off", "enforce"):
            raise SettingsError(
                f"AGENT_REMOVAL_MODE must be 'off' or 'enforce', not {self.agent_removal_mode!r}"
            )
        if self.alert_webhook_format not in WEBHOOK_FORMATS:
            raise SettingsError(
                f"ALERT_WEBHOOK_FORMAT must be 'json' or 'teams', not {self.alert_webhook_format!r}"
            )
        if self.alert_webhook_url:
            problem = webhook_url_problem(self.alert_webhook_url)
            if problem:  # the value itself is a secret: never repeated
                raise SettingsError(f"ALERT_WEBHOOK_URL {problem}")
        if self.portal_url and not re.match(r"^https?://[^/\s]+", self.portal_url):
            raise SettingsError(f"PORTAL_URL must be an http(s) URL, not {self.portal_url!r}")
        if self.notify_partner_language not in ("en", "ja"):
            raise SettingsError(
                f"NOTIFY_PARTNER_LANGUAGE must be 'en' or 'ja', not {self.notify_partner_language!r}"
            )
        for name, value, low, high in (
            ("SIGNIN_BACKFILL_DAYS", self.signin_backfill_days, 1, 3650),
            ("SIGNIN_OVERLAP_MINUTES", self.signin_overlap_minutes, 0, 7 * 24 * 60),
            ("SIGNIN_SLICE_HOURS", self.signin_slice_hours, 1, 24),
            ("RECOMMEND_AFTER_DAYS", self.recommend_after_days, 1, 3650),
            ("REMOVE_AFTER_DAYS", self.remove_after_days, 1, 3650),
            ("WARN_DAYS_BEFORE_REMOVAL", self.warn_days_before_removal, 0, 365),
            ("MAX_REMOVALS_PER_RUN", self.max_removals_per_run, 0, 100000),
            ("INGESTION_STALE_HOURS", self.ingestion_stale_hours, 1, 24 * 365),
            ("EVALUATION_SHARD_THRESHOLD", self.evaluation_shard_threshold, 0, 10_000_000),
            ("SIGNIN_LOG_LATENCY_MINUTES", self.signin_log_latency_minutes, 0, 24 * 60),
            ("RETRY_DELAY_MS", self.retry_delay_ms, 0, 600_000),
            ("HOST_CLOCK_MAX_SKEW_MINUTES", self.host_clock_max_skew_minutes, 1, 100 * 365 * 24 * 60),
            ("GDAP_POLL_SECONDS", self.gdap_poll_seconds, 0, 3600),
            ("AGENT_INACTIVE_DAYS", self.agent_inactive_days, 1, 3650),
            ("SIGNIN_ARCHIVE_QUIET_HOURS", self.signin_archive_quiet_hours, 0, 7 * 24),
        ):
            if not low <= value <= high:
                raise SettingsError(f"{name} must be between {low} and {high}, not {value}")
        self.sign_in_pace()  # SettingsError when malformed
        if self.remove_after_days < self.recommend_after_days:
            raise SettingsError(
                f"REMOVE_AFTER_DAYS ({self.remove_after_days}) must be at least RECOMMEND_AFTER_DAYS "
                f"({self.recommend_after_days}): a customer is recommended for removal before it is removed"
            )
        for name, schedule in (
            ("RELATIONSHIP_SYNC_SCHEDULE", self.relationship_sync_schedule),
            ("SIGNIN_INGEST_SCHEDULE", self.signin_ingest_schedule),
            ("EVALUATION_SCHEDULE", self.evaluation_schedule),
        ):
            problem = ncrontab_problem(schedule)
            if problem:
                raise SettingsError(f"{name}: {schedule!r} is not an NCRONTAB schedule ({problem})")
        if self.signin_overlap_minutes < self.signin_log_latency_minutes:
            raise SettingsError(
                f"SIGNIN_OVERLAP_MINUTES ({self.signin_overlap_minutes}) must be at least "
                f"SIGNIN_LOG_LATENCY_MINUTES ({self.signin_log_latency_minutes}): sign-ins "
                "Entra writes late would otherwise never be read"
            )
        if self.signin_source not in ("graph", "archive"):
            raise SettingsError(f"SIGNIN_SOURCE must be 'graph' or 'archive', not {self.signin_source!r}")
        if self.signin_source == "archive" and not self.signin_archive_connection:
            raise SettingsError("SIGNIN_SOURCE=archive needs SIGNIN_ARCHIVE_CONNECTION (the archive account)")
        for container in self.signin_archive_containers:
            if not re.match(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$", container):
                raise SettingsError(f"SIGNIN_ARCHIVE_CONTAINERS: {container!r} is not a blob container name")
        if self.signin_archive_connection and not self.signin_archive_containers:
            raise SettingsError("SIGNIN_ARCHIVE_CONTAINERS names no container")
        if 24 % self.signin_slice_hours:
            raise SettingsError(f"SIGNIN_SLICE_HOURS must divide 24, not {self.signin_slice_hours}")
        unknown = set(self.removal_scope) - {"dap", "gdap", "azure"}
        if unknown or not set(self.removal_scope) & {"dap", "gdap"}:
            raise SettingsError(
                "REMOVAL_SCOPE must be a comma-separated subset of dap,gdap,azure naming dap or gdap "
                f"(azure goes with a relationship's removal), not {','.join(self.removal_scope)!r}"
            )
        for tenant in self.excluded_tenants:
            if not GUID_RE.match(tenant):
                raise SettingsError(f"EXCLUDED_TENANTS: {tenant!r} is not a tenant id (GUID)")
        if self.partner_tenant_id and not GUID_RE.match(self.partner_tenant_id):
            raise SettingsError(f"PARTNER_TENANT_ID: {self.partner_tenant_id!r} is not a tenant id (GUID)")
        for group_setting, group_id in (
            ("GDAP_GROUP_ADMINAGENTS", self.gdap_group_admin_agents),
            ("GDAP_GROUP_HELPDESKAGENTS", self.gdap_group_helpdesk_agents),
        ):
            if group_id and not GUID_RE.match(group_id):
                raise SettingsError(f"{group_setting}: {group_id!r} is not a security group id (GUID)")
        contacts = self.reseller_contacts  # raises SettingsError when malformed
        for address in (
            *(a for addresses in contacts.values() for a in addresses),
            *self.notify_partner_addresses,
            *([self.notify_sender] if self.notify_sender else []),
        ):
            if not _looks_like_address(address):
                raise SettingsError(
                    f"{address!r} is not an e-mail address "
                    "(NOTIFY_SENDER / NOTIFY_PARTNER_ADDRESSES / RESELLER_DIGEST_CONTACTS)"
                )
        if self.storage_prefix and not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,19}", self.storage_prefix):
            raise SettingsError(
                "STORAGE_PREFIX must be letters and digits, starting with a letter (at most 20)"
            )
        for name, url in (
            ("GRAPH_BASE_URL", self.graph_base_url),
            ("EMULATOR_URL", self.emulator_url),
            ("PARTNER_CENTER_BASE_URL", self.partner_center_base_url),
            ("CUSTOMER_ADMIN_BASE_URL", self.customer_admin_base_url),
            ("RESOURCE_MANAGER_BASE_URL", self.resource_manager_base_url),
        ):
            if url and not re.match(r"^https?://[^/\s]+", url):
                raise SettingsError(f"{name} must be an http(s) URL, not {url!r}")
        secret_uri = self.partner_center_refresh_token_secret_uri
        if secret_uri and not re.fullmatch(
            r"https?://[^/\s]+(?:/[^/\s]+)*/secrets/[0-9A-Za-z-]{1,127}/?", secret_uri
        ):
            raise SettingsError(
                "PARTNER_CENTER_REFRESH_TOKEN_SECRET_URI must be a Key Vault secret URI without "
                f"version (https://<vault>.vault.azure.net/secrets/<name>), not {secret_uri!r}"
            )

    def sign_in_pace(self) -> tuple[int, float] | None:
        """``SIGNIN_PACE`` as (requests, per seconds), or None for ``off``."""
        text = self.signin_pace.strip().lower()
        if text == "off":
            return None
        match = re.fullmatch(r"(\d{1,6})\s*/\s*(\d{1,6}(?:\.\d{1,3})?)\s*s", text)
        if match is None or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
            raise SettingsError(f"SIGNIN_PACE must be N/Ts (e.g. 5/10s) or off, not {self.signin_pace!r}")
        return int(match.group(1)), float(match.group(2))

    def describe(self) -> dict[str, Any]:
        """Settings without secrets, for logs and the portal."""
        hidden = {
            "storage_connection",
            "partner_center_app_secret",
            "partner_center_refresh_token",
            "alert_webhook_url",
        }
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in hidden:
                value = "***" if value else ""
            elif isinstance(value, frozenset | tuple):
                value = sorted(value) if isinstance(value, frozenset) else list(value)
            out[_env_name(f)] = value
        return out


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def webhook_url_problem(url: str) -> str | None:
    """What is wrong with a webhook URL (without repeating it: it carries its own credential), or None.
    https only; plain http only to this machine (a local receiver)."""
    if url.startswith("@Microsoft.KeyVault("):
        # App Service leaves a reference it cannot resolve in place of the value.
        return (
            "is a Key Vault reference App Service could not resolve: the secret is missing or the "
            "app's identity cannot read it (docs/deploy.md, Alert webhook)"
        )
    match = re.fullmatch(r"(https?)://([^/?#\s@]+)([/?][^\s]*)?", url)
    if match is None:
        return "is not an http(s) URL"
    scheme, host = match.group(1), match.group(2).lower()
    if scheme == "http" and host.rsplit(":", 1)[0] not in LOOPBACK_HOSTS:
        return "must use https (plain http only to 127.0.0.1 or localhost)"
    return None


def _looks_like_address(value: str) -> bool:
    return bool(re.fullmatch(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+|[^@\s,;<>\"]+@localhost", value))


def _parse(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, not {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if isinstance(default, frozenset):
        return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())
    if isinstance(default, tuple):
        return tuple(
            part.strip().lower() if name == "REMOVAL_SCOPE" else part.strip()
            for part in raw.split(",")
            if part.strip()
        )
    return raw


def load_local_settings(path: Path) -> dict[str, str]:
    """The ``Values`` of a local.settings.json, as the Functions host would export them."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read local settings ({exc})") from None
    values = document.get("Values", {}) if isinstance(document, dict) else {}
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: 'Values' must be an object")
    return {str(k): str(v) for k, v in values.items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use (after tests or the CLI set the environment)."""
    env = dict(os.environ)
    local = Path("local.settings.json")
    if local.exists():
        for key, value in load_local_settings(local).items():
            env.setdefault(key, value)
    return Settings.from_env(env)
