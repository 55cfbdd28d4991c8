"""The storage contract, once, over every backend: memory, a SQLite file, PostgreSQL.

Everything here goes through the public API (``gecko_otel.Monitor`` built from
SDK providers with in-memory exporters, ``database=None`` for memory or a URL),
so the suite holds whatever backend the Monitor keeps behind its storage
contract. Each test states what every backend must do identically; the one
documented difference (what survives a restart) is an explicit expectation.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import gecko_otel
from gecko_otel import (
    Alert,
    AlertLevel,
    AlertState,
    CollectionStatus,
    ConfigError,
    ExecutionRecord,
    ExecutionStatus,
    MonitorConfig,
)
from gecko_otel.testing import FakeClock

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]

#: Fields of a record that are the same whenever the same runs happen (not ids, not clocks).
STABLE_FIELDS = (
    "collector_type",
    "status",
    "records_collected",
    "errors",
    "warnings",
    "metadata",
    "error_type",
    "error_message",
    "dropped_messages",
)
#: Export columns that name one particular run or process, not what happened.
ID_COLUMNS = ("execution_id", "trace_id", "span_id", "service_instance_id")
#: The relative error the documentation allows for p50/p95 (a 1 % log-bucket sketch).
SKETCH_PRECISION = 0.0101
#: Metadata of every attribute type a run can carry.
METADATA = {"network": "solana", "pages": 3, "ratio": 0.5, "final": True, "tags": ["a", "b"]}
PLUS_TWO = timezone(timedelta(hours=2))


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None (memory), a SQLite file URL, or a fresh database on the shared PostgreSQL."""
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    # Requested lazily, so `-k "not postgresql"` never starts the server.
    url: str = request.getfixturevalue("postgres_url")
    return url


@dataclass
class Watched:
    """A Monitor on one backend, with the spans it exported and the alerts it notified."""

    monitor: gecko_otel.Monitor
    spans: InMemorySpanExporter
    notified: list[Alert]

    def span_of(self, execution_id: str) -> ReadableSpan:
        [span] = [
            s
            for s in self.spans.get_finished_spans()
            if (s.attributes or {}).get("gecko.execution.id") == execution_id
        ]
        return span


@contextmanager
def monitor_on(
    database: str | None, *, clock: Callable[[], float] | None = None, **config: Any
) -> Iterator[Watched]:
    """A Monitor on ``database`` from fresh SDK providers; shut down afterwards.

    No watchdog, and the success-rate rule out of the way (so the alert tests
    see one rule per collector). ``clock`` defaults to a FakeClock at the real time.
    """
    config.setdefault("min_runs_for_rate", 1000)
    resource = Resource.create(
        {"service.name": "svc-contract", "service.instance.id": "contract-1"}
    )
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False
    )
    notified: list[Alert] = []
    monitor = gecko_otel.Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        config=MonitorConfig(**config),
        alert_handlers=[notified.append],
        owned_providers=[tracer_provider, meter_provider],
        clock=clock if clock is not None else FakeClock(),
        watchdog=False,
        database=database,
    )
    try:
        yield Watched(monitor, spans, notified)
    finally:
        monitor.shutdown()


def run(
    monitor: gecko_otel.Monitor,
    collector: str,
    *,
    records: int = 0,
    warn: str | None = None,
    error: str | None = None,
    fail: BaseException | None = None,
    metadata: Mapping[str, Any] | None = None,
    sleep: float = 0.0,
) -> None:
    """One run of ``collector`` as user code makes it; ``fail`` is raised inside it."""
    try:
        with gecko_otel.track_collection(collector, metadata=metadata, monitor=monitor) as r:
            r.add_records(records)
            if warn is not None:
                r.warn(warn)
            if error is not None:
                r.error(error)
            if sleep:
                time.sleep(sleep)
            if fail is not None:
                raise fail
    except (RuntimeError, TimeoutError):
        pass


def fail_three(monitor: gecko_otel.Monitor, collector: str) -> None:
    """Three failures in a row: the critical ``consecutive_failures`` rule fires."""
    for _ in range(3):
        run(monitor, collector, fail=RuntimeError("boom"))


def stable(record: ExecutionRecord) -> dict[str, Any]:
    fields = {name: getattr(record, name) for name in STABLE_FIELDS}
    fields["metadata"] = dict(record.metadata)
    return fields


def now() -> datetime:
    return datetime.now(timezone.utc)


def moment(seconds_ago: float) -> datetime:
    """An aware UTC time ``seconds_ago`` before now, on a whole millisecond."""
    at = now() - timedelta(seconds=seconds_ago)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None, f"{value!r} is naive"
    assert value.utcoffset() == timedelta(0), f"{value!r} is not UTC"


