"""The operator's overview: one status row per collector, worst first.

What ``gecko-otel status`` prints, and what a status page or a report shows
beside its charts: each collector's stored health, its last run and last
success, its failure streak, its success rate and p95 duration over a
recent window, and its active alerts. Three grouped queries whatever the
number of collectors (the collectors' rows, each collector's newest runs
in the window by an index range scan, the active alerts), never one per
collector, and the cost does not grow with the history kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from sqlalchemy import Engine, func, select, union_all

from gecko_otel._history.memory import _STATUS_INDEX, Aggregate
from gecko_otel._values.alerts import Alert, AlertState
from gecko_otel._values.health import AlertLevel, CollectionStatus
from gecko_otel._values.records import (
    ExecutionRecord,
    ExecutionStatistics,
    ExecutionStatus,
    iso,
    to_ns,
)
from gecko_otel.store.rows import _A, _H, alert_from_row, record_from_row
from gecko_otel.store.schema import (
    UTCDateTime,
    collection_metadata,
    execution_history,
    system_alerts,
)

#: Newest runs per collector that the overview's rate and p95 cover, at most.
SAMPLE: Final = 1000
#: Collectors per overview query (a UNION ALL of one indexed range scan each;
#: SQLite allows 500 terms in a compound SELECT).
_PER_QUERY: Final = 200

#: Shortest part of an id that `find_runs` and `find_alerts` look up.
MIN_ID_PART: Final = 6

#: Worst first: how `collector_overview` orders health.
_RANK: Final = {
    CollectionStatus.CRITICAL: 0,
    CollectionStatus.WARNING: 1,
    CollectionStatus.UNKNOWN: 2,
    CollectionStatus.HEALTHY: 3,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorOverview:
    """One collector's line of the overview.

    Attributes:
        collector_type: The collector.
        health: Health last published by a Monitor (``unknown`` if none has).
        health_score: Its score, 0 to 100, or None.
        last_run: Start of the newest stored run.
        last_status: Status of that run.
        last_success: Start of the newest successful (or partial) run.
        consecutive_failures: Failures since the last success.
        total_executions: Runs stored, all time.
        runs_counted: Runs the rate and p95 cover: those started within
            the window, at most the newest ``sample``.
        success_rate: Percent of those runs that succeeded (success or
            partial), or None when there is none.
        p95_duration: Their 95th-percentile duration in seconds (within
            1 %), or None.
        active_alerts: Alerts firing or acknowledged.
        worst_alert_level: The highest level among them, or None.
        window_seconds: The window the rate and p95 cover.
    """

    collector_type: str
    health: CollectionStatus
    health_score: float | None
    last_run: datetime | None
    last_status: ExecutionStatus | None
    last_success: datetime | None
    consecutive_failures: int
    total_executions: int
    runs_counted: int
    success_rate: float | None
    p95_duration: float | None
    active_alerts: int
    worst_alert_level: AlertLevel | None
    window_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times ISO 8601 UTC, enums as their values)."""
        return {
            "collector_type": self.collector_type,
            "health": self.health.value,
            "health_score": self.health_score,
            "last_run": iso(self.last_run),
            "last_status": self.last_status.value if self.last_status else None,
            "last_success": iso(self.last_success),
            "consecutive_failures": self.consecutive_failures,
            "total_executions": self.total_executions,
            "runs_counted": self.runs_counted,
            "success_rate": self.success_rate,
            "p95_duration": self.p95_duration,
            "active_alerts": self.active_alerts,
            "worst_alert_level": self.worst_alert_level.value if self.worst_alert_level else None,
        }


def window_statistics(
    engine: Engine, *, since: datetime | None, collector_type: str | None = None
) -> dict[str, ExecutionStatistics]:
    """Each collector's statistics over the runs started since ``since`` (all if None).

    One pass over the history index, grouped by collector, status and
    duration bucket: the counts, sums and duration sketch together.
    """
    query = select(
        _H.collector_type,
        _H.status,
        _H.duration_bucket,
        func.count(),
        func.sum(_H.duration_seconds),
        func.count(_H.duration_seconds),
        func.sum(_H.records_collected),
        func.min(_H.start_time, type_=UTCDateTime()),
        func.max(_H.start_time, type_=UTCDateTime()),
    ).group_by(_H.collector_type, _H.status, _H.duration_bucket)
    if since is not None:
        query = query.where(_H.start_time >= since)
    if collector_type is not None:
        query = query.where(_H.collector_type == collector_type)
    aggregates: dict[str, Aggregate] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            _add(aggregates, row)
    window = None
    if since is not None:
        window = (datetime.now(timezone.utc) - since).total_seconds()
    return {name: a.statistics(name, window) for name, a in sorted(aggregates.items())}


