"""The persistent store, end to end on a SQLite file and on a real PostgreSQL database.

Every test that touches a database takes ``store_url`` and so runs on both backends. Runs
go in through the public paths (``track_collection``, ``@collection``, ``record_not_started``)
or, where a test needs exact start times or old rows, through ``Store.write`` with
``FinishedRun`` objects; they are read back through the Monitor and directly with SQLAlchemy.
Schema migrations are in ``test_migrations.py``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import Engine, create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url

import gecko_otel
from gecko_otel import (
    AlertState,
    CollectionStatus,
    CollectorThresholds,
    ConfigError,
    ExecutionStatus,
    MonitorConfig,
    track_collection,
)
from gecko_otel._history.memory import duration_key
from gecko_otel._values.records import utc_ns
from gecko_otel.store.engine import create_store_engine
from gecko_otel.store.export import EXPORT_COLUMNS
from gecko_otel.store.rows import STREAM_CHUNK
from gecko_otel.store.schema import (
    VERSION_TABLE,
    collection_metadata,
    execution_history,
    performance_metrics,
    system_alerts,
)
from gecko_otel.store.store import Store
from gecko_otel.testing import FakeClock
from support.runs import run
from support.store_helpers import (
    FALLBACK,
    StatementLog,
    alert,
    at,
    direct_store,
    finished,
    metric_point,
    rows,
    setup_in_a_child,
    stored_monitor,
    utc,
)
from support.store_procs import build_monitor, one_run, sql_rows

OK = ExecutionStatus.SUCCESS
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")
TABLES = {"execution_history", "performance_metrics", "system_alerts", "collection_metadata"}


def now() -> datetime:
    return datetime.now(timezone.utc)


# ------------------------------------------------------------------ 1. round trips of every table


@dataclass
class Result:
    """What a GeckoTerminal-style collector returns (read by @collection)."""

    records_collected: int
    success: bool
    errors: list[str]
    warnings: list[str]


def test_runs_round_trip_through_monitor_and_sql(store_url: str, engine: Engine) -> None:
    with stored_monitor(store_url, service_name="svc-a", instance="inst-1") as sm:
        m = sm.monitor

        @gecko_otel.collection("trades", monitor=m, metadata={"network": "solana"})
        def collect(result: Result) -> Result:
            return result

        run("pools", records=5, monitor=m)
        run("pools", records=2, warn=True, monitor=m)
        run("pools", fail=True, monitor=m)
        with track_collection("pools", monitor=m) as r:
            r.add_records(4)
            r.set_metadata("page", 3)
            r.set_metadata("tags", ["a", "b"])
            r.set_metadata("nested", {"chain": {"id": 101}})
            r.error("page 4 skipped")
        with pytest.raises(TimeoutError), track_collection("pools", monitor=m):
            raise TimeoutError("upstream too slow")
        collect(Result(7, True, [], ["slow api"]))
        collect(Result(1, False, ["page 3 missing"], []))
        scheduled = now().replace(microsecond=0) - timedelta(minutes=5)
        m.record_not_started("pools", "missed", scheduled_time=scheduled, reason="scheduler down")
        assert m.force_flush() is True

        history = m.history()
        memory = m._pipeline._history.records()  # the same runs as the Monitor holds them in memory
        assert [r.to_dict() for r in history] == [r.to_dict() for r in memory]
        # record_not_started stamps its scheduled time, so it sorts first here
        assert [(r.collector_type, r.status.value) for r in reversed(history)] == [
            ("pools", "missed"),
            ("pools", "success"),
            ("pools", "partial"),
            ("pools", "failure"),
            ("pools", "partial"),
            ("pools", "timeout"),
            ("trades", "partial"),
            ("trades", "failure"),
        ]
        spans = {s.attributes["gecko.execution.id"]: s for s in sm.spans.get_finished_spans()}

    stored = rows(engine, execution_history, execution_history.c.id)
    assert len(stored) == 8
    by_id = {row["execution_id"]: row for row in stored}
    assert len(by_id) == 8
    for record in history:
        row = by_id[record.execution_id]
        assert set(row) == {c.name for c in execution_history.c}
        assert row["collector_type"] == record.collector_type
        assert row["status"] == record.status.value
        assert utc(row["start_time"]) == record.start_time
        assert utc(row["end_time"]) == record.end_time
        assert row["duration_seconds"] == record.duration_seconds
        assert row["records_collected"] == record.records_collected
        assert row["warnings"] == list(record.warnings)
        assert row["errors"] == list(record.errors)
        assert row["error_type"] == record.error_type
        assert row["error_message"] == record.error_message
        assert row["dropped_messages"] == 0
        assert row["service_name"] == "svc-a"
        assert row["service_instance_id"] == "inst-1"
        if record.status is ExecutionStatus.MISSED:
            assert row["end_time"] is None
            assert row["duration_seconds"] is None
            assert row["duration_bucket"] is None
            assert row["trace_id"] is None and row["span_id"] is None
            assert row["start_time"] == scheduled
            assert row["warnings"] == ["scheduler down"]
            continue
        span = spans[record.execution_id]
        assert row["trace_id"] == f"{span.context.trace_id:032x}" == record.trace_id
        assert row["span_id"] == f"{span.context.span_id:016x}" == record.span_id
        assert HEX32.fullmatch(row["trace_id"]) and HEX16.fullmatch(row["span_id"])
        assert row["start_time"] == utc_ns(span.start_time)
        assert row["duration_bucket"] == duration_key(row["duration_seconds"])
        assert 0 < row["duration_seconds"] < 5

    def only(collector: str, status: str) -> dict[str, Any]:
        [row] = [r for r in stored if (r["collector_type"], r["status"]) == (collector, status)]
        return row

    assert only("pools", "success")["records_collected"] == 5
    assert only("pools", "success")["metadata"] == {}
    failure = only("pools", "failure")
    assert (failure["error_type"], failure["error_message"]) == ("RuntimeError", "boom")
    assert failure["errors"] == ["RuntimeError: boom"]
    timeout = only("pools", "timeout")
    assert timeout["error_type"] == "TimeoutError"
    assert timeout["error_message"] == "upstream too slow"
    assert timeout["errors"] == ["TimeoutError: upstream too slow"]
    partial = [r for r in stored if (r["collector_type"], r["status"]) == ("pools", "partial")]
    assert [(r["records_collected"], r["warnings"], r["errors"]) for r in partial] == [
        (2, ["w"], []),
        (4, [], ["page 4 skipped"]),
    ]
    assert partial[1]["metadata"] == {"page": 3, "tags": ["a", "b"], "nested.chain.id": 101}
    good, bad = [r for r in stored if r["collector_type"] == "trades"]
    assert (good["status"], good["records_collected"], good["warnings"]) == (
        "partial",
        7,
        ["slow api"],
    )
    assert good["metadata"] == {"network": "solana"}
    assert (bad["status"], bad["records_collected"], bad["errors"]) == (
        "failure",
        1,
        ["page 3 missing"],
    )
    assert (bad["error_type"], bad["error_message"]) == ("_OTHER", "page 3 missing")


def test_sqlite_fast_path_stores_what_sqlalchemy_would(tmp_path: Path) -> None:
    """Store._sqlite_run_values renders rows itself; every stored value must be what the
    SQLAlchemy types make of Store.run_row (times, JSON with tuples, NUL, NaN, no end)."""
    path = tmp_path / "fast.db"
    start = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc)
    metadata = [
        {},
        {"t": (1, 2), "s": ("x\x00", "y"), "f": 1.5, "b": True, "nan": float("nan")},
        {"k\x00ey": "v", "u": "é🦎\u202e", "big": 2**62, "floats": (1.0, -0.0)},
    ]
    runs = [
        finished(
            f"c\x00{i}",
            start + timedelta(microseconds=7 * i),
            status=ExecutionStatus.FAILURE,
            duration=1e-7 * (i + 1),
            records=i,
            warnings=("w\x00",),
            errors=("e",),
            metadata=meta,
            error_type="T\x00",
            error_message="m\x00",
        )
        for i, meta in enumerate(metadata)
    ]
    runs.append(finished("c", start, status=ExecutionStatus.MISSED, duration=None))
    store = Store(
        create_store_engine(f"sqlite:///{path}"), service_name="s", service_instance_id="i"
    )
    try:
        store.ensure_schema()
        store.write(runs, [], [])  # the fast path
        with store.engine.begin() as conn:
            for r in runs:  # the SQLAlchemy path, under another id
                conn.execute(
                    execution_history.insert(),
                    {**store.run_row(r), "execution_id": "B" + r.execution_id},
                )
    finally:
        store.close()
    raw = sqlite3.connect(path)
    try:
        columns = [c[1] for c in raw.execute("PRAGMA table_info(execution_history)")]
        wanted = [c for c in columns if c not in ("id", "execution_id")]
        query = f"SELECT {', '.join(wanted)} FROM execution_history WHERE execution_id = ?"
        for r in runs:
            fast = raw.execute(query, (r.execution_id,)).fetchone()
            typed = raw.execute(query, ("B" + r.execution_id,)).fetchone()
            assert fast == typed, dict(zip(wanted, zip(fast, typed, strict=True), strict=True))
    finally:
        raw.close()


def test_history_records_equal_memory_records(store_url: str) -> None:
    """A record read from the store is the record the Monitor holds in memory (same types)."""
    with stored_monitor(store_url) as sm:
        with track_collection("pools", monitor=sm.monitor) as r:
            r.set_metadata("tags", ["a", "b"])
            r.set_metadata("ids", [1, 2, 3])
        [stored] = sm.monitor.history()
        [memory] = sm.monitor._pipeline._history.records()
    assert memory.metadata == {"tags": ("a", "b"), "ids": (1, 2, 3)}
    assert stored == memory
    assert dict(stored.metadata) == dict(memory.metadata)


def test_times_read_back_in_utc_whatever_the_server_time_zone(
    store_url: str, engine: Engine
) -> None:
    """A PostgreSQL server (or database) in another time zone still yields UTC datetimes."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(
                text(f"ALTER DATABASE \"{engine.url.database}\" SET timezone = 'Asia/Kolkata'")
            )
            conn.commit()
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    with direct_store(store_url) as store:
        store.write([finished("pools", t0, duration=1.0)], [], [])
        [record] = store.history()
        out = io.StringIO()
        store.export_history(out)
        [collector] = store.collectors()
    assert record.start_time == t0
    assert record.start_time.utcoffset() == timedelta(0)
    assert record.end_time is not None and record.end_time.utcoffset() == timedelta(0)
    assert collector.first_run is not None and collector.first_run.utcoffset() == timedelta(0)
    assert json.loads(out.getvalue())["start_time"] == "2026-01-01T12:00:00+00:00"


