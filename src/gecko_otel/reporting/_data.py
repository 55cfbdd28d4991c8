"""What the report shows, read from a store in a few grouped, streamed queries.

1. Runs of the window grouped by (collector, time bucket, status, duration
   sketch key): counts, records and the longest run of each group. One scan
   of the window over the start-time index; everything else (per-status
   counts, p50/p95 per bucket from the store's 1 % duration sketch, records
   per run, success rate per day, totals) is summed from its rows in Python.
2. Alerts that were active at some point in the window.
3. The collectors' ``collection_metadata`` rows (the health each monitor
   last published), the newest run of each collector and its newest failure
   or timeout in the window (indexed look-ups, two per collector), for the
   header and the collector summaries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from sqlalchemy import BigInteger, ColumnElement, Integer, cast, func, or_, select

from gecko_otel._config import MonitorConfig
from gecko_otel._health.baseline import usual_of
from gecko_otel._health.thresholds import Stored, in_force
from gecko_otel._history.memory import _GAMMA, _ZERO_KEY
from gecko_otel._values.alerts import Alert
from gecko_otel._values.health import RULE_SLOW_EXECUTION, CollectionStatus, Usual
from gecko_otel._values.records import ExecutionRecord, ExecutionStatus
from gecko_otel.store.baselines import read_baselines
from gecko_otel.store.rows import CollectorRow, alert_from_row, record_from_row
from gecko_otel.store.schema import execution_history, system_alerts
from gecko_otel.store.store import Store
from gecko_otel.store.thresholds import overrides

#: Most time buckets a chart shows; the bucket width is the smallest of
#: `BUCKET_WIDTHS` that keeps the window within it (2 hours for 7 days).
MAX_BUCKETS: Final = 120
#: Bucket widths in seconds, each dividing a day, so days are whole buckets.
BUCKET_WIDTHS: Final = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
#: Alerts drawn per collector (the newest); the header counts them all.
ALERTS_PER_COLLECTOR: Final = 100
#: Statuses of runs that never started: no duration, no records, and (as in
#: the health rules) left out of success rates.
NOT_STARTED: Final = frozenset({ExecutionStatus.MISSED.value, ExecutionStatus.SKIPPED.value})
OK: Final = frozenset({ExecutionStatus.SUCCESS.value, ExecutionStatus.PARTIAL.value})
_ERRORS: Final = (ExecutionStatus.FAILURE.value, ExecutionStatus.TIMEOUT.value)

_H = execution_history.c
_A = system_alerts.c


def bucket_width(window: float) -> int:
    """Seconds per time bucket for a window of ``window`` seconds."""
    for width in BUCKET_WIDTHS:
        if window / width <= MAX_BUCKETS:
            return width
    return 86400 * math.ceil(window / 86400 / MAX_BUCKETS)


@dataclass(slots=True)
class Threshold:
    """The run-time threshold drawn on a collector's duration chart, and where it came from."""

    seconds: float
    source: str


@dataclass(slots=True)
class CollectorSeries:
    """One collector's charts, per time bucket (index 0 is the window's first bucket)."""

    name: str
    buckets: int
    counts: dict[str, list[int]] = field(default_factory=dict)
    sketches: list[dict[int, int]] = field(default_factory=list)
    longest: list[float | None] = field(default_factory=list)
    records: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    ok: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = self.buckets
        self.sketches = [{} for _ in range(n)]
        self.longest = [None] * n
        self.records = [0] * n
        self.started = [0] * n
        self.ok = [0] * n

    def add(
        self, index: int, status: str, key: int | None, *, count: int, records: int, longest: Any
    ) -> None:
        """Add one group of the runs query (see the module docs) to bucket ``index``."""
        counts = self.counts.get(status)
        if counts is None:
            counts = self.counts[status] = [0] * self.buckets
        counts[index] += count
        if status not in NOT_STARTED:
            self.started[index] += count
            self.records[index] += records
            if status in OK:
                self.ok[index] += count
        if key is not None:
            sketch = self.sketches[index]
            sketch[key] = sketch.get(key, 0) + count
        if longest is not None:
            current = self.longest[index]
            self.longest[index] = float(longest) if current is None else max(current, longest)

    @property
    def runs(self) -> int:
        """Runs in the window, every status."""
        return sum(sum(c) for c in self.counts.values())

    def status_total(self, status: str) -> int:
        return sum(self.counts.get(status, ()))

    @property
    def success_rate(self) -> float | None:
        """Percent of started runs that succeeded (partial included), or None."""
        started = sum(self.started)
        return 100.0 * sum(self.ok) / started if started else None

    def quantiles(self, q: float) -> list[float | None]:
        """The ``q`` quantile of run time per bucket (None where no run has a duration)."""
        return [quantile(sketch, q) for sketch in self.sketches]

    def overall(self, q: float) -> float | None:
        """The ``q`` quantile of run time over the whole window."""
        merged: dict[int, int] = {}
        for sketch in self.sketches:
            for key, count in sketch.items():
                merged[key] = merged.get(key, 0) + count
        return quantile(merged, q)