def from_ns(ns: int | None) -> datetime:
    assert ns is not None
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)


# --------------------------------------------------------------------------- runs


def test_runs_are_read_back_field_by_field(database: str | None) -> None:
    scheduled = moment(600)
    with monitor_on(database) as w:
        m = w.monitor
        m.record_not_started(
            "pools", "missed", scheduled_time=scheduled, reason="scheduler down", metadata={"n": 1}
        )
        m.record_not_started(  # any aware time; read back in UTC
            "pools",
            ExecutionStatus.SKIPPED,
            scheduled_time=(scheduled + timedelta(minutes=5)).astimezone(PLUS_TWO),
        )
        run(m, "pools", records=120, metadata=METADATA, sleep=0.02)
        run(m, "pools", records=7, warn="3 pools skipped", error="page 2 timed out")
        run(m, "trades", records=1, fail=RuntimeError("boom"))
        run(m, "trades", fail=TimeoutError("too slow"))
        history = m.history()

    assert [stable(r) for r in history] == [
        {
            "collector_type": "trades",
            "status": ExecutionStatus.TIMEOUT,
            "records_collected": 0,
            "errors": ("TimeoutError: too slow",),
            "warnings": (),
            "metadata": {},
            "error_type": "TimeoutError",
            "error_message": "too slow",
            "dropped_messages": 0,
        },
        {
            "collector_type": "trades",
            "status": ExecutionStatus.FAILURE,
            "records_collected": 1,
            "errors": ("RuntimeError: boom",),
            "warnings": (),
            "metadata": {},
            "error_type": "RuntimeError",
            "error_message": "boom",
            "dropped_messages": 0,
        },
        {
            "collector_type": "pools",
            "status": ExecutionStatus.PARTIAL,
            "records_collected": 7,
            "errors": ("page 2 timed out",),
            "warnings": ("3 pools skipped",),
            "metadata": {},
            "error_type": None,
            "error_message": None,
            "dropped_messages": 0,
        },
        {
            "collector_type": "pools",
            "status": ExecutionStatus.SUCCESS,
            "records_collected": 120,
            "errors": (),
            "warnings": (),
            "metadata": {
                "network": "solana",
                "pages": 3,
                "ratio": 0.5,
                "final": True,
                "tags": ("a", "b"),
            },
            "error_type": None,
            "error_message": None,
            "dropped_messages": 0,
        },
        {
            "collector_type": "pools",
            "status": ExecutionStatus.SKIPPED,
            "records_collected": 0,
            "errors": (),
            "warnings": (),
            "metadata": {},
            "error_type": None,
            "error_message": None,
            "dropped_messages": 0,
        },
        {
            "collector_type": "pools",
            "status": ExecutionStatus.MISSED,
            "records_collected": 0,
            "errors": (),
            "warnings": ("scheduler down",),
            "metadata": {"n": 1},
            "error_type": None,
            "error_message": None,
            "dropped_messages": 0,
        },
    ]
    # Times, durations and ids: those of the run's span, in aware UTC, on every backend.
    for record in history[:4]:
        span = w.span_of(record.execution_id)
        assert_utc(record.start_time)
        assert_utc(record.end_time)
        assert record.start_time == from_ns(span.start_time)
        assert record.end_time == from_ns(span.end_time)
        assert record.trace_id == format(span.context.trace_id, "032x")
        assert record.span_id == format(span.context.span_id, "016x")
        assert record.duration_seconds is not None
        span_seconds = ((span.end_time or 0) - (span.start_time or 0)) / 1e9
        assert 0 < record.duration_seconds <= span_seconds + 1e-3
    assert history[3].duration_seconds is not None and history[3].duration_seconds >= 0.02
    assert len({r.execution_id for r in history}) == 6
    for record, at in ((history[4], scheduled + timedelta(minutes=5)), (history[5], scheduled)):
        assert_utc(record.start_time)
        assert record.start_time == at
        assert (record.end_time, record.duration_seconds) == (None, None)
        assert (record.trace_id, record.span_id) == (None, None)