def collector_overview(
    engine: Engine,
    *,
    window: float = 86400.0,
    sample: int = SAMPLE,
    now: datetime | None = None,
) -> list[CollectorOverview]:
    """Every stored collector's overview row, worst first.

    Ordered by health (critical, warning, unknown, healthy), then by the
    number of active alerts, the failure streak and the score (lowest
    first), then by name.

    Args:
        engine: The store's engine (schema current).
        window: Seconds back from ``now`` that the success rate and p95 cover.
        sample: At most this many of each collector's newest runs in the
            window are counted, so the cost does not grow with history
            (`window_statistics` counts them all).
        now: The end of the window (default: the current time).
    """
    since = (now or datetime.now(timezone.utc)) - timedelta(seconds=window)
    with engine.connect() as conn:
        rows = conn.execute(select(collection_metadata)).all()
    statistics = _newest_statistics(engine, [r.collector_type for r in rows], since, sample)
    alerts_query = (
        select(_A.collector_type, _A.level, func.count())
        .where(_A.state != AlertState.RESOLVED.value)
        .group_by(_A.collector_type, _A.level)
    )
    alerts: dict[str, list[tuple[AlertLevel, int]]] = {}
    with engine.connect() as conn:
        for name, level, count in conn.execute(alerts_query):
            alerts.setdefault(name, []).append((AlertLevel(level), int(count)))
    out = []
    for row in rows:
        stats = statistics.get(row.collector_type)
        active = alerts.get(row.collector_type, [])
        ran = stats is not None and stats.total_executions > 0
        out.append(
            CollectorOverview(
                collector_type=row.collector_type,
                health=_health(row.health_status),
                health_score=row.health_score,
                last_run=row.last_run,
                last_status=ExecutionStatus(row.last_status) if row.last_status else None,
                last_success=row.last_success,
                consecutive_failures=row.consecutive_failures,
                total_executions=row.total_executions,
                runs_counted=stats.total_executions if stats else 0,
                success_rate=stats.success_rate if stats and ran else None,
                p95_duration=stats.p95_duration if stats and stats.p95_duration else None,
                active_alerts=sum(count for _, count in active),
                worst_alert_level=max((lv for lv, _ in active), key=lambda lv: lv.severity)
                if active
                else None,
                window_seconds=window,
            )
        )
    out.sort(
        key=lambda r: (
            _RANK[r.health],
            -r.active_alerts,
            -r.consecutive_failures,
            r.health_score if r.health_score is not None else 101.0,
            r.collector_type,
        )
    )
    return out


def _newest_statistics(
    engine: Engine, names: list[str], since: datetime, sample: int
) -> dict[str, ExecutionStatistics]:
    """Statistics of each collector's newest ``sample`` runs since ``since``.

    One statement per `_PER_QUERY` collectors: a UNION ALL of index range
    scans (collector, start time descending, LIMIT), grouped in SQL. A
    window function would rank every run in the window first.
    """
    aggregates: dict[str, Aggregate] = {}
    columns = (
        _H.collector_type,
        _H.status,
        _H.duration_bucket,
        _H.duration_seconds,
        _H.records_collected,
        _H.start_time,
    )
    for start in range(0, len(names), _PER_QUERY):
        parts = [
            select(*columns)
            .where(_H.collector_type == name, _H.start_time >= since)
            .order_by(_H.start_time.desc())
            .limit(sample)
            .subquery()
            for name in names[start : start + _PER_QUERY]
        ]
        newest = union_all(*(select(*part.c) for part in parts)).subquery()
        c = newest.c
        query = select(
            c.collector_type,
            c.status,
            c.duration_bucket,
            func.count(),
            func.sum(c.duration_seconds),
            func.count(c.duration_seconds),
            func.sum(c.records_collected),
            func.min(c.start_time, type_=UTCDateTime()),
            func.max(c.start_time, type_=UTCDateTime()),
        ).group_by(c.collector_type, c.status, c.duration_bucket)
        with engine.connect() as conn:
            for row in conn.execute(query):
                _add(aggregates, row)
    return {name: a.statistics(name, None) for name, a in aggregates.items()}


def _add(aggregates: dict[str, Aggregate], row: Any) -> None:
    """Add one (collector, status, duration bucket) group to its collector's Aggregate."""
    name, status, bucket, count, dsum, dcount, records, first, last = row
    aggregate = aggregates.get(name)
    if aggregate is None:
        aggregate = aggregates[name] = Aggregate()
    aggregate.counts[_STATUS_INDEX[ExecutionStatus(status)]] += count
    aggregate.duration_sum += float(dsum or 0.0)
    aggregate.duration_count += dcount
    aggregate.records += int(records or 0)
    if bucket is not None:
        aggregate.sketch[int(bucket)] = aggregate.sketch.get(int(bucket), 0) + count
    for moment in (first, last):
        ns = to_ns(moment)
        if aggregate.first is None or ns < aggregate.first:
            aggregate.first = ns
        if aggregate.last is None or ns > aggregate.last:
            aggregate.last = ns


def _health(value: str | None) -> CollectionStatus:
    try:
        return CollectionStatus(value) if value else CollectionStatus.UNKNOWN
    except ValueError:  # written by a newer gecko-otel
        return CollectionStatus.UNKNOWN


def find_runs(engine: Engine, execution_id: str, *, limit: int = 2) -> list[ExecutionRecord]:
    """The run with this id, else up to ``limit`` runs whose id starts or ends with it."""
    with engine.connect() as conn:
        rows = conn.execute(select(execution_history).where(_H.execution_id == execution_id)).all()
        if not rows and len(execution_id) >= MIN_ID_PART:
            part = _H.execution_id.startswith(
                execution_id, autoescape=True
            ) | _H.execution_id.endswith(execution_id, autoescape=True)
            rows = conn.execute(select(execution_history).where(part).limit(limit)).all()
    return [record_from_row(row) for row in rows]


def find_alerts(engine: Engine, alert_id: str, *, limit: int = 2) -> list[Alert]:
    """The alert with this id, else up to ``limit`` alerts whose id starts or ends with it."""
    with engine.connect() as conn:
        rows = conn.execute(select(system_alerts).where(_A.id == alert_id)).all()
        if not rows and len(alert_id) >= MIN_ID_PART:
            part = _A.id.startswith(alert_id, autoescape=True) | _A.id.endswith(
                alert_id, autoescape=True
            )
            rows = conn.execute(select(system_alerts).where(part).limit(limit)).all()
    return [alert_from_row(row)[0] for row in rows]
