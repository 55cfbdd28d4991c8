"""``MonitorConfig``: every tunable of gecko-otel in one validated, frozen object.

Values come from, in order: the argument you pass, the ``GECKO_OTEL_*``
environment variable (through `MonitorConfig.from_env`), the default.
Invalid values raise `ConfigError` at construction,
naming the field (or variable) and what to change.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from types import MappingProxyType
from typing import Any, Final

from gecko_otel._checks import MIN_INTERVAL, Duration, check_collector_type, check_seconds
from gecko_otel.errors import ConfigError

#: Seconds, given as a number or a ``timedelta``; stored as float seconds.

#: Metadata key parts whose values are redacted: a part matches whole words of the key
#: after case and separators are normalised (``privateKey``, ``x-api-key``,
#: ``api_key_id`` and ``session_id`` match; ``tokenizer`` and ``author`` do not).
DEFAULT_SENSITIVE_KEYS: Final[tuple[str, ...]] = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "auth_header",
    "credential",
    "private_key",
    "access_key",
    "session_key",
    "cookie",
    "signature",
    "mnemonic",
    "seed_phrase",
    "bearer",
    "dsn",
    "jwt",
    "session",
    "auth",
)

#: Intervals that pace a background thread: at least `MIN_INTERVAL`.
INTERVAL_FIELDS: Final = (
    "watchdog_interval",
    "store_flush_interval",
    "metrics_export_interval",
    "retention_interval",
)

#: Default series per collector: one per status and error type on the duration histogram.
SERIES_PER_COLLECTOR: Final = 8

#: Fields that can be set globally on MonitorConfig and per collector in
#: CollectorThresholds; the per-collector value wins when it is not None.
THRESHOLD_FIELDS: Final = (
    "max_consecutive_failures",
    "min_success_rate",
    "min_runs_for_rate",
    "max_execution_time",
    "min_records_per_second",
    "stale_after",
    "recovery_threshold",
    "alert_cooldown",
    "anomaly_warmup_runs",
    "anomaly_runs",
    "records_anomaly_factor",
    "duration_anomaly_factor",
    "no_data_after",
)

#: Thresholds counted in whole runs.
INTEGER_THRESHOLDS: Final = frozenset(
    {
        "max_consecutive_failures",
        "min_runs_for_rate",
        "recovery_threshold",
        "anomaly_warmup_runs",
        "anomaly_runs",
    }
)
#: Thresholds for which 0 means "this rule is off" (None in `Thresholds`).
OFF_WHEN_ZERO: Final = frozenset(
    {"min_records_per_second", "records_anomaly_factor", "duration_anomaly_factor", "no_data_after"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorThresholds:
    """Health and alerting thresholds for one collector; ``None`` inherits the global value.

    See `MonitorConfig` for what each threshold means. Durations are
    seconds or a ``timedelta``. ``0`` switches a rule off for this
    collector when it is on globally: ``min_records_per_second``,
    ``records_anomaly_factor``, ``duration_anomaly_factor``, ``no_data_after``.
    """

    max_consecutive_failures: int | None = None
    min_success_rate: float | None = None
    min_runs_for_rate: int | None = None
    max_execution_time: Duration | None = None
    min_records_per_second: float | None = None
    stale_after: Duration | None = None
    recovery_threshold: int | None = None
    alert_cooldown: Duration | None = None
    anomaly_warmup_runs: int | None = None
    anomaly_runs: int | None = None
    records_anomaly_factor: float | None = None
    duration_anomaly_factor: float | None = None
    no_data_after: Duration | None = None

    def __post_init__(self) -> None:
        _validate_thresholds(self, "CollectorThresholds", allow_none=True)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The thresholds in force for one collector (globals merged with its overrides)."""

    max_consecutive_failures: int
    min_success_rate: float
    min_runs_for_rate: int
    max_execution_time: float
    min_records_per_second: float | None
    stale_after: float
    recovery_threshold: int
    alert_cooldown: float
    anomaly_warmup_runs: int
    anomaly_runs: int
    records_anomaly_factor: float | None
    duration_anomaly_factor: float | None
    no_data_after: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorConfig:
    """Configuration of a `Monitor`.

    Durations are seconds or a ``timedelta``, positive and at most 100 years;
    the intervals that pace a background thread (``watchdog_interval``,
    ``store_flush_interval``, ``metrics_export_interval``,
    ``retention_interval``) are at least 0.01 s. Anything else is a
    `ConfigError` when the configuration is built.

    Attributes:
        max_history_per_collector: Execution records kept in memory per
            collector; the oldest is dropped first. Running statistics keep
            counting past it.
        max_collectors: Collector types tracked in memory (history, health,
            alerts, gauges). At the limit a new collector evicts the least
            recently seen: first one whose last run succeeded and with no
            active alert, then one with none, then any (its alerts resolve).
            An evicted collector that runs again starts afresh in memory (a
            database keeps its runs). Logged once; see ``system_health().limits``.
        max_metric_series: Series (attribute sets) per gecko-otel metric in the
            OpenTelemetry SDK before further ones merge into its overflow
            series; at least ``max_collectors``. ``None``: 8 x
            ``max_collectors``. Set on the MeterProviders gecko-otel creates;
            give yours ``View(meter_name="gecko_otel",
            aggregation_cardinality_limit=config.metric_series_limit)``.
        max_attribute_length: Metadata strings, warning and error messages are
            cut to this many characters.
        max_metadata_entries: Metadata keys kept per run (and items per
            sequence value).
        max_messages_per_run: Warnings and errors kept per run (each kind);
            later ones are dropped and counted in the record's
            ``dropped_messages`` and the span's ``gecko.collection.dropped_messages``.
        max_consecutive_failures: A collector is critical (alert
            ``consecutive_failures``) after this many failed or timed-out
            runs in a row.
        min_success_rate: Percent (0-100). Below it, over
            ``success_rate_window``, a collector is in warning
            (``low_success_rate``); partial runs count as successful.
        min_runs_for_rate: The success-rate rule waits until the window holds
            this many runs, so one early failure is not a collapse.
        max_execution_time: Seconds. An average run time above it over the
            window is a warning (``slow_execution``).
        min_records_per_second: Records per second of run time over the
            window below which a collector is in warning
            (``low_throughput``); ``None`` (default) switches the rule off.
        stale_after: Seconds without a successful run (counted from the first
            time the Monitor saw the collector) before it is in warning
            (``stale``); checked on the watchdog's clock.
        success_rate_window: Seconds of runs the success rate, average and
            p95 durations and throughput cover (24 h by default).
        recovery_threshold: Runs in a row with its condition clear that
            resolve an alert raised by a run-based rule (a run with the
            condition holding again starts the count over); time-based rules
            resolve as soon as they clear.
        alert_cooldown: Seconds between repeat notifications of an alert that
            still fires and is not acknowledged.
        anomaly_warmup_runs: Successful runs a collector's baseline learns
            from before ``records_anomaly`` and ``duration_anomaly`` may fire.
        anomaly_runs: Anomalous runs in a row that fire ``records_anomaly``
            or ``duration_anomaly``; twice as many make ``records_anomaly``
            critical.
        records_anomaly_factor: A run collecting under this fraction of its
            usual records (the baseline median) is anomalous; the usual
            range tightens it up to half the median for a steady collector.
            A run with no records is anomalous when the collector usually
            collects some. 0 switches ``records_anomaly`` off.
        duration_anomaly_factor: A run slower than this many times its usual
            run time is anomalous; the usual range tightens it down to twice
            the median for a steady collector. 0 switches
            ``duration_anomaly`` off.
        no_data_after: Seconds without a run that collected records, while
            runs succeed, before the collector is in warning (``no_data``);
            checked on the watchdog's clock. 0 or ``None`` switches it off.
        watchdog_interval: Seconds between evaluations of the time-based
            rules (stale collectors, repeat notifications, expired
            suppressions) by the watchdog thread.
        handler_timeout: Seconds an alert handler may take per notification
            before it is abandoned (counted) and a fresh worker takes over.
        alert_queue_size: Notifications waiting for each handler, at most;
            beyond it they are dropped and counted.
        collectors: Per-collector overrides: ``{"pool_collector":
            CollectorThresholds(max_consecutive_failures=5)}``.
        sensitive_keys: Key fragments whose metadata values are replaced by
            ``[REDACTED]`` before they reach a span or a record. Keys are
            compared in lower case with camelCase split and ``-``, ``.`` and
            spaces read as ``_``; a fragment must match whole words of the
            key (``auth_token`` and ``refresh_tokens`` match ``token``,
            ``tokenizer`` does not).
        database_url: Where history, alerts, collector metadata and metric
            points are stored: ``sqlite:///path/to/gecko_otel.db`` or
            ``postgresql+psycopg://user:password@host/db``. ``None`` (the
            default) keeps everything in memory only.
        store_queue_size: Items (runs, alert changes, metric points) waiting
            for the background writer, at most; beyond it they are dropped
            and counted. Covers an outage of about this many runs.
        store_batch_size: Items per write transaction; a full batch wakes
            the writer early. A writer two batches behind takes up to 8 at
            once until it has caught up.
        store_flush_interval: Seconds between writes when batches do not fill.
        store_read_timeout: Seconds a store-backed query (``history()``,
            ``statistics()``, ``alerts()``) waits for the writer to store
            what this process queued before it; past it the query answers
            from memory (this process's runs only).
        metrics_export_interval: Seconds between metric points written to
            ``performance_metrics`` (durations, records, custom metrics).
        retention_runs: Stored runs older than this (by start time) are
            deleted by the automatic cleanup; ``None`` keeps them.
        retention_metrics: Same for metric points.
        retention_alerts: Resolved alerts older than this (by resolution
            time) are deleted; active alerts are always kept.
        retention_interval: Seconds between automatic cleanups (the first
            runs one interval after start).
        shutdown_timeout: Seconds ``Monitor.shutdown()`` (and so interpreter
            exit and SIGTERM) may take in all: handlers, exporters and the
            store share it; what is not delivered by then is logged.
        handle_sigterm: With ``setup()``, a SIGTERM first shuts the Monitor
            down (bounded by ``shutdown_timeout``), then the process ends as
            it would have: the application's own handler runs, or the
            default action kills it with the same status.
    """

    max_history_per_collector: int = 1000
    max_collectors: int = 10_000
    max_metric_series: int | None = None
    max_attribute_length: int = 4096
    max_metadata_entries: int = 128
    max_messages_per_run: int = 100
    sensitive_keys: tuple[str, ...] = DEFAULT_SENSITIVE_KEYS
    max_consecutive_failures: int = 3
    min_success_rate: float = 80.0
    min_runs_for_rate: int = 5
    max_execution_time: Duration = 300.0
    min_records_per_second: float | None = None
    stale_after: Duration = 6 * 3600.0
    success_rate_window: Duration = 24 * 3600.0
    recovery_threshold: int = 1
    alert_cooldown: Duration = 1800.0
    anomaly_warmup_runs: int = 20
    anomaly_runs: int = 3
    records_anomaly_factor: float = 0.2
    duration_anomaly_factor: float = 5.0
    no_data_after: Duration | None = 6 * 3600.0
    watchdog_interval: Duration = 30.0
    handler_timeout: Duration = 30.0
    alert_queue_size: int = 1000
    database_url: str | None = None
    store_queue_size: int = 100_000
    store_batch_size: int = 1000
    store_flush_interval: Duration = 1.0
    store_read_timeout: Duration = 5.0
    metrics_export_interval: Duration = 60.0
    retention_runs: Duration | None = 30 * 86400.0
    retention_metrics: Duration | None = 30 * 86400.0
    retention_alerts: Duration | None = 90 * 86400.0
    retention_interval: Duration = 3600.0
    shutdown_timeout: Duration = 5.0
    handle_sigterm: bool = True
    # Compared but not hashed (a mapping has no hash), and stored read-only.
    collectors: Mapping[str, CollectorThresholds] = dataclass_field(
        default_factory=dict, hash=False
    )

    def __post_init__(self) -> None:
        for field in (
            "max_history_per_collector",
            "max_collectors",
            "max_attribute_length",
            "max_metadata_entries",
            "max_messages_per_run",
        ):
            _require_positive_int(field, getattr(self, field))
        series = self.max_metric_series
        if series is not None:
            _require_positive_int("max_metric_series", series)
            if series < self.max_collectors:
                raise ConfigError(
                    f"MonitorConfig.max_metric_series ({series}) is below max_collectors "
                    f"({self.max_collectors}): collectors would share the overflow series"
                )
        keys: object = self.sensitive_keys
        if (
            isinstance(keys, str)
            or not isinstance(keys, tuple | list)
            or not all(isinstance(k, str) and k for k in keys)
        ):
            raise ConfigError(
                f"MonitorConfig.sensitive_keys must be a tuple of non-empty strings, got {keys!r}"
            )
        object.__setattr__(self, "sensitive_keys", tuple(keys))
        _validate_thresholds(self, "MonitorConfig", allow_none=False)
        for name in ("success_rate_window", "handler_timeout"):
            object.__setattr__(
                self, name, check_seconds(f"MonitorConfig.{name}", getattr(self, name))
            )
        _require_positive_int("alert_queue_size", self.alert_queue_size)
        _require_positive_int("store_queue_size", self.store_queue_size)
        _require_positive_int("store_batch_size", self.store_batch_size)
        for name in ("store_read_timeout", "shutdown_timeout"):
            label = f"MonitorConfig.{name}"
            object.__setattr__(self, name, check_seconds(label, getattr(self, name)))
        if not isinstance(self.handle_sigterm, bool):
            raise ConfigError(
                f"MonitorConfig.handle_sigterm must be True or False, got {self.handle_sigterm!r}"
            )
        for name in INTERVAL_FIELDS:  # they pace background threads
            label, value = f"MonitorConfig.{name}", getattr(self, name)
            object.__setattr__(self, name, check_seconds(label, value, minimum=MIN_INTERVAL))
        for name in ("retention_runs", "retention_metrics", "retention_alerts"):
            if getattr(self, name) is not None:
                object.__setattr__(
                    self, name, check_seconds(f"MonitorConfig.{name}", getattr(self, name))
                )
        url: object = self.database_url
        if url is not None and (not isinstance(url, str) or not url.strip()):
            raise ConfigError(
                "MonitorConfig.database_url must be a database URL such as "
                f"'sqlite:///gecko_otel.db', or None for memory only; got {url!r}"
            )
        collectors: object = self.collectors
        if not isinstance(collectors, Mapping):
            raise ConfigError(
                "MonitorConfig.collectors must map collector types to CollectorThresholds, "
                f"got {collectors!r}"
            )
        for name, overrides in collectors.items():
            try:
                check_collector_type(name)
            except ConfigError as exc:
                raise ConfigError(f"MonitorConfig.collectors: {exc}") from None
            if not isinstance(overrides, CollectorThresholds):
                raise ConfigError(
                    f"MonitorConfig.collectors[{name!r}] must be a CollectorThresholds, "
                    f"got {overrides!r}"
                )
        if len(collectors) > self.max_collectors:
            raise ConfigError("MonitorConfig.collectors has more than max_collectors entries")
        object.__setattr__(self, "collectors", MappingProxyType(dict(collectors)))

    @property
    def metric_series_limit(self) -> int:
        """Series per metric in force: ``max_metric_series``, or 8 x ``max_collectors``."""
        if self.max_metric_series is not None:
            return self.max_metric_series
        return SERIES_PER_COLLECTOR * self.max_collectors

    def thresholds_for(self, collector_type: str) -> Thresholds:
        """The thresholds in force for ``collector_type``."""
        overrides = self.collectors.get(collector_type)
        values = {}
        for name in THRESHOLD_FIELDS:
            value = getattr(overrides, name) if overrides is not None else None
            values[name] = getattr(self, name) if value is None else value
        for name in OFF_WHEN_ZERO:
            if values[name] == 0:
                values[name] = None
        return Thresholds(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> MonitorConfig:
        """Build a config from ``GECKO_OTEL_*`` variables; ``overrides`` win over them.

        Args:
            environ: The environment to read (``os.environ`` by default).
            **overrides: Field values that take precedence over the environment.

        Raises:
            ConfigError: A variable does not parse, or a value is out of range.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, (variable, parse) in ENV_VARS.items():
            raw = env.get(variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[field] = parse(raw.strip())
            except (ValueError, TypeError, OverflowError) as exc:
                raise ConfigError(f"{variable}={raw!r} is invalid: {exc}") from None
        values.update(overrides)
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (check the GECKO_OTEL_* environment variables)") from None

    def replace(self, **changes: Any) -> MonitorConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def _require_positive_int(field: str, value: object, owner: str = "MonitorConfig") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner}.{field} must be a positive integer, got {value!r}")


def _number(name: str, value: object, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ConfigError(f"{name} must be {span}, got {value!r}")
    return float(value)


def _validate_thresholds(obj: Any, owner: str, *, allow_none: bool) -> None:
    """Check (and normalise durations of) the threshold fields of ``obj``."""
    for name in THRESHOLD_FIELDS:
        value = getattr(obj, name)
        label = f"{owner}.{name}"
        if value is None and (allow_none or name in ("min_records_per_second", "no_data_after")):
            continue
        if name in INTEGER_THRESHOLDS:
            _require_positive_int(name, value, owner)
        elif name == "min_success_rate":
            object.__setattr__(obj, name, _number(label, value, 0.0, 100.0))
        elif name == "min_records_per_second":
            object.__setattr__(obj, name, _number(label, value, 0.0))
        elif name == "records_anomaly_factor":
            object.__setattr__(obj, name, _number(label, value, 0.0, 0.95))
        elif name == "duration_anomaly_factor":
            factor = _number(label, value, 0.0)
            if 0 < factor < 1.5:
                raise ConfigError(f"{label} must be 0 (off) or at least 1.5, got {value!r}")
            object.__setattr__(obj, name, factor)
        elif name == "no_data_after" and value == 0 and not isinstance(value, bool):
            # Off: None on MonitorConfig; 0 on CollectorThresholds, where None inherits.
            object.__setattr__(obj, name, 0.0 if allow_none else None)
        else:
            object.__setattr__(obj, name, check_seconds(label, value))


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("use true or false")


def _csv(raw: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not parts:
        raise ValueError("give comma-separated key fragments, e.g. 'password,token'")
    return parts


def _optional_seconds(raw: str) -> float | None:
    if raw.lower() in ("none", "off", "never"):
        return None
    return float(raw)


#: The one table mapping ``MonitorConfig`` fields to environment variables.
ENV_VARS: Final[dict[str, tuple[str, Callable[[str], Any]]]] = {
    "max_history_per_collector": ("GECKO_OTEL_MAX_HISTORY_PER_COLLECTOR", int),
    "max_collectors": ("GECKO_OTEL_MAX_COLLECTORS", int),
    "max_metric_series": ("GECKO_OTEL_MAX_METRIC_SERIES", int),
    "max_attribute_length": ("GECKO_OTEL_MAX_ATTRIBUTE_LENGTH", int),
    "max_metadata_entries": ("GECKO_OTEL_MAX_METADATA_ENTRIES", int),
    "max_messages_per_run": ("GECKO_OTEL_MAX_MESSAGES_PER_RUN", int),
    "sensitive_keys": ("GECKO_OTEL_SENSITIVE_KEYS", _csv),
    "max_consecutive_failures": ("GECKO_OTEL_MAX_CONSECUTIVE_FAILURES", int),
    "min_success_rate": ("GECKO_OTEL_MIN_SUCCESS_RATE", float),
    "min_runs_for_rate": ("GECKO_OTEL_MIN_RUNS_FOR_RATE", int),
    "max_execution_time": ("GECKO_OTEL_MAX_EXECUTION_TIME", float),
    "min_records_per_second": ("GECKO_OTEL_MIN_RECORDS_PER_SECOND", float),
    "stale_after": ("GECKO_OTEL_STALE_AFTER", float),
    "success_rate_window": ("GECKO_OTEL_SUCCESS_RATE_WINDOW", float),
    "recovery_threshold": ("GECKO_OTEL_RECOVERY_THRESHOLD", int),
    "alert_cooldown": ("GECKO_OTEL_ALERT_COOLDOWN", float),
    "anomaly_warmup_runs": ("GECKO_OTEL_ANOMALY_WARMUP_RUNS", int),
    "anomaly_runs": ("GECKO_OTEL_ANOMALY_RUNS", int),
    "records_anomaly_factor": ("GECKO_OTEL_RECORDS_ANOMALY_FACTOR", float),
    "duration_anomaly_factor": ("GECKO_OTEL_DURATION_ANOMALY_FACTOR", float),
    "no_data_after": ("GECKO_OTEL_NO_DATA_AFTER", _optional_seconds),
    "watchdog_interval": ("GECKO_OTEL_WATCHDOG_INTERVAL", float),
    "handler_timeout": ("GECKO_OTEL_HANDLER_TIMEOUT", float),
    "alert_queue_size": ("GECKO_OTEL_ALERT_QUEUE_SIZE", int),
    "database_url": ("GECKO_OTEL_DATABASE_URL", str),
    "store_queue_size": ("GECKO_OTEL_STORE_QUEUE_SIZE", int),
    "store_batch_size": ("GECKO_OTEL_STORE_BATCH_SIZE", int),
    "store_flush_interval": ("GECKO_OTEL_STORE_FLUSH_INTERVAL", float),
    "store_read_timeout": ("GECKO_OTEL_STORE_READ_TIMEOUT", float),
    "metrics_export_interval": ("GECKO_OTEL_METRICS_EXPORT_INTERVAL", float),
    "retention_runs": ("GECKO_OTEL_RETENTION_RUNS", _optional_seconds),
    "retention_metrics": ("GECKO_OTEL_RETENTION_METRICS", _optional_seconds),
    "retention_alerts": ("GECKO_OTEL_RETENTION_ALERTS", _optional_seconds),
    "retention_interval": ("GECKO_OTEL_RETENTION_INTERVAL", float),
    "shutdown_timeout": ("GECKO_OTEL_SHUTDOWN_TIMEOUT", float),
    "handle_sigterm": ("GECKO_OTEL_HANDLE_SIGTERM", _boolean),
}