def quantile(sketch: Mapping[int, int], q: float) -> float | None:
    """A quantile of a duration sketch (within 1 %, as the store's statistics), or None."""
    total = sum(sketch.values())
    if not total:
        return None
    rank = q * (total - 1)
    seen = 0
    for key in sorted(sketch):
        seen += sketch[key]
        if seen > rank:
            return 0.0 if key == _ZERO_KEY else 2 * _GAMMA**key / (_GAMMA + 1)
    return None  # pragma: no cover - the loop always reaches the rank


@dataclass(slots=True)
class ReportData:
    """Everything one report shows (see the module docs for how it is read)."""

    since: datetime
    until: datetime
    width: int
    first_bucket: int
    buckets: int
    store: str
    series: dict[str, CollectorSeries]
    collectors: dict[str, CollectorRow]
    alerts: list[Alert]
    active_alerts: list[Alert]
    latest: dict[str, ExecutionRecord]
    last_errors: dict[str, ExecutionRecord]
    thresholds: dict[str, Threshold]
    min_success_rate: dict[str, float]
    #: Each collector's baseline as stored: usual records per run, usual run time.
    baselines: dict[str, tuple[Usual | None, Usual | None]] = field(default_factory=dict)

    @property
    def bucket_start(self) -> datetime:
        return datetime.fromtimestamp(self.first_bucket * self.width, timezone.utc)

    def names(self) -> list[str]:
        """Every collector the report knows: with runs in the window or a stored row."""
        return sorted(set(self.series) | set(self.collectors))

    def health(self, name: str) -> CollectionStatus:
        """What the collector's monitor last published, ``unknown`` when nothing."""
        row = self.collectors.get(name)
        try:
            return CollectionStatus(row.health_status) if row and row.health_status else _UNKNOWN
        except ValueError:
            return _UNKNOWN


_UNKNOWN: Final = CollectionStatus.UNKNOWN


def read_report_data(
    store: Store, *, since: datetime, until: datetime, config: MonitorConfig
) -> ReportData:
    """Read what the report shows from ``store`` for runs started in [since, until)."""
    width = bucket_width((until - since).total_seconds())
    first = int(since.timestamp()) // width
    last = (math.ceil(until.timestamp()) - 1) // width
    buckets = max(1, last - first + 1)
    series: dict[str, CollectorSeries] = {}
    with store.engine.connect() as conn:
        result = conn.execution_options(yield_per=5000).execute(
            _runs_query(store, since, until, width)
        )
        for name, bucket, status, key, count, records, longest in result:
            one = series.get(name)
            if one is None:
                one = series[name] = CollectorSeries(name, buckets)
            index = min(max(int(bucket) - first, 0), buckets - 1)
            one.add(
                index,
                status,
                None if key is None else int(key),
                count=int(count),
                records=int(records or 0),
                longest=longest,
            )
        alerts_query = (
            select(system_alerts)
            .where(_A.fired_at < until, or_(_A.resolved_at.is_(None), _A.resolved_at >= since))
            .order_by(_A.fired_at.desc(), _A.id)
        )
        alerts = [alert for alert, _ in map(alert_from_row, conn.execute(alerts_query))]
    active = [alert for alert, _ in store.alerts(active_only=True)]
    collectors = {row.collector_type: row for row in store.collectors()}
    names = sorted(set(series) | set(collectors))
    latest = {
        name: runs[0].to_record() for name, runs in store.latest_runs(names, 1).items() if runs
    }
    last_errors = {}
    with store.engine.connect() as conn:
        for name in series:
            row = conn.execute(
                select(execution_history)
                .where(
                    _H.collector_type == name,
                    _H.start_time >= since,
                    _H.start_time < until,
                    _H.status.in_(_ERRORS),
                )
                .order_by(_H.start_time.desc(), _H.id.desc())
                .limit(1)
            ).first()
            if row is not None:
                last_errors[name] = record_from_row(row)
    stored = overrides(store.engine)
    learned = read_baselines(store.engine)
    return ReportData(
        since=since,
        until=until,
        width=width,
        first_bucket=first,
        buckets=buckets,
        store=store.describe(),
        series=series,
        collectors=collectors,
        alerts=alerts,
        active_alerts=active,
        latest=latest,
        last_errors=last_errors,
        thresholds=thresholds(names, config, alerts, stored),
        min_success_rate={n: in_force(config, stored, n).min_success_rate for n in names},
        baselines={n: usual_of(learned[n]) for n in names if n in learned},
    )