def test_history_filters_alone_and_combined(database: str | None) -> None:
    with monitor_on(database) as w:
        m = w.monitor
        old = moment(3 * 86400)
        m.record_not_started("pools", "missed", scheduled_time=old)
        m.record_not_started("trades", "missed", scheduled_time=old + timedelta(seconds=1))
        for i in range(4):
            run(m, "pools", records=i, fail=RuntimeError("boom") if i == 1 else None)
        run(m, "trades", records=10, warn="late")
        run(m, "trades", records=11)

        everything = m.history()
        assert [(r.collector_type, r.records_collected) for r in everything] == [
            ("trades", 11),
            ("trades", 10),
            ("pools", 3),
            ("pools", 2),
            ("pools", 1),
            ("pools", 0),
            ("trades", 0),
            ("pools", 0),
        ]
        starts = [r.start_time for r in everything]
        assert starts == sorted(starts, reverse=True)
        pools = m.history("pools")
        assert [r.records_collected for r in pools] == [3, 2, 1, 0, 0]
        assert pools == [r for r in everything if r.collector_type == "pools"]
        # each filter alone
        assert m.history(limit=3) == everything[:3]
        assert m.history(limit=0) == []
        assert m.history(limit=100) == everything
        assert [r.records_collected for r in m.history(status="failure")] == [1]
        assert m.history(status=ExecutionStatus.MISSED) == everything[-2:]
        assert m.history(status=ExecutionStatus.CANCELLED) == []
        assert m.history(since=everything[2].start_time) == everything[:3]  # bound included
        assert m.history(since=everything[2].start_time.astimezone(PLUS_TWO)) == everything[:3]
        assert m.history(since=old + timedelta(seconds=1)) == everything[:-1]
        assert m.history(since=now() + timedelta(minutes=1)) == []
        # combined
        assert m.history("pools", limit=2) == pools[:2]
        assert m.history("pools", status="success", since=pools[2].start_time) == [
            pools[0],
            pools[1],
        ]
        assert m.history("trades", status="partial", limit=1) == [everything[1]]
        assert m.history("trades", status="missed", since=old, limit=5) == [everything[6]]
        assert m.history(status="success", since=pools[1].start_time, limit=2) == [
            everything[0],
            everything[2],
        ]
        # an unknown collector is no error
        assert m.history("nobody") == []
        assert m.history("nobody", status="success", limit=3) == []


def test_collector_types_are_sorted_and_include_not_started_runs(database: str | None) -> None:
    with monitor_on(database) as w:
        m = w.monitor
        assert m.collector_types() == []
        run(m, "zeta")
        run(m, "alpha", fail=RuntimeError("boom"))
        m.record_not_started("mid", "skipped", scheduled_time=moment(60))
        run(m, "alpha")
        assert m.collector_types() == ["alpha", "mid", "zeta"]


def test_not_started_runs_are_in_history_with_no_duration(database: str | None) -> None:
    with monitor_on(database) as w:
        m = w.monitor
        run(m, "pools", sleep=0.01)
        missed = m.record_not_started("pools", "missed", scheduled_time=moment(120))
        skipped = m.record_not_started("pools", "skipped", scheduled_time=moment(60))
        [s] = m.history("pools", status="skipped")
        [ms] = m.history("pools", status="missed")
        assert (s.execution_id, ms.execution_id) == (skipped, missed)
        for record in (s, ms):
            assert (record.duration_seconds, record.end_time) == (None, None)
        stats = m.statistics("pools")
        [ran] = m.history("pools", status="success")
    assert (stats.total_executions, stats.missed_executions, stats.skipped_executions) == (3, 1, 1)
    assert stats.success_rate == pytest.approx(100 / 3)
    # Runs that never started have no duration to average.
    assert stats.average_duration == pytest.approx(ran.duration_seconds, rel=1e-9)


# --------------------------------------------------------------------------- statistics


def nearest_rank(durations: list[float], q: float) -> float:
    """The quantile the sketch approximates: the value at rank floor(q * (n - 1))."""
    ordered = sorted(durations)
    return ordered[math.floor(q * (len(ordered) - 1))]