def test_alert_lifecycle_is_stored(store_url: str, engine: Engine, clock: FakeClock) -> None:
    with stored_monitor(store_url, clock=clock) as sm:
        m = sm.monitor
        for _ in range(3):
            run("pools", fail=True, monitor=m)
        fired = at(clock.now)
        assert m.force_flush() is True
        [row] = rows(engine, system_alerts)
        [live] = m.alerts()
        assert row == {
            "id": live.id,
            "collector_type": "pools",
            "rule": "consecutive_failures",
            "level": "critical",
            "state": "firing",
            "message": "3 consecutive failed runs (threshold 3)",
            "metadata": {"consecutive_failures": 3, "threshold": 3},
            "fired_at": fired,
            "last_notified_at": fired,
            "notified_level": "critical",
            "notifications": 1,
            "acknowledged_at": None,
            "resolved_at": None,
            "suppressed": False,
            "service_name": "svc-a",
            "service_instance_id": "instance-a",
            "updated_at": row["updated_at"],
        }
        assert abs(utc(row["updated_at"]) - now()) < timedelta(minutes=1)  # type: ignore[operator]

        clock.advance(60)
        assert m.acknowledge_alert(live.id) is True
        acknowledged = at(clock.now)
        assert m.force_flush() is True
        [row] = rows(engine, system_alerts)
        assert (row["state"], utc(row["acknowledged_at"]), row["resolved_at"]) == (
            "acknowledged",
            acknowledged,
            None,
        )
        assert row["notifications"] == 1

        clock.advance(60)
        run("pools", monitor=m)  # recovery_threshold=1: one good run resolves it
        resolved = at(clock.now)
        assert m.force_flush() is True
        [row] = rows(engine, system_alerts)
        assert (row["id"], row["state"]) == (live.id, "resolved")
        assert utc(row["resolved_at"]) == resolved
        assert row["acknowledged_at"] == acknowledged
        assert row["fired_at"] == fired
        assert m.alerts() == []
        [back] = m.alerts(active_only=False)
        assert (back.id, back.state, back.resolved_at) == (live.id, AlertState.RESOLVED, resolved)
    assert [a.notification.value for a in sm.notifications if a.notification] == [
        "firing",
        "resolved",
    ]