def _runs_query(store: Store, since: datetime, until: datetime, width: int) -> Any:
    bucket: ColumnElement[Any]
    if store.backend == "postgresql":
        bucket = cast(func.floor(func.extract("epoch", _H.start_time) / width), BigInteger)
    else:
        # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text: whole seconds
        # are enough to place a run in a bucket of a minute or more.
        bucket = cast(func.strftime("%s", _H.start_time), Integer) // width
    return (
        select(
            _H.collector_type,
            bucket.label("bucket"),
            _H.status,
            _H.duration_bucket,
            func.count(),
            func.sum(_H.records_collected),
            func.max(_H.duration_seconds),
        )
        .where(_H.start_time >= since, _H.start_time < until)
        .group_by(_H.collector_type, "bucket", _H.status, _H.duration_bucket)
    )


def thresholds(
    names: Iterable[str], config: MonitorConfig, alerts: Iterable[Alert], stored: Stored
) -> dict[str, Threshold]:
    """Each collector's ``max_execution_time``: the store's word when it has one.

    A threshold stored with ``gecko-otel thresholds`` is what every monitor
    applies. Else a ``slow_execution`` alert records the threshold its
    monitor applied (configured in code, which the report cannot see); the
    newest such alert wins over the configuration the report is given.
    """
    seen: dict[str, Threshold] = {}
    for alert in alerts:  # newest first
        value = alert.metadata.get("threshold")
        if (
            alert.rule == RULE_SLOW_EXECUTION
            and alert.collector_type not in seen
            and isinstance(value, int | float)
            and value > 0
        ):
            when = (alert.fired_at or alert.timestamp).strftime("%Y-%m-%d %H:%M UTC")
            seen[alert.collector_type] = Threshold(
                float(value), f"applied by its monitor (slow_execution alert of {when})"
            )
    out: dict[str, Threshold] = {}
    for name in names:
        for scope, source in ((name, "stored for this collector"), (None, "stored")):
            value = stored.get(scope, {}).get("max_execution_time")
            if value is not None:
                out[name] = Threshold(value, source)
                break
        else:
            if name in seen:
                out[name] = seen[name]
                continue
            source = (
                "configured for this collector"
                if name in config.collectors and config.collectors[name].max_execution_time
                else "configured default"
            )
            out[name] = Threshold(config.thresholds_for(name).max_execution_time, source)
    return out


def day_rates(series: CollectorSeries, data: ReportData) -> list[tuple[datetime, float | None]]:
    """Success rate per UTC day of the window: (day start, percent or None)."""
    days: dict[int, list[int]] = {}
    for index in range(data.buckets):
        # Widths under a day divide it; wider buckets count on the day they start.
        day = (data.first_bucket + index) * data.width // 86400
        ok_started = days.setdefault(day, [0, 0])
        ok_started[0] += series.ok[index]
        ok_started[1] += series.started[index]
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return [
        (epoch + timedelta(days=day), 100.0 * ok / started if started else None)
        for day, (ok, started) in sorted(days.items())
    ]