def test_statistics_totals_counts_rates_and_durations(database: str | None) -> None:
    with monitor_on(database) as w:
        m = w.monitor
        # 20 pools runs with well-spread durations: 12 success, 4 partial, 4 failure.
        for i in range(20):
            kind = i % 5
            run(
                m,
                "pools",
                records=i,
                sleep=0.001 * (i % 7) + 0.0005 * i,
                warn="w" if kind == 1 else None,
                fail=RuntimeError("boom") if kind == 3 else None,
            )
        run(m, "trades", records=50, sleep=0.03)
        m.record_not_started("trades", "missed", scheduled_time=moment(30))
        pools_runs = m.history("pools")
        trades_runs = m.history("trades")
        pools = m.statistics("pools")
        trades = m.statistics("trades")
        overall = m.statistics()
        nobody = m.statistics("nobody")

    assert pools.collector_type == "pools"
    assert (
        pools.total_executions,
        pools.successful_executions,
        pools.partial_executions,
        pools.failed_executions,
        pools.timeout_executions,
        pools.cancelled_executions,
        pools.missed_executions,
        pools.skipped_executions,
    ) == (20, 12, 4, 4, 0, 0, 0, 0)
    assert pools.success_rate == pytest.approx(80.0)
    assert pools.total_records_collected == sum(range(20))  # failed runs' records count too
    durations = [r.duration_seconds for r in pools_runs if r.duration_seconds is not None]
    assert len(durations) == 20
    assert pools.average_duration == pytest.approx(sum(durations) / 20, rel=1e-9)
    assert pools.p50_duration == pytest.approx(nearest_rank(durations, 0.5), rel=SKETCH_PRECISION)
    assert pools.p95_duration == pytest.approx(nearest_rank(durations, 0.95), rel=SKETCH_PRECISION)
    assert pools.records_per_second == pytest.approx(sum(range(20)) / sum(durations), rel=1e-9)
    assert pools.first_execution == pools_runs[-1].start_time
    assert pools.last_execution == pools_runs[0].start_time
    assert pools.window_seconds is None

    assert (trades.total_executions, trades.successful_executions) == (2, 1)
    assert trades.missed_executions == 1
    assert trades.success_rate == pytest.approx(50.0)
    assert trades.total_records_collected == 50
    [trade] = [r for r in trades_runs if r.duration_seconds is not None]
    assert trades.average_duration == pytest.approx(trade.duration_seconds, rel=1e-9)
    assert trades.first_execution == trades_runs[-1].start_time

    assert overall.collector_type is None
    assert overall.total_executions == 22
    assert overall.successful_executions == 13
    assert overall.success_rate == pytest.approx(100 * 17 / 22)
    assert overall.total_records_collected == sum(range(20)) + 50
    everything = [*durations, trade.duration_seconds or 0.0]
    assert overall.average_duration == pytest.approx(sum(everything) / 21, rel=1e-9)
    assert overall.p50_duration == pytest.approx(
        nearest_rank(everything, 0.5), rel=SKETCH_PRECISION
    )
    assert overall.p95_duration == pytest.approx(
        nearest_rank(everything, 0.95), rel=SKETCH_PRECISION
    )
    assert overall.first_execution == min(r.start_time for r in pools_runs + trades_runs)

    assert (nobody.total_executions, nobody.success_rate, nobody.p95_duration) == (0, 0.0, 0.0)
    assert nobody.first_execution is None


def test_statistics_with_and_without_window(database: str | None) -> None:
    with monitor_on(database) as w:
        m = w.monitor
        m.record_not_started("pools", "missed", scheduled_time=moment(3 * 86400))
        m.record_not_started("pools", "skipped", scheduled_time=moment(2 * 3600))
        run(m, "pools", records=5, sleep=0.01)
        run(m, "pools", records=6, fail=RuntimeError("boom"))
        run(m, "trades", records=1)
        hour = m.statistics("pools", window=timedelta(hours=1))
        hour_seconds = m.statistics("pools", window=3600)
        day = m.statistics("pools", window=timedelta(days=1))
        ever = m.statistics("pools")
        all_hour = m.statistics(window=timedelta(hours=1))
        recent = m.history("pools", since=now() - timedelta(hours=1))

    assert (hour.total_executions, hour.successful_executions, hour.failed_executions) == (2, 1, 1)
    assert (hour.missed_executions, hour.skipped_executions) == (0, 0)
    assert hour.total_records_collected == 11
    assert hour.window_seconds == 3600.0
    assert hour.first_execution == recent[-1].start_time
    assert hour == hour_seconds
    assert (day.total_executions, day.skipped_executions, day.missed_executions) == (3, 1, 0)
    assert day.success_rate == pytest.approx(100 / 3)
    assert (ever.total_executions, ever.missed_executions, ever.skipped_executions) == (4, 1, 1)
    assert ever.window_seconds is None
    assert ever.first_execution is not None and ever.first_execution < now() - timedelta(days=2)
    assert ever.average_duration == pytest.approx(hour.average_duration, rel=1e-9)
    assert (all_hour.total_executions, all_hour.total_records_collected) == (3, 12)


# --------------------------------------------------------------------------- alerts