def test_collection_metadata_accumulates_across_batches(
    store_url: str, engine: Engine, clock: FakeClock
) -> None:
    # Same sequence twice: "pools" flushed after every run (one upsert each), "trades" in one batch.
    plan = [(False, 5), (True, 0), (True, 0), (False, 2), (True, 0), (True, 0)]
    with stored_monitor(store_url, clock=clock) as sm:
        m = sm.monitor
        for fail, records in plan:
            run("pools", fail=fail, records=records, monitor=m)
            assert m.force_flush() is True
        for fail, records in plan:
            run("trades", fail=fail, records=records, monitor=m)
        assert m.force_flush() is True
        health = m.health()
        history = {name: list(reversed(m.history(name))) for name in ("pools", "trades")}
    stored = {row["collector_type"]: row for row in rows(engine, collection_metadata)}
    assert set(stored) == {"pools", "trades"}
    for name, row in stored.items():
        runs = history[name]
        assert row["total_executions"] == 6
        assert row["successful_executions"] == 2
        assert row["failed_executions"] == 4
        assert row["total_records"] == 7
        assert row["consecutive_failures"] == 2
        assert row["last_status"] == "failure"
        assert utc(row["first_run"]) == runs[0].start_time
        assert utc(row["last_run"]) == runs[-1].start_time
        assert utc(row["last_success"]) == runs[3].end_time
        assert utc(row["last_failure"]) == runs[-1].end_time
        assert row["health_status"] == health[name].status.value
        assert row["health_score"] == health[name].health_score
        assert row["service_name"] == "svc-a"
        assert utc(row["updated_at"]) is not None


@pytest.mark.parametrize("late", ["success", "failures"])
def test_streak_of_two_writers_counts_failures_after_the_newest_success(
    store_url: str, late: str
) -> None:
    """Runs in time order F1 S2 F3 (two processes, each writing in its own batches):
    one failure follows the newest success, whichever batch reaches the database last."""
    config = MonitorConfig(store_flush_interval=3600.0, min_runs_for_rate=10**9)
    a = build_monitor(store_url, "streak-a", config=config)
    b = build_monitor(store_url, "streak-b", config=config)
    try:
        if late == "success":  # A stores F1, F3 first; B's S2 comes last
            one_run(a, "shared", fail=True)
            one_run(b, "shared")
            one_run(a, "shared", fail=True)
            assert a.force_flush(10_000)
            assert b.force_flush(10_000)
        else:  # B stores S2 first; A's F1, F3 come last in one batch
            one_run(a, "shared", fail=True)
            one_run(b, "shared")
            assert b.force_flush(10_000)
            one_run(a, "shared", fail=True)
            assert a.force_flush(10_000)
    finally:
        a.shutdown()
        b.shutdown()
    statuses = [s for (s,) in sql_rows(store_url, _BY_START)]
    assert statuses == ["failure", "success", "failure"]
    assert sql_rows(store_url, "SELECT consecutive_failures FROM collection_metadata") == [(1,)]


_BY_START = "SELECT status FROM execution_history ORDER BY start_time"


def test_performance_metrics_round_trip(store_url: str, engine: Engine) -> None:
    t0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
    points = [
        metric_point(
            "gecko.collection.duration",
            t0,
            collector_type="pools",
            kind="histogram",
            value=12.5,
            count=4,
            min=0.25,
            max=8.0,
            unit="s",
            labels={"gecko.collection.status": "success", "net": "solana"},
            start_time=t0 - timedelta(minutes=1),
        ),
        metric_point(
            "gecko.collection.records",
            t0,
            collector_type="pools",
            kind="sum",
            value=1234.0,
            unit="{record}",
        ),
        metric_point(
            "pools_seen",
            t0 + timedelta(seconds=60),
            value=-0.1,
            labels={"quote's": 'va"l', "🦎": ["x", 1, None], "n": {"deep": True}},
        ),
    ]
    with direct_store(store_url) as store:
        store.write([], [], points)
        store.write([], [], [metric_point("late", t0 + timedelta(hours=1), value=3.0)])
    stored = rows(engine, performance_metrics, performance_metrics.c.id)
    assert [{k: v for k, v in row.items() if k != "id"} for row in stored] == [
        *points,
        metric_point("late", t0 + timedelta(hours=1), value=3.0),
    ]
    assert all(utc(row["timestamp"]) for row in stored)
    assert len({row["id"] for row in stored}) == 4


_EXIT_SCRIPT = textwrap.dedent(
    """
    import sys
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from gecko_otel import track_collection
    from gecko_otel._monitor import Monitor
    from gecko_otel.store.metrics import store_metric_reader

    # As store_metric_reader's docs say for a MeterProvider of your own (SDK defaults:
    # the providers shut down at exit, which makes their final collection).
    reader, exporter = store_metric_reader(60.0)
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    monitor = Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        database=sys.argv[1],
        metric_exporter=exporter,
        watchdog=False,
    )
    with track_collection("pools", monitor=monitor) as run:
        run.add_records(3)
    monitor.record_metric("pools_seen", 7.0)
    """
)


def test_metric_points_of_the_final_collection_at_exit_are_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'exit.db'}"
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sql_rows(url, "SELECT count(*) FROM execution_history") == [(1,)]
    assert "dropped" not in done.stderr, done.stderr
    names = {n for (n,) in sql_rows(url, "SELECT name FROM performance_metrics")}
    assert "pools_seen" in names, names


# ------------------------------------------------------------------ 2. statistics in SQL


def _mixed_runs(collector: str, base: datetime, n: int) -> list[Any]:
    """``n`` runs of every status with durations that are exact in binary (k/8 s)."""
    statuses = [
        OK,
        OK,
        OK,
        ExecutionStatus.PARTIAL,
        ExecutionStatus.FAILURE,
        OK,
        ExecutionStatus.TIMEOUT,
        OK,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.MISSED,
        OK,
        ExecutionStatus.SKIPPED,
    ]
    out = []
    for i in range(n):
        status = statuses[i % len(statuses)]
        not_started = status in (ExecutionStatus.MISSED, ExecutionStatus.SKIPPED)
        out.append(
            finished(
                collector,
                base + timedelta(seconds=i),
                status=status,
                duration=None if not_started else ((i * 7) % 41 + 1) / 8,
                records=0 if not_started else (i * 3) % 17,
            )
        )
    return out


