"""Custom events and metrics for Azure Monitor: what the workbook and the alert rules read.

In Azure the function app has ``APPLICATIONINSIGHTS_CONNECTION_STRING`` (and
``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``, because the component only accepts Entra-authenticated
ingestion); :func:`configure_telemetry` then wires the azure-monitor-opentelemetry distro, which
reads both and exports with the managed identity. Locally neither is set and every call here is a
no-op apart from a ``logging`` debug line, so the command line and the tests need neither the package
nor a network.

Events become ``customEvents`` rows (the distro turns a log record carrying the
``microsoft.custom_event.name`` attribute into an event); their properties become
``customDimensions``. Metrics are OpenTelemetry histograms and become ``customMetrics`` rows.
The event names are the ``EVENT_*`` constants below; infra/modules/workbook.json and
infra/modules/alerts.bicep query exactly these names (tests/test_infra.py checks that).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

# --- event names (the workbook and the alert rules query these) ----------------------------------
EVENT_INGESTION_COMPLETED = "IngestionCompleted"  # signIns, slices, lagMinutes
EVENT_INGESTION_FAILED = "IngestionFailed"  # reason
EVENT_INGESTION_STALE = "IngestionStale"  # lastIngestionAt, hours
EVENT_EVALUATION_COMPLETED = "EvaluationCompleted"  # customers, bucket_active, bucket_30_60,
#                                                      bucket_61_90, bucket_90_plus, candidates, mode
EVENT_CIRCUIT_BREAKER_TRIPPED = "CircuitBreakerTripped"  # candidates, limit
EVENT_REMOVAL_REQUESTED = "RemovalRequested"  # tenantId, type, reason
EVENT_REMOVAL_COMPLETED = "RemovalCompleted"  # tenantId, type, reason
EVENT_REMOVAL_SKIPPED = "RemovalSkipped"  # tenantId, type, reason
EVENT_REMOVAL_FAILED = "RemovalFailed"  # tenantId, type, reason
EVENT_POISON_MESSAGE = "PoisonMessage"  # queue
EVENT_MAIL_FAILED = "MailFailed"  # kind, reason (a mail that could not be sent, or the sender refused)

EVENT_NAMES = frozenset(
    {
        EVENT_INGESTION_COMPLETED,
        EVENT_INGESTION_FAILED,
        EVENT_INGESTION_STALE,
        EVENT_EVALUATION_COMPLETED,
        EVENT_CIRCUIT_BREAKER_TRIPPED,
        EVENT_REMOVAL_REQUESTED,
        EVENT_REMOVAL_COMPLETED,
        EVENT_REMOVAL_SKIPPED,
        EVENT_REMOVAL_FAILED,
        EVENT_POISON_MESSAGE,
        EVENT_MAIL_FAILED,
    }
)

# The log record attribute the Azure Monitor exporter turns into a customEvents row.
CUSTOM_EVENT_ATTRIBUTE = "microsoft.custom_event.name"
# Events go through a logger of their own: the distro attaches its exporter to this logger only,
# so the app's ordinary log lines keep flowing through the Functions host (no duplicates), and
# events do not propagate to the host's handlers as plain traces.
EVENTS_LOGGER_NAME = "delegated_admin_monitor.events"
METER_NAME = "delegated_admin_monitor"
CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"

PropertyValue = str | int | float | bool
Properties = Mapping[str, PropertyValue]

# Attributes a LogRecord already has: a property with one of these names would make logging raise.
_RESERVED_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_configured = False
_enabled = False
_histograms: dict[str, Any] = {}


def configure_telemetry(connection_string: str | None = None) -> bool:
    """Start exporting to Application Insights when a connection string is configured.

    Idempotent and thread-safe: the first call decides, later calls return the same answer.
    ``connection_string`` defaults to ``APPLICATIONINSIGHTS_CONNECTION_STRING``. Returns whether
    telemetry is exported. A configured connection string without the azure-monitor-opentelemetry
    package is a deployment error and raises ImportError.
    """
    global _configured, _enabled
    with _lock:
        if _configured:
            return _enabled
        value = (
            connection_string
            if connection_string is not None
            else os.environ.get(CONNECTION_STRING_SETTING, "")
        )
        if not value.strip():
            _configured = True
            _enabled = False
            _log.debug(
                "telemetry: %s is not set; custom events and metrics are not exported",
                CONNECTION_STRING_SETTING,
            )
            return False
        # Imported here so that the app, the CLI and the tests run without the package locally.
        from azure.monitor.opentelemetry import configure_azure_monitor

        events_logger = logging.getLogger(EVENTS_LOGGER_NAME)
        events_logger.setLevel(logging.INFO)
        events_logger.propagate = False
        # The credential comes from APPLICATIONINSIGHTS_AUTHENTICATION_STRING
        # ("Authorization=AAD;ClientId=<managed identity>"), which the exporter reads itself.
        configure_azure_monitor(
            connection_string=value.strip(),
            logger_name=EVENTS_LOGGER_NAME,
            enable_live_metrics=False,
        )
        _configured = True
        _enabled = True
        return True


def flush_telemetry(timeout_millis: int = 15_000) -> None:
    """Export what is buffered now (a command-line run ends before the exporters' next batch)."""
    if not _enabled:
        return
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    for provider in (get_logger_provider(), metrics.get_meter_provider(), trace.get_tracer_provider()):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            try:
                flush(timeout_millis)
            except Exception:  # telemetry never fails a run
                _log.warning("telemetry: flushing %s failed", type(provider).__name__, exc_info=True)


def is_enabled() -> bool:
    """Whether :func:`configure_telemetry` turned exporting on."""
    return _enabled


def track_event(name: str, properties: Properties | None = None) -> None:
    """Emit a custom event (a ``customEvents`` row) with string/number/bool properties."""
    props = _clean(properties)
    if not _enabled:
        _log.debug("telemetry event %s %s (not exported)", name, props)
        return
    attributes: dict[str, PropertyValue] = {
        (f"{key}_" if key in _RESERVED_RECORD_ATTRIBUTES else key): value for key, value in props.items()
    }
    attributes[CUSTOM_EVENT_ATTRIBUTE] = name
    logging.getLogger(EVENTS_LOGGER_NAME).info(name, extra=attributes)


def track_metric(name: str, value: float, properties: Properties | None = None) -> None:
    """Record a measurement of a custom metric (a ``customMetrics`` row), with dimensions."""
    props = _clean(properties)
    if not _enabled:
        _log.debug("telemetry metric %s=%s %s (not exported)", name, value, props)
        return
    histogram = _histograms.get(name)
    if histogram is None:
        from opentelemetry import metrics  # installed with azure-monitor-opentelemetry

        histogram = metrics.get_meter(METER_NAME).create_histogram(name)
        _histograms[name] = histogram
    histogram.record(value, attributes=dict(props))


def _clean(properties: Properties | None) -> dict[str, PropertyValue]:
    """Keep the properties OpenTelemetry can carry as attributes; name the others in a debug line."""
    if not properties:
        return {}
    clean: dict[str, PropertyValue] = {}
    for key, value in properties.items():
        if isinstance(value, str | int | float | bool):
            clean[str(key)] = value
        else:
            _log.debug("telemetry: property %r of type %s dropped", key, type(value).__name__)
    return clean


def _reset_for_tests() -> None:
    """Forget the configuration decision (tests only)."""
    global _configured, _enabled
    with _lock:
        _configured = False
        _enabled = False
        _histograms.clear()
