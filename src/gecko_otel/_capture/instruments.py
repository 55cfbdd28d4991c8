"""The OpenTelemetry side of a run: tracer, duration histogram, attribute sets.

An `Instrumentation` is built once per Monitor (or once, lazily, from
the global providers when no Monitor is set up) and a `Prepared` once
per decorated function, so the per-call work is a dict copy and a few
lookups: everything that depends only on the collector (its span
attributes, its sanitised metadata, the histogram attribute sets per status)
is computed ahead of time.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.view import View
from opentelemetry.trace import TracerProvider

from gecko_otel import semconv
from gecko_otel._capture.metadata import REDACTED, MetadataSanitizer
from gecko_otel._capture.sampling import record_all_runs
from gecko_otel._checks import check_collector_type
from gecko_otel._config import MonitorConfig
from gecko_otel._guard import finish_within
from gecko_otel._values.records import (
    AttributeValue,
    ExecutionStatus,
    FinishedRun,
    new_execution_id,
    to_ns,
)
from gecko_otel._version import __version__
from gecko_otel.errors import ConfigError

logger = logging.getLogger("gecko_otel.monitor")

_MAX_CACHED_ATTRIBUTE_SETS: Final = 256


def metric_views(config: MonitorConfig) -> list[View]:
    """The SDK views that give gecko-otel's metrics ``config.metric_series_limit`` series."""
    return [
        View(
            meter_name=semconv.SCOPE_NAME, aggregation_cardinality_limit=config.metric_series_limit
        )
    ]