def test_alert_fires_is_listed_filtered_acknowledged_and_resolved(database: str | None) -> None:
    clock = FakeClock()
    with monitor_on(database, clock=clock) as w:
        m = w.monitor
        fail_three(m, "pools")
        [pools] = m.alerts()
        assert (pools.collector_type, pools.rule, pools.level, pools.state) == (
            "pools",
            "consecutive_failures",
            AlertLevel.CRITICAL,
            AlertState.FIRING,
        )
        assert_utc(pools.fired_at)
        clock.advance(60)
        fail_three(m, "trades")
        trades = m.alerts(collector_type="trades")[0]
        assert [a.id for a in m.alerts()] == [trades.id, pools.id]  # newest first
        assert [a.id for a in m.alerts(level="critical")] == [trades.id, pools.id]
        assert [a.id for a in m.alerts(level=AlertLevel.CRITICAL, collector_type="pools")] == [
            pools.id
        ]
        assert m.alerts(level=AlertLevel.WARNING) == []
        assert m.alerts(collector_type="nobody") == []

        assert m.acknowledge_alert(pools.id) is True
        assert m.acknowledge_alert(pools.id) is False  # already acknowledged
        assert m.acknowledge_alert("no-such-alert") is False
        [acked] = m.alerts(collector_type="pools")
        assert acked.state is AlertState.ACKNOWLEDGED
        assert_utc(acked.acknowledged_at)

        clock.advance(60)
        assert m.resolve_alert(pools.id) is True
        assert m.resolve_alert(pools.id) is False  # already resolved
        assert m.resolve_alert("no-such-alert") is False
        assert [a.id for a in m.alerts()] == [trades.id]
        assert m.alerts(collector_type="pools") == []
        everything = m.alerts(active_only=False)
        assert [a.id for a in everything] == [trades.id, pools.id]
        resolved = everything[1]
        assert resolved.state is AlertState.RESOLVED
        assert resolved.resolved_at == datetime.fromtimestamp(clock.now, timezone.utc)
        assert [a.id for a in m.alerts(active_only=False, collector_type="pools")] == [pools.id]
        m.force_flush()
        heard = [(a.collector_type, a.state) for a in w.notified]
    assert heard == [
        ("pools", AlertState.FIRING),
        ("trades", AlertState.FIRING),
        ("pools", AlertState.RESOLVED),
    ]


# --------------------------------------------------------------------------- cleanup


def test_cleanup_removes_old_runs_and_resolved_alerts_and_keeps_recent(
    database: str | None,
) -> None:
    # The real clock: runs are aged by wall-clock start time, alerts by the Monitor's clock.
    with monitor_on(database, clock=time.time) as w:
        m = w.monitor
        m.record_not_started("pools", "missed", scheduled_time=moment(3 * 86400))
        m.record_not_started("pools", "missed", scheduled_time=moment(2 * 86400))
        m.record_not_started("trades", "missed", scheduled_time=moment(3 * 86400))
        run(m, "pools", records=1)
        run(m, "pools", records=2)
        fail_three(m, "trades")
        fail_three(m, "feeds")
        [resolved] = m.alerts(collector_type="trades")
        [active] = m.alerts(collector_type="feeds")
        assert m.resolve_alert(resolved.id) is True
        recent = m.history()
        assert len(recent) == 11

        counts = m.cleanup(timedelta(days=1))
        # Memory and SQL share these keys (SQL adds performance_metrics).
        assert {"execution_history", "system_alerts"} <= counts.keys()
        assert (counts["execution_history"], counts["system_alerts"]) == (3, 0)
        assert m.history() == recent[:8]
        assert m.history(status="missed") == []
        assert [a.id for a in m.alerts(active_only=False)] == [active.id, resolved.id]

        time.sleep(1.5)  # the older runs are 1.5 s old, the fresh one a moment
        run(m, "pools", records=3)
        counts = m.cleanup(1.0)
        assert (counts["execution_history"], counts["system_alerts"]) == (8, 1)
        [fresh] = m.history()
        assert fresh.records_collected == 3
        assert [a.id for a in m.alerts(active_only=False)] == [active.id]
        assert m.cleanup(timedelta(days=1))["execution_history"] == 0


def test_cleanup_removes_old_runs_recorded_just_before(database: str | None) -> None:
    with monitor_on(database, clock=time.time) as w:
        m = w.monitor
        run(m, "pools")
        m.record_not_started("pools", "missed", scheduled_time=moment(3 * 86400))
        counts = m.cleanup(timedelta(days=1))
        m.force_flush()
        assert counts["execution_history"] == 1
        assert [r.status for r in m.history()] == [ExecutionStatus.SUCCESS]