def test_statistics_from_the_store_equal_memory_statistics(store_url: str) -> None:
    recent = now().replace(microsecond=0) - timedelta(minutes=20)
    fed = _mixed_runs("pools", recent, 150) + _mixed_runs("trades", recent, 40)
    old = _mixed_runs("pools", recent - timedelta(days=3), 30)
    with stored_monitor(store_url) as stored, stored_monitor(None) as memory:
        for record in fed:
            # What the span processor hands each Monitor: the same runs, to both.
            stored.monitor._pipeline.add(record)
            memory.monitor._pipeline.add(record)
        with direct_store(store_url) as store:
            store.write(old, [], [])  # older than the window: only in the store
        for collector in ("pools", "trades", None):
            for window in (3600.0, timedelta(hours=2)):
                got = stored.monitor.statistics(collector, window=window)
                want = memory.monitor.statistics(collector, window=window)
                assert got.p50_duration == pytest.approx(want.p50_duration, rel=0.01)
                assert got.p95_duration == pytest.approx(want.p95_duration, rel=0.01)
                exact = {k: v for k, v in got.to_dict().items() if k[:3] not in ("p50", "p95")}
                assert exact == {
                    k: v for k, v in want.to_dict().items() if k[:3] not in ("p50", "p95")
                }
        whole = stored.monitor.statistics("pools")
        window = stored.monitor.statistics("pools", window=3600)
        everything = stored.monitor.statistics()
    # Exact figures of the 150 recent runs of "pools" (12-status cycle), computed here.
    durations = [r.duration_seconds for r in fed[:150] if r.duration_seconds is not None]
    records = sum(r.records_collected for r in fed[:150])
    count = Counter(r.status for r in fed[:150])
    assert window.total_executions == 150
    assert window.successful_executions == count[OK] == 76
    assert window.partial_executions == count[ExecutionStatus.PARTIAL] == 13
    assert window.failed_executions == count[ExecutionStatus.FAILURE] == 13
    assert window.timeout_executions == count[ExecutionStatus.TIMEOUT] == 12
    assert window.cancelled_executions == count[ExecutionStatus.CANCELLED] == 12
    assert window.missed_executions == count[ExecutionStatus.MISSED] == 12
    assert window.skipped_executions == count[ExecutionStatus.SKIPPED] == 12
    assert window.success_rate == 100.0 * (76 + 13) / 150
    assert window.average_duration == sum(durations) / len(durations)
    assert window.total_records_collected == records
    assert window.records_per_second == records / sum(durations)
    ordered = sorted(durations)
    assert window.p50_duration == pytest.approx(ordered[(len(ordered) - 1) // 2], rel=0.01)
    assert window.first_execution == recent
    assert window.last_execution == recent + timedelta(seconds=149)
    assert window.window_seconds == 3600.0
    # Without a window, the old runs count too.
    assert whole.total_executions == 180
    assert whole.first_execution == recent - timedelta(days=3)
    assert whole.total_records_collected == records + sum(r.records_collected for r in old)
    assert everything.total_executions == 220


# ------------------------------------------------------------------ 3. history filters, fleets


def test_history_filters_and_a_second_service(
    store_url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        stored_monitor(store_url, service_name="svc-a") as a,
        stored_monitor(store_url, service_name="svc-b", instance="instance-b") as b,
    ):
        run("pools", records=1, monitor=a.monitor)
        run("pools", records=2, fail=True, monitor=a.monitor)
        run("trades", records=3, monitor=a.monitor)
        run("pools", records=4, monitor=b.monitor)
        run("b-only", records=5, fail=True, monitor=b.monitor)
        run("pools", records=6, monitor=a.monitor)
        assert b.monitor.force_flush() is True
        m = a.monitor

        def ids(records: list[Any]) -> list[int]:
            return [r.records_collected for r in records]

        history = m.history()
        assert ids(history) == [6, 5, 4, 3, 2, 1]  # newest first, both services
        assert [r.start_time for r in history] == sorted(
            (r.start_time for r in history), reverse=True
        )
        assert ids(m.history("pools")) == [6, 4, 2, 1]
        assert ids(m.history("b-only")) == [5]
        assert ids(m.history(status="failure")) == [5, 2]
        assert ids(m.history("pools", status=ExecutionStatus.SUCCESS)) == [6, 4, 1]
        assert ids(m.history(since=history[2].start_time)) == [6, 5, 4]
        assert ids(m.history("pools", since=history[2].start_time)) == [6, 4]
        assert ids(m.history(limit=2)) == [6, 5]
        assert ids(m.history("pools", limit=3, status="success")) == [6, 4, 1]
        assert m.history("unknown") == []
        assert m.history(since=now() + timedelta(minutes=1)) == []
        assert m.collector_types() == ["b-only", "pools", "trades"]
        pools = m.statistics("pools")
        assert (pools.total_executions, pools.failed_executions) == (4, 1)
        assert pools.total_records_collected == 13
        assert m.statistics().total_executions == 6
        assert m.statistics("b-only").failed_executions == 1
        with pytest.raises(ConfigError):
            m.history(since=datetime(2026, 1, 1))  # naive
        with pytest.raises(ConfigError):
            m.history(status="bogus")
    services = {
        (row["records_collected"], row["service_name"], row["service_instance_id"])
        for row in rows(engine, execution_history)
    }
    assert services == {
        (1, "svc-a", "instance-a"),
        (2, "svc-a", "instance-a"),
        (3, "svc-a", "instance-a"),
        (4, "svc-b", "instance-b"),
        (5, "svc-b", "instance-b"),
        (6, "svc-a", "instance-a"),
    }
    assert not [r for r in caplog.records if FALLBACK in r.getMessage()]


# ------------------------------------------------------------------ 4. hostile input

HOSTILE_NAMES = [
    'quote\'s "double" `tick` \\back\\slash',
    "'; DROP TABLE execution_history; --",
    'x"); DELETE FROM system_alerts; --',
    "%s %(name)s ? :param $1 {0}",
    "🦎🚀 gecko \U0001d518\U0001d52b\U0001d526 \U0001f1fa\U0001f1e6",
    "שלום \u202eevil\u202c مرحبا",
    "e\u0301 n\u0303 a\u0308\u0332 \u200b\ufeff",
    "tab\tnew\nline\r",
]
BIG = 1_000_000
LIMIT = 5000


def _hostile_run(m: Any, name: str) -> None:
    with track_collection(name, monitor=m) as r:
        r.add_records(len(name))
        r.set_metadata("sql", "'; DROP TABLE execution_history; --")
        r.set_metadata("quote'key\"", "va\"l'ue")
        r.set_metadata("emoji🦎", "🚀\u202eRTL\u202c")
        r.set_metadata("combining", "e\u0301")
        r.set_metadata("nul\x00key", "nul\x00value")
        r.set_metadata("none", None)
        r.set_metadata("nested", {"a": {"b": {"c": name}}, "n": None})
        r.set_metadata("big", "M" * BIG)
        r.set_metadata("seq", ["a'", "b\x00"])
        r.warn(name + "\x00" + "W" * BIG)
        raise RuntimeError("E" * BIG)


def test_hostile_names_and_metadata_round_trip(
    store_url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with stored_monitor(store_url, max_attribute_length=LIMIT) as sm:
        m = sm.monitor
        for name in HOSTILE_NAMES:
            with pytest.raises(RuntimeError, match=r"^E+$"):
                _hostile_run(m, name)
        assert m.force_flush() is True
        for name in HOSTILE_NAMES:
            [record] = m.history(name)
            assert record.collector_type == name
            assert record.records_collected == len(name)
            assert record.to_dict()["metadata"] == {
                "sql": "'; DROP TABLE execution_history; --",
                "quote'key\"": "va\"l'ue",
                "emoji🦎": "🚀\u202eRTL\u202c",
                "combining": "e\u0301",
                "nul\ufffdkey": "nul\ufffdvalue",
                "none": "None",
                "nested.a.b.c": name,
                "nested.n": "None",
                "big": "M" * LIMIT,
                "seq": ["a'", "b\ufffd"],
            }
            [warning] = record.warnings
            assert len(warning) == LIMIT
            assert warning == (name + "\ufffd" + "W" * BIG)[:LIMIT]
            assert record.error_message == "E" * LIMIT
            assert record.errors == (f"RuntimeError: {'E' * LIMIT}",)
            assert m.statistics(name).failed_executions == 1
        assert m.collector_types() == sorted(HOSTILE_NAMES)
    assert set(inspect(engine).get_table_names()) >= TABLES
    stored = rows(engine, execution_history, execution_history.c.id)
    assert [row["collector_type"] for row in stored] == HOSTILE_NAMES
    assert [len(row["metadata"]["big"]) for row in stored] == [LIMIT] * len(HOSTILE_NAMES)
    assert [len(row["error_message"]) for row in stored] == [LIMIT] * len(HOSTILE_NAMES)
    meta = rows(engine, collection_metadata)
    assert sorted(row["collector_type"] for row in meta) == sorted(HOSTILE_NAMES)
    assert [row["failed_executions"] for row in meta] == [1] * len(HOSTILE_NAMES)
    with engine.connect() as conn:
        count = select(func.count()).select_from(execution_history)
        assert conn.execute(count).scalar() == len(HOSTILE_NAMES)
        assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == "0005"
    assert not [r for r in caplog.records if FALLBACK in r.getMessage()]


def test_nan_metadata_run_is_stored(store_url: str, engine: Engine) -> None:
    """Float metadata passes the sanitizer as is, NaN included (a 0/0 ratio)."""
    with stored_monitor(store_url) as sm:
        m = sm.monitor
        with track_collection("ratios", monitor=m) as r:
            r.set_metadata("hit_ratio", float("nan"))
            r.add_records(1)
        assert m.force_flush() is True
        assert m.system_health().dropped["store_rejected"] == 0
        [record] = m.history("ratios")
        # JSON has no NaN: stored (on both backends alike) as its text.
        assert record.metadata["hit_ratio"] == "nan"
    assert len(rows(engine, execution_history)) == 1


def test_a_non_finite_float_in_a_sequence_keeps_it_one_type(store_url: str) -> None:
    """(0, inf) is stored as text, every item of it: a mixed list is no attribute value."""
    with stored_monitor(store_url) as sm:
        m = sm.monitor
        with track_collection("ratios", monitor=m) as r:
            r.set_metadata("ratios", (0, float("inf")))
        assert m.force_flush() is True
        [record] = m.history("ratios")
        assert record.metadata["ratios"] == ("0.0", "inf")


def test_undecodable_path_in_error_message_is_stored(
    store_url: str, engine: Engine, internal_errors: list[Any]
) -> None:
    """An exception message with a surrogate-escaped byte (os.fsdecode of a file name)."""
    path = os.fsdecode(b"/data/pools-\xff.csv")
    with stored_monitor(store_url) as sm:
        m = sm.monitor
        try:
            with track_collection("files", monitor=m) as r:
                r.set_metadata("file", path)
                raise FileNotFoundError(f"no such file: {path}")
        except FileNotFoundError:
            pass
        assert m.force_flush() is True
        assert m.system_health().dropped["store_rejected"] == 0
        [record] = m.history("files")
        assert record.status is ExecutionStatus.FAILURE
        assert record.error_message == "no such file: /data/pools-\ufffd.csv"
    assert internal_errors == []
    assert len(rows(engine, execution_history)) == 1


def test_nul_in_a_collector_type_is_refused_or_stored_as_replacement_character(
    store_url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL refuses NUL in text: a collector type with one is refused when declared,
    or stored with U+FFFD in its place and found again by the name it ran under."""
    name, stored_name = "nul\x00name", "nul\ufffdname"
    with stored_monitor(store_url) as sm:
        m = sm.monitor
        refused = None
        try:
            run(name, records=3, monitor=m)
        except ConfigError as exc:
            refused = str(exc)
        assert m.force_flush() is True
        if refused is not None:
            assert "NUL" in refused
            assert rows(engine, execution_history) == []
            assert m.history() == []
            return
        assert [row["collector_type"] for row in rows(engine, execution_history)] == [stored_name]
        assert [row["collector_type"] for row in rows(engine, collection_metadata)] == [stored_name]
        [record] = m.history(name)
        assert record.collector_type == stored_name
        assert record.records_collected == 3
        assert m.statistics(name).total_executions == 1
        assert m.collector_types() == [stored_name]
    assert not [r for r in caplog.records if FALLBACK in r.getMessage()]


def test_overlong_collector_type_is_refused_or_found_again(store_url: str) -> None:
    """A collector type longer than the column (255) must not vanish from its own history."""
    name = "c" * 300
    with stored_monitor(store_url) as sm:
        m = sm.monitor
        refused = None
        try:
            run(name, records=1, monitor=m)
        except ConfigError as exc:  # refused when declared, as schema.NAME_LENGTH promises
            refused = str(exc)
        if refused is not None:
            assert "255" in refused
            return
        assert m.force_flush() is True
        assert [r.records_collected for r in m.history(name)] == [1]
        assert m.statistics(name).total_executions == 1
        assert len(m.collector_types()) == 1


# ------------------------------------------------------------------ 5. restore after a restart


def test_restart_keeps_the_stale_timer_of_a_configured_collector_that_never_succeeded(
    store_url: str,
) -> None:
    """A collector with thresholds in MonitorConfig.collectors has an evaluator state
    before the restore runs; the restore must still take its first run from the store."""
    clock = FakeClock()
    settings: dict[str, Any] = {
        "collectors": {"pools": CollectorThresholds(stale_after=3600)},
        "max_consecutive_failures": 100,
    }
    with stored_monitor(store_url, clock=clock, **settings) as sm:
        run("pools", fail=True, monitor=sm.monitor)
        clock.advance(3700)
        sm.monitor.evaluate()
        assert [a.rule for a in sm.monitor.alerts()] == ["stale"]
    with stored_monitor(store_url, clock=clock, **settings) as sm:
        # A Monitor that kept running would still call it stale: nothing ever succeeded.
        assert "stale" in sm.monitor.health("pools")["pools"].rules
        sm.monitor.evaluate()
        assert [a.rule for a in sm.monitor.alerts()] == ["stale"]
        assert sm.monitor.force_flush()
        assert [n.notification for n in sm.notifications] == []  # no "resolved"


def test_restart_keeps_an_overlap_that_no_run_has_cleared(store_url: str) -> None:
    clock = FakeClock()
    with stored_monitor(store_url, clock=clock) as sm:
        sm.monitor.record_not_started("pools", "skipped", scheduled_time=datetime.now(timezone.utc))
        assert sm.monitor.health("pools")["pools"].rules == ("overlap",)
        assert [a.rule for a in sm.monitor.alerts()] == ["overlap"]
    with stored_monitor(store_url, clock=clock) as sm:
        assert [a.rule for a in sm.monitor.alerts()] == ["overlap"]  # restored, firing
        # ... so health must say so, as it did before the restart.
        health = sm.monitor.health("pools")["pools"]
        assert (health.status, health.rules) == (CollectionStatus.WARNING, ("overlap",))


def test_restore_leaves_no_orphan_of_two_firing_alerts_of_one_rule(store_url: str) -> None:
    """Two replicas of one service both fired consecutive_failures for a collector; the
    service restarts. Once the collector recovers, no alert of that rule stays active."""
    with (
        stored_monitor(store_url, service_name="svc", instance="replica-1") as one,
        stored_monitor(store_url, service_name="svc", instance="replica-2") as two,
    ):
        for sm in (one, two):
            for _ in range(3):
                run("pools", fail=True, monitor=sm.monitor)
        assert two.monitor.force_flush()
        assert len(one.monitor.alerts()) == 2  # its own and the other replica's
    with stored_monitor(store_url, service_name="svc", instance="replica-1") as sm:
        run("pools", monitor=sm.monitor)  # recovery_threshold 1: the rule clears
        assert sm.monitor.health("pools")["pools"].consecutive_failures == 0
        assert sm.monitor.alerts() == []


def test_restart_with_a_short_success_rate_window(store_url: str) -> None:
    """success_rate_window=60 s: 96 buckets of 0.625 s, so bucket ids pass 2**31."""
    with stored_monitor(store_url, success_rate_window=60) as sm:
        run("pools", monitor=sm.monitor)
    with stored_monitor(store_url, success_rate_window=60) as sm:
        assert sm.monitor.health("pools")["pools"].runs_in_window == 1


def test_window_buckets_match_the_evaluators_buckets_at_boundaries(store_url: str) -> None:
    """Restored health puts each run in bucket int(end // width), as the evaluator does."""
    width = 900.0
    first = int(time.time() // width) - 40
    runs = []
    for k in range(first, first + 30):  # runs ending exactly on a bucket boundary
        start = datetime.fromtimestamp(k * width - 1, timezone.utc)
        runs.append(finished("edge", start, duration=1.0))
    with direct_store(store_url) as store:
        store.write(runs, [], [])
        since = datetime.fromtimestamp(first * width - 10, timezone.utc)
        got = sorted(b.bucket for b in store.window_buckets(since, width))
    assert got == list(range(first, first + 30))


# ------------------------------------------------------------------ 6. retention


def _plant_old_and_new(
    store: Store,
    *,
    old: int,
    new: int,
    points_old: int,
    points_new: int,
    resolved_old: int,
    resolved_new: int,
    active_old: int,
) -> dict[str, Any]:
    """Rows on both sides of a one-day cut-off; returns what must survive."""
    t = now()
    long_ago, lately = t - timedelta(days=10), t - timedelta(hours=1)
    runs = [finished("pools", long_ago + timedelta(seconds=i)) for i in range(old)]
    keep_runs = [finished("pools", lately + timedelta(seconds=i)) for i in range(new)]
    points = [metric_point("m", long_ago + timedelta(seconds=i)) for i in range(points_old)]
    keep_points = [metric_point("m", lately + timedelta(seconds=i)) for i in range(points_new)]
    gone_alerts = [
        alert(store, f"c{i}", state=AlertState.RESOLVED, fired_at=long_ago, resolved_at=long_ago)
        for i in range(resolved_old)
    ]
    keep_alerts = [
        alert(store, f"r{i}", state=AlertState.RESOLVED, fired_at=long_ago, resolved_at=lately)
        for i in range(resolved_new)
    ] + [
        alert(store, f"a{i}", state=state, fired_at=long_ago)
        for i, state in enumerate(
            [AlertState.FIRING, AlertState.ACKNOWLEDGED] * (active_old // 2)
            + [AlertState.FIRING] * (active_old % 2)
        )
    ]
    store.write(runs + keep_runs, gone_alerts + keep_alerts, points + keep_points)
    return {
        "runs": sorted(r.execution_id for r in keep_runs),
        "alerts": sorted(a["id"] for a in keep_alerts),
        "points": len(keep_points),
    }


def _survivors(engine: Engine) -> dict[str, Any]:
    return {
        "runs": sorted(r["execution_id"] for r in rows(engine, execution_history)),
        "alerts": sorted(r["id"] for r in rows(engine, system_alerts)),
        "points": len(rows(engine, performance_metrics)),
    }


def test_store_cleanup_deletes_in_batches_and_counts(store_url: str, engine: Engine) -> None:
    with direct_store(store_url) as store:
        keep = _plant_old_and_new(
            store,
            old=23,
            new=5,
            points_old=16,
            points_new=3,
            resolved_old=9,
            resolved_new=2,
            active_old=3,
        )
        cut = now() - timedelta(days=1)
        with StatementLog(store.engine) as log:
            counts = store.cleanup(runs_before=cut, metrics_before=cut, alerts_before=cut, batch=7)
        assert counts == {"execution_history": 23, "performance_metrics": 16, "system_alerts": 9}
        # 23 = 7+7+7+2, 16 = 7+7+2, 9 = 7+2: one short statement per batch
        assert log.count("DELETE FROM execution_history") == 4
        assert log.count("DELETE FROM performance_metrics") == 3
        assert log.count("DELETE FROM system_alerts") == 2
        assert _survivors(engine) == keep
        assert store.cleanup(runs_before=cut, metrics_before=cut, alerts_before=cut, batch=7) == {
            "execution_history": 0,
            "performance_metrics": 0,
            "system_alerts": 0,
        }
        # None leaves a table alone
        assert store.cleanup(
            runs_before=now() + timedelta(days=1), metrics_before=None, alerts_before=None, batch=7
        ) == {
            "execution_history": 5,
            "performance_metrics": 0,
            "system_alerts": 0,
        }
    assert len(rows(engine, performance_metrics)) == 3


def test_monitor_cleanup_counts_per_table(store_url: str, engine: Engine) -> None:
    with stored_monitor(store_url) as sm:
        run("pools", records=1, monitor=sm.monitor)
        assert sm.monitor.force_flush() is True
        with direct_store(store_url) as store:
            keep = _plant_old_and_new(
                store,
                old=13,
                new=2,
                points_old=4,
                points_new=1,
                resolved_old=3,
                resolved_new=1,
                active_old=2,
            )
        counts = sm.monitor.cleanup(timedelta(days=1))
        assert counts == {"execution_history": 13, "performance_metrics": 4, "system_alerts": 3}
        assert sm.monitor.history("pools")[0].records_collected == 1
        assert len(sm.monitor.history()) == 3
        with pytest.raises(ConfigError):
            sm.monitor.cleanup(0)
    survivors = _survivors(engine)
    assert survivors["alerts"] == keep["alerts"]
    assert survivors["points"] == keep["points"]
    assert len(survivors["runs"]) == 3 and set(keep["runs"]) < set(survivors["runs"])


def test_automatic_retention_deletes_old_rows(store_url: str, engine: Engine) -> None:
    with stored_monitor(
        store_url,
        retention_runs=3600,
        retention_metrics=3600,
        retention_alerts=3600,
        retention_interval=0.2,
        store_flush_interval=0.05,
    ) as sm:
        with direct_store(store_url) as store:
            t = now()
            old_run, new_run = finished("pools", t - timedelta(hours=2)), finished("pools", t)
            old_alert = alert(
                store,
                "x",
                state=AlertState.RESOLVED,
                fired_at=t - timedelta(hours=3),
                resolved_at=t - timedelta(hours=2),
            )
            firing = alert(store, "y", state=AlertState.FIRING, fired_at=t - timedelta(hours=3))
            store.write(
                [old_run, new_run],
                [old_alert, firing],
                [metric_point("m", t - timedelta(hours=2)), metric_point("m", t)],
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (
                [r["execution_id"] for r in rows(engine, execution_history)]
                == [new_run.execution_id]
                and len(rows(engine, performance_metrics)) == 1
                and len(rows(engine, system_alerts)) == 1
            ):
                break
            time.sleep(0.05)
        assert [r["execution_id"] for r in rows(engine, execution_history)] == [
            new_run.execution_id
        ]
        assert [r["timestamp"] for r in rows(engine, performance_metrics)] == [t]
        assert [r["id"] for r in rows(engine, system_alerts)] == [firing["id"]]
        assert sm.monitor.is_shutdown is False


# ------------------------------------------------------------------ 7. streaming export


def _export_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row[k].isoformat() if isinstance(row[k], datetime) else row[k] for k in EXPORT_COLUMNS
    }


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def test_export_history_jsonl_and_csv(store_url: str, engine: Engine, tmp_path: Path) -> None:
    with stored_monitor(store_url) as sm:
        m = sm.monitor
        run("pools", records=1, monitor=m)
        with track_collection("pools", monitor=m) as r:
            r.set_metadata("net", 'solana, "main"\nnet')
            r.warn('comma, quote " and\nnewline')
            r.add_records(2)
        run("trades", records=3, fail=True, monitor=m)
        run("pools", records=4, monitor=m)
        assert m.force_flush() is True
        expected = [
            _export_row(row)
            for row in rows(engine, execution_history, execution_history.c.start_time)
        ]
        assert [row["records_collected"] for row in expected] == [1, 2, 3, 4]  # oldest first

        assert m.export_history(tmp_path / "all.jsonl") == 4
        lines = (tmp_path / "all.jsonl").read_text(encoding="utf-8").splitlines()
        parsed = [json.loads(line) for line in lines]
        assert [list(obj) for obj in parsed] == [list(EXPORT_COLUMNS)] * 4
        assert parsed == expected

        assert m.export_history(str(tmp_path / "all.csv"), format="csv") == 4
        with open(tmp_path / "all.csv", encoding="utf-8", newline="") as handle:
            table = list(csv.reader(handle))
        assert table[0] == list(EXPORT_COLUMNS)
        assert table[1:] == [[_csv_cell(row[k]) for k in EXPORT_COLUMNS] for row in expected]
        assert json.loads(table[2][EXPORT_COLUMNS.index("metadata")]) == {
            "net": 'solana, "main"\nnet'
        }

        out = io.StringIO()
        assert m.export_history(out, collector_type="pools") == 3
        assert [json.loads(x)["records_collected"] for x in out.getvalue().splitlines()] == [
            1,
            2,
            4,
        ]
        out = io.StringIO()
        assert m.export_history(out, format="csv", status="failure") == 1
        [failed] = csv.DictReader(io.StringIO(out.getvalue()))
        assert failed["records_collected"] == "3"
        second, fourth = expected[1]["start_time"], expected[3]["start_time"]
        out = io.StringIO()
        assert (
            m.export_history(
                out,
                since=datetime.fromisoformat(second),
                until=datetime.fromisoformat(fourth),
            )
            == 2
        )
        assert [json.loads(x)["records_collected"] for x in out.getvalue().splitlines()] == [2, 3]
        with pytest.raises(ConfigError, match="export format"):
            m.export_history(io.StringIO(), format="xml")


def test_export_streams_every_row_once_in_order(store_url: str, engine: Engine) -> None:
    t0 = datetime(2026, 2, 1, tzinfo=timezone.utc)
    total = 2 * STREAM_CHUNK + 500
    # Seven runs per start time: equal start times straddle every chunk boundary.
    planted = [
        finished("pools" if i % 3 else "trades", t0 + timedelta(seconds=i // 7), records=i)
        for i in range(total)
    ]
    with direct_store(store_url) as store:
        for first in range(0, total, 1000):
            store.write(planted[first : first + 1000], [], [])
    order = (execution_history.c.start_time, execution_history.c.id)
    expected = [row["execution_id"] for row in rows(engine, execution_history, *order)]
    assert sorted(expected) == sorted(r.execution_id for r in planted)
    with stored_monitor(engine) as sm:
        out = io.StringIO()
        with StatementLog(engine) as log:
            assert sm.monitor.export_history(out) == total
        exported = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [row["execution_id"] for row in exported] == expected
        assert len({row["execution_id"] for row in exported}) == total
        assert [row["start_time"] for row in exported] == sorted(r["start_time"] for r in exported)
        selects = [s for s in log.statements if "FROM execution_history" in s]
        assert len(selects) == 3  # 1000 + 1000 + 500: streamed in chunks
        out = io.StringIO()
        assert sm.monitor.export_history(out, format="csv", collector_type="trades") == len(
            [r for r in planted if r.collector_type == "trades"]
        )
        trades = list(csv.DictReader(io.StringIO(out.getvalue())))
        collector_of = {r.execution_id: r.collector_type for r in planted}
        assert [r["execution_id"] for r in trades] == [
            e for e in expected if collector_of[e] == "trades"
        ]


def test_export_has_a_store_section(store_url: str) -> None:
    url = store_url
    if store_url.startswith("postgresql"):
        url = make_url(store_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    with stored_monitor(url) as sm:
        m = sm.monitor
        run("pools", records=4, monitor=m)
        run("pools", fail=True, monitor=m)
        assert m.force_flush() is True
        exported = m.export()
    text_ = json.dumps(exported)
    assert "s3cret-pw" not in text_
    section = exported["store"]
    assert section["backend"] == make_url(store_url).get_backend_name()
    assert section["url"] == make_url(url).render_as_string(hide_password=True)
    if store_url.startswith("postgresql"):
        assert section["url"].startswith("postgresql+psycopg://postgres:***@")
    else:
        assert section["url"] == store_url
    assert section["service_name"] == "svc-a"
    assert section["service_instance_id"] == "instance-a"
    assert (section["written_runs"], section["pending"], section["available"]) == (2, 0, True)
    assert section["write_failures"] == 0
    assert (section["store_dropped_runs"], section["store_rejected"]) == (0, 0)
    [meta] = section["collection_metadata"]
    assert (meta["collector_type"], meta["total_executions"], meta["failed_executions"]) == (
        "pools",
        2,
        1,
    )
    assert (meta["total_records"], meta["consecutive_failures"], meta["last_status"]) == (
        4,
        1,
        "failure",
    )
    assert exported["collectors"]["pools"]["statistics"]["total_executions"] == 2
    assert [h["records_collected"] for h in exported["collectors"]["pools"]["history"]] == [0, 4]


# ------------------------------------------------------------------ 8. configuration


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x", r"backend 'mysql' is not supported; use SQLite .*PostgreSQL"),
        ("sqlite://", r"in-memory SQLite database is not a store; give a file"),
        ("sqlite:///:memory:", r"in-memory SQLite database is not a store"),
        ("sqlite:////no/such/dir/gecko.db", r"directory '/no/such/dir' .* does not exist"),
        (
            "postgresql+psycopg2://u@localhost/db",
            r"'psycopg2' is not supported; use 'postgresql\+psycopg://'",
        ),
        ("not a url", r"is not a database URL.*use 'sqlite:///"),
    ],
)
def test_setup_rejects_unusable_database_urls(url: str, message: str) -> None:
    tp, mp = TracerProvider(), MeterProvider()
    try:
        with pytest.raises(ConfigError, match=message):
            gecko_otel.setup(tracer_provider=tp, meter_provider=mp, database_url=url)
        assert gecko_otel.get_monitor() is None
    finally:
        tp.shutdown()
        mp.shutdown()


def test_setup_with_an_unusable_database_leaves_no_providers_behind(tmp_path: Path) -> None:
    """The error comes before setup() creates and installs providers of its own."""
    out = setup_in_a_child(f"sqlite:///{tmp_path / 'missing' / 'gecko.db'}")
    assert "does not exist" in out["error"]
    assert out["tracer"] == "ProxyTracerProvider"
    assert out["meter"] == "_ProxyMeterProvider"


def test_environment_variable_names_the_database(
    store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GECKO_OTEL_DATABASE_URL", store_url)
    tp, mp = TracerProvider(), MeterProvider()
    monitor = gecko_otel.setup(tracer_provider=tp, meter_provider=mp)
    try:
        run("from-env", records=9)  # the global Monitor
        assert monitor.force_flush() is True
        assert monitor.config.database_url == store_url
    finally:
        monitor.shutdown()
        tp.shutdown()
        mp.shutdown()
    assert [
        (r["collector_type"], r["records_collected"]) for r in rows(engine, execution_history)
    ] == [("from-env", 9)]


def test_a_given_engine_is_used_and_not_disposed(store_url: str) -> None:
    given = create_engine(store_url)  # a plain engine, not made by gecko-otel
    try:
        pool = given.pool
        tp, mp = TracerProvider(), MeterProvider()
        monitor = gecko_otel.setup(tracer_provider=tp, meter_provider=mp, database_url=given)
        try:
            run("given", records=2)
            assert monitor.force_flush() is True
            assert [r.records_collected for r in monitor.history("given")] == [2]
        finally:
            monitor.shutdown()
            tp.shutdown()
            mp.shutdown()
        assert given.pool is pool  # Engine.dispose() replaces the pool
        assert pool.checkedin() > 0  # and its connections are still open
        with given.connect() as conn:
            assert conn.execute(select(execution_history.c.records_collected)).scalars().all() == [
                2
            ]
            assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == "0005"
    finally:
        given.dispose()