class Instrumentation:
    """Tracer, instruments and sanitizer shared by every run of one Monitor.

    Threading: immutable after construction except for caches guarded by the
    GIL-atomic ``dict`` operations; safe from any thread.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        config: MonitorConfig,
        *,
        discard_run: Callable[[Any], None] | None = None,
    ) -> None:
        self.config = config
        self.tracer = tracer_provider.get_tracer(semconv.SCOPE_NAME, __version__)
        #: Whether every run is recorded (and so reaches history) even when the
        #: sampler drops it; False only for non-SDK tracers.
        self.records_all_runs = record_all_runs(self.tracer)
        self.meter = meter_provider.get_meter(semconv.SCOPE_NAME, __version__)
        self.duration = self.meter.create_histogram(
            semconv.METRIC_DURATION,
            unit="s",
            description="Duration of collection runs, by collector type and status.",
            explicit_bucket_boundaries_advisory=list(semconv.DURATION_BUCKETS),
        )
        self.sanitizer = MetadataSanitizer(
            max_length=config.max_attribute_length,
            max_entries=config.max_metadata_entries,
            sensitive_keys=config.sensitive_keys,
        )
        self._prepared: dict[str, Prepared] = {}
        self._lock = threading.Lock()
        #: Duration-histogram series recorded (the metric with the most per
        #: collector), up to the series limit: past it the SDK merges new ones.
        self._series: set[tuple[str, str, str | None]] = set()
        self.series_limit_reached = False
        #: Forgets a run whose span ended without our span processor seeing
        #: it (another processor raised inside ``end()``); None without a Monitor.
        #: Takes the Run (typed loosely: the run module imports this one).
        self.discard_run = discard_run

    def prepare(
        self,
        collector_type: str,
        *,
        function_name: str | None = None,
        metadata: Mapping[Any, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Prepared:
        """Everything about ``collector_type`` that does not change per run.

        ``attributes`` are extra span attributes (e.g. ``faas.trigger``),
        sanitised like metadata values but kept under their own names.
        """
        if attributes:
            extra = {
                str(key): REDACTED
                if self.sanitizer.is_sensitive(str(key))
                else self.sanitizer.value(value)
                for key, value in list(attributes.items())[: self.config.max_metadata_entries]
            }
            return Prepared(
                self, collector_type, function_name, self.sanitizer.sanitize(metadata), extra
            )
        if function_name is None and not metadata:
            cached = self._prepared.get(collector_type)
            if cached is not None:
                return cached
            prepared = Prepared(self, collector_type, None, {})
            with self._lock:
                if len(self._prepared) < self.config.max_collectors:
                    self._prepared[collector_type] = prepared
            return prepared
        return Prepared(self, collector_type, function_name, self.sanitizer.sanitize(metadata))

    def note_series(self, key: tuple[str, str, str | None]) -> None:
        """Count a duration-histogram attribute set; warn once when the limit is reached."""
        series = self._series
        if key in series or self.series_limit_reached:
            return
        limit = self.config.metric_series_limit
        if len(series) < limit:
            series.add(key)
            return
        self.series_limit_reached = True
        logger.warning(
            "gecko_otel: %d series reached on %s: the OpenTelemetry SDK merges further "
            "collectors into its otel.metric.overflow series; raise max_metric_series "
            "(GECKO_OTEL_MAX_METRIC_SERIES) (logged once)",
            limit,
            semconv.METRIC_DURATION,
        )

    def limits(self) -> dict[str, int | bool]:
        """The metric series limit and whether it was reached (for ``system_health()``)."""
        return {
            "metric_series_limit": self.config.metric_series_limit,
            "metric_series_limit_reached": self.series_limit_reached,
        }


class Prepared:
    """Per-collector constants: span name and attributes, histogram attribute sets."""

    __slots__ = ("_histogram_attributes", "attributes", "collector_type", "instr", "metadata")

    def __init__(
        self,
        instr: Instrumentation,
        collector_type: str,
        function_name: str | None,
        metadata: dict[str, AttributeValue],
        extra_attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        self.instr = instr
        self.collector_type = collector_type
        # Shared by every run (and record) of the collector, so read-only.
        self.metadata: Mapping[str, AttributeValue] = MappingProxyType(metadata)
        attributes: dict[str, AttributeValue] = {semconv.COLLECTOR_TYPE: collector_type}
        if function_name:
            attributes[semconv.CODE_FUNCTION_NAME] = function_name
        for key, value in metadata.items():
            attributes[semconv.METADATA_PREFIX + key] = value
        if extra_attributes:
            for key, value in extra_attributes.items():
                attributes.setdefault(key, value)  # never overrides gecko.* attributes
        #: Span attributes every run of this collector starts with.
        self.attributes = attributes
        self._histogram_attributes: dict[tuple[ExecutionStatus, str | None], dict[str, str]] = {}

    def histogram_attributes(
        self, status: ExecutionStatus, error_type: str | None
    ) -> dict[str, str]:
        """The duration histogram's attribute set for one outcome, built once."""
        key = (status, error_type)
        cached = self._histogram_attributes.get(key)
        if cached is not None:
            return cached
        attributes = {
            semconv.COLLECTOR_TYPE: self.collector_type,
            semconv.COLLECTION_STATUS: status.value,
        }
        if error_type is not None:
            attributes[semconv.ERROR_TYPE] = error_type
        self.instr.note_series((self.collector_type, status.value, error_type))
        # Error types come from exception classes, so the set is small; the cap
        # only keeps a pathological caller from growing it without bound.
        if len(self._histogram_attributes) < _MAX_CACHED_ATTRIBUTE_SETS:
            self._histogram_attributes[key] = attributes
        return attributes


_INSTRUMENT_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]{0,254}")


class CustomMetrics:
    """Histograms made by ``Monitor.record_metric``, one per name, on one meter.

    Threading: safe from any thread (creating an instrument twice on a race
    hands back the SDK's first one).
    """

    def __init__(self, instrumentation: Instrumentation) -> None:
        self._instrumentation = instrumentation
        self._histograms: dict[str, Histogram] = {}

    def record(self, name: str, value: float, labels: Mapping[str, Any] | None) -> None:
        """Record ``value`` in the histogram ``name`` (see ``Monitor.record_metric``).

        Raises:
            ConfigError: ``name`` is not a valid OpenTelemetry instrument name.
        """
        histogram = self._histograms.get(name)
        if histogram is None:
            if not isinstance(name, str) or not _INSTRUMENT_NAME.fullmatch(name):
                raise ConfigError(
                    f"metric name {name!r} is invalid: start with a letter, then letters, "
                    "digits, '_', '.', '-' or '/', at most 255 characters"
                )
            histogram = self._instrumentation.meter.create_histogram(
                name, description=f"Custom measurement {name!r} (Monitor.record_metric)"
            )
            self._histograms[name] = histogram
        try:
            number = float(value)
        except (TypeError, ValueError):
            logger.warning("gecko_otel: record_metric(%r) ignored a non-number %r", name, value)
            return
        if not math.isfinite(number):
            logger.warning("gecko_otel: record_metric(%r) ignored a non-finite %r", name, value)
            return
        sanitizer = self._instrumentation.sanitizer
        histogram.record(number, attributes=sanitizer.sanitize(labels) if labels else None)