def test_statistics_after_cleanup_follow_the_backend(database: str | None) -> None:
    """Memory's statistics are running totals since start, SQL's are computed from the
    stored rows (as ``Monitor.statistics`` documents): cleanup() removes runs from the
    SQL figures only."""
    with monitor_on(database, clock=time.time) as w:
        m = w.monitor
        run(m, "pools", records=2)
        m.record_not_started("pools", "missed", scheduled_time=moment(3 * 86400))
        before = m.statistics("pools")
        assert m.cleanup(timedelta(days=1))["execution_history"] == 1
        after = m.statistics("pools")
    assert (before.total_executions, before.missed_executions) == (2, 1)
    expected = (2, 1) if database is None else (1, 0)
    assert (after.total_executions, after.missed_executions) == expected


def test_cleanup_ages_resolved_alerts_by_the_monitor_clock(database: str | None) -> None:
    clock = FakeClock()
    with monitor_on(database, clock=clock) as w:
        m = w.monitor
        fail_three(m, "pools")
        [alert] = m.alerts()
        assert m.resolve_alert(alert.id) is True
        clock.advance(hours=48)
        m.force_flush()  # the resolution is stored: only the clock is in question
        counts = m.cleanup(timedelta(days=1))
        assert counts["system_alerts"] == 1
        assert m.alerts(active_only=False) == []


# --------------------------------------------------------------------------- export


def test_export_is_json_and_holds_collectors_history_statistics_alerts(
    database: str | None,
) -> None:
    with monitor_on(database) as w:
        m = w.monitor
        run(m, "pools", records=4, metadata={"network": "solana"})
        run(m, "pools", records=5, warn="slow page")
        fail_three(m, "trades")
        m.record_not_started("trades", "missed", scheduled_time=moment(3600))
        [alert] = m.alerts()
        history = {name: m.history(name) for name in ("pools", "trades")}
        exported = json.loads(json.dumps(m.export(), allow_nan=False))

    assert set(exported["collectors"]) == {"pools", "trades"}
    for name, records in history.items():
        collector = exported["collectors"][name]
        assert collector["history"] == [r.to_dict() for r in records]
        assert collector["statistics"]["collector_type"] == name
        assert collector["statistics"]["total_executions"] == len(records)
    assert exported["collectors"]["trades"]["statistics"]["failed_executions"] == 3
    assert exported["collectors"]["trades"]["statistics"]["missed_executions"] == 1
    assert exported["statistics"]["total_executions"] == 6
    assert exported["statistics"]["total_records_collected"] == 9
    assert [a["id"] for a in exported["alerts"]] == [alert.id]
    assert exported["alerts"][0]["rule"] == "consecutive_failures"
    assert exported["alerts"][0]["level"] == "critical"


def export_rows(path: Path, format: str) -> list[dict[str, Any]]:
    """The rows of an export file, CSV cells decoded back to JSON values."""
    text = path.read_text(encoding="utf-8")
    if format == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        decoded: dict[str, Any] = {}
        for key, cell in row.items():
            if cell == "":
                decoded[key] = None
            elif key in ("warnings", "errors", "metadata"):
                decoded[key] = json.loads(cell)
            elif key in ("records_collected", "dropped_messages"):
                decoded[key] = int(cell)
            elif key == "duration_seconds":
                decoded[key] = float(cell)
            else:
                decoded[key] = cell
        out.append(decoded)
    return out


def as_export_row(record: ExecutionRecord) -> dict[str, Any]:
    """What an export row holds for ``record`` (export columns, ids aside)."""
    row = record.to_dict()
    return {
        "collector_type": row["collector_type"],
        "status": row["status"],
        "start_time": row["start_time"],
        "end_time": row["end_time"],
        "duration_seconds": row["duration_seconds"],
        "records_collected": row["records_collected"],
        "error_type": row["error_type"],
        "error_message": row["error_message"],
        "warnings": row["warnings"],
        "errors": row["errors"],
        "dropped_messages": row["dropped_messages"],
        "metadata": row["metadata"],
    }


def without_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in row.items() if k not in (*ID_COLUMNS, "service_name")} for row in rows
    ]


