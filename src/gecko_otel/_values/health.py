"""Health values: collector statuses, the rules' conditions, health and its score.

The rules themselves and the per-run state behind them live in
`gecko_otel._health.rules`.

Health score (0-100) = 50 x success rate (fraction, window) + 30 x duration
score + 20 x records score, where the duration score is 1 while the window
average is within ``max_execution_time`` and ``max / average`` above it, and
the records score is 1 without a throughput threshold, else
``min(1, rate / threshold)``. A collector with no runs in the window scores
on what it has: an empty window counts as a full success rate.

The score agrees with the status: a collector in warning scores at most 70,
a critical one at most 40 (`SCORE_CAPS`), whatever rule made it so (a
missed run, an overlap, an anomaly), so a critical collector never shows a
perfect score. A healthy one keeps the formula's value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from gecko_otel._config import Thresholds
from gecko_otel._values.records import iso
from gecko_otel.errors import ConfigError

RULE_CONSECUTIVE_FAILURES: Final = "consecutive_failures"
RULE_LOW_SUCCESS_RATE: Final = "low_success_rate"
RULE_SLOW_EXECUTION: Final = "slow_execution"
RULE_LOW_THROUGHPUT: Final = "low_throughput"
RULE_STALE: Final = "stale"
RULE_OVERLAP: Final = "overlap"
RULE_MISSED_RUN: Final = "missed_run"
RULE_RUNTIME_EXCEEDED: Final = "runtime_exceeded"
RULE_RECORDS_ANOMALY: Final = "records_anomaly"
RULE_DURATION_ANOMALY: Final = "duration_anomaly"
RULE_NO_DATA: Final = "no_data"
#: Rules that depend on the clock rather than on runs: they resolve as soon as
#: they stop holding, without waiting for ``recovery_threshold`` good runs.
TIME_RULES: Final = frozenset({RULE_STALE, RULE_MISSED_RUN, RULE_RUNTIME_EXCEEDED, RULE_NO_DATA})


class AlertLevel(str, enum.Enum):
    """Severity of an alert, lowest first."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def severity(self) -> int:
        """0 for info up to 3 for critical, for comparisons."""
        return _SEVERITY[self]

    @classmethod
    def parse(cls, value: AlertLevel | str) -> AlertLevel:
        """An AlertLevel from itself or its name; ConfigError for anything else."""
        if isinstance(value, AlertLevel):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            valid = ", ".join(level.value for level in cls)
            raise ConfigError(f"unknown alert level {value!r}; use one of: {valid}") from None

    def __str__(self) -> str:
        return self.value


_SEVERITY = {level: i for i, level in enumerate(AlertLevel)}


class CollectionStatus(str, enum.Enum):
    """Health status of a collector, best first."""

    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def gauge_value(self) -> int:
        """The value of the ``gecko.collector.health_status`` gauge (see docs/reference.md)."""
        return _GAUGE[self]

    def __str__(self) -> str:
        return self.value


_GAUGE: Final = {
    CollectionStatus.UNKNOWN: 0,
    CollectionStatus.HEALTHY: 1,
    CollectionStatus.WARNING: 2,
    CollectionStatus.CRITICAL: 3,
}
#: The highest score a collector in each status can have (see the module docs).
SCORE_CAPS: Final = {
    CollectionStatus.UNKNOWN: 100.0,
    CollectionStatus.HEALTHY: 100.0,
    CollectionStatus.WARNING: 70.0,
    CollectionStatus.CRITICAL: 40.0,
}
_WORST: Final = {
    CollectionStatus.HEALTHY: 0,
    CollectionStatus.UNKNOWN: 1,
    CollectionStatus.WARNING: 2,
    CollectionStatus.CRITICAL: 3,
}


def worst(statuses: list[CollectionStatus]) -> CollectionStatus:
    """The worst of ``statuses`` (critical > warning > unknown > healthy)."""
    return max(statuses, key=_WORST.__getitem__, default=CollectionStatus.UNKNOWN)


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """A rule that holds for a collector, at a level, with the figures behind it."""

    rule: str
    level: AlertLevel
    message: str
    figures: dict[str, Any]

    @property
    def critical(self) -> bool:
        """Whether it makes the collector critical (level error or critical)."""
        return self.level.severity >= AlertLevel.ERROR.severity


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorHealth:
    """How one collector is doing.

    Keeps the GeckoTerminal collector's fields (``collector_type``,
    ``status``, ``last_success``, ``last_failure``, ``consecutive_failures``,
    ``success_rate_24h``, ``average_execution_time``, ``total_executions``,
    ``health_score``, ``issues``) and adds the rest.

    Attributes:
        collector_type: The collector.
        status: healthy, warning, critical, or unknown before its first run.
        last_success: When its last successful (or partial) run ended.
        last_failure: When its last failed or timed-out run ended.
        consecutive_failures: Failed or timed-out runs since the last success.
        success_rate_24h: Percent of successful runs in the window (the
            name is historical: the window is ``success_rate_window``);
            ``None`` when the window holds no run.
        average_execution_time: Mean run time in the window (seconds), or ``None``.
        p95_execution_time: 95th-percentile run time of the runs in the window
            still held in history, or ``None``.
        records_per_second: Records per second of run time in the window, or ``None``.
        runs_in_window: Runs in the window.
        total_executions: Runs since the Monitor started watching it.
        health_score: 0-100 (see the module docs), ``None`` when unknown.
        issues: What is wrong, in plain words.
        rules: The names of the rules that hold.
        evaluated_at: When this was computed.
        usual_records: Its usual records per run, learned from its
            successful runs (median and usual range), or ``None`` before one.
        usual_duration: Its usual run time in seconds, the same way.
        baseline_runs: Runs its baseline learned from; the anomaly rules
            judge runs once it reaches ``anomaly_warmup_runs``.
        last_records_at: When a run last collected records (``no_data``).
    """

    collector_type: str
    status: CollectionStatus
    last_success: datetime | None
    last_failure: datetime | None
    consecutive_failures: int
    success_rate_24h: float | None
    average_execution_time: float | None
    p95_execution_time: float | None
    records_per_second: float | None
    runs_in_window: int
    total_executions: int
    health_score: float | None
    issues: tuple[str, ...]
    rules: tuple[str, ...]
    evaluated_at: datetime
    usual_records: Usual | None = None
    usual_duration: Usual | None = None
    baseline_runs: int = 0
    last_records_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "collector_type": self.collector_type,
            "status": self.status.value,
            "last_success": iso(self.last_success),
            "last_failure": iso(self.last_failure),
            "consecutive_failures": self.consecutive_failures,
            "success_rate_24h": self.success_rate_24h,
            "average_execution_time": self.average_execution_time,
            "p95_execution_time": self.p95_execution_time,
            "records_per_second": self.records_per_second,
            "runs_in_window": self.runs_in_window,
            "total_executions": self.total_executions,
            "health_score": self.health_score,
            "issues": list(self.issues),
            "rules": list(self.rules),
            "evaluated_at": iso(self.evaluated_at),
            "usual_records": self.usual_records.to_dict() if self.usual_records else None,
            "usual_duration": self.usual_duration.to_dict() if self.usual_duration else None,
            "baseline_runs": self.baseline_runs,
            "last_records_at": iso(self.last_records_at),
        }