def not_started_run(
    sanitizer: MetadataSanitizer,
    collector_type: str,
    *,
    status: ExecutionStatus | str,
    scheduled_time: datetime,
    reason: str | None,
    metadata: Mapping[str, Any] | None,
) -> FinishedRun:
    """The record of a scheduled run that never started (see ``Monitor.record_not_started``).

    Raises:
        ConfigError: ``status`` is not missed or skipped, the collector type
            is invalid, or ``scheduled_time`` is not an aware datetime.
    """
    checked = status if isinstance(status, ExecutionStatus) else None
    if isinstance(status, str) and status in ("missed", "skipped"):
        checked = ExecutionStatus(status)
    if checked not in (ExecutionStatus.MISSED, ExecutionStatus.SKIPPED):
        raise ConfigError(
            f"record_not_started() takes status 'missed' or 'skipped', got {status!r}"
        )
    check_collector_type(collector_type)
    if not isinstance(scheduled_time, datetime) or scheduled_time.tzinfo is None:
        raise ConfigError(
            f"scheduled_time must be a timezone-aware datetime, got {scheduled_time!r}"
        )
    message = sanitizer.text(reason) if reason else None
    return FinishedRun(
        collector_type,
        new_execution_id(),
        checked,
        to_ns(scheduled_time),
        None,
        None,
        0,
        (),
        (message,) if message else (),
        MappingProxyType(sanitizer.sanitize(metadata)),
        None,
        None,
        None,
        None,
        0,
        # Its place among this process's runs: the scheduled time, as far before
        # the monotonic now as it is before the wall-clock now.
        time.perf_counter() - (time.time() - scheduled_time.timestamp()),
    )


def flush_providers(providers: Iterable[object], timeout_millis: int) -> bool:
    """``force_flush`` each provider that has one, all within ``timeout_millis``;
    True if all flushed in time.

    The SDK's batch processors export on the caller's thread and may not honour
    the timeout (an unreachable endpoint holds them for the exporter's own
    timeout and retries), so each flush runs on a helper thread that is left
    behind at the deadline. A provider whose exporter raises is reported as
    an internal error, never raised.
    """
    deadline = time.monotonic() + max(0, timeout_millis) / 1000
    ok = True
    for provider in providers:
        flush = getattr(provider, "force_flush", None)
        if flush is None:
            continue
        left = max(0.0, deadline - time.monotonic())
        results: list[bool] = []
        finished = finish_within(
            functools.partial(_flush_into, flush, int(left * 1000), results), left
        )
        ok = finished and all(results) and ok
    return ok


def shutdown_providers(providers: Iterable[Any], timeout: float) -> None:
    """Shut ``providers`` down within ``timeout`` seconds in all; one still exporting at
    the deadline (an unreachable endpoint) is left to finish on its own thread, and said."""
    deadline = time.monotonic() + max(0.0, timeout)
    late = [
        type(provider).__name__
        for provider in providers
        if not finish_within(provider.shutdown, max(0.0, deadline - time.monotonic()))
    ]
    if late:
        logger.warning(
            "gecko_otel: shutdown deadline reached while %s still exported; "
            "what they had not sent may be lost",
            ", ".join(late),
        )


def _flush_into(flush: Callable[[int], object], timeout_millis: int, results: list[bool]) -> None:
    results.append(bool(flush(timeout_millis)))


_default: Instrumentation | None = None
_default_lock = threading.Lock()


def default_instrumentation() -> Instrumentation:
    """Instrumentation on the global OpenTelemetry providers, for runs with no Monitor.

    Without ``setup()`` runs still produce spans and duration metrics through
    whatever providers the application installed globally (nothing, until it
    installs some); they just have no history.
    """
    global _default  # noqa: PLW0603 - one per process, built on first use
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Instrumentation(
                    trace.get_tracer_provider(), metrics.get_meter_provider(), MonitorConfig()
                )
    return _default