@pytest.mark.parametrize("format", ["jsonl", "csv"])
def test_export_history_writes_the_stored_runs_with_filters(
    database: str | None, format: str, tmp_path: Path
) -> None:
    old = moment(3 * 86400)
    with monitor_on(database) as w:
        m = w.monitor
        m.record_not_started("pools", "missed", scheduled_time=old, reason="down")
        run(m, "pools", records=4, metadata={"network": "solana", "tags": ("a", "b")})
        run(m, "pools", records=5, warn="slow page", error="page 3 failed")
        run(m, "trades", fail=RuntimeError("boom"))
        history = m.history()
        out = tmp_path / f"runs.{format}"

        def export(**filters: Any) -> list[dict[str, Any]]:
            written = m.export_history(out, format=format, **filters)
            rows = export_rows(out, format)
            assert written == len(rows)
            return rows

        everything = export()
        assert [row["execution_id"] for row in everything] == [
            r.execution_id for r in reversed(history)
        ]
        assert without_ids(everything) == [as_export_row(r) for r in reversed(history)]
        only_pools = export(collector_type="pools")
        assert only_pools == [row for row in everything if row["collector_type"] == "pools"]
        assert export(status="failure") == [everything[3]]
        assert export(status=ExecutionStatus.MISSED) == [everything[0]]
        assert export(since=history[2].start_time) == everything[1:]  # since included
        assert export(until=history[2].start_time) == everything[:1]  # until excluded
        between = export(since=old, until=history[0].start_time, collector_type="pools")
        assert between == everything[:3]
        assert export(collector_type="pools", status="partial", since=old) == [everything[2]]
        assert export(collector_type="nobody") == []
        with io.StringIO() as handle:  # an open text file works too
            assert m.export_history(handle, format=format, status="partial") == 1


def test_export_history_names_the_service(database: str | None, tmp_path: Path) -> None:
    with monitor_on(database) as w:
        run(w.monitor, "pools")
        w.monitor.export_history(tmp_path / "runs.jsonl")
    [row] = export_rows(tmp_path / "runs.jsonl", "jsonl")
    assert (row["service_name"], row["service_instance_id"]) == ("svc-contract", "contract-1")


# --------------------------------------------------------------------------- bad input

BAD_INPUT: dict[str, Callable[[gecko_otel.Monitor, Path], object]] = {
    "history negative limit": lambda m, _: m.history(limit=-1),
    "history bool limit": lambda m, _: m.history(limit=True),
    "history unknown status": lambda m, _: m.history(status="exploded"),
    "history naive since": lambda m, _: m.history(since=datetime(2026, 1, 1)),
    "history since not a datetime": lambda m, _: m.history(since="2026-01-01"),  # type: ignore[arg-type]
    "statistics zero window": lambda m, _: m.statistics(window=0),
    "statistics negative window": lambda m, _: m.statistics(window=timedelta(minutes=-1)),
    "alerts unknown level": lambda m, _: m.alerts(level="severe"),
    "export_history bad format": lambda m, p: m.export_history(p / "x", format="xml"),
    "export_history naive since": lambda m, p: m.export_history(
        p / "x", since=datetime(2026, 1, 1)
    ),
    "export_history naive until": lambda m, p: m.export_history(
        p / "x", until=datetime(2026, 1, 1)
    ),
    "export_history unknown status": lambda m, p: m.export_history(p / "x", status="exploded"),
    "cleanup zero": lambda m, _: m.cleanup(0),
    "cleanup negative": lambda m, _: m.cleanup(-5),
    "cleanup zero timedelta": lambda m, _: m.cleanup(timedelta(0)),
    "record_not_started bad status": lambda m, _: m.record_not_started(
        "pools", "success", scheduled_time=now()
    ),
    "record_not_started naive time": lambda m, _: m.record_not_started(
        "pools", "missed", scheduled_time=datetime(2026, 1, 1)
    ),
}


def test_bad_input_raises_config_error(database: str | None, tmp_path: Path) -> None:
    # One Monitor per backend for every case: a fresh database each would cost seconds.
    wrong: list[str] = []
    with monitor_on(database) as w:
        run(w.monitor, "pools")
        for name, call in BAD_INPUT.items():
            try:
                call(w.monitor, tmp_path)
            except ConfigError:
                pass
            except Exception as exc:
                wrong.append(f"{name}: {exc!r}")
            else:
                wrong.append(f"{name}: nothing raised")
        # Refused before anything was written or removed.
        assert not (tmp_path / "x").exists()
        assert len(w.monitor.history()) == 1
    assert wrong == []


# --------------------------------------------------------------------------- restart