@dataclass(frozen=True, slots=True)
class Usual:
    """A collector's usual value, learned from its own runs: the median and its usual range."""

    median: float
    low: float
    high: float

    def text(self, unit: str = "") -> str:
        """``480 (410-530)``, or with a unit: ``2.1 s (1.8-2.6 s)``."""
        if unit:
            return f"{self.median:.2g} {unit} ({self.low:.2g}-{self.high:.2g} {unit})"
        return f"{self.median:.0f} ({self.low:.0f}-{self.high:.0f})"

    def to_dict(self) -> dict[str, float]:
        """``{"median": ..., "low": ..., "high": ...}``."""
        return {"median": self.median, "low": self.low, "high": self.high}


@dataclass(frozen=True, slots=True)
class BaselineState:
    """What a baseline is made of, as it is stored and shared (log scales)."""

    runs: int
    records_center: float
    records_spread: float
    zero_share: float
    duration_runs: int
    duration_center: float
    duration_spread: float
    #: When a run last collected records (unix seconds on the caller's clock).
    last_records_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemHealth:
    """All collectors at a glance.

    Attributes:
        overall_status: The worst collector's status (unknown with none).
        total_collectors: Collectors known.
        healthy_collectors: Collectors per status...
        warning_collectors: ...
        critical_collectors: ...
        unknown_collectors: ...
        average_health_score: Mean score of the collectors that have one.
        active_alerts: Active (firing or acknowledged) alerts per level.
        dropped: What was lost and counted (``evicted_collectors``,
            ``dropped_notifications``, ``handler_errors``,
            ``handler_timeouts``, ``internal_errors``, the store's).
        evaluated_at: When this was computed.
        limits: The cardinality limits and how close they are:
            ``max_collectors``, ``tracked_collectors``,
            ``evicted_collectors`` (evicted from memory at the limit),
            ``metric_series_limit`` and ``metric_series_limit_reached``.
    """

    overall_status: CollectionStatus
    total_collectors: int
    healthy_collectors: int
    warning_collectors: int
    critical_collectors: int
    unknown_collectors: int
    average_health_score: float | None
    active_alerts: dict[str, int]
    dropped: dict[str, int]
    evaluated_at: datetime
    limits: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "overall_status": self.overall_status.value,
            "total_collectors": self.total_collectors,
            "healthy_collectors": self.healthy_collectors,
            "warning_collectors": self.warning_collectors,
            "critical_collectors": self.critical_collectors,
            "unknown_collectors": self.unknown_collectors,
            "average_health_score": self.average_health_score,
            "active_alerts": dict(self.active_alerts),
            "dropped": dict(self.dropped),
            "evaluated_at": iso(self.evaluated_at),
            "limits": dict(self.limits),
        }


def health_score(
    success_rate: float | None,
    average_duration: float | None,
    records_per_second: float | None,
    thresholds: Thresholds,
) -> float:
    """The 0-100 score described in the module docs."""
    rate_part = 1.0 if success_rate is None else success_rate / 100.0
    duration_part = 1.0
    if average_duration is not None and average_duration > thresholds.max_execution_time:
        duration_part = thresholds.max_execution_time / average_duration
    records_part = 1.0
    if thresholds.min_records_per_second and records_per_second is not None:
        records_part = min(1.0, records_per_second / thresholds.min_records_per_second)
    return round(100.0 * (0.5 * rate_part + 0.3 * duration_part + 0.2 * records_part), 2)


def span_text(seconds: float) -> str:
    """``90`` -> ``"1.5 min"``: a duration in the unit that reads best."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    if seconds < 10:
        return f"{seconds:.2g} s"  # "0.2 s", "1.5 s": sub-second schedules stay readable
    return f"{seconds:.0f} s"