def test_restart_with_the_same_database(database: str | None) -> None:
    """SQL backends keep history, health and active alerts; memory starts empty.

    The one documented difference between the backends.
    """
    survives = database is not None
    with monitor_on(database) as w:
        m = w.monitor
        run(m, "pools", records=3)
        fail_three(m, "trades")
        history = m.history()
        alerts = m.alerts()
        health = m.health("trades")["trades"]
        assert health.status is CollectionStatus.CRITICAL
        assert [a.rule for a in alerts] == ["consecutive_failures"]

    with monitor_on(database) as w:
        m = w.monitor
        after = m.health("trades")["trades"]
        if survives:
            assert m.history() == history
            assert [a.id for a in m.alerts()] == [a.id for a in alerts]
            assert (after.status, after.consecutive_failures) == (
                CollectionStatus.CRITICAL,
                health.consecutive_failures,
            )
            assert m.collector_types() == ["pools", "trades"]
        else:
            assert m.history() == []
            assert m.alerts() == []
            assert after.status is CollectionStatus.UNKNOWN
            assert m.collector_types() == []


# --------------------------------------------------------------------------- side by side


def scenario(m: gecko_otel.Monitor, clock: FakeClock, base: datetime) -> None:
    """Runs of every status, alerts in every state, on fixed times where times are ours."""
    m.record_not_started(
        "pools", "missed", scheduled_time=base, reason="scheduler down", metadata={"n": 1}
    )
    m.record_not_started("trades", "missed", scheduled_time=base + timedelta(seconds=1))
    m.record_not_started("pools", "skipped", scheduled_time=base + timedelta(seconds=2))
    run(m, "pools", records=120, metadata=METADATA)
    run(m, "pools", records=7, warn="3 pools skipped", error="page 2 timed out")
    fail_three(m, "trades")
    clock.advance(60)
    run(m, "trades", fail=TimeoutError("too slow"))
    [trades] = m.alerts(collector_type="trades")
    assert m.acknowledge_alert(trades.id)
    clock.advance(60)
    fail_three(m, "feeds")
    [feeds] = m.alerts(collector_type="feeds")
    clock.advance(60)
    assert m.resolve_alert(feeds.id)


#: Statistics that depend on measured durations or on when the real runs happened.
MEASURED = (
    "average_duration",
    "p50_duration",
    "p95_duration",
    "records_per_second",
    "first_execution",
    "last_execution",
)


def comparable(row: Mapping[str, Any]) -> dict[str, Any]:
    """A record or export row without ids, and without times where a real run set them."""
    out = {k: v for k, v in row.items() if k not in (*ID_COLUMNS, "service_name", "id")}
    if out.get("duration_seconds") is not None:
        for key in ("start_time", "end_time", "duration_seconds"):
            out.pop(key)
    return out


def snapshot(m: gecko_otel.Monitor, out: Path) -> dict[str, Any]:
    """What the public API tells of the scenario, ids and measured times aside."""
    exports: dict[str, Any] = {}
    for format in ("jsonl", "csv"):
        path = out / f"runs.{format}"
        for name, filters in {
            "all": {},
            "pools": {"collector_type": "pools"},
            "failure": {"status": "failure"},
            "since": {"since": now() - timedelta(hours=1)},
            "until": {"until": now() - timedelta(hours=1)},
        }.items():
            m.export_history(path, format=format, **filters)
            exports[f"{format} {name}"] = [comparable(r) for r in export_rows(path, format)]
    exported = json.loads(json.dumps(m.export()))
    return {
        "collector_types": m.collector_types(),
        "history": [comparable(r.to_dict()) for r in m.history()],
        "history partial": [comparable(r.to_dict()) for r in m.history(status="partial")],
        "statistics": {
            name: {k: v for k, v in m.statistics(name).to_dict().items() if k not in MEASURED}
            for name in (None, "pools", "trades", "feeds", "nobody")
        },
        "statistics hour": {
            k: v
            for k, v in m.statistics(window=timedelta(hours=1)).to_dict().items()
            if k not in MEASURED
        },
        "alerts": [comparable(a.to_dict()) for a in m.alerts(active_only=False)],
        "active alerts": [comparable(a.to_dict()) for a in m.alerts()],
        "export collectors": {
            name: [comparable(r) for r in collector["history"]]
            for name, collector in exported["collectors"].items()
        },
        "export alerts": [comparable(a) for a in exported["alerts"]],
        "exports": exports,
    }


@pytest.mark.parametrize("database", SQL_BACKENDS, indirect=True)
def test_every_backend_reads_back_what_memory_does(database: str | None, tmp_path: Path) -> None:
    base, start = moment(2 * 86400), time.time()
    seen = []
    for where in (None, database):
        clock = FakeClock(start)
        with monitor_on(where, clock=clock) as w:
            scenario(w.monitor, clock, base)
            seen.append(snapshot(w.monitor, tmp_path))
    in_memory, stored = seen
    assert len(in_memory["history"]) == 12
    assert len(in_memory["alerts"]) == 3  # feeds, trades, and the overlap of the skipped run
    assert stored == in_memory
